"""Usage -> cost: list and effective, with the price source that produced them. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from genai_prices import types as gp

from ..errors import MarginError
from ._data import PriceSource

__all__ = ["Cost", "TokenUsage", "UsageError"]


class UsageError(MarginError):
    """A token usage that cannot be priced (negative counts, cache tokens above the input)."""

    exit_code = 2
    http_status = 400
    error_type = "invalid_request_error"


@dataclass(frozen=True, kw_only=True)
class TokenUsage:
    """Tokens of one request, in genai-prices' (and OpenAI's) convention:

    ``input_tokens`` is the WHOLE prompt, including ``cache_read_tokens`` and ``cache_write_tokens``.
    (Anthropic reports ``input_tokens`` without cache tokens; the gateway normalizes before pricing.)
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0

    def __post_init__(self) -> None:
        for name in ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise UsageError(f"{name} must be a whole number >= 0, got {value!r}")
        if self.cache_read_tokens + self.cache_write_tokens > self.input_tokens:
            raise UsageError(
                f"cache_read_tokens ({self.cache_read_tokens}) + cache_write_tokens ({self.cache_write_tokens}) "
                f"exceed input_tokens ({self.input_tokens}); input_tokens counts the whole prompt, cached part included"
            )

    def to_genai(self) -> gp.Usage:
        values = {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cache_read_tokens": self.cache_read_tokens,
            "cache_write_tokens": self.cache_write_tokens,
        }
        return gp.Usage(**{k: v for k, v in values.items() if v})

    def scaled(self, factor: int) -> TokenUsage:
        return TokenUsage(
            input_tokens=self.input_tokens * factor,
            output_tokens=self.output_tokens * factor,
            cache_read_tokens=self.cache_read_tokens * factor,
            cache_write_tokens=self.cache_write_tokens * factor,
        )


@dataclass(frozen=True, kw_only=True)
class Cost:
    """The price of one usage. ``list_cost`` is at list price; ``effective_cost`` after the negotiated
    discount (and it equals list cost when there is none). Amounts are exact Decimals in USD."""

    model: str
    provider: str
    usage: TokenUsage
    input_cost: Decimal
    output_cost: Decimal
    list_cost: Decimal
    effective_cost: Decimal
    discount: Decimal
    batch: bool
    # Names the tier when input crossed a context threshold (e.g. "input > 200,000 tokens").
    tier: str | None
    source: PriceSource
    priced_at: datetime

    def times(self, count: int | Decimal) -> tuple[Decimal, Decimal]:
        """(list, effective) cost of ``count`` such requests."""
        return self.list_cost * count, self.effective_cost * count

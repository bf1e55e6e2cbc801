"""A model's resolved per-token rates: what the planner and cost math consume."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

__all__ = ["ModelRate"]


@dataclass(frozen=True, kw_only=True)
class ModelRate:
    """Flat (below any tier threshold) prices of one model in USD per 1M tokens.

    ``source`` says where the price came from (``genai-prices 0.2.3``, ``config override``, ``scenario``);
    ``prices_checked`` is the date the price data was last reviewed, when known. ``discount`` is the
    negotiated fraction off list (0.2 = 20% off) that turns list cost into effective cost.
    """

    model: str
    input_per_mtok: Decimal
    output_per_mtok: Decimal
    cached_input_per_mtok: Decimal | None = None
    cache_write_per_mtok: Decimal | None = None
    provider: str | None = None
    source: str = "scenario"
    prices_checked: date | None = None
    discount: Decimal = Decimal(0)

    def effective(self, list_amount: Decimal) -> Decimal:
        """Apply the negotiated discount to a list amount."""
        return list_amount * (1 - self.discount)

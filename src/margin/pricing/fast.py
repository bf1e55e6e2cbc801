"""A precomputed price card for the gateway's hot path.

genai-prices' general calculation (unit registry, usage decomposition, validation) costs ~80-100 µs per
call; the gateway prices every request two or three times. A :class:`PriceCard` holds one model's token
prices for one day as plain Decimals and computes the same cost in a few microseconds. It is built only
for models priced purely per token (input, cached input, cache write, output, with or without context
tiers), and only after it reproduced genai-prices' own result on probe usages at and around every tier
threshold; anything else keeps the general path. Tests compare both on random usages.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal

from genai_prices import types as gp

from .cost import TokenUsage

__all__ = ["PriceCard", "build_price_card"]

_MILLION = Decimal(1_000_000)


@dataclass(frozen=True)
class _Rate:
    base: Decimal
    tiers: tuple[tuple[int, Decimal], ...]  # (start, price), ascending

    def at(self, input_tokens: int) -> Decimal:
        # genai-prices' cliff: the highest tier whose start the whole prompt exceeds applies to all tokens.
        price = self.base
        for start, tier_price in self.tiers:
            if input_tokens > start:
                price = tier_price
        return price


@dataclass(frozen=True)
class PriceCard:
    day: date
    input: _Rate
    output: _Rate
    cache_read: _Rate | None
    cache_write: _Rate | None

    def list_cost(self, usage: TokenUsage) -> tuple[Decimal, Decimal]:
        """(input cost, output cost) in USD, exactly as genai-prices computes them."""
        n = usage.input_tokens
        uncached = n - usage.cache_read_tokens - usage.cache_write_tokens
        input_cost = uncached * self.input.at(n)
        if usage.cache_read_tokens:
            rate = self.cache_read or self.input
            input_cost += usage.cache_read_tokens * rate.at(n)
        if usage.cache_write_tokens:
            rate = self.cache_write or self.input
            input_cost += usage.cache_write_tokens * rate.at(n)
        return input_cost / _MILLION, usage.output_tokens * self.output.at(n) / _MILLION


def _rate(value: Decimal | gp.TieredPrices | None) -> _Rate | None:
    if value is None:
        return None
    if isinstance(value, gp.TieredPrices):
        return _Rate(value.base, tuple((t.start, t.price) for t in value.tiers))
    return _Rate(value, ())


def build_price_card(model: gp.ModelInfo, prices: gp.ModelPrice, day: date) -> PriceCard | None:
    """A card for ``prices`` (the model's prices in force on ``day``), or None when the card does not
    reproduce genai-prices (e.g. a per-request fee) or time-of-day prices make a per-day card wrong."""
    if isinstance(model.prices, list) and any(isinstance(c.constraint, gp.TimeOfDateConstraint) for c in model.prices):
        return None
    # Other price keys (web searches, audio seconds, per-request fees...) are allowed here: a margin usage
    # never carries their units, so they either cost nothing (and the probes agree) or they do cost
    # something on every request (a per-request fee) and the probes disagree, which rejects the card.
    input_rate, output_rate = _rate(prices.input_mtok), _rate(prices.output_mtok)
    if input_rate is None or output_rate is None:
        return None
    card = PriceCard(day, input_rate, output_rate, _rate(prices.cache_read_mtok), _rate(prices.cache_write_mtok))
    return card if _agrees_with_genai_prices(card, prices) else None


def _agrees_with_genai_prices(card: PriceCard, prices: gp.ModelPrice) -> bool:
    thresholds = sorted({start for rate in (card.input, card.output) for start, _ in rate.tiers})
    sizes = {1, 1000, 12_345}
    for start in thresholds:
        sizes |= {start - 1, start, start + 1, start + 5000}
    for n in sorted(s for s in sizes if s > 2):
        for usage in (
            TokenUsage(input_tokens=n, output_tokens=777),
            TokenUsage(input_tokens=n, output_tokens=3, cache_read_tokens=n // 2),
            TokenUsage(input_tokens=n, output_tokens=50, cache_read_tokens=n // 3, cache_write_tokens=n // 3),
        ):
            expected = prices.calc_price(usage.to_genai())
            got_input, got_output = card.list_cost(usage)
            # Compare the total too: a per-request fee counts in neither direction, only in the total.
            got = (got_input, got_output, got_input + got_output)
            if got != (expected["input_price"], expected["output_price"], expected["total_price"]):
                return False
    return True


def day_of(at: datetime) -> date:
    return at.astimezone(UTC).date()


def noon(day: date) -> datetime:
    return datetime.combine(day, time(12), tzinfo=UTC)

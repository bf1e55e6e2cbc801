"""How a scenario names a model's prices: a catalog model name, or explicit prices (the seeds' hypothetical
rates, a quote you are evaluating). Shared by every planner model that prices tokens."""

from __future__ import annotations

from datetime import date
from decimal import Decimal, localcontext
from typing import Annotated, Any

from pydantic import Discriminator, Field, Tag

from ..money import MONEY_CONTEXT, per_million
from ..pricing.rates import ModelRate
from ._base import Fraction, NonNegDecimal, PlanContext, Result, Scenario

__all__ = [
    "ListEffective",
    "ModelPrice",
    "ModelRef",
    "PriceUsed",
    "prices_note",
    "ref_name",
    "request_cost",
    "resolve_ref",
]


class ModelPrice(Scenario):
    """Explicit prices in USD per 1M tokens, so a scenario works offline and with hypothetical rates."""

    name: Annotated[str, Field(min_length=1)]
    input_per_mtok: NonNegDecimal
    output_per_mtok: NonNegDecimal
    # Negotiated fraction off list (0.2 = 20% off); catalog models get theirs from margin.yaml.
    discount: Fraction = Decimal(0)


def _model_ref_kind(value: Any) -> str:
    return "explicit_prices" if isinstance(value, dict | ModelPrice) else "model_name"


# A catalog model name ("gpt-4o") or an explicit price mapping {name, input_per_mtok, output_per_mtok}.
ModelRef = Annotated[
    Annotated[str, Tag("model_name"), Field(min_length=1)] | Annotated[ModelPrice, Tag("explicit_prices")],
    Discriminator(_model_ref_kind),
]


class ListEffective(Result):
    """An amount at list price and after the negotiated discount (equal when there is none)."""

    list_usd: Decimal
    effective_usd: Decimal

    @classmethod
    def of(cls, list_usd: Decimal, rate: ModelRate) -> ListEffective:
        return cls(list_usd=list_usd, effective_usd=rate.effective(list_usd))


def request_cost(rate: ModelRate, input_tokens: Decimal | int, output_tokens: Decimal | int) -> ListEffective:
    """Cost of one request with these token counts, list and effective."""
    with localcontext(MONEY_CONTEXT):
        list_usd = per_million(input_tokens, rate.input_per_mtok) + per_million(output_tokens, rate.output_per_mtok)
        return ListEffective.of(list_usd, rate)


def ref_name(ref: str | ModelPrice) -> str:
    return ref if isinstance(ref, str) else ref.name


def resolve_ref(ref: str | ModelPrice, ctx: PlanContext) -> ModelRate:
    """Catalog lookup for a name (UnknownModelError propagates), or the scenario's explicit prices."""
    if isinstance(ref, str):
        return ctx.resolve_rate(ref)
    return ModelRate(
        model=ref.name,
        input_per_mtok=ref.input_per_mtok,
        output_per_mtok=ref.output_per_mtok,
        source="scenario",
        discount=ref.discount,
    )


class PriceUsed(Result):
    """Which price priced a planner result: every priced result records its source and check date."""

    model: str
    provider: str | None
    input_per_mtok: Decimal
    output_per_mtok: Decimal
    discount: Decimal
    source: str
    prices_checked: date | None

    @classmethod
    def of(cls, rate: ModelRate) -> PriceUsed:
        return cls(
            model=rate.model,
            provider=rate.provider,
            input_per_mtok=rate.input_per_mtok,
            output_per_mtok=rate.output_per_mtok,
            discount=rate.discount,
            source=rate.source,
            prices_checked=rate.prices_checked,
        )

    def describe(self) -> str:
        where = "given in the scenario" if self.source == "scenario" else self.source
        checked = f", prices checked {self.prices_checked}" if self.prices_checked else ""
        return f"{self.model}: list ${self.input_per_mtok}/${self.output_per_mtok} per 1M in/out ({where}{checked})"


def prices_note(prices: tuple[PriceUsed, ...] | list[PriceUsed]) -> str:
    """One report note naming the price of every model a result used."""
    return "Prices used: " + "; ".join(p.describe() for p in prices) + "."

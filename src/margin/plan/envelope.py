"""Envelope estimate and model comparison: the seeds' five steps (volume, payload, tokens, unit costs,
annualize) run for several models side by side.

Seed 000 ("Doing the Math: Envelope Estimation") gives the five steps for a writing assistant; seed 001
("Token Cost Calculator") gives ``estimate_cost(model, input_tokens, output_tokens, requests_per_day)`` and
compares models on one workload. This model does both: one workload, many models, ranked cheapest first.

Formulas (per model, prices in USD per 1M tokens):

    requests_per_day   = requests_per_day, or daily_active_users * queries_per_user
    tokens per request = input_tokens / output_tokens, or ceil(words / words_per_token)
    tokens per day     = tokens per request * requests_per_day
    input cost/day     = input tokens/day * input_per_mtok / 1e6     (output likewise)
    total/day          = input cost/day + output cost/day
    per month          = total/day * 30          per year = total/day * 365
    effective          = list * (1 - discount)

Pure: no I/O. Money is Decimal throughout; the CLI rounds for display.
"""

from __future__ import annotations

from decimal import Decimal, localcontext
from functools import partial
from typing import Annotated, Any

from pydantic import Field, model_validator

from ..errors import ScenarioError
from ..money import MONEY_CONTEXT, format_usd, per_million
from ._base import (
    Column,
    NonNegDecimal,
    NonNegInt,
    PlanContext,
    PlannerModel,
    PosDecimal,
    PosInt,
    Report,
    Result,
    Scenario,
    Table,
    percent,
)
from ._prices import ListEffective, ModelPrice, ModelRef, ref_name, resolve_ref

__all__ = ["MODEL", "EnvelopeResult", "EnvelopeScenario", "ListEffective", "ModelCost", "ModelPrice"]

DAYS_PER_MONTH = 30
DAYS_PER_YEAR = 365


# -- scenario ---------------------------------------------------------------------------------------


class EnvelopeScenario(Scenario):
    # Step 1, volume: either requests_per_day, or daily_active_users x queries_per_user.
    requests_per_day: PosDecimal | None = None
    daily_active_users: PosInt | None = None
    queries_per_user: PosDecimal | None = None
    # Step 2, payload per request: words (converted at the configured words/token) or tokens, per direction.
    input_words: NonNegDecimal | None = None
    input_tokens: NonNegInt | None = None
    output_words: NonNegDecimal | None = None
    output_tokens: NonNegInt | None = None
    # Step 4, unit costs: the models to compare.
    models: Annotated[list[ModelRef], Field(min_length=1)]

    @model_validator(mode="after")
    def _check_forms(self) -> EnvelopeScenario:
        # Cross-field problems raise ScenarioError (not ValueError) so the error names the field itself.
        has_rpd = self.requests_per_day is not None
        if has_rpd and (self.daily_active_users is not None or self.queries_per_user is not None):
            raise ScenarioError(
                "give either requests_per_day or daily_active_users and queries_per_user, not both",
                field="requests_per_day",
            )
        if not has_rpd and (self.daily_active_users is None or self.queries_per_user is None):
            missing = "daily_active_users" if self.daily_active_users is None else "queries_per_user"
            raise ScenarioError(
                "the volume needs requests_per_day, or both daily_active_users and queries_per_user "
                f"({missing} is missing)",
                field=missing,
            )
        for direction in ("input", "output"):
            words = getattr(self, f"{direction}_words")
            tokens = getattr(self, f"{direction}_tokens")
            if words is not None and tokens is not None:
                raise ScenarioError(
                    f"give either {direction}_words or {direction}_tokens, not both",
                    field=f"{direction}_tokens",
                )
            if words is None and tokens is None:
                raise ScenarioError(
                    f"the payload needs {direction}_words or {direction}_tokens per request",
                    field=f"{direction}_tokens",
                )
        # Zero words is zero tokens and any positive word count is at least one token.
        if not any(getattr(self, f) for f in ("input_words", "input_tokens", "output_words", "output_tokens")):
            raise ScenarioError(
                "input and output are both zero per request; there is nothing to price", field="input_tokens"
            )
        names = [ref_name(m) for m in self.models]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ScenarioError(f"each model may appear once; repeated: {', '.join(duplicates)}", field="models")
        return self


# -- result -----------------------------------------------------------------------------------------


class ModelCost(Result):
    name: str
    resolved_model: str
    provider: str | None
    price_source: str
    prices_checked: str | None
    input_per_mtok: Decimal
    output_per_mtok: Decimal
    discount: Decimal
    input_tokens_per_request: int
    output_tokens_per_request: int
    input_tokens_per_day: Decimal
    output_tokens_per_day: Decimal
    cost_per_request: ListEffective
    input_cost_per_day: ListEffective
    output_cost_per_day: ListEffective
    cost_per_day: ListEffective
    cost_per_month: ListEffective
    cost_per_year: ListEffective
    # Share of the (list) cost that comes from output tokens; None when the cost is zero.
    output_share_of_cost: Decimal | None
    rank: int
    # Effective cost per request / the cheapest model's; None (see ratio_note) when the cheapest is free.
    ratio_to_cheapest: Decimal | None
    ratio_note: str | None


class EnvelopeResult(Result):
    requests_per_day: Decimal
    volume_basis: str
    input_words: Decimal | None
    output_words: Decimal | None
    words_per_token: Decimal
    input_tokens_per_request: int
    output_tokens_per_request: int
    input_tokens_per_day: Decimal
    output_tokens_per_day: Decimal
    days_per_month: int
    days_per_year: int
    # Ranked cheapest first (by effective cost per request; ties keep scenario order).
    models: list[ModelCost]
    cheapest: str
    most_expensive: str
    # Yearly effective spend saved by choosing the cheapest over the most expensive model.
    yearly_spread: Decimal


# -- compute ----------------------------------------------------------------------------------------


def compute(scenario: EnvelopeScenario, ctx: PlanContext) -> EnvelopeResult:
    with localcontext(MONEY_CONTEXT):
        if scenario.requests_per_day is not None:
            rpd = scenario.requests_per_day
            basis = "requests_per_day"
        else:
            assert scenario.daily_active_users is not None and scenario.queries_per_user is not None
            rpd = Decimal(scenario.daily_active_users) * scenario.queries_per_user
            basis = "daily_active_users x queries_per_user"

        if scenario.input_tokens is not None:
            in_tok = scenario.input_tokens
        else:
            assert scenario.input_words is not None
            in_tok = ctx.tokens_from_words(scenario.input_words)
        if scenario.output_tokens is not None:
            out_tok = scenario.output_tokens
        else:
            assert scenario.output_words is not None
            out_tok = ctx.tokens_from_words(scenario.output_words)

        in_per_day = in_tok * rpd
        out_per_day = out_tok * rpd

        rows: list[dict[str, Any]] = []
        for ref in scenario.models:
            rate = resolve_ref(ref, ctx)
            in_req = per_million(in_tok, rate.input_per_mtok)
            out_req = per_million(out_tok, rate.output_per_mtok)
            in_day = per_million(in_per_day, rate.input_per_mtok)
            out_day = per_million(out_per_day, rate.output_per_mtok)
            day = in_day + out_day
            total_req = in_req + out_req
            rows.append(
                {
                    "name": ref_name(ref),
                    "resolved_model": rate.model,
                    "provider": rate.provider,
                    "price_source": rate.source,
                    "prices_checked": rate.prices_checked.isoformat() if rate.prices_checked else None,
                    "input_per_mtok": rate.input_per_mtok,
                    "output_per_mtok": rate.output_per_mtok,
                    "discount": rate.discount,
                    "input_tokens_per_request": in_tok,
                    "output_tokens_per_request": out_tok,
                    "input_tokens_per_day": in_per_day,
                    "output_tokens_per_day": out_per_day,
                    "cost_per_request": ListEffective.of(total_req, rate),
                    "input_cost_per_day": ListEffective.of(in_day, rate),
                    "output_cost_per_day": ListEffective.of(out_day, rate),
                    "cost_per_day": ListEffective.of(day, rate),
                    "cost_per_month": ListEffective.of(day * DAYS_PER_MONTH, rate),
                    "cost_per_year": ListEffective.of(day * DAYS_PER_YEAR, rate),
                    "output_share_of_cost": (out_req / total_req) if total_req > 0 else None,
                }
            )

        rows.sort(key=lambda r: r["cost_per_request"].effective_usd)  # stable: ties keep scenario order
        cheapest = rows[0]["cost_per_request"].effective_usd
        models: list[ModelCost] = []
        for rank, row in enumerate(rows, start=1):
            this = row["cost_per_request"].effective_usd
            if cheapest > 0:
                ratio, note = this / cheapest, None
            elif this == 0:
                ratio, note = Decimal(1), None
            else:
                ratio = None
                note = f"the cheapest model ({rows[0]['name']}) costs nothing here, so a ratio is undefined"
            models.append(ModelCost(**row, rank=rank, ratio_to_cheapest=ratio, ratio_note=note))

        return EnvelopeResult(
            requests_per_day=rpd,
            volume_basis=basis,
            input_words=scenario.input_words,
            output_words=scenario.output_words,
            words_per_token=ctx.words_per_token,
            input_tokens_per_request=in_tok,
            output_tokens_per_request=out_tok,
            input_tokens_per_day=in_per_day,
            output_tokens_per_day=out_per_day,
            days_per_month=DAYS_PER_MONTH,
            days_per_year=DAYS_PER_YEAR,
            models=models,
            cheapest=models[0].name,
            most_expensive=models[-1].name,
            yearly_spread=models[-1].cost_per_year.effective_usd - models[0].cost_per_year.effective_usd,
        )


# -- report -----------------------------------------------------------------------------------------


_pct = partial(percent, places=0)


def report(result: EnvelopeResult) -> Report:
    volume = Table(
        title="Volume and payload",
        columns=(
            Column("Quantity"),
            Column("Per request", "int", "tokens"),
            Column("Per day", "int", "tokens"),
        ),
        rows=(
            ("Input tokens", result.input_tokens_per_request, result.input_tokens_per_day),
            ("Output tokens", result.output_tokens_per_request, result.output_tokens_per_day),
            ("Requests", None, result.requests_per_day),
        ),
    )
    compare = Table(
        title=f"Cost by model, cheapest first (month = {result.days_per_month} days, "
        f"year = {result.days_per_year} days)",
        columns=(
            Column("Rank", "int"),
            Column("Model"),
            Column("Per request", "usd", "USD"),
            Column("Input / day", "usd", "USD"),
            Column("Output / day", "usd", "USD"),
            Column("Total / day", "usd", "USD"),
            Column("Per month", "usd", "USD"),
            Column("Per year", "usd", "USD"),
            Column("List / year", "usd", "USD"),
            Column("vs cheapest", "num", "x"),
            Column("Output share", "pct"),
        ),
        rows=tuple(
            (
                m.rank,
                m.name,
                m.cost_per_request.effective_usd,
                m.input_cost_per_day.effective_usd,
                m.output_cost_per_day.effective_usd,
                m.cost_per_day.effective_usd,
                m.cost_per_month.effective_usd,
                m.cost_per_year.effective_usd,
                m.cost_per_year.list_usd,
                m.ratio_to_cheapest,
                m.output_share_of_cost,
            )
            for m in result.models
        ),
    )
    prices = Table(
        title="Prices used",
        columns=(
            Column("Model"),
            Column("Resolved as"),
            Column("Input", "usd", "USD / 1M tokens"),
            Column("Output", "usd", "USD / 1M tokens"),
            Column("Discount", "pct"),
            Column("Price source"),
        ),
        rows=tuple(
            (m.name, m.resolved_model, m.input_per_mtok, m.output_per_mtok, m.discount, _source(m))
            for m in result.models
        ),
    )

    notes: list[str] = []
    if result.input_words is not None or result.output_words is not None:
        parts = []
        if result.input_words is not None:
            parts.append(f"{result.input_words} input words -> {result.input_tokens_per_request} tokens")
        if result.output_words is not None:
            parts.append(f"{result.output_words} output words -> {result.output_tokens_per_request} tokens")
        notes.append(
            f"Words are converted at {result.words_per_token} words per token, rounded up: " + "; ".join(parts) + "."
        )
    notes.append(
        f"{result.requests_per_day:,} requests/day ({result.volume_basis}). "
        f"Month = {result.days_per_month} days, "
        f"year = {result.days_per_year} days; per-day and longer figures are effective (after discount)."
    )
    cheapest, dearest = result.models[0], result.models[-1]
    shares = [m.output_share_of_cost for m in result.models if m.output_share_of_cost is not None]
    if shares:
        low, high = min(shares), max(shares)
        span = _pct(low) if _pct(low) == _pct(high) else f"{_pct(low)} to {_pct(high)}"
        if low > Decimal("0.5"):
            notes.append(f"Output tokens are {span} of the cost: cap max_tokens and ask for concise answers first.")
        elif high < Decimal("0.5"):
            notes.append(
                f"Input tokens are {_pct(1 - high)} or more of the cost: trim the prompt, instructions and "
                "context first."
            )
        else:
            notes.append(
                f"Output tokens are {span} of the cost depending on the model: check both the prompt size "
                "and max_tokens."
            )
    if len(result.models) > 1:
        if dearest.ratio_to_cheapest is not None:
            notes.append(
                f"{dearest.name} costs {dearest.ratio_to_cheapest.quantize(Decimal('0.1'))}x {cheapest.name} "
                f"per request: choosing {cheapest.name} saves {_usd(result.yearly_spread)} a year "
                "at this volume "
                "(if its quality is enough: route only the hard requests to the expensive model)."
            )
        else:
            notes.append(f"{dearest.name}: {dearest.ratio_note}.")

    warnings: list[str] = []
    hypothetical = [m.name for m in result.models if m.price_source == "scenario"]
    if hypothetical:
        warnings.append("Prices given in the scenario (not from the catalog): " + ", ".join(hypothetical) + ".")
    return Report(
        title="Envelope estimate",
        tables=(compare, volume, prices),
        notes=tuple(notes),
        warnings=tuple(warnings),
        csv_table=0,
    )


def _source(m: ModelCost) -> str:
    if m.prices_checked:
        return f"{m.price_source} (checked {m.prices_checked})"
    return m.price_source


def _usd(amount: Decimal) -> str:
    return format_usd(amount, places=0)


EXAMPLE = """\
# Envelope estimate: seed 000's writing assistant, compared across models.
# Step 1, volume: either requests_per_day, or daily_active_users x queries_per_user.
daily_active_users: 100000   # people using the feature each day
queries_per_user: 10         # requests per person per day -> 1,000,000 requests/day
# Step 2, payload per request: words (converted at 0.75 words/token, rounded up) or tokens.
input_words: 250             # 200-word paragraph + 50 words of system instructions -> 334 tokens
output_words: 200            # the rewritten paragraph -> 267 tokens
# Step 4, unit costs: catalog model names, or explicit prices in USD per 1M tokens.
models:
  - name: seed-frontier      # the seed's hypothetical market rate
    input_per_mtok: 5.00
    output_per_mtok: 15.00
  - name: hypothetical-mid
    input_per_mtok: 1.00
    output_per_mtok: 4.00
  - name: hypothetical-small
    input_per_mtok: 0.10
    output_per_mtok: 0.40
    discount: 0.10           # optional negotiated 10% off list
  - gpt-4o                   # catalog prices (margin prices list)
  - gpt-4o-mini
  - claude-3-5-haiku
"""

MODEL = PlannerModel(
    name="envelope",
    summary="Envelope estimate: volume x payload x price per model, per day, month and year, ranked.",
    scenario_type=EnvelopeScenario,
    compute=compute,
    report=report,
    example=EXAMPLE,
    doc_anchor="envelope",
)

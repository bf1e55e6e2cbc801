"""Per-feature token budgets: typical and worst-case cost per request and per month, and the max_tokens
that holds a cost ceiling.

Seed 003 ("Budget per request"): decide a token budget per feature, know the input + output cost of a
typical request and of the worst case; "cost per request x requests/month" is the spreadsheet. Seed 002's
``CostAwareLLM`` turns a per-request budget into ``max_tokens``: remaining = budget - input cost, then
max_tokens = the output tokens the remainder buys; when the input alone exceeds the budget the document is
truncated (``smart_truncate``).

Formulas (prices in USD per 1M tokens; all ceiling arithmetic uses effective = list * (1 - discount)):

    typical cost/request    = typical_input_tokens * in + typical_output_tokens * out   (/ 1e6)
    worst-case cost/request = max_input_tokens * in + max_tokens * out                  (/ 1e6)
    per month               = cost/request * requests_per_month   (requests_per_day * 30)
    max_tokens for ceiling  = floor((ceiling - max_input_tokens * in / 1e6) / (out / 1e6))
    max input for ceiling   = floor(ceiling / (in / 1e6))          (zero output: the smart_truncate target)

Pure: no I/O. Money is Decimal throughout; the CLI rounds for display.
"""

from __future__ import annotations

from decimal import Decimal, localcontext
from functools import partial
from typing import Annotated, Any

from pydantic import Field, model_validator

from ..errors import ScenarioError
from ..money import MICROS_PER_USD, MONEY_CONTEXT, ZERO, format_usd, per_million
from ..pricing.rates import ModelRate
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
from ._prices import ListEffective, ModelPrice, ModelRef, request_cost, resolve_ref

__all__ = [
    "MODEL",
    "Feature",
    "FeatureBudget",
    "ListEffective",
    "ModelPrice",
    "RequestBudgetResult",
    "RequestBudgetScenario",
]

DAYS_PER_MONTH = 30


# -- scenario ---------------------------------------------------------------------------------------


class Feature(Scenario):
    name: Annotated[str, Field(min_length=1)]
    model: ModelRef
    typical_input_tokens: NonNegInt
    typical_output_tokens: NonNegInt
    # Worst-case prompt; defaults to the typical one.
    max_input_tokens: NonNegInt | None = None
    # Worst-case output: the max_tokens sent with the request.
    max_tokens: PosInt
    # Volume: exactly one of the two (a month is 30 days).
    requests_per_month: NonNegDecimal | None = None
    requests_per_day: NonNegDecimal | None = None
    # Per-request ceiling in USD; overrides the scenario-wide one.
    cost_ceiling_per_request: PosDecimal | None = None


class RequestBudgetScenario(Scenario):
    features: Annotated[list[Feature], Field(min_length=1)]
    # Per-request ceiling (USD) for every feature that does not set its own (seed 002: budget_per_request).
    cost_ceiling_per_request: PosDecimal | None = None
    # Monthly budget (USD) for all features together.
    monthly_budget: PosDecimal | None = None

    @model_validator(mode="after")
    def _check_features(self) -> RequestBudgetScenario:
        # ScenarioError (not ValueError) so the message names the feature's field by its full path.
        seen: set[str] = set()
        for i, f in enumerate(self.features):
            where = f"features.{i}"
            if f.name in seen:
                raise ScenarioError(
                    f"feature name {f.name!r} is used twice; names must be unique", field=f"{where}.name"
                )
            seen.add(f.name)
            if (f.requests_per_month is None) == (f.requests_per_day is None):
                raise ScenarioError(
                    f"feature {f.name!r}: give exactly one of requests_per_month or requests_per_day",
                    field=f"{where}.requests_per_month",
                )
            if f.max_input_tokens is not None and f.max_input_tokens < f.typical_input_tokens:
                raise ScenarioError(
                    f"feature {f.name!r}: the worst-case input ({f.max_input_tokens}) is below the typical "
                    f"input ({f.typical_input_tokens}); raise max_input_tokens or omit it",
                    field=f"{where}.max_input_tokens",
                )
            if f.max_tokens < f.typical_output_tokens:
                raise ScenarioError(
                    f"feature {f.name!r}: max_tokens ({f.max_tokens}) is below the typical output "
                    f"({f.typical_output_tokens}), so typical answers would be cut off; raise max_tokens",
                    field=f"{where}.max_tokens",
                )
        return self


# -- result -----------------------------------------------------------------------------------------


class FeatureBudget(Result):
    name: str
    model: str
    resolved_model: str
    price_source: str
    input_per_mtok: Decimal
    output_per_mtok: Decimal
    discount: Decimal
    typical_input_tokens: int
    typical_output_tokens: int
    max_input_tokens: int
    max_tokens: int
    requests_per_month: Decimal
    volume_basis: str
    typical_cost_per_request: ListEffective
    worst_case_cost_per_request: ListEffective
    typical_cost_per_month: ListEffective
    worst_case_cost_per_month: ListEffective
    # Worst-case / typical effective cost per request; None when the typical request is free.
    worst_to_typical: Decimal | None
    # Share of the worst-case request cost that is output (max_tokens); None when it costs nothing.
    worst_case_output_share: Decimal | None
    # Ceiling analysis (all None when no ceiling applies).
    cost_ceiling_per_request: Decimal | None
    ceiling_source: str | None
    typical_fits_ceiling: bool | None
    worst_case_fits_ceiling: bool | None
    # Cost of max_input_tokens alone (effective), compared with the ceiling.
    max_input_cost: Decimal | None
    input_exceeds_ceiling: bool | None
    # Largest max_tokens with worst-case cost <= ceiling; None when the input alone exceeds the ceiling or
    # output is free (see ceiling_message).
    max_tokens_for_ceiling: int | None
    # Largest input that fits the ceiling with zero output; None when input is free.
    max_input_tokens_for_ceiling: int | None
    ceiling_message: str | None


class BudgetCheck(Result):
    monthly_budget: Decimal
    typical_fits: bool
    worst_case_fits: bool
    # Budget - total (negative = over budget).
    typical_headroom: Decimal
    worst_case_headroom: Decimal
    typical_utilization: Decimal
    worst_case_utilization: Decimal


class RequestBudgetResult(Result):
    days_per_month: int
    features: list[FeatureBudget]
    typical_total_per_month: ListEffective
    worst_case_total_per_month: ListEffective
    budget: BudgetCheck | None


# -- compute ----------------------------------------------------------------------------------------


def _times(amount: ListEffective, factor: Decimal) -> ListEffective:
    return ListEffective(list_usd=amount.list_usd * factor, effective_usd=amount.effective_usd * factor)


def _ceiling_fields(
    rate: ModelRate, name: str, max_input: int, max_tokens: int, typical_output: int, ceiling: Decimal
) -> dict[str, Any]:
    eff_in = rate.effective(rate.input_per_mtok)  # USD per 1M tokens after discount
    eff_out = rate.effective(rate.output_per_mtok)
    input_cost = per_million(max_input, eff_in)
    remaining = ceiling - input_cost
    max_input_fit = int((ceiling * MICROS_PER_USD) // eff_in) if eff_in > 0 else None
    fields: dict[str, Any] = {
        "max_input_cost": input_cost,
        "input_exceeds_ceiling": remaining < 0,
        "max_input_tokens_for_ceiling": max_input_fit,
        "max_tokens_for_ceiling": None,
    }
    if remaining < 0:
        fields["ceiling_message"] = (
            f"{name}: the input alone ({max_input:,} tokens, {format_usd(input_cost)}) costs more than the "
            f"ceiling ({format_usd(ceiling)}); no max_tokens fits. Truncate or chunk the input to at most "
            f"{max_input_fit:,} "
            "tokens (that leaves nothing for output), or raise the ceiling."
        )
    elif eff_out == 0:
        fields["ceiling_message"] = f"{name}: output is free at this price, so any max_tokens fits the ceiling."
    else:
        fit = int((remaining * MICROS_PER_USD) // eff_out)
        fields["max_tokens_for_ceiling"] = fit
        if fit == 0:
            fields["ceiling_message"] = (
                f"{name}: the input uses the whole ceiling ({format_usd(ceiling)}); not even one output token fits."
            )
        elif fit < typical_output:
            fields["ceiling_message"] = (
                f"{name}: at most {fit:,} output tokens fit the ceiling, below the typical answer "
                f"({typical_output:,}): shrink the input, pick a cheaper model or raise the ceiling."
            )
        elif fit < max_tokens:
            fields["ceiling_message"] = (
                f"{name}: lower max_tokens from {max_tokens:,} to {fit:,} to keep every request under "
                f"{format_usd(ceiling)}."
            )
        else:
            fields["ceiling_message"] = f"{name}: max_tokens {max_tokens:,} fits the ceiling; up to {fit:,} would."
    return fields


def compute(scenario: RequestBudgetScenario, ctx: PlanContext) -> RequestBudgetResult:
    with localcontext(MONEY_CONTEXT):
        features: list[FeatureBudget] = []
        for f in scenario.features:
            rate = resolve_ref(f.model, ctx)
            max_input = f.max_input_tokens if f.max_input_tokens is not None else f.typical_input_tokens
            if f.requests_per_month is not None:
                rpm, basis = f.requests_per_month, "requests_per_month"
            else:
                assert f.requests_per_day is not None
                rpm, basis = f.requests_per_day * DAYS_PER_MONTH, f"requests_per_day x {DAYS_PER_MONTH}"
            typical = request_cost(rate, f.typical_input_tokens, f.typical_output_tokens)
            worst = request_cost(rate, max_input, f.max_tokens)
            worst_out = per_million(f.max_tokens, rate.output_per_mtok)
            ceiling = (
                f.cost_ceiling_per_request
                if f.cost_ceiling_per_request is not None
                else scenario.cost_ceiling_per_request
            )
            source = None
            if ceiling is not None:
                source = "feature" if f.cost_ceiling_per_request is not None else "scenario"
            row: dict[str, Any] = {
                "name": f.name,
                "model": f.model if isinstance(f.model, str) else f.model.name,
                "resolved_model": rate.model,
                "price_source": rate.source,
                "input_per_mtok": rate.input_per_mtok,
                "output_per_mtok": rate.output_per_mtok,
                "discount": rate.discount,
                "typical_input_tokens": f.typical_input_tokens,
                "typical_output_tokens": f.typical_output_tokens,
                "max_input_tokens": max_input,
                "max_tokens": f.max_tokens,
                "requests_per_month": rpm,
                "volume_basis": basis,
                "typical_cost_per_request": typical,
                "worst_case_cost_per_request": worst,
                "typical_cost_per_month": _times(typical, rpm),
                "worst_case_cost_per_month": _times(worst, rpm),
                "worst_to_typical": (
                    worst.effective_usd / typical.effective_usd if typical.effective_usd > 0 else None
                ),
                "worst_case_output_share": worst_out / worst.list_usd if worst.list_usd > 0 else None,
                "cost_ceiling_per_request": ceiling,
                "ceiling_source": source,
                "typical_fits_ceiling": None if ceiling is None else typical.effective_usd <= ceiling,
                "worst_case_fits_ceiling": None if ceiling is None else worst.effective_usd <= ceiling,
                "max_input_cost": None,
                "input_exceeds_ceiling": None,
                "max_tokens_for_ceiling": None,
                "max_input_tokens_for_ceiling": None,
                "ceiling_message": None,
            }
            if ceiling is not None:
                row.update(_ceiling_fields(rate, f.name, max_input, f.max_tokens, f.typical_output_tokens, ceiling))
            features.append(FeatureBudget(**row))

        typical_total = ListEffective(
            list_usd=sum((x.typical_cost_per_month.list_usd for x in features), ZERO),
            effective_usd=sum((x.typical_cost_per_month.effective_usd for x in features), ZERO),
        )
        worst_total = ListEffective(
            list_usd=sum((x.worst_case_cost_per_month.list_usd for x in features), ZERO),
            effective_usd=sum((x.worst_case_cost_per_month.effective_usd for x in features), ZERO),
        )
        budget = None
        if scenario.monthly_budget is not None:
            b = scenario.monthly_budget
            budget = BudgetCheck(
                monthly_budget=b,
                typical_fits=typical_total.effective_usd <= b,
                worst_case_fits=worst_total.effective_usd <= b,
                typical_headroom=b - typical_total.effective_usd,
                worst_case_headroom=b - worst_total.effective_usd,
                typical_utilization=typical_total.effective_usd / b,
                worst_case_utilization=worst_total.effective_usd / b,
            )
        return RequestBudgetResult(
            days_per_month=DAYS_PER_MONTH,
            features=features,
            typical_total_per_month=typical_total,
            worst_case_total_per_month=worst_total,
            budget=budget,
        )


# -- report -----------------------------------------------------------------------------------------


_pct = partial(percent, places=0)


def _usd(amount: Decimal) -> str:
    return format_usd(amount, places=2)


def report(result: RequestBudgetResult) -> Report:
    feature_rows = [
        (
            f.name,
            f.model,
            f.requests_per_month,
            f"{f.typical_input_tokens:,} / {f.typical_output_tokens:,}",
            f"{f.max_input_tokens:,} / {f.max_tokens:,}",
            f.typical_cost_per_request.effective_usd,
            f.worst_case_cost_per_request.effective_usd,
            f.typical_cost_per_month.effective_usd,
            f.worst_case_cost_per_month.effective_usd,
            f.worst_to_typical,
        )
        for f in result.features
    ]
    total_row = (
        "Total",
        "",
        sum((f.requests_per_month for f in result.features), ZERO),
        "",
        "",
        None,
        None,
        result.typical_total_per_month.effective_usd,
        result.worst_case_total_per_month.effective_usd,
        None,
    )
    main = Table(
        title=f"Cost per feature, typical and worst case (effective; month = {result.days_per_month} days)",
        columns=(
            Column("Feature"),
            Column("Model"),
            Column("Requests / month", "int"),
            Column("Typical tokens in/out"),
            Column("Worst tokens in/out"),
            Column("Typical / request", "usd", "USD"),
            Column("Worst / request", "usd", "USD"),
            Column("Typical / month", "usd", "USD"),
            Column("Worst / month", "usd", "USD"),
            Column("Worst vs typical", "num", "x"),
        ),
        rows=(*feature_rows, total_row),
    )
    tables = [main]
    with_ceiling = [f for f in result.features if f.cost_ceiling_per_request is not None]
    if with_ceiling:
        tables.append(
            Table(
                title="Budget that fits the cost ceiling per request",
                columns=(
                    Column("Feature"),
                    Column("Ceiling", "usd", "USD / request"),
                    Column("Typical fits", "bool"),
                    Column("Worst case fits", "bool"),
                    Column("Max input cost", "usd", "USD"),
                    Column("max_tokens now", "int", "tokens"),
                    Column("max_tokens that fits", "int", "tokens"),
                    Column("Max input (no output)", "int", "tokens"),
                ),
                rows=tuple(
                    (
                        f.name,
                        f.cost_ceiling_per_request,
                        f.typical_fits_ceiling,
                        f.worst_case_fits_ceiling,
                        f.max_input_cost,
                        f.max_tokens,
                        f.max_tokens_for_ceiling,
                        f.max_input_tokens_for_ceiling,
                    )
                    for f in with_ceiling
                ),
            )
        )
    if result.budget is not None:
        b = result.budget
        tables.append(
            Table(
                title="Monthly budget",
                columns=(
                    Column("Case"),
                    Column("Total / month", "usd", "USD"),
                    Column("Budget", "usd", "USD"),
                    Column("Fits", "bool"),
                    Column("Headroom", "usd", "USD"),
                    Column("Budget used", "pct"),
                ),
                rows=(
                    (
                        "Typical",
                        result.typical_total_per_month.effective_usd,
                        b.monthly_budget,
                        b.typical_fits,
                        b.typical_headroom,
                        b.typical_utilization,
                    ),
                    (
                        "Worst case",
                        result.worst_case_total_per_month.effective_usd,
                        b.monthly_budget,
                        b.worst_case_fits,
                        b.worst_case_headroom,
                        b.worst_case_utilization,
                    ),
                ),
            )
        )

    notes = [
        "Worst case = max_input_tokens at the input price + max_tokens at the output price, "
        "on every request. "
        f"Money is effective (after any discount); a month is {result.days_per_month} days."
    ]
    biggest = max(result.features, key=lambda f: f.worst_case_cost_per_month.effective_usd)
    if biggest.worst_case_cost_per_month.effective_usd > 0:
        share = biggest.worst_case_output_share
        driver = (
            f"max_tokens is {_pct(share)} of its worst-case request: lowering it is the lever"
            if share is not None and share > Decimal("0.5")
            else "the prompt (max_input_tokens) dominates its worst case: cap the input size"
        )
        notes.append(f"{biggest.name} carries the largest worst-case exposure; {driver}.")
    for f in result.features:
        if f.ceiling_message:
            notes.append(f.ceiling_message)
    warnings: list[str] = []
    for f in result.features:
        if f.input_exceeds_ceiling:
            warnings.append(f"{f.name}: the worst-case input alone exceeds the per-request ceiling.")
        elif f.typical_fits_ceiling is False:
            warnings.append(f"{f.name}: even a typical request exceeds the per-request ceiling.")
    if result.budget is not None:
        b = result.budget
        if not b.typical_fits:
            warnings.append(f"Typical spend is over the monthly budget by {_usd(-b.typical_headroom)}.")
        elif not b.worst_case_fits:
            notes.append(
                f"Typical spend fits the monthly budget ({_usd(b.typical_headroom)} headroom) "
                "but the worst case "
                f"would overrun it by {_usd(-b.worst_case_headroom)}: alert before the worst case happens."
            )
        else:
            notes.append(f"Even the worst case fits the monthly budget ({_usd(b.worst_case_headroom)} headroom).")
    scenario_prices = sorted({f.model for f in result.features if f.price_source == "scenario"})
    if scenario_prices:
        warnings.append("Prices given in the scenario (not from the catalog): " + ", ".join(scenario_prices) + ".")
    return Report(
        title="Per-request token budgets",
        tables=tuple(tables),
        notes=tuple(notes),
        warnings=tuple(warnings),
        csv_table=0,
    )


EXAMPLE = """\
# Per-feature token budgets (seed 003 "Budget per request", seed 002 CostAwareLLM).
# Each feature: its model, a typical request, the worst case, and its volume.
cost_ceiling_per_request: 0.10   # USD; seed 002's budget_per_request default, for features without their own
monthly_budget: 20000            # USD for all features together
features:
  - name: document-analysis
    model: claude-sonnet-4-5     # catalog name; or explicit prices as below
    typical_input_tokens: 6000   # a typical document plus instructions
    typical_output_tokens: 700
    max_input_tokens: 30000      # the largest document we accept (default: typical_input_tokens)
    max_tokens: 2000             # the max_tokens sent: the worst-case output (seed 002's hard cap)
    requests_per_month: 120000
  - name: support-chat
    model:
      name: hypothetical-mid     # explicit prices, USD per 1M tokens
      input_per_mtok: 1.00
      output_per_mtok: 5.00
    typical_input_tokens: 2000
    typical_output_tokens: 400
    max_input_tokens: 8000
    max_tokens: 1500
    requests_per_day: 20000      # or requests_per_month; a month is 30 days
    cost_ceiling_per_request: 0.01   # this feature's own ceiling
  - name: classifier
    model: gpt-4o-mini
    typical_input_tokens: 500
    typical_output_tokens: 5
    max_tokens: 10
    requests_per_day: 50000
"""

MODEL = PlannerModel(
    name="request-budget",
    summary="Per-feature token budgets: typical vs worst-case cost, and the max_tokens that fits a ceiling.",
    scenario_type=RequestBudgetScenario,
    compute=compute,
    report=report,
    example=EXAMPLE,
    doc_anchor="request-budget",
)

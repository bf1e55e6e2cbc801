"""Optimization levers: what caching, model routing and prompt compression save, alone and together.

Seed 002 (Exercise 4 "Optimization Prioritization", Spot the Problem 2, the ModelRouter / PromptOptimizer /
SemanticCache sections) and seed 001 (the cost levers). The baseline is a workload of ``requests_per_day``
requests of ``input_tokens`` in and ``output_tokens`` out on one model, priced with the true input/output
split::

    baseline/day = R * (in * p_in + out * p_out) / 1e6

The levers, applied in ``order`` (default caching, routing, compression):

* caching removes ``hit_rate`` of the requests that reach it; each hit costs ``cost_per_hit`` (USD, flat);
* routing sends ``share`` of the requests still going to the model to ``target_model``'s prices;
* compression removes ``input_reduction`` of the input tokens of every request still going upstream
  (both tiers); output tokens are untouched.

Each lever is evaluated alone (on the baseline) and all together in sequence. With a flat per-hit cost the
final cost of the sequence is the same in every order::

    combined/day = R*h*c + R*(1-h) * [(1-s) * cost(base, in*(1-k), out) + s * cost(target, in*(1-k), out)]

only the credit each step gets depends on the order. Adding the separate percentages overstates the
combined saving by ``R*h*s*(u-t) + R*k*in*(p_in - (1-h)*((1-s)*p_in + s*p_in'))/1e6 >= 0``.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, localcontext
from functools import partial
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from ..errors import ScenarioError
from ..money import MONEY_CONTEXT, ZERO, format_usd
from ._base import (
    Column,
    Fraction,
    NonNegDecimal,
    PlanContext,
    PlannerModel,
    PosDecimal,
    Report,
    Result,
    Scenario,
    Table,
    percent,
)
from ._prices import ModelPrice, ModelRef, PriceUsed, prices_note, resolve_ref

__all__ = [
    "MODEL",
    "Caching",
    "Compression",
    "LeverAlone",
    "ModelPrice",
    "Routing",
    "SavingsResult",
    "SavingsScenario",
    "Step",
    "compute",
    "report",
]

LeverName = Literal["caching", "routing", "compression"]
LEVERS: tuple[LeverName, ...] = ("caching", "routing", "compression")
DAYS_PER_MONTH = 30
_MILLION = Decimal(1_000_000)


# --------------------------------------------------------------------------------------------- scenario


class Caching(Scenario):
    """A response cache (exact or semantic) in front of the model."""

    hit_rate: Fraction
    cost_per_hit: NonNegDecimal = Decimal(0)


class Routing(Scenario):
    """Send a share of the requests to a cheaper model."""

    share: Fraction
    target_model: ModelRef


class Compression(Scenario):
    """Shorter prompts: a fraction of the input tokens removed (output unchanged)."""

    input_reduction: Fraction


class SavingsScenario(Scenario):
    requests_per_day: NonNegDecimal
    input_tokens: NonNegDecimal
    output_tokens: NonNegDecimal
    model: ModelRef
    caching: Caching | None = None
    routing: Routing | None = None
    compression: Compression | None = None
    order: tuple[LeverName, ...] | None = None
    implementation_effort: dict[LeverName, PosDecimal] | None = None
    effort_unit: str = Field(default="days", min_length=1)

    @field_validator("order")
    @classmethod
    def _check_order(cls, order: tuple[LeverName, ...] | None, info: ValidationInfo) -> tuple[LeverName, ...] | None:
        if order is None:
            return None
        duplicates = sorted({name for name in order if order.count(name) > 1})
        if duplicates:
            raise ValueError(f"lists {', '.join(duplicates)} more than once; name each lever once")
        configured, unknown = _configured(info)
        stray = [name for name in order if name not in configured and name not in unknown]
        if stray:
            raise ValueError(
                f"names {', '.join(stray)} but no such lever is configured; remove it from order or add the lever"
            )
        missing = [name for name in configured if name not in order]
        if missing:
            raise ValueError(f"leaves out the configured lever(s) {', '.join(missing)}; list every lever")
        return order

    @field_validator("implementation_effort")
    @classmethod
    def _check_effort(
        cls, effort: dict[LeverName, Decimal] | None, info: ValidationInfo
    ) -> dict[LeverName, Decimal] | None:
        if effort is None:
            return None
        configured, unknown = _configured(info)
        stray = [name for name in effort if name not in configured and name not in unknown]
        if stray:
            raise ValueError(f"gives effort for {', '.join(stray)} but no such lever is configured")
        missing = [name for name in configured if name not in effort]
        if missing:
            raise ValueError(
                f"missing for {', '.join(missing)}; give the effort of every "
                "configured lever so they can be ranked by saving per effort"
            )
        return effort

    @model_validator(mode="after")
    def _some_lever(self) -> SavingsScenario:
        if self.caching is None and self.routing is None and self.compression is None:
            raise ValueError("caching: no lever configured; add at least one of caching, routing or compression")
        return self

    def levers_in_order(self) -> tuple[LeverName, ...]:
        if self.order is not None:
            return self.order
        return tuple(name for name in LEVERS if getattr(self, name) is not None)


def _configured(info: ValidationInfo) -> tuple[list[LeverName], list[LeverName]]:
    """Levers configured so far, and levers whose own validation failed (unknown, not to be blamed twice)."""
    configured = [name for name in LEVERS if info.data.get(name) is not None]
    unknown = [name for name in LEVERS if name not in info.data]
    return configured, unknown


# --------------------------------------------------------------------------------------------- result


class LeverAlone(Result):
    """One lever applied by itself to the baseline."""

    lever: LeverName
    description: str
    cost_per_day: Decimal
    saving_per_day: Decimal
    saving_per_month: Decimal
    saving_pct: Decimal | None
    effort: Decimal | None
    saving_per_month_per_effort: Decimal | None
    rank_by_saving: int
    rank_by_roi: int | None


class Step(Result):
    """One lever's step in the combined sequence: what it saves on what the earlier steps left."""

    position: int
    lever: LeverName
    cost_before_per_day: Decimal
    cost_after_per_day: Decimal
    saving_per_day: Decimal
    saving_per_month: Decimal
    saving_pct_of_baseline: Decimal | None
    saving_pct_of_remaining: Decimal | None


class SavingsResult(Result):
    days_per_month: int = DAYS_PER_MONTH
    prices_used: tuple[PriceUsed, ...]
    model: str
    input_per_mtok: Decimal
    output_per_mtok: Decimal
    target_model: str | None
    target_input_per_mtok: Decimal | None
    target_output_per_mtok: Decimal | None
    requests_per_day: Decimal
    input_tokens: Decimal
    output_tokens: Decimal
    baseline_input_cost_per_request: Decimal
    baseline_output_cost_per_request: Decimal
    baseline_cost_per_request: Decimal
    baseline_per_day: Decimal
    baseline_per_month: Decimal
    input_share: Decimal | None
    output_share: Decimal | None
    order: tuple[LeverName, ...]
    # Ranked by saving, largest first.
    levers: tuple[LeverAlone, ...]
    ranking_by_saving: tuple[LeverName, ...]
    ranking_by_roi: tuple[LeverName, ...] | None
    effort_unit: str
    steps: tuple[Step, ...]
    combined_cost_per_day: Decimal
    combined_cost_per_month: Decimal
    combined_saving_per_day: Decimal
    combined_saving_per_month: Decimal
    combined_saving_pct: Decimal | None
    cache_hits_per_day: Decimal
    requests_to_model_per_day: Decimal
    requests_to_target_per_day: Decimal
    naive_sum_saving_per_day: Decimal
    naive_sum_saving_per_month: Decimal
    naive_sum_pct: Decimal | None
    overstatement_per_month: Decimal
    overstatement_pct: Decimal | None
    percentages_note: str | None


# --------------------------------------------------------------------------------------------- the model


@dataclass(frozen=True)
class _Tier:
    """Requests sharing one price and one token shape."""

    requests: Decimal
    input_tokens: Decimal
    output_tokens: Decimal
    input_price: Decimal
    output_price: Decimal

    def cost(self) -> Decimal:
        per_request = self.input_tokens * self.input_price + self.output_tokens * self.output_price
        return self.requests * per_request / _MILLION


@dataclass(frozen=True)
class _Workload:
    """The daily workload as the levers leave it: upstream tiers (tier 0 = the base model) + cache hits."""

    tiers: tuple[_Tier, ...]
    cache_hits: Decimal = ZERO
    cache_cost: Decimal = ZERO

    def cost(self) -> Decimal:
        return sum((tier.cost() for tier in self.tiers), ZERO) + self.cache_cost

    def upstream_requests(self) -> Decimal:
        return sum((tier.requests for tier in self.tiers), ZERO)


def _apply(workload: _Workload, lever: LeverName, scenario: SavingsScenario, target: _Prices | None) -> _Workload:
    if lever == "caching":
        caching = scenario.caching
        assert caching is not None
        hits = caching.hit_rate * workload.upstream_requests()
        return _Workload(
            tiers=tuple(_scale_requests(tier, 1 - caching.hit_rate) for tier in workload.tiers),
            cache_hits=workload.cache_hits + hits,
            cache_cost=workload.cache_cost + hits * caching.cost_per_hit,
        )
    if lever == "routing":
        routing = scenario.routing
        assert routing is not None and target is not None
        base, *rest = workload.tiers
        routed = _Tier(
            requests=base.requests * routing.share,
            input_tokens=base.input_tokens,
            output_tokens=base.output_tokens,
            input_price=target.input_per_mtok,
            output_price=target.output_per_mtok,
        )
        kept = _scale_requests(base, 1 - routing.share)
        return _Workload(tiers=(kept, *rest, routed), cache_hits=workload.cache_hits, cache_cost=workload.cache_cost)
    compression = scenario.compression
    assert compression is not None
    keep = 1 - compression.input_reduction
    return _Workload(
        tiers=tuple(
            _Tier(
                requests=tier.requests,
                input_tokens=tier.input_tokens * keep,
                output_tokens=tier.output_tokens,
                input_price=tier.input_price,
                output_price=tier.output_price,
            )
            for tier in workload.tiers
        ),
        cache_hits=workload.cache_hits,
        cache_cost=workload.cache_cost,
    )


def _scale_requests(tier: _Tier, factor: Decimal) -> _Tier:
    return _Tier(
        requests=tier.requests * factor,
        input_tokens=tier.input_tokens,
        output_tokens=tier.output_tokens,
        input_price=tier.input_price,
        output_price=tier.output_price,
    )


@dataclass(frozen=True)
class _Prices:
    name: str
    input_per_mtok: Decimal
    output_per_mtok: Decimal
    used: PriceUsed


def _prices(model: ModelRef, ctx: PlanContext) -> _Prices:
    """Effective (after negotiated discount) prices per 1M tokens."""
    rate = resolve_ref(model, ctx)
    return _Prices(
        rate.model, rate.effective(rate.input_per_mtok), rate.effective(rate.output_per_mtok), PriceUsed.of(rate)
    )


def _share(part: Decimal, whole: Decimal) -> Decimal | None:
    return None if whole == 0 else part / whole


def _describe(lever: LeverName, scenario: SavingsScenario, target: _Prices | None) -> str:
    if lever == "caching":
        caching = scenario.caching
        assert caching is not None
        cost = f" at {format_usd(caching.cost_per_hit)}/hit" if caching.cost_per_hit else ""
        return f"cache answers {_pct(caching.hit_rate)} of requests{cost}"
    if lever == "routing":
        routing = scenario.routing
        assert routing is not None and target is not None
        return f"route {_pct(routing.share)} of requests to {target.name}"
    compression = scenario.compression
    assert compression is not None
    return f"cut {_pct(compression.input_reduction)} of input tokens"


def compute(scenario: SavingsScenario, ctx: PlanContext) -> SavingsResult:
    with localcontext(MONEY_CONTEXT):
        return _compute(scenario, ctx)


def _compute(scenario: SavingsScenario, ctx: PlanContext) -> SavingsResult:
    base = _prices(scenario.model, ctx)
    target = _prices(scenario.routing.target_model, ctx) if scenario.routing is not None else None
    requests = scenario.requests_per_day
    input_cost = scenario.input_tokens * base.input_per_mtok / _MILLION
    output_cost = scenario.output_tokens * base.output_per_mtok / _MILLION
    per_request = input_cost + output_cost
    _check_prices(scenario, base, target, per_request)

    baseline = _Workload(
        tiers=(
            _Tier(
                requests=requests,
                input_tokens=scenario.input_tokens,
                output_tokens=scenario.output_tokens,
                input_price=base.input_per_mtok,
                output_price=base.output_per_mtok,
            ),
        )
    )
    baseline_cost = baseline.cost()
    order = scenario.levers_in_order()
    month = Decimal(DAYS_PER_MONTH)

    # Each lever alone.
    alone_cost = {lever: _apply(baseline, lever, scenario, target).cost() for lever in order}
    alone_saving = {lever: baseline_cost - cost for lever, cost in alone_cost.items()}
    canonical = {lever: i for i, lever in enumerate(LEVERS)}
    by_saving = sorted(order, key=lambda lever: (-alone_saving[lever], canonical[lever]))
    effort = scenario.implementation_effort
    roi = {lever: alone_saving[lever] * month / effort[lever] for lever in order} if effort is not None else None
    by_roi = (
        sorted(order, key=lambda lever: (-roi[lever], -alone_saving[lever], canonical[lever]))
        if roi is not None
        else None
    )
    levers = tuple(
        LeverAlone(
            lever=lever,
            description=_describe(lever, scenario, target),
            cost_per_day=alone_cost[lever],
            saving_per_day=alone_saving[lever],
            saving_per_month=alone_saving[lever] * month,
            saving_pct=_share(alone_saving[lever], baseline_cost),
            effort=effort[lever] if effort is not None else None,
            saving_per_month_per_effort=roi[lever] if roi is not None else None,
            rank_by_saving=by_saving.index(lever) + 1,
            rank_by_roi=by_roi.index(lever) + 1 if by_roi is not None else None,
        )
        for lever in by_saving
    )

    # All levers in sequence.
    steps: list[Step] = []
    workload = baseline
    for position, lever in enumerate(order, start=1):
        before = workload.cost()
        workload = _apply(workload, lever, scenario, target)
        after = workload.cost()
        steps.append(
            Step(
                position=position,
                lever=lever,
                cost_before_per_day=before,
                cost_after_per_day=after,
                saving_per_day=before - after,
                saving_per_month=(before - after) * month,
                saving_pct_of_baseline=_share(before - after, baseline_cost),
                saving_pct_of_remaining=_share(before - after, before),
            )
        )
    combined_cost = workload.cost()
    combined_saving = baseline_cost - combined_cost
    naive = sum(alone_saving.values(), ZERO)
    routed = sum((tier.requests for tier in workload.tiers[1:]), ZERO)
    return SavingsResult(
        prices_used=(base.used, target.used) if target else (base.used,),
        model=base.name,
        input_per_mtok=base.input_per_mtok,
        output_per_mtok=base.output_per_mtok,
        target_model=target.name if target else None,
        target_input_per_mtok=target.input_per_mtok if target else None,
        target_output_per_mtok=target.output_per_mtok if target else None,
        requests_per_day=requests,
        input_tokens=scenario.input_tokens,
        output_tokens=scenario.output_tokens,
        baseline_input_cost_per_request=input_cost,
        baseline_output_cost_per_request=output_cost,
        baseline_cost_per_request=per_request,
        baseline_per_day=baseline_cost,
        baseline_per_month=baseline_cost * month,
        input_share=_share(input_cost, per_request),
        output_share=_share(output_cost, per_request),
        order=order,
        levers=levers,
        ranking_by_saving=tuple(by_saving),
        ranking_by_roi=tuple(by_roi) if by_roi is not None else None,
        effort_unit=scenario.effort_unit,
        steps=tuple(steps),
        combined_cost_per_day=combined_cost,
        combined_cost_per_month=combined_cost * month,
        combined_saving_per_day=combined_saving,
        combined_saving_per_month=combined_saving * month,
        combined_saving_pct=_share(combined_saving, baseline_cost),
        cache_hits_per_day=workload.cache_hits,
        requests_to_model_per_day=workload.tiers[0].requests,
        requests_to_target_per_day=routed,
        naive_sum_saving_per_day=naive,
        naive_sum_saving_per_month=naive * month,
        naive_sum_pct=_share(naive, baseline_cost),
        overstatement_per_month=(naive - combined_saving) * month,
        overstatement_pct=_share(naive - combined_saving, baseline_cost),
        percentages_note=(
            "the baseline costs $0 (no requests, no tokens or a free model), so savings have no percentage"
            if baseline_cost == 0
            else None
        ),
    )


def _check_prices(scenario: SavingsScenario, base: _Prices, target: _Prices | None, per_request: Decimal) -> None:
    """Levers must be savings: a pricier routing target or a cache hit dearer than a request is a mistake."""
    if target is not None:
        dearer = [
            f"{kind} {format_usd(t)} > {format_usd(b)} per 1M tokens"
            for kind, t, b in (
                ("input", target.input_per_mtok, base.input_per_mtok),
                ("output", target.output_per_mtok, base.output_per_mtok),
            )
            if t > b
        ]
        if dearer:
            raise ScenarioError(
                f"{target.name} costs more than {base.name} ({'; '.join(dearer)}); routing must go to a "
                "model that is no dearer on input and output, so pick a cheaper target_model",
                field="routing.target_model",
            )
    if scenario.caching is not None and scenario.caching.cost_per_hit > per_request:
        raise ScenarioError(
            f"{format_usd(scenario.caching.cost_per_hit)} per hit is more than a whole request costs on "
            f"{base.name} ({format_usd(per_request)}), so the cache would add cost; check the figure",
            field="caching.cost_per_hit",
        )


# --------------------------------------------------------------------------------------------- report


_pct = partial(percent, places=1)


def _points(value: Decimal | None) -> str:
    return "n/a" if value is None else f"{value * 100:.1f} points"


def report(result: SavingsResult) -> Report:
    with localcontext(MONEY_CONTEXT):
        return _report(result)


def _report(result: SavingsResult) -> Report:
    unit = result.effort_unit
    singular = unit[:-1] if unit.endswith("s") and len(unit) > 1 else unit
    with_effort = result.ranking_by_roi is not None
    alone_columns = [
        Column("rank", "int"),
        Column("lever"),
        Column("what it does"),
        Column("saving/day", "usd", "USD"),
        Column("saving/month", "usd", "USD"),
        Column("saving", "pct", "% of baseline"),
    ]
    if with_effort:
        alone_columns += [
            Column("effort", "num", unit),
            Column("saving/month per effort", "usd", f"USD per {singular}"),
            Column("ROI rank", "int"),
        ]
    alone_rows = []
    for lever in result.levers:
        row: tuple = (
            lever.rank_by_saving,
            lever.lever,
            lever.description,
            lever.saving_per_day,
            lever.saving_per_month,
            lever.saving_pct,
        )
        if with_effort:
            row += (lever.effort, lever.saving_per_month_per_effort, lever.rank_by_roi)
        alone_rows.append(row)
    alone = Table(
        title="Each lever alone, on the baseline (ranked by saving)",
        columns=tuple(alone_columns),
        rows=tuple(alone_rows),
    )

    steps = Table(
        title="All levers together, applied in order (each acts on what the earlier ones left)",
        columns=(
            Column("step", "int"),
            Column("lever"),
            Column("cost before", "usd", "USD/day"),
            Column("cost after", "usd", "USD/day"),
            Column("saving", "usd", "USD/day"),
            Column("saving", "usd", "USD/month"),
            Column("saving", "pct", "% of baseline"),
            Column("saving", "pct", "% of cost left"),
        ),
        rows=(
            *(
                (
                    s.position,
                    s.lever,
                    s.cost_before_per_day,
                    s.cost_after_per_day,
                    s.saving_per_day,
                    s.saving_per_month,
                    s.saving_pct_of_baseline,
                    s.saving_pct_of_remaining,
                )
                for s in result.steps
            ),
            (
                None,
                "all levers",
                result.baseline_per_day,
                result.combined_cost_per_day,
                result.combined_saving_per_day,
                result.combined_saving_per_month,
                result.combined_saving_pct,
                result.combined_saving_pct,
            ),
        ),
    )

    per_day = result.baseline_per_day
    month = Decimal(result.days_per_month)
    input_day = result.baseline_input_cost_per_request * result.requests_per_day
    output_day = result.baseline_output_cost_per_request * result.requests_per_day
    summary = Table(
        title="Baseline, naive sum and true combined saving (month = 30 days)",
        columns=(
            Column("figure"),
            Column("per day", "usd", "USD"),
            Column("per month", "usd", "USD"),
            Column("share", "pct", "% of baseline"),
        ),
        rows=(
            ("baseline cost", result.baseline_per_day, result.baseline_per_month, _share(per_day, per_day)),
            ("  input tokens", input_day, input_day * month, result.input_share),
            ("  output tokens", output_day, output_day * month, result.output_share),
            (
                "naive sum of separate savings",
                result.naive_sum_saving_per_day,
                result.naive_sum_saving_per_month,
                result.naive_sum_pct,
            ),
            (
                "true combined saving",
                result.combined_saving_per_day,
                result.combined_saving_per_month,
                result.combined_saving_pct,
            ),
            (
                "naive sum overstates by",
                result.naive_sum_saving_per_day - result.combined_saving_per_day,
                result.overstatement_per_month,
                result.overstatement_pct,
            ),
            (
                "cost with all levers",
                result.combined_cost_per_day,
                result.combined_cost_per_month,
                _share(result.combined_cost_per_day, per_day),
            ),
        ),
    )
    return Report(
        title=f"Optimization levers on {result.model}: {_int(result.requests_per_day)} requests/day",
        tables=(alone, steps, summary),
        notes=tuple(_notes(result, singular)),
        warnings=tuple(_warnings(result)),
        csv_table=0,
    )


def _int(value: Decimal) -> str:
    return f"{value:,.0f}"


def _notes(result: SavingsResult, singular: str) -> list[str]:
    notes: list[str] = [prices_note(result.prices_used)]
    alone = {lever.lever: lever for lever in result.levers}
    if result.percentages_note:
        notes.append(f"Percentages are undefined: {result.percentages_note}.")
    if result.baseline_cost_per_request:
        notes.append(
            f"A request costs {format_usd(result.baseline_cost_per_request)}: input "
            f"{format_usd(result.baseline_input_cost_per_request)} ({_pct(result.input_share)}), output "
            f"{format_usd(result.baseline_output_cost_per_request)} ({_pct(result.output_share)})."
        )
    if "compression" in alone and result.input_share is not None:
        reduction = alone["compression"].saving_pct
        dominant = "Output" if (result.output_share or 0) > (result.input_share or 0) else "Input"
        notes.append(
            f"Compression only touches input tokens, {_pct(result.input_share)} of the cost, so cutting "
            f"input saves {_pct(reduction)} of the bill, not the headline token reduction. "
            + (
                "Output tokens dominate: capping max_tokens or shorter answers would move the bill more."
                if dominant == "Output"
                else "Input tokens dominate, so prompt and context trimming is a strong lever here."
            )
        )
    best = result.levers[0]
    notes.append(
        f"Largest saving alone: {best.lever} ({best.description}), {format_usd(best.saving_per_month)}/month "
        f"({_pct(best.saving_pct)} of the baseline)."
    )
    if result.ranking_by_roi is not None:
        top = alone[result.ranking_by_roi[0]]
        notes.append(
            f"Best return per effort: {top.lever}, "
            f"{format_usd(top.saving_per_month_per_effort or ZERO)}/month saved per {singular} of work "
            f"({top.effort} {result.effort_unit}). Ranking by saving / effort gives "
            f"{', '.join(result.ranking_by_roi)}; by saving alone {', '.join(result.ranking_by_saving)}."
        )
    if len(result.levers) > 1:
        parts = " + ".join(_pct(alone[lever].saving_pct) for lever in result.order)
        notes.append(
            f"Adding the separate savings ({parts} = {_pct(result.naive_sum_pct)}) overstates what the "
            f"levers save together: {_pct(result.combined_saving_pct)} "
            f"({format_usd(result.combined_saving_per_month)}/month), {_points(result.overstatement_pct)} "
            "less. Each lever acts on what the earlier ones left" + _interplay(alone) + "."
        )
        notes.append(
            "The combined cost is the same in any order (each lever scales a separate factor of the cost); "
            "the order only decides how much of the saving each step is credited with in the sequence table."
        )
    notes.append(
        "Savings assume quality holds: a routed request that fails and retries on the big model pays "
        "twice, and cached answers must still be right. Measure hit rate, fallback rate and quality before "
        "committing."
    )
    return notes


def _interplay(alone: dict[LeverName, LeverAlone]) -> str:
    parts: list[str] = []
    after_cache = [lever for lever in ("routing", "compression") if lever in alone]
    if "caching" in alone and after_cache:
        verb = "reaches" if len(after_cache) == 1 else "reach"
        parts.append(f"{' and '.join(after_cache)} only {verb} the requests the cache misses")
    if "routing" in alone and "compression" in alone:
        parts.append("compression saves less per token on the requests moved to the cheaper model")
    return (": " + "; ".join(parts)) if parts else ""


def _warnings(result: SavingsResult) -> list[str]:
    warnings: list[str] = []
    for lever in result.levers:
        if lever.saving_per_day == 0 and result.baseline_per_day:
            warnings.append(f"{lever.lever} saves nothing as configured ({lever.description}).")
    for step in result.steps:
        if step.saving_per_day < 0:
            warnings.append(
                f"Step {step.position} ({step.lever}) adds {format_usd(-step.saving_per_day)}/day: after "
                "the earlier levers an average request costs less than a cache hit, so in this position the "
                "cache costs more than it saves. The combined total does not depend on the order; check "
                "cost_per_hit."
            )
    return warnings


EXAMPLE = """\
# Seed 002, Exercise 4 (Optimization Prioritization).
requests_per_day: 2000000     # requests per day
input_tokens: 2000            # average input tokens per request
output_tokens: 1000           # average output tokens per request
# The model: a catalog name (e.g. gpt-4o) or explicit USD prices per 1M tokens.
model: {name: gpt-5.5 (seed price), input_per_mtok: 5, output_per_mtok: 30}
caching:
  hit_rate: 0.25              # fraction of requests answered from the cache
  cost_per_hit: 0             # USD per cache hit (embedding lookup etc.); 0 = free
routing:
  share: 0.60                 # fraction of the (remaining) requests a smaller model can handle
  target_model: {name: claude-haiku-4.5 (seed price), input_per_mtok: 1, output_per_mtok: 5}
compression:
  input_reduction: 0.20       # fraction of input tokens removed by prompt optimization
# Optional: sequence of the levers (the combined total is the same in any order).
order: [caching, routing, compression]
# Optional: effort per lever (any unit, see effort_unit) to rank by saving per effort.
implementation_effort: {caching: 10, routing: 5, compression: 15}
effort_unit: days
"""

MODEL = PlannerModel(
    name="savings",
    summary="What caching, model routing and prompt compression save, alone and combined (not additive)",
    scenario_type=SavingsScenario,
    compute=compute,
    report=report,
    example=EXAMPLE,
)

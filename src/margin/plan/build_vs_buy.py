"""Build vs buy: the seed's ``BuildVsBuyAnalysis`` over a 24-month horizon.

Build = development (months x developers x monthly cost) + infrastructure and maintenance for the
remaining 24 - development months; buy = sum over the 24 months of max(monthly minimum, requests x price).
The cheaper 2-year total decides (the seed's ``full_analysis``); weighted qualitative scores set the
confidence. Months are calendar months of the forecast (the seed's horizon is 2 x 12 monthly values).
"""

from __future__ import annotations

from decimal import Decimal, localcontext
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..money import MONEY_CONTEXT, ZERO, format_usd
from ._base import (
    Column,
    Fraction,
    NonNegDecimal,
    NonNegInt,
    PlanContext,
    PlannerModel,
    PosDecimal,
    Report,
    Result,
    Scenario,
    Table,
)

__all__ = ["MODEL", "BuildVsBuyResult", "BuildVsBuyScenario", "Factor", "MonthRow", "compute", "report"]

HORIZON_MONTHS = 24
MONTHS_PER_YEAR = 12
Score = Annotated[Decimal, Field(ge=1, le=5, allow_inf_nan=False)]
Option = Literal["build", "buy"]
CONFIDENCE_AGREE = "high"
CONFIDENCE_DISAGREE = "medium - cost and qualitative factors disagree"
CONFIDENCE_NO_FACTORS = "cost only - no qualitative factors given"


class Factor(BaseModel):
    """A qualitative factor: the seed's tuple ``(name, weight, build_score, buy_score)`` or a mapping."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    weight: Fraction
    build_score: Score
    buy_score: Score

    @model_validator(mode="before")
    @classmethod
    def _from_list(cls, data: Any) -> Any:
        if isinstance(data, list | tuple):
            if len(data) != 4:
                raise ValueError(
                    "a factor is [name, weight, build_score, buy_score] (4 items) or a mapping with those "
                    "keys, "
                    f"got {len(data)} items"
                )
            return dict(zip(("name", "weight", "build_score", "buy_score"), data, strict=True))
        return data


RequestList = Annotated[list[NonNegDecimal], Field(min_length=MONTHS_PER_YEAR, max_length=MONTHS_PER_YEAR)]


class BuildVsBuyScenario(Scenario):
    # Build costs
    development_months: Annotated[int, Field(ge=0, le=HORIZON_MONTHS)]
    developers_required: NonNegInt
    developer_monthly_cost: PosDecimal
    infrastructure_monthly: NonNegDecimal
    maintenance_fte: NonNegDecimal
    # Buy costs
    per_request_cost: NonNegDecimal
    monthly_minimum: NonNegDecimal = ZERO
    # Usage projections: 12 monthly values per year
    monthly_requests_year1: RequestList
    monthly_requests_year2: RequestList
    # Qualitative factors (scores 1-5, weights 0-1)
    factors: list[Factor] = Field(default_factory=list)

    @field_validator("factors")
    @classmethod
    def _unique_names(cls, value: list[Factor]) -> list[Factor]:
        names = [f.name for f in value]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"factors lists {', '.join(duplicates)} more than once")
        return value

    @model_validator(mode="after")
    def _developers_for_development(self) -> BuildVsBuyScenario:
        if self.development_months > 0 and self.developers_required == 0:
            raise ValueError(
                f"developers_required is 0 but development_months is {self.development_months}: "
                "a build needs at least one developer (or set development_months to 0 if it already exists)"
            )
        return self


class MonthRow(BaseModel):
    model_config = ConfigDict(frozen=True)

    month: int
    requests: Decimal
    build_cost: Decimal
    buy_cost: Decimal
    build_cumulative: Decimal
    buy_cumulative: Decimal
    phase: Literal["development", "running"]


class FactorScore(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    weight: Decimal
    build_score: Decimal
    buy_score: Decimal
    weighted_build: Decimal
    weighted_buy: Decimal


class BuildVsBuyResult(Result):
    horizon_months: int
    development_cost: Decimal
    infrastructure_cost: Decimal
    maintenance_cost: Decimal
    running_months: int
    run_monthly_cost: Decimal
    build_2yr_tco: Decimal
    buy_2yr_tco: Decimal
    cost_difference: Decimal
    months: list[MonthRow]
    break_even_month: int | None
    break_even_explanation: str
    crossover_requests: Decimal | None
    crossover_explanation: str
    buy_cost_during_development: Decimal
    build_2yr_tco_development_doubled: Decimal
    factors: list[FactorScore]
    weight_sum: Decimal
    build_score: Decimal | None
    buy_score: Decimal | None
    qualitative_recommendation: Option | None
    cost_recommendation: Option
    overall_recommendation: Option
    confidence: str
    cost_tie: bool
    score_tie: bool


def find_breakeven(build_cumulative: list[Decimal], buy_cumulative: list[Decimal]) -> int | None:
    """First month m (1-based) such that build's cumulative cost is <= buy's in month m and every later
    month of the horizon; None when build is still dearer at the end of the horizon."""
    month: int | None = None
    for index in range(len(build_cumulative) - 1, -1, -1):
        if build_cumulative[index] > buy_cumulative[index]:
            break
        month = index + 1
    return month


def compute(s: BuildVsBuyScenario, ctx: PlanContext) -> BuildVsBuyResult:
    with localcontext(MONEY_CONTEXT):
        running = HORIZON_MONTHS - s.development_months
        dev_monthly = s.developers_required * s.developer_monthly_cost
        maintenance_monthly = s.maintenance_fte * s.developer_monthly_cost
        run_monthly = s.infrastructure_monthly + maintenance_monthly
        development_cost = s.development_months * dev_monthly
        infrastructure_cost = running * s.infrastructure_monthly
        maintenance_cost = running * maintenance_monthly
        build_total = development_cost + infrastructure_cost + maintenance_cost

        requests = list(s.monthly_requests_year1) + list(s.monthly_requests_year2)
        rows: list[MonthRow] = []
        build_cum = buy_cum = ZERO
        for index, volume in enumerate(requests):
            month = index + 1
            in_development = month <= s.development_months
            build_cost = dev_monthly if in_development else run_monthly
            buy_cost = max(s.monthly_minimum, volume * s.per_request_cost)
            build_cum += build_cost
            buy_cum += buy_cost
            rows.append(
                MonthRow(
                    month=month,
                    requests=volume,
                    build_cost=build_cost,
                    buy_cost=buy_cost,
                    build_cumulative=build_cum,
                    buy_cumulative=buy_cum,
                    phase="development" if in_development else "running",
                )
            )
        buy_total = buy_cum
        break_even = find_breakeven([r.build_cumulative for r in rows], [r.buy_cumulative for r in rows])
        crossover, crossover_text = _crossover(s, run_monthly)

        factor_scores = [
            FactorScore(
                name=f.name,
                weight=f.weight,
                build_score=f.build_score,
                buy_score=f.buy_score,
                weighted_build=f.weight * f.build_score,
                weighted_buy=f.weight * f.buy_score,
            )
            for f in s.factors
        ]
        build_score = buy_score = None
        qualitative: Option | None = None
        if factor_scores:
            build_score = sum((f.weighted_build for f in factor_scores), ZERO)
            buy_score = sum((f.weighted_buy for f in factor_scores), ZERO)
            qualitative = "build" if build_score > buy_score else "buy"  # the seed: a tie counts as buy
        cost_favors: Option = "build" if build_total < buy_total else "buy"  # the seed: a tie counts as buy
        if qualitative is None:
            confidence = CONFIDENCE_NO_FACTORS
        elif qualitative == cost_favors:
            confidence = CONFIDENCE_AGREE
        else:
            confidence = CONFIDENCE_DISAGREE

        return BuildVsBuyResult(
            horizon_months=HORIZON_MONTHS,
            development_cost=development_cost,
            infrastructure_cost=infrastructure_cost,
            maintenance_cost=maintenance_cost,
            running_months=running,
            run_monthly_cost=run_monthly,
            build_2yr_tco=build_total,
            buy_2yr_tco=buy_total,
            cost_difference=buy_total - build_total,
            months=rows,
            break_even_month=break_even,
            break_even_explanation=_break_even_text(break_even, rows),
            crossover_requests=crossover,
            crossover_explanation=crossover_text,
            buy_cost_during_development=sum((r.buy_cost for r in rows[: s.development_months]), ZERO),
            build_2yr_tco_development_doubled=build_total + development_cost,
            factors=factor_scores,
            weight_sum=sum((f.weight for f in s.factors), ZERO),
            build_score=build_score,
            buy_score=buy_score,
            qualitative_recommendation=qualitative,
            cost_recommendation=cost_favors,
            overall_recommendation=cost_favors,
            confidence=confidence,
            cost_tie=build_total == buy_total,
            score_tie=build_score is not None and build_score == buy_score,
        )


def _break_even_text(month: int | None, rows: list[MonthRow]) -> str:
    last = rows[-1]
    if month is None:
        return (
            f"Build never breaks even within {len(rows)} months: its cumulative cost "
            f"({format_usd(last.build_cumulative)}) is still above buy's ({format_usd(last.buy_cumulative)}) "
            "at the end of the horizon."
        )
    if month == 1:
        return "Build's cumulative cost is at or below buy's from month 1 and stays there."
    return (
        f"From month {month} on, build's cumulative cost stays at or below buy's for the rest of the "
        f"{len(rows)}-month horizon."
    )


def _crossover(s: BuildVsBuyScenario, run_monthly: Decimal) -> tuple[Decimal | None, str]:
    """Monthly volume at which buy's bill equals build's steady run cost (infrastructure + maintenance)."""
    if s.per_request_cost == 0:
        return None, (
            "per_request_cost is 0: buy's monthly cost does not depend on volume, so there is no crossover volume."
        )
    if s.monthly_minimum > run_monthly:
        return None, (
            f"Buy's monthly minimum ({format_usd(s.monthly_minimum)}) is above build's run cost "
            f"({format_usd(run_monthly)}/month): once built, running it is cheaper than buying at every "
            "volume."
        )
    volume = run_monthly / s.per_request_cost
    return volume, (
        f"Above {volume:,.0f} requests/month buy's bill exceeds build's run cost of "
        f"{format_usd(run_monthly)}/month "
        "(infrastructure + maintenance); below it, buying is cheaper to run, before counting development."
    )


def _money(value: Decimal) -> str:
    return format_usd(value, places=0)


def report(r: BuildVsBuyResult) -> Report:
    summary = Table(
        title=f"{r.horizon_months}-month total cost of ownership",
        columns=(
            Column("Option"),
            Column("Development", "usd", "USD"),
            Column("Infrastructure", "usd", "USD"),
            Column("Maintenance", "usd", "USD"),
            Column("API usage", "usd", "USD"),
            Column("2-year TCO", "usd", "USD"),
            Column("Weighted score", "num", "1-5"),
        ),
        rows=(
            (
                "build",
                r.development_cost,
                r.infrastructure_cost,
                r.maintenance_cost,
                None,
                r.build_2yr_tco,
                r.build_score,
            ),
            ("buy", None, None, None, r.buy_2yr_tco, r.buy_2yr_tco, r.buy_score),
        ),
    )
    tables = [summary]
    if r.factors:
        tables.append(
            Table(
                title="Qualitative factors",
                columns=(
                    Column("Factor"),
                    Column("Weight", "num"),
                    Column("Build score", "num", "1-5"),
                    Column("Buy score", "num", "1-5"),
                    Column("Build weighted", "num"),
                    Column("Buy weighted", "num"),
                ),
                rows=(
                    *(
                        (f.name, f.weight, f.build_score, f.buy_score, f.weighted_build, f.weighted_buy)
                        for f in r.factors
                    ),
                    ("total", r.weight_sum, None, None, r.build_score, r.buy_score),
                ),
            )
        )
    tables.append(
        Table(
            title="Month by month",
            columns=(
                Column("Month", "int"),
                Column("Requests", "int"),
                Column("Build phase"),
                Column("Build", "usd", "USD/month"),
                Column("Buy", "usd", "USD/month"),
                Column("Build cumulative", "usd", "USD"),
                Column("Buy cumulative", "usd", "USD"),
                Column("Cheaper so far"),
            ),
            rows=tuple(
                (
                    m.month,
                    m.requests,
                    m.phase,
                    m.build_cost,
                    m.buy_cost,
                    m.build_cumulative,
                    m.buy_cumulative,
                    "build"
                    if m.build_cumulative < m.buy_cumulative
                    else "buy"
                    if m.buy_cumulative < m.build_cumulative
                    else "tie",
                )
                for m in r.months
            ),
        )
    )
    return Report(
        title="Build vs buy",
        tables=tuple(tables),
        notes=tuple(_notes(r)),
        warnings=tuple(_warnings(r)),
        csv_table=len(tables) - 1,
    )


def _notes(r: BuildVsBuyResult) -> list[str]:
    cheaper, dearer = (
        (r.build_2yr_tco, r.buy_2yr_tco) if r.cost_recommendation == "build" else (r.buy_2yr_tco, r.build_2yr_tco)
    )
    notes = [
        f"Recommendation: {r.overall_recommendation} (cost decides, as the seed's full_analysis); "
        f"confidence: {r.confidence}.",
    ]
    if r.cost_tie:
        notes.append(f"Both options cost {_money(r.build_2yr_tco)} over 24 months; the seed counts a tie as buy.")
    else:
        notes.append(
            f"{r.cost_recommendation.capitalize()} is cheaper over {r.horizon_months} months: "
            f"{_money(cheaper)} vs "
            f"{_money(dearer)} (difference {_money(abs(r.cost_difference))})."
        )
    biggest = max(
        (
            ("development", r.development_cost),
            ("infrastructure", r.infrastructure_cost),
            ("maintenance", r.maintenance_cost),
        ),
        key=lambda kv: kv[1],
    )
    if r.build_2yr_tco:
        notes.append(
            f"The largest build cost is {biggest[0]} ({_money(biggest[1])}, "
            f"{biggest[1] / r.build_2yr_tco * 100:.0f}% of build)."
        )
    notes.append(r.break_even_explanation)
    notes.append(r.crossover_explanation)
    if r.build_score is not None and r.buy_score is not None:
        lead = "tie" if r.score_tie else r.qualitative_recommendation
        notes.append(
            f"Weighted qualitative scores: build {r.build_score.normalize():f}, buy "
            f"{r.buy_score.normalize():f} "
            f"(favours {lead}{'; the seed counts a tie as buy' if r.score_tie else ''})."
        )
    return notes


def _warnings(r: BuildVsBuyResult) -> list[str]:
    warnings: list[str] = []
    if r.factors and r.weight_sum != 1:
        warnings.append(
            f"factors: weights sum to {r.weight_sum.normalize():f}, not 1, so the weighted scores are not "
            "on the "
            "1-5 scale; they are still comparable with each other."
        )
    if r.running_months == 0:
        warnings.append(
            "development_months is 24: the build is never in service within the 2-year horizon, so the "
            "comparison "
            "only counts its development cost."
        )
    dev_months = r.horizon_months - r.running_months
    if dev_months:
        warnings.append(
            f"The build total (the seed's formula) does not pay for serving requests during the {dev_months} "
            f"development months; buying meanwhile would add {_money(r.buy_cost_during_development)}."
        )
        doubled_favors = "build" if r.build_2yr_tco_development_doubled < r.buy_2yr_tco else "buy"
        if doubled_favors != r.cost_recommendation:
            warnings.append(
                "Fragile: with development at 2x the estimate (the seed advises 2-3x for hidden costs) "
                "build would "
                f"cost {_money(r.build_2yr_tco_development_doubled)} and buy would be cheaper."
            )
    return warnings


EXAMPLE = """\
# Build vs buy for an embedding service (the seed's example). Horizon: 24 months.
# Build costs
development_months: 3           # months before the built service is in production
developers_required: 2
developer_monthly_cost: 15000   # USD per developer-month, fully loaded
infrastructure_monthly: 6000    # USD/month once running (2x A100)
maintenance_fte: 0.25           # FTE kept on maintenance once running (paid at developer_monthly_cost)
# Buy costs (OpenAI embeddings)
per_request_cost: 0.0001        # USD per request ($0.10 per 1M tokens, ~1K tokens/request)
monthly_minimum: 0              # USD/month minimum commitment
# Usage: growing from 10M to 50M requests/month, then a plateau (exactly 12 values per year)
monthly_requests_year1: [10000000, 12000000, 15000000, 18000000, 22000000, 26000000,
                         30000000, 34000000, 38000000, 42000000, 46000000, 50000000]
monthly_requests_year2: [50000000, 50000000, 50000000, 50000000, 50000000, 50000000,
                         50000000, 50000000, 50000000, 50000000, 50000000, 50000000]
# Qualitative factors: [name, weight 0-1, build score 1-5, buy score 1-5] (weights should sum to 1)
factors:
  - [data_privacy, 0.3, 5, 2]           # build much better for privacy
  - [customization, 0.2, 4, 2]          # build allows fine-tuning
  - [engineering_capacity, 0.2, 3, 5]   # limited ML team
  - [time_to_market, 0.2, 2, 5]         # need it fast
  - [strategic_importance, 0.1, 3, 3]   # neutral
"""

MODEL = PlannerModel(
    name="build-vs-buy",
    summary="Two-year build vs buy TCO, month-by-month break-even, crossover volume and weighted factors",
    scenario_type=BuildVsBuyScenario,
    compute=compute,
    report=report,
    example=EXAMPLE,
)

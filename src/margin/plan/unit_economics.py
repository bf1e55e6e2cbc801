"""Unit economics: the seed's ``UnitEconomics`` and ``project_unit_economics``.

Per-unit metrics (cost per request, cost per user, gross margin, AI cost ratio) rated against the seed's
benchmark bands, and an optional month-by-month projection in which users grow at ``growth_rate``,
requests at ``growth_rate x request_growth_multiplier`` (power users), costs with requests less a monthly
efficiency gain, and revenue with users. ``total_monthly_cost`` is the AI cost, so gross margin here is
the margin after AI cost: gross_margin = 1 - ai_cost_ratio.
"""

from __future__ import annotations

import math
from decimal import Decimal, localcontext
from fractions import Fraction as Rational
from functools import partial
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..money import MONEY_CONTEXT, format_usd
from ._base import (
    Column,
    NonNegDecimal,
    PlanContext,
    PlannerModel,
    PosInt,
    Report,
    Result,
    Scenario,
    Table,
    percent,
)

__all__ = [
    "MODEL",
    "ProjectionMonth",
    "UnitEconomicsResult",
    "UnitEconomicsScenario",
    "compute",
    "rate_ai_cost_ratio",
    "rate_cost_per_request",
    "rate_gross_margin",
    "report",
]

Rating = Literal["good", "acceptable", "concerning"]

# The seed's benchmark bands. Band edges belong to "acceptable" (the seed writes the acceptable bands as
# closed ranges "20-50%", "$0.01-$0.10", "30-60%"; good and concerning are strict inequalities).
AI_RATIO_GOOD_BELOW = Decimal("0.20")
AI_RATIO_CONCERNING_ABOVE = Decimal("0.50")
COST_PER_REQUEST_GOOD_BELOW = Decimal("0.01")
COST_PER_REQUEST_CONCERNING_ABOVE = Decimal("0.10")
MARGIN_CONCERNING_BELOW = Decimal("0.30")
MARGIN_GOOD_ABOVE = Decimal("0.60")
MAX_MONTHS = 120
DEFAULT_MONTHS = 12

BENCHMARKS: dict[str, str] = {
    "cost_per_request": "good < $0.01, acceptable $0.01-$0.10, concerning > $0.10",
    "cost_per_user": "no benchmark in the seed",
    "gross_margin": "good > 60%, acceptable 30-60%, concerning < 30%",
    "ai_cost_ratio": "good < 20%, acceptable 20-50%, concerning > 50%",
}
METRIC_LABELS: dict[str, str] = {
    "cost_per_request": "cost per request",
    "gross_margin": "gross margin",
    "ai_cost_ratio": "AI cost ratio",
}
_ORDER: dict[str, int] = {"good": 0, "acceptable": 1, "concerning": 2}


def rate_cost_per_request(value: Decimal) -> Rating:
    if value < COST_PER_REQUEST_GOOD_BELOW:
        return "good"
    if value > COST_PER_REQUEST_CONCERNING_ABOVE:
        return "concerning"
    return "acceptable"


def rate_ai_cost_ratio(value: Decimal | None) -> Rating:
    """Undefined (no revenue) is concerning: no revenue covers the AI cost."""
    if value is None or value > AI_RATIO_CONCERNING_ABOVE:
        return "concerning"
    if value < AI_RATIO_GOOD_BELOW:
        return "good"
    return "acceptable"


def rate_gross_margin(value: Decimal | None) -> Rating:
    """Undefined (no revenue) is concerning."""
    if value is None or value < MARGIN_CONCERNING_BELOW:
        return "concerning"
    if value > MARGIN_GOOD_ABOVE:
        return "good"
    return "acceptable"


class UnitEconomicsScenario(Scenario):
    total_monthly_cost: NonNegDecimal
    monthly_requests: PosInt
    monthly_active_users: PosInt
    monthly_revenue: NonNegDecimal
    # Projection (optional): runs when growth_rate is given
    growth_rate: NonNegDecimal | None = None
    months: Annotated[int, Field(gt=0, le=MAX_MONTHS)] | None = None
    cost_efficiency_gain: Annotated[Decimal, Field(ge=0, lt=1, allow_inf_nan=False)] = Decimal("0.02")
    request_growth_multiplier: NonNegDecimal = Decimal("1.2")

    @model_validator(mode="after")
    def _projection_needs_growth(self) -> UnitEconomicsScenario:
        if self.months is not None and self.growth_rate is None:
            raise ValueError(
                "growth_rate is required when months is given: set the monthly user growth (0.1 = 10%/month)"
            )
        return self


class ProjectionMonth(BaseModel):
    model_config = ConfigDict(frozen=True)

    month: int
    monthly_active_users: int
    monthly_requests: int
    total_monthly_cost: Decimal
    monthly_revenue: Decimal
    cost_per_request: Decimal
    cost_per_user: Decimal
    gross_margin: Decimal | None
    ai_cost_ratio: Decimal | None
    cost_per_request_rating: Rating
    gross_margin_rating: Rating
    ai_cost_ratio_rating: Rating
    rating_changes: list[str]
    rating_worsened: bool


class UnitEconomicsResult(Result):
    total_monthly_cost: Decimal
    monthly_requests: int
    monthly_active_users: int
    monthly_revenue: Decimal
    cost_per_request: Decimal
    cost_per_user: Decimal
    gross_margin: Decimal | None
    gross_margin_explanation: str | None
    ai_cost_ratio: Decimal | None
    ai_cost_ratio_explanation: str | None
    cost_per_request_rating: Rating
    gross_margin_rating: Rating
    ai_cost_ratio_rating: Rating
    benchmarks: dict[str, str]
    # Projection (empty without growth_rate); month 0 is the current state
    growth_rate: Decimal | None
    request_growth_rate: Decimal | None
    cost_efficiency_gain: Decimal
    request_growth_multiplier: Decimal
    projection: list[ProjectionMonth]
    efficiency_gain_to_hold_cost_per_user: Decimal | None
    unit_economics_worsen: bool | None
    trap_explanation: str | None
    first_rating_downgrade_month: int | None


def _margins(cost: Decimal, revenue: Decimal) -> tuple[Decimal | None, Decimal | None]:
    if revenue == 0:
        return None, None
    return (revenue - cost) / revenue, cost / revenue


def _floor_grow(count: int, rate: Decimal) -> int:
    """floor(count x (1 + rate)), exact for any size (the seed truncates with int(); equal for rate >= 0)."""
    return math.floor(Rational(count) * (1 + Rational(rate)))


def compute(s: UnitEconomicsScenario, ctx: PlanContext) -> UnitEconomicsResult:
    with localcontext(MONEY_CONTEXT):
        cost_per_request = s.total_monthly_cost / s.monthly_requests
        cost_per_user = s.total_monthly_cost / s.monthly_active_users
        gross_margin, ai_cost_ratio = _margins(s.total_monthly_cost, s.monthly_revenue)
        undefined = None
        if s.monthly_revenue == 0:
            undefined = (
                "monthly_revenue is 0, so {} is undefined (division by zero revenue); with no revenue "
                "nothing covers the AI cost, so it is rated concerning."
            )
        projection: list[ProjectionMonth] = []
        hold = worsen = trap = first_downgrade = request_rate = None
        if s.growth_rate is not None:
            months = s.months or DEFAULT_MONTHS
            request_rate = s.growth_rate * s.request_growth_multiplier
            projection = _project(s, months, request_rate)
            # Ignoring whole-unit rounding, cost per user changes by (1+g*m)(1-e)/(1+g) a month: it holds
            # flat when e = 1 - (1+g)/(1+g*m).
            hold = max(Decimal(0), 1 - (1 + s.growth_rate) / (1 + request_rate))
            first, last = projection[0], projection[-1]
            worsen = last.cost_per_user > first.cost_per_user
            first_downgrade = next((p.month for p in projection if p.rating_worsened), None)
            trap = _trap_text(s, first, last, worsen, hold)
        return UnitEconomicsResult(
            total_monthly_cost=s.total_monthly_cost,
            monthly_requests=s.monthly_requests,
            monthly_active_users=s.monthly_active_users,
            monthly_revenue=s.monthly_revenue,
            cost_per_request=cost_per_request,
            cost_per_user=cost_per_user,
            gross_margin=gross_margin,
            gross_margin_explanation=undefined.format("gross margin (revenue - cost) / revenue") if undefined else None,
            ai_cost_ratio=ai_cost_ratio,
            ai_cost_ratio_explanation=undefined.format("the AI cost ratio cost / revenue") if undefined else None,
            cost_per_request_rating=rate_cost_per_request(cost_per_request),
            gross_margin_rating=rate_gross_margin(gross_margin),
            ai_cost_ratio_rating=rate_ai_cost_ratio(ai_cost_ratio),
            benchmarks=dict(BENCHMARKS),
            growth_rate=s.growth_rate,
            request_growth_rate=request_rate,
            cost_efficiency_gain=s.cost_efficiency_gain,
            request_growth_multiplier=s.request_growth_multiplier,
            projection=projection,
            efficiency_gain_to_hold_cost_per_user=hold,
            unit_economics_worsen=worsen,
            trap_explanation=trap,
            first_rating_downgrade_month=first_downgrade,
        )


def _month(
    month: int, users: int, requests: int, cost: Decimal, revenue: Decimal, previous: ProjectionMonth | None
) -> ProjectionMonth:
    per_request, per_user = cost / requests, cost / users
    margin, ratio = _margins(cost, revenue)
    ratings = {
        "cost_per_request": rate_cost_per_request(per_request),
        "gross_margin": rate_gross_margin(margin),
        "ai_cost_ratio": rate_ai_cost_ratio(ratio),
    }
    changes: list[str] = []
    worsened = False
    if previous is not None:
        for metric, rating in ratings.items():
            before = getattr(previous, f"{metric}_rating")
            if before != rating:
                way = "worse" if _ORDER[rating] > _ORDER[before] else "better"
                worsened = worsened or way == "worse"
                changes.append(f"{METRIC_LABELS[metric]}: {before} -> {rating} ({way})")
    return ProjectionMonth(
        month=month,
        monthly_active_users=users,
        monthly_requests=requests,
        total_monthly_cost=cost,
        monthly_revenue=revenue,
        cost_per_request=per_request,
        cost_per_user=per_user,
        gross_margin=margin,
        ai_cost_ratio=ratio,
        cost_per_request_rating=ratings["cost_per_request"],
        gross_margin_rating=ratings["gross_margin"],
        ai_cost_ratio_rating=ratings["ai_cost_ratio"],
        rating_changes=changes,
        rating_worsened=worsened,
    )


def _project(s: UnitEconomicsScenario, months: int, request_rate: Decimal) -> list[ProjectionMonth]:
    """Month 0 is the current state; months 1..n follow the seed's recurrence.

    The seed multiplies cost by requests_n / requests_(n-1) x (1 - e) and revenue by users_n / users_(n-1)
    every month; the products telescope, so cost_n = cost_0 x requests_n / requests_0 x (1 - e)^n and
    revenue_n = revenue_0 x users_n / users_0, computed directly to avoid compounding rounding.
    """
    assert s.growth_rate is not None
    rows = [_month(0, s.monthly_active_users, s.monthly_requests, s.total_monthly_cost, s.monthly_revenue, None)]
    users, requests = s.monthly_active_users, s.monthly_requests
    keep = 1 - s.cost_efficiency_gain
    for month in range(1, months + 1):
        users = _floor_grow(users, s.growth_rate)
        requests = _floor_grow(requests, request_rate)
        cost = s.total_monthly_cost * requests * keep**month / s.monthly_requests
        revenue = s.monthly_revenue * users / s.monthly_active_users
        rows.append(_month(month, users, requests, cost, revenue, rows[-1]))
    return rows


_pct = partial(percent, places=1)


def _trap_text(
    s: UnitEconomicsScenario, first: ProjectionMonth, last: ProjectionMonth, worsen: bool, hold: Decimal
) -> str | None:
    if not worsen:
        return None
    text = (
        f"Unit economics trap: over {last.month} months cost per user rises from "
        f"{format_usd(first.cost_per_user)} "
        f"to {format_usd(last.cost_per_user)} because requests grow "
        f"{s.request_growth_multiplier.normalize():f}x "
        "as fast as users while revenue only follows users"
    )
    if first.ai_cost_ratio is not None and last.ai_cost_ratio is not None:
        text += f"; the AI cost ratio goes from {_pct(first.ai_cost_ratio)} to {_pct(last.ai_cost_ratio)}"
    text += (
        f". A monthly efficiency gain of about {_pct(hold)} (now {_pct(s.cost_efficiency_gain)}) would "
        "hold cost "
        "per user flat; otherwise raise prices for heavy users or cut the cost per request."
    )
    return text


def report(r: UnitEconomicsResult) -> Report:
    current = Table(
        title="Current unit economics",
        columns=(
            Column("Metric"),
            Column("Amount", "usd", "USD"),
            Column("Ratio", "pct"),
            Column("Rating"),
            Column("Benchmark (seed)"),
        ),
        rows=(
            (
                "Cost per request",
                r.cost_per_request,
                None,
                r.cost_per_request_rating,
                BENCHMARKS["cost_per_request"],
            ),
            ("Cost per user (month)", r.cost_per_user, None, "-", BENCHMARKS["cost_per_user"]),
            ("Gross margin", None, r.gross_margin, r.gross_margin_rating, BENCHMARKS["gross_margin"]),
            ("AI cost ratio", None, r.ai_cost_ratio, r.ai_cost_ratio_rating, BENCHMARKS["ai_cost_ratio"]),
        ),
    )
    tables = [current]
    if r.projection:
        tables.append(
            Table(
                title="Projection (month 0 = today)",
                columns=(
                    Column("Month", "int"),
                    Column("Users", "int"),
                    Column("Requests", "int"),
                    Column("Cost", "usd", "USD/month"),
                    Column("Revenue", "usd", "USD/month"),
                    Column("Cost/request", "usd", "USD"),
                    Column("Cost/user", "usd", "USD"),
                    Column("Gross margin", "pct"),
                    Column("AI cost ratio", "pct"),
                    Column("Rating changes"),
                ),
                rows=tuple(
                    (
                        p.month,
                        p.monthly_active_users,
                        p.monthly_requests,
                        p.total_monthly_cost,
                        p.monthly_revenue,
                        p.cost_per_request,
                        p.cost_per_user,
                        p.gross_margin,
                        p.ai_cost_ratio,
                        "; ".join(p.rating_changes),
                    )
                    for p in r.projection
                ),
            )
        )
    return Report(
        title="Unit economics",
        tables=tuple(tables),
        notes=tuple(_notes(r)),
        warnings=tuple(_warnings(r)),
        csv_table=1 if r.projection else 0,
    )


def _notes(r: UnitEconomicsResult) -> list[str]:
    notes = [
        f"Each request costs {format_usd(r.cost_per_request)} ({r.cost_per_request_rating}) and each "
        "active user "
        f"{format_usd(r.cost_per_user)} a month."
    ]
    if r.ai_cost_ratio is not None and r.gross_margin is not None:
        notes.append(
            f"AI cost takes {_pct(r.ai_cost_ratio)} of revenue ({r.ai_cost_ratio_rating}), leaving a gross "
            "margin "
            f"after AI cost of {_pct(r.gross_margin)} ({r.gross_margin_rating}). Margin here is 1 - AI "
            "cost ratio, "
            "so other costs of revenue would lower it further."
        )
    if r.projection and r.growth_rate is not None and r.request_growth_rate is not None:
        last = r.projection[-1]
        notes.append(
            f"Projection: users grow {_pct(r.growth_rate)}/month and requests "
            f"{_pct(r.request_growth_rate)}/month "
            f"({r.request_growth_multiplier.normalize():f}x, power users); cost follows requests less "
            f"{_pct(r.cost_efficiency_gain)}/month efficiency; revenue follows users. Users and requests "
            "are whole "
            "numbers, floored every month (the seed truncates with int(), the same for growth >= 0)."
        )
        notes.append(
            f"After {last.month} months: cost per request {format_usd(last.cost_per_request)}, cost per user "
            f"{format_usd(last.cost_per_user)}"
            + (f", AI cost ratio {_pct(last.ai_cost_ratio)}." if last.ai_cost_ratio is not None else ".")
        )
        if r.trap_explanation is None and r.efficiency_gain_to_hold_cost_per_user is not None:
            notes.append(
                f"Unit economics do not worsen: the {_pct(r.cost_efficiency_gain)} monthly efficiency gain "
                "covers the "
                f"{_pct(r.efficiency_gain_to_hold_cost_per_user)} needed to hold cost per user flat."
            )
    return notes


def _warnings(r: UnitEconomicsResult) -> list[str]:
    warnings: list[str] = []
    if r.gross_margin_explanation:
        warnings.append(r.gross_margin_explanation)
    if r.trap_explanation:
        warnings.append(r.trap_explanation)
    if r.first_rating_downgrade_month is not None:
        warnings.append(f"A benchmark rating gets worse in month {r.first_rating_downgrade_month} of the projection.")
    return warnings


EXAMPLE = """\
# Unit economics of an AI writing assistant (the seed's UnitEconomics fields).
total_monthly_cost: 42000       # USD/month of AI cost (inference, APIs, GPUs)
monthly_requests: 1500000       # requests served per month
monthly_active_users: 25000     # users active in the month
monthly_revenue: 200000         # USD/month (25,000 users x $8)
# Projection (optional): the seed's project_unit_economics
growth_rate: 0.15               # monthly user growth (15%/month)
months: 12                      # months to project (default 12)
cost_efficiency_gain: 0.02      # monthly cost-per-request improvement from optimization (default 0.02)
request_growth_multiplier: 1.2  # requests grow 1.2x as fast as users: power users (default 1.2)
"""

MODEL = PlannerModel(
    name="unit-economics",
    summary="Cost per request and per user, gross margin and AI cost ratio against benchmarks, with growth",
    scenario_type=UnitEconomicsScenario,
    compute=compute,
    report=report,
    example=EXAMPLE,
)

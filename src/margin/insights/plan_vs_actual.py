"""The planner's bottom-up forecast (``margin plan forecast``) against the ledger's actual trend. Pure.

For one calendar month, each product of the plan is compared with the month-end forecast of the ledger group
of the same name (by default the ``feature`` tag: name the plan's products after your features), and the
plan's month total (products after efficiency, new projects and contingency) with the whole ledger's.

* ``planned``: the product's net cost in that month of the plan (after the efficiency factor, before
  contingency, which the plan holds at the total level); the total row is the plan's month total.
* ``spent``, ``projected``, ``low``, ``high``: the month-end forecast of the actual spend
  (:func:`~margin.insights.forecast.month_end_forecast`: burn rate with day-of-week seasonality, 10-90%).
* ``status``: ``over_plan`` when even the low bound is above the plan, ``under_plan`` when even the high bound
  is below it, else ``on_plan``; ``unplanned`` for actual spend of a group the plan does not have, and
  ``no_spend`` for a planned product with no spend yet.

The plan's month 1 is its ``start_month``; a plan without one is taken to start in the month compared.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, localcontext
from typing import Any, Literal

from ..money import MONEY_CONTEXT
from .forecast import Forecast

__all__ = ["PlanComparison", "PlanRow", "compare_plan", "plan_month_index"]

ZERO = Decimal(0)
PlanStatus = Literal["over_plan", "on_plan", "under_plan", "unplanned", "no_spend"]


@dataclass(frozen=True, kw_only=True)
class PlanRow:
    name: str
    planned: Decimal | None
    spent: Decimal
    projected: Decimal
    low: Decimal
    high: Decimal
    difference: Decimal | None  # projected - planned
    difference_pct: Decimal | None  # difference / planned
    status: PlanStatus


@dataclass(frozen=True, kw_only=True)
class PlanComparison:
    month: str
    plan_month: int
    rows: list[PlanRow] = field(default_factory=list)
    total: PlanRow | None = None
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "month": self.month,
            "plan_month": self.plan_month,
            "rows": [vars(r) for r in self.rows],
            "total": vars(self.total) if self.total else None,
            "notes": self.notes,
        }


def plan_month_index(start_month: str | None, month: str) -> int:
    """The plan's month number (1-based) for calendar ``month`` (``YYYY-MM``); 1 when the plan has no start."""
    if start_month is None:
        return 1
    sy, sm = (int(x) for x in start_month.split("-"))
    y, m = (int(x) for x in month.split("-"))
    return (y - sy) * 12 + (m - sm) + 1


def _row(name: str, planned: Decimal | None, actual: Forecast | None) -> PlanRow:
    spent = actual.spent_to_date if actual else ZERO
    projected = actual.projected_total if actual else ZERO
    low = actual.low if actual else ZERO
    high = actual.high if actual else ZERO
    difference = difference_pct = None
    with localcontext(MONEY_CONTEXT):
        if planned is not None:
            difference = projected - planned
            difference_pct = difference / planned if planned else None
    if planned is None:
        status: PlanStatus = "unplanned"
    elif actual is None or projected == 0:
        status = "no_spend"
    elif low > planned:
        status = "over_plan"
    elif high < planned:
        status = "under_plan"
    else:
        status = "on_plan"
    return PlanRow(
        name=name,
        planned=planned,
        spent=spent,
        projected=projected,
        low=low,
        high=high,
        difference=difference,
        difference_pct=difference_pct,
        status=status,
    )


def compare_plan(plan: Any, month: str, actual: Mapping[str | None, Forecast], total: Forecast) -> PlanComparison:
    """Compare ``plan`` (a :class:`~margin.plan.forecast.ForecastResult`) in calendar ``month`` with ``actual``
    (group name -> month-end forecast; None for spend without the group tag) and ``total`` (the whole ledger)."""
    index = plan_month_index(plan.start_month, month)
    notes: list[str] = []
    if not 1 <= index <= plan.months:
        raise ValueError(
            f"{month} is month {index} of the plan, outside its {plan.months} months"
            + (f" from {plan.start_month}" if plan.start_month else "")
            + "; compare a month inside the plan's horizon"
        )
    if plan.start_month is None:
        notes.append(f"the plan has no start_month: its month 1 is taken to be {month}")
    row = plan.rows[index - 1]
    planned = {p.name: p.net_cost for p in row.products}
    rows = [_row(name, cost, actual.get(name)) for name, cost in planned.items()]
    for group, forecast in actual.items():
        if group is not None and group not in planned:
            rows.append(_row(group, None, forecast))
    untagged = actual.get(None)
    if untagged is not None and untagged.projected_total > 0:
        rows.append(_row("(no group tag)", None, untagged))
    if row.new_projects_cost or row.contingency:
        notes.append(
            f"the plan's total includes new projects ({row.new_projects_cost}) and contingency ({row.contingency}), "
            "which no product row carries"
        )
    return PlanComparison(month=month, plan_month=index, rows=rows, total=_row("total", row.total, total), notes=notes)

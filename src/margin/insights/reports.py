"""Report assembly shared by ``margin report`` and the dashboard. Pure: rows already read from the ledger
come in, report documents go out; no I/O, time passed in.

What lives here used to be inline in the CLI commands; the dashboard needs the same figures, so both edges
call these functions instead of keeping two copies: month bounds of a period, month-end forecasts per group
with the status of the month budgets that apply, the task summary (cost per successful task), and the
showback report from the ledger's usage by tag set and the month's shared costs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

from ..errors import MarginError
from .attribution import AllocationRule, SharedCost, ShowbackReport, UsageSlice, showback
from .forecast import Forecast, budget_status, month_end_forecast

__all__ = [
    "NANO",
    "BudgetRow",
    "PeriodError",
    "budget_rows",
    "closed_budget_rows",
    "current_period",
    "forecast_groups",
    "month_bounds",
    "observed_days",
    "projected_days",
    "scope_forecasts",
    "showback_from_ledger",
    "task_summary",
]

NANO = Decimal("0.000000001")  # a nano-dollar: the ledger's resolution
_PERIOD = re.compile(r"(\d{4})-(0[1-9]|1[0-2])")


class PeriodError(MarginError):
    """A period that is not a month like ``2026-11``."""

    exit_code = 2
    http_status = 400
    error_type = "invalid_request_error"


def month_bounds(period: str) -> tuple[datetime, datetime]:
    """``2026-11`` -> (2026-11-01 00:00 UTC, 2026-12-01 00:00 UTC)."""
    match = _PERIOD.fullmatch(period)
    if not match:
        raise PeriodError(f"the period must be a month like 2026-11, got {period!r}")
    year, month = int(match[1]), int(match[2])
    start = datetime(year, month, 1, tzinfo=UTC)
    end = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=UTC)
    return start, end


def current_period(now: datetime) -> str:
    """The UTC month of ``now`` as ``YYYY-MM``."""
    return f"{now.astimezone(UTC):%Y-%m}"


def observed_days(start: datetime, end: datetime, now: datetime) -> Decimal:
    """How many days of a period have been observed by ``now`` (the whole period once it is over), at least
    one: what recommendations scale their savings from (a quiet last day still counts)."""
    seen = min(end, max(now, start)) - start
    return max(Decimal(1), Decimal(str(round(seen.total_seconds() / 86400, 6))))


# -- forecasts and budgets ----------------------------------------------------------------------------------------


class MonthBudget(Protocol):
    """What a forecast needs of a budget (``gateway.budgets`` entries with ``period: month``)."""

    name: str
    scope: str
    value: str | None
    amount: Decimal
    warn: Decimal
    review: Decimal
    block: Decimal


def scope_forecasts(
    rows: Iterable[tuple[str, str | None, Decimal]], now: datetime, by: str | None
) -> dict[str | None, Forecast]:
    """Month-end forecasts per group from ``daily_spend`` rows ``(day, group, cost)``: one per group seen, and
    the whole ledger (group None) when ``by`` is None even without any spend."""
    series: dict[str | None, dict[date, Decimal]] = {}
    for day, group, cost in rows:
        series.setdefault(group, {})[date.fromisoformat(day)] = cost
    if by is None:
        series.setdefault(None, {})
    return {group: month_end_forecast(daily, now) for group, daily in series.items()}


def _applies(budget: MonthBudget, by: str | None, group: str | None) -> bool:
    if by is None:
        return budget.scope == "global"
    return budget.scope == by and budget.value in (None, group)


def forecast_groups(
    rows: Iterable[tuple[str, str | None, Decimal]],
    now: datetime,
    by: str | None,
    budgets: Sequence[MonthBudget],
) -> list[dict[str, Any]]:
    """Per group (sorted by name; ``(all)`` when ``by`` is None): spend to date, projected month total, the
    10-90% interval, the burn rate (an average day's spend at the current rate) and each month budget that
    applies with its status and run-out day. ``budgets`` must be month budgets."""
    out = []
    forecasts = scope_forecasts(rows, now, by)
    for group, forecast in sorted(forecasts.items(), key=lambda item: item[0] or ""):
        entry: dict[str, Any] = {
            "group": group if by else "(all)",
            "spent": forecast.spent_to_date,
            "projected": forecast.projected_total,
            "low": forecast.low,
            "high": forecast.high,
            "burn_rate_per_day": forecast.base_rate,
            "method": forecast.method,
            "budgets": [],
        }
        for budget in budgets:
            if not _applies(budget, by, group):
                continue
            status = budget_status(
                forecast.spent_to_date,
                forecast.projected_total,
                budget.amount,
                warn=budget.warn,
                review=budget.review,
                block=budget.block,
            )
            entry["budgets"].append(
                {
                    "name": budget.name,
                    "cap": budget.amount,
                    "status": status,
                    "runs_out": forecast.runout(budget.amount),
                }
            )
        out.append(entry)
    return out


@dataclass(frozen=True, kw_only=True)
class BudgetRow:
    """One month budget applied to one group: where it stands now and where the month is heading."""

    name: str
    scope: str  # global, team, project, ... as configured
    group: str  # the scope value it is counted on ("(all)" for global)
    cap: Decimal
    spent: Decimal
    projected: Decimal | None  # None for a closed month
    status: str
    runs_out: date | None


def budget_rows(
    daily_by_scope: Mapping[str | None, Iterable[tuple[str, str | None, Decimal]]],
    budgets: Sequence[MonthBudget],
    now: datetime,
) -> list[BudgetRow]:
    """Every month budget on every group it applies to, for the current month. ``daily_by_scope`` maps a
    budget scope (None for ``global``) to its ``daily_spend`` rows since before the month started."""
    found: list[BudgetRow] = []
    for scope, rows in daily_by_scope.items():
        scoped = [b for b in budgets if b.scope == (scope or "global")]
        if not scoped:
            continue
        for entry in forecast_groups(rows, now, scope, scoped):
            for b in entry["budgets"]:
                found.append(
                    BudgetRow(
                        name=b["name"],
                        scope=scope or "global",
                        group=str(entry["group"]),
                        cap=b["cap"],
                        spent=entry["spent"],
                        projected=entry["projected"],
                        status=b["status"],
                        runs_out=b["runs_out"],
                    )
                )
    return sorted(found, key=lambda r: (r.name, r.group))


def closed_budget_rows(
    spent_by_scope: Mapping[str | None, Mapping[str | None, Decimal]], budgets: Sequence[MonthBudget]
) -> list[BudgetRow]:
    """Month budgets of a month that is over: the status of what was spent (no projection, no run-out day).
    ``spent_by_scope`` maps a scope (None for global) to each group's spend in the month."""
    found = []
    for budget in budgets:
        scope = None if budget.scope == "global" else budget.scope
        for group, spent in (spent_by_scope.get(scope) or {}).items():
            if scope is not None and (group is None or budget.value not in (None, group)):
                continue
            status = budget_status(
                spent, spent, budget.amount, warn=budget.warn, review=budget.review, block=budget.block
            )
            found.append(
                BudgetRow(
                    name=budget.name,
                    scope=budget.scope,
                    group="(all)" if scope is None else str(group),
                    cap=budget.amount,
                    spent=spent,
                    projected=None,
                    status=status,
                    runs_out=None,
                )
            )
    return sorted(found, key=lambda r: (r.name, r.group))


def projected_days(forecast: Forecast, until: date) -> list[tuple[date, Decimal]]:
    """The forecast's expected spend of each day still to come this month, through ``until`` (the month's last
    day): the rest of today, then one figure per later day (the burn rate times the weekday's factor)."""
    factors = forecast.by_weekday_factors
    days = [(forecast.as_of, forecast.base_rate * factors[forecast.as_of.weekday()] * forecast.today_remaining)]
    day = forecast.as_of + timedelta(days=1)
    while day <= until:
        days.append((day, forecast.base_rate * factors[day.weekday()]))
        day += timedelta(days=1)
    return days


# -- tasks ---------------------------------------------------------------------------------------------------------


def task_summary(tasks: Sequence[tuple[str, int, Decimal, str | None]], period: str) -> dict[str, Any]:
    """The month's tasks from ``task_costs`` rows ``(task id, requests, cost, outcome)``: counts per outcome,
    total cost, the cost per task and the cost per SUCCESSFUL task (all tasks' spend divided by the successes,
    since the failed attempts were spent to get them), each rounded to the ledger's nano-dollar."""
    total = sum((cost for _, _, cost, _ in tasks), Decimal(0))
    counts = {o: sum(1 for *_, outcome in tasks if outcome == o) for o in ("success", "failure", None)}
    return {
        "period": period,
        "tasks": len(tasks),
        "succeeded": counts["success"],
        "failed": counts["failure"],
        "unknown": counts[None],
        "total_cost": total,
        "cost_per_task": (total / len(tasks)).quantize(NANO) if tasks else None,
        "cost_per_successful_task": (total / counts["success"]).quantize(NANO) if counts["success"] else None,
        "requests": sum(n for _, n, _, _ in tasks),
    }


# -- showback ------------------------------------------------------------------------------------------------------


class _RuleConfig(Protocol):
    category: str
    method: Any
    basis: Any
    activity_rates: Any
    among: Any


def showback_from_ledger(
    usage: Iterable[tuple[dict[str, str], Decimal, int, int, int]],
    shared: Iterable[tuple[str, str, Decimal]],
    rules: Iterable[_RuleConfig],
    by: str,
    *,
    required_tags: Sequence[str],
    period: str,
) -> ShowbackReport:
    """Showback of a month from ``usage_by_tags`` rows ``(tags, cost, input tokens, output tokens, requests)``,
    shared costs ``(name, category, amount)`` and the configured allocation rules."""
    slices = [UsageSlice(tags=t, cost=c, input_tokens=i, output_tokens=o, requests=n) for t, c, i, o, n in usage]
    costs = [SharedCost(name=n, category=c, amount=a) for n, c, a in shared]
    allocation = [
        AllocationRule(
            category=r.category, method=r.method, basis=r.basis, activity_rates=r.activity_rates, among=r.among
        )
        for r in rules
    ]
    return showback(slices, costs, allocation, by, required_tags=required_tags, period=period)

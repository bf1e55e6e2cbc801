"""Report assembly shared by the CLI and the dashboard (margin.insights.reports): hand-computed answers."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from margin.gateway.config import BudgetConfig
from margin.insights.forecast import month_end_forecast
from margin.insights.reports import (
    PeriodError,
    budget_rows,
    closed_budget_rows,
    current_period,
    forecast_groups,
    month_bounds,
    observed_days,
    projected_days,
    showback_from_ledger,
    task_summary,
)


def test_month_bounds_and_current_period():
    assert month_bounds("2026-12") == (datetime(2026, 12, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC))
    assert month_bounds("2026-02")[1] == datetime(2026, 3, 1, tzinfo=UTC)
    for bad in ("2026-13", "2026-1", "26-11", "2026-11-01", ""):
        with pytest.raises(PeriodError, match="a month like 2026-11"):
            month_bounds(bad)
    assert current_period(datetime(2026, 11, 30, 23, 59, tzinfo=UTC)) == "2026-11"


def test_observed_days_is_what_has_passed_of_the_period_and_at_least_one():
    start, end = month_bounds("2026-11")
    assert observed_days(start, end, datetime(2026, 11, 11, 12, tzinfo=UTC)) == Decimal("10.5")
    assert observed_days(start, end, datetime(2027, 3, 1, tzinfo=UTC)) == Decimal(30)  # a closed month: all of it
    assert observed_days(start, end, datetime(2026, 11, 1, 1, tzinfo=UTC)) == Decimal(1)
    assert observed_days(start, end, datetime(2026, 10, 1, tzinfo=UTC)) == Decimal(1)  # not started


NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)  # a Friday, half of the day gone


def _daily(amount: str, days: int, group: str | None = None) -> list[tuple[str, str | None, Decimal]]:
    """``days`` full days of ``amount`` each, ending yesterday."""
    return [((NOW.date() - timedelta(days=d)).isoformat(), group, Decimal(amount)) for d in range(1, days + 1)]


def test_forecast_groups_with_a_flat_rate_and_budget_status():
    # 10 full days of history (Nov 10-19): under two weeks, so a flat rate.
    rows = _daily("2", 10, "ml") + _daily("1", 10, "web")
    budgets = [BudgetConfig(name="ml-cap", scope="team", value="ml", period="month", amount=Decimal(50))]
    groups = {g["group"]: g for g in forecast_groups(rows, NOW, "team", budgets)}
    ml = groups["ml"]
    assert ml["spent"] == Decimal(20) and ml["burn_rate_per_day"] == Decimal(2) and ml["method"] == "flat"
    # Rest of the month: half of today + 10 days (Nov 21-30) at $2.
    assert ml["projected"] == Decimal(20) + Decimal(2) * Decimal("10.5")
    (budget,) = ml["budgets"]
    # Spent 40% of 50, projected 82% (< 90% review): on track. The $30 left last half of today ($1) and then
    # 15 days at $2 (21 + 2 x 14.5 = 50): Nov 20 + 15 days.
    assert budget["status"] == "on_track" and budget["runs_out"] == date(2026, 12, 5)
    assert groups["web"]["budgets"] == []  # the budget is ml's only
    (whole,) = forecast_groups([], NOW, None, [])
    assert whole["group"] == "(all)" and whole["spent"] == 0 and whole["method"] == "no_history"


def test_budget_rows_cover_every_group_a_scope_wide_budget_applies_to():
    budgets = [
        BudgetConfig(name="per-team", scope="team", period="month", amount=Decimal(30)),
        BudgetConfig(name="all", scope="global", period="month", amount=Decimal(100)),
    ]
    daily = {"team": _daily("2", 10, "ml") + _daily("1", 10, "web"), None: _daily("3", 10)}
    rows = budget_rows(daily, budgets, NOW)
    assert [(r.name, r.group, r.spent, r.status) for r in rows] == [
        ("all", "(all)", Decimal(30), "on_track"),
        # ml: 20 of 30 spent (67%), projected 41 >= 90%: approaching
        ("per-team", "ml", Decimal(20), "approaching"),
        ("per-team", "web", Decimal(10), "on_track"),
    ]
    assert rows[1].projected == Decimal(41) and rows[1].scope == "team"


def test_closed_budget_rows_judge_what_was_spent():
    budgets = [
        BudgetConfig(name="ml", scope="team", value="ml", period="month", amount=Decimal(10)),
        BudgetConfig(name="all", scope="global", period="month", amount=Decimal(100)),
    ]
    spent = {"team": {"ml": Decimal("11.5"), "web": Decimal(99), None: Decimal(1)}, None: {None: Decimal("105")}}
    rows = closed_budget_rows(spent, budgets)
    assert [(r.name, r.group, r.status, r.projected, r.runs_out) for r in rows] == [
        ("all", "(all)", "over", None, None),
        ("ml", "ml", "over_hard_limit", None, None),  # 115% >= the 110% block level
    ]


def test_projected_days_add_up_to_the_projection():
    daily = {NOW.date() - timedelta(days=d): Decimal(d % 3 + 1) for d in range(1, 30)}
    forecast = month_end_forecast(daily, NOW)
    days = projected_days(forecast, date(2026, 11, 30))
    assert [d for d, _ in days] == [date(2026, 11, 20) + timedelta(days=i) for i in range(11)]
    assert sum((v for _, v in days), Decimal(0)) == pytest.approx(forecast.projected_total - forecast.spent_to_date)


def test_task_summary_cost_per_successful_task():
    tasks = [("a", 2, Decimal("0.30"), "success"), ("b", 1, Decimal("0.10"), "failure"), ("c", 4, Decimal("0.2"), None)]
    doc = task_summary(tasks, "2026-11")
    assert (doc["tasks"], doc["succeeded"], doc["failed"], doc["unknown"], doc["requests"]) == (3, 1, 1, 1, 7)
    assert doc["total_cost"] == Decimal("0.60")
    assert doc["cost_per_task"] == Decimal("0.200000000")
    assert doc["cost_per_successful_task"] == Decimal("0.600000000")  # every task's spend bought the one success
    empty = task_summary([], "2026-11")
    assert empty["cost_per_task"] is None and empty["cost_per_successful_task"] is None


def test_showback_from_ledger_rows_adds_up():
    class Rule:
        category, method, basis, activity_rates, among = "gpu", "even", "tokens", {}, None

    usage = [({"team": "ml"}, Decimal("0.30"), 3000, 0, 3), ({}, Decimal("0.05"), 1000, 0, 1)]
    report = showback_from_ledger(
        usage, [("node", "gpu", Decimal("10"))], [Rule()], "team", required_tags=["team"], period="2026-11"
    )
    assert report.group("ml").total == Decimal("10.30")  # the even split goes to named teams only
    assert report.group("unattributed").total == Decimal("0.05")
    assert report.grand_total == Decimal("10.35")

"""Page models (margin.dashboard._data): pure, from hand-made ledger read results."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import orjson
import pytest

from margin.dashboard._data import (
    TASK_ROWS,
    alerts_page,
    breakdown_page,
    document,
    overview_page,
    period_of,
    share,
    tasks_page,
)
from margin.insights.anomaly import Anomaly
from margin.insights.forecast import month_end_forecast
from margin.insights.reports import PeriodError
from margin.store.base import Alert

NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)


def _row(group, cost, requests=1):
    cost = Decimal(cost)
    return {
        "group": group,
        "requests": requests,
        "input_tokens": 10 * requests,
        "cache_read_tokens": 0,
        "cache_write_tokens": 0,
        "output_tokens": 5 * requests,
        "list_cost": cost,
        "effective_cost": cost,
        "avoided_cost": Decimal(0),
    }


def test_period_of_defaults_to_the_month_of_now_and_refuses_bad_periods():
    current = period_of(None, NOW)
    assert current.period == "2026-11" and current.is_current and not current.is_closed
    assert current.last_day == date(2026, 11, 30) and len(current.days) == 30
    past = period_of("2026-02", NOW)
    assert past.is_closed and not past.is_current and len(past.days) == 28
    future = period_of("2027-01", NOW)
    assert not future.is_closed and not future.is_current
    with pytest.raises(PeriodError):
        period_of("2026-13", NOW)


def test_share_rounds_half_even_to_four_decimals():
    assert share(Decimal(1), Decimal(3)) == Decimal("0.3333")
    assert share(Decimal(2), Decimal(3)) == Decimal("0.6667")
    assert share(Decimal(1), Decimal(0)) == Decimal("0.0000")


def _overview(days):
    rows = [_row(d, c) for d, c in days]
    total = _row(None, sum((Decimal(c) for _, c in days), Decimal(0)), len(days))
    return {"total": total, "by_model": [], "by_team": [], "by_status": [], "by_day": rows}


def test_overview_of_the_current_month_has_actual_days_then_forecast_days():
    daily = {NOW.date() - timedelta(days=d): Decimal("1.5") for d in range(1, 20)}
    forecast = month_end_forecast(daily, NOW)
    doc = _overview([("2026-11-02", "1.5"), ("2026-11-19", "1.5")])
    page = overview_page(period_of(None, NOW), doc, forecast=forecast, budgets=[], dimensions={})
    actual = [d for d in page.daily if not d.projected]
    ahead = [d for d in page.daily if d.projected]
    assert [d.day for d in actual] == [date(2026, 11, 1) + timedelta(days=i) for i in range(20)]  # through today
    assert actual[1].effective_cost == Decimal("1.5") and actual[0].effective_cost == 0  # missing days are zero
    assert ahead[0].day == NOW.date() and ahead[-1].day == date(2026, 11, 30)
    assert ahead[1].effective_cost == Decimal("1.5")  # the flat burn rate
    assert page.forecast.projected == forecast.projected_total and page.forecast.burn_rate_per_day == Decimal("1.5")


def test_overview_of_a_closed_month_has_no_forecast_and_every_day():
    page = overview_page(
        period_of("2026-10", NOW),
        _overview([("2026-10-31", "2")]),
        forecast=month_end_forecast({}, NOW),
        budgets=[],
        dimensions={},
    )
    assert page.forecast is None and len(page.daily) == 31 and not any(d.projected for d in page.daily)
    assert page.daily[-1].effective_cost == Decimal(2) and "is over" in page.notes[0]


def test_top_drivers_are_the_three_largest_groups_of_each_dimension_with_their_share():
    doc = _overview([("2026-11-02", "10")])
    teams = [_row("a", "5"), _row("b", "3"), _row(None, "1.5"), _row("d", "0.5"), _row("zero", "0")]
    models = [_row("", "0"), _row("gpt-4o", "10")]
    page = overview_page(
        period_of(None, NOW), doc, forecast=None, budgets=[], dimensions={"team": teams, "model": models}
    )
    assert [(d.dimension, d.group, d.effective_cost, d.share) for d in page.drivers] == [
        ("team", "a", Decimal(5), Decimal("0.5000")),
        ("team", "b", Decimal(3), Decimal("0.3000")),
        ("team", None, Decimal("1.5"), Decimal("0.1500")),  # untagged spend is a driver too
        ("model", "gpt-4o", Decimal(10), Decimal("1.0000")),
    ]


def test_breakdown_totals_are_exact_sums_with_shares():
    rows = [_row("ml", "0.1"), _row("web", "0.2", 2), _row(None, "0.000000001")]
    page = breakdown_page(
        "teams", "Spend by team", "team", period_of(None, NOW), rows, [("2026-11-03", "ml", Decimal("0.1"))]
    )
    assert page.total["effective_cost"] == Decimal("0.300000001") and page.total["requests"] == 4
    assert [r["share"] for r in page.rows] == [Decimal("0.3333"), Decimal("0.6667"), Decimal("0.0000")]
    assert page.daily == [(date(2026, 11, 3), "ml", Decimal("0.1"))]
    empty = breakdown_page("teams", "t", "team", period_of(None, NOW), [])
    assert empty.total["effective_cost"] == 0 and empty.rows == []


def _anomaly(hour, scope, key):
    return Anomaly(
        rule="spend_spike",
        scope=scope,
        window_start=hour,
        window_end=hour + timedelta(hours=1),
        value=Decimal(10),
        baseline=Decimal(1),
        ratio=Decimal(10),
        message="spend spike",
        dedup_key=key,
    )


def test_alerts_page_keeps_the_periods_alerts_and_marks_anomalies_already_alerted():
    period = period_of(None, NOW)
    stored = [
        Alert(
            alert_id="1",
            created_at=NOW - timedelta(hours=1),
            kind="spend_spike",
            scope="team=ml",
            message="m",
            data={"dedup_key": "k-sent", "delivered": False},
        ),
        Alert(
            alert_id="2",
            created_at=datetime(2026, 10, 31, tzinfo=UTC),
            kind="breaker",
            scope=None,
            message="october",
            data={},
        ),
    ]
    hour = datetime(2026, 11, 19, 3, tzinfo=UTC)
    anomalies = [_anomaly(hour, "team=ml", "k-sent"), _anomaly(hour, "global", "k-new")]
    hourly = [("2026-11-01T05", None, Decimal("0.5"), 3, 0), ("2026-11-01T05", "ml", Decimal("0.5"), 3, 0)]
    page = alerts_page(period, stored, anomalies, hourly, settings={"spike_multiple": 3})
    assert [(a.message, a.delivered) for a in page.alerts] == [("m", False)]  # October's alert is not November's
    assert {a.scope: a.alerted for a in page.anomalies} == {"team=ml": True, "global": False}
    assert all(a.spend == Decimal(10) for a in page.anomalies)  # spend spikes carry the hour's spend
    # Every hour from the 1st through the current hour, zero where nothing was spent.
    assert len(page.hourly) == 19 * 24 + 13 and page.hourly[0] == (datetime(2026, 11, 1, tzinfo=UTC), 0)
    assert page.hourly[5] == (datetime(2026, 11, 1, 5, tzinfo=UTC), Decimal("0.5"))


def test_tasks_page_sums_by_outcome_and_lists_the_most_expensive():
    tasks = [(f"t{i:03}", 1, Decimal(i), ("success", "failure", None)[i % 3]) for i in range(TASK_ROWS + 5)]
    page = tasks_page(period_of(None, NOW), tasks)
    counts = {o: (n, c) for o, n, c in page.by_outcome}
    assert sum(n for n, _ in counts.values()) == len(tasks)
    assert counts["success"][1] == sum(Decimal(i) for i in range(0, TASK_ROWS + 5, 3))
    assert len(page.tasks) == TASK_ROWS and page.tasks[0].task_id == f"t{TASK_ROWS + 4:03}"
    assert page.summary["tasks"] == len(tasks)


def test_document_is_json_with_exact_decimals():
    page = breakdown_page("teams", "Spend by team", "team", period_of(None, NOW), [_row("ml", "0.123456789012")])
    doc = orjson.loads(orjson.dumps(document(page), default=lambda v: format(v, "f")))
    assert doc["page"] == "teams" and doc["period"] == "2026-11" and doc["is_current"] is True
    assert doc["rows"][0]["effective_cost"] == "0.123456789012" and doc["total"]["effective_cost"] == "0.123456789012"

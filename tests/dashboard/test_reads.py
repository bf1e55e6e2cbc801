"""Each page read from a real ledger (margin.dashboard._reads), SQLite and PostgreSQL: its numbers are the
ledger's."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from margin.config import PricesConfig
from margin.dashboard._data import period_of
from margin.dashboard._reads import PAGES, Sources, day_totals, read_page
from margin.gateway.config import BudgetConfig
from margin.pricing import Catalog, load_price_data
from margin.store.sqlite import SQLiteLedger
from margin.usage import UsageEvent

NOW = datetime.now(UTC).replace(minute=30, second=0, microsecond=0)
MONTH_START = NOW.replace(day=1, hour=0, minute=0)


def _event(i, when, tags, cost, *, model="gpt-4o-mini", task=None, max_tokens=None):
    return UsageEvent(
        event_id=f"e{i}",
        request_id=f"r{i}",
        attempt=0,
        started_at=when,
        finished_at=when,
        status="ok",
        endpoint="chat.completions",
        requested_model=model,
        served_model=model,
        provider="openai",
        tags=tags,
        input_tokens=100,
        output_tokens=20,
        list_cost=Decimal(cost),
        effective_cost=Decimal(cost),
        task_id=task,
        max_tokens=max_tokens,
    )


def _open(backend: str, tmp_path, request) -> Any:
    """A fresh ledger on ``backend``: a SQLite file, or a database on the session's throwaway PostgreSQL."""
    if backend == "sqlite":
        return SQLiteLedger(tmp_path / "ledger.db")
    from margin.store.postgres import PostgresLedger

    return PostgresLedger(request.getfixturevalue("pg_database"))


def _write(store: Any, events: list[UsageEvent]) -> None:
    async def go():
        for event in events:
            await store.write_event(event)
        await store.write_alert("spend_spike", "spend spike on team=ml", scope="team=ml", data={"delivered": True})

    asyncio.run(go())


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request) -> str:
    return request.param


@pytest.fixture
def ledger(backend, tmp_path, request):
    events = []
    # This month (the first hours of the 1st, so they are in the month whatever today is): ml and web.
    for i in range(30):
        when = MONTH_START + timedelta(minutes=i)
        tags = {"team": "ml", "project": "search", "feature": "qa"}
        events.append(_event(i, when, tags, "0.001", task="t-1", max_tokens=4096))
    events.append(_event(100, MONTH_START, {"team": "web"}, "0.25", model="gpt-4o"))
    events.append(_event(101, MONTH_START - timedelta(days=3), {"team": "ml"}, "9"))  # last month
    store = _open(backend, tmp_path, request)
    _write(store, events)
    store.set_task_outcome("t-1", "success")
    yield store
    store.close()


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    return Sources(
        budgets=[
            BudgetConfig(name="ml-month", scope="team", value="ml", period="month", amount=Decimal(1)),
            BudgetConfig(name="daily", scope="global", period="day", amount=Decimal(1)),  # not a month budget
        ],
        catalog=Catalog.from_data(load_price_data(tmp_path_factory.mktemp("home")), PricesConfig()),
        default_max_tokens=4096,
    )


def test_every_page_reads(ledger, sources):
    for name in PAGES:
        page = read_page(ledger, name, period_of(None, NOW), sources)
        assert page.period.period == NOW.strftime("%Y-%m")


def test_overview_numbers_are_the_ledgers(ledger, sources):
    page = read_page(ledger, "overview", period_of(None, NOW), sources)
    (spend,) = ledger.spend(MONTH_START, None, None)
    assert page.total["effective_cost"] == spend.effective_cost == Decimal("0.28")
    assert page.total["requests"] == 31
    (budget,) = page.budgets  # the month budget only, on ml
    assert (budget.name, budget.group, budget.spent, budget.cap) == ("ml-month", "ml", Decimal("0.030"), 1)
    drivers = {(d.dimension, d.group): d.effective_cost for d in page.drivers}
    assert drivers[("team", "web")] == Decimal("0.25") and drivers[("project", "search")] == Decimal("0.03")
    assert drivers[("project", None)] == Decimal("0.25")  # web's spend carries no project tag
    assert page.forecast is not None and page.forecast.spent == Decimal("0.28")


def test_day_totals_of_a_grouping_are_the_daily_totals(ledger):
    """The overview derives the daily totals from a grouped read; they must be the ledger's own totals."""
    since, until = MONTH_START - timedelta(days=35), MONTH_START + timedelta(days=40)
    totals = ledger.daily_rollup(since, until, None)
    assert len(totals) == 2  # last month's day and this month's first
    for by in ("team", "model", "project", "tag:feature"):
        assert day_totals(ledger.daily_rollup(since, until, by)) == totals


def test_breakdowns_and_tasks_are_the_ledgers(ledger, sources):
    teams = read_page(ledger, "teams", period_of(None, NOW), sources)
    by_spend = {r.group: r.effective_cost for r in ledger.spend(MONTH_START, None, "team")}
    assert {r["group"]: r["effective_cost"] for r in teams.rows} == by_spend
    assert sum(c for _, _, c in teams.daily) == sum(by_spend.values())
    projects = read_page(ledger, "projects", period_of(None, NOW), sources)
    assert {r["group"]: r["effective_cost"] for r in projects.rows} == {
        "search": Decimal("0.03"),
        None: Decimal("0.25"),
    }
    tasks = read_page(ledger, "tasks", period_of(None, NOW), sources)
    assert tasks.summary["succeeded"] == 1 and tasks.summary["cost_per_successful_task"] == Decimal("0.03")
    previous = MONTH_START - timedelta(days=1)
    last_month = read_page(ledger, "teams", period_of(previous.strftime("%Y-%m"), NOW), sources)
    assert [(r["group"], r["effective_cost"]) for r in last_month.rows] == [("ml", Decimal(9))]
    closed = read_page(ledger, "overview", period_of(previous.strftime("%Y-%m"), NOW), sources)
    assert closed.forecast is None and not any(d.projected for d in closed.daily)
    (budget,) = closed.budgets  # judged on what was spent: $9 of $1
    assert (budget.group, budget.spent, budget.status, budget.projected) == ("ml", Decimal(9), "over_hard_limit", None)


def test_alerts_and_recommendations_pages(ledger, sources):
    alerts = read_page(ledger, "alerts", period_of(None, NOW), sources)
    assert [(a.kind, a.delivered) for a in alerts.alerts] == [("spend_spike", True)]
    recommendations = read_page(ledger, "recommendations", period_of(None, NOW), sources)
    assert recommendations.events == 31 and not recommendations.truncated
    # 30 requests on one route all reserving the gateway's default max_tokens: the max_tokens rule fires.
    assert "max_tokens_loose" in {r.kind for r in recommendations.items}


def test_alerts_page_runs_the_watchs_rules_over_the_month(backend, tmp_path, request, sources):
    month_end = datetime(2026, 11, 1, tzinfo=UTC)
    events = [_event(i, month_end - timedelta(hours=h), {"team": "ml"}, "1.00") for i, h in enumerate(range(2, 40))]
    events += [_event(100 + m, month_end - timedelta(minutes=30 + m), {"team": "ml"}, "5.00") for m in (1, 2)]
    store = _open(backend, tmp_path, request)
    try:
        _write(store, events)
        page = read_page(store, "alerts", period_of("2026-10", datetime(2026, 11, 20, tzinfo=UTC)), sources)
    finally:
        store.close()
    spikes = [a for a in page.anomalies if a.rule == "spend_spike"]
    # $10 in the month's last hour against $1 an hour before: overall and for ml, not yet alerted.
    assert sorted(a.scope for a in spikes) == ["global", "team=ml"]
    assert all(a.spend == Decimal(10) and not a.alerted for a in spikes)
    assert spikes[0].window_start == datetime(2026, 10, 31, 23, tzinfo=UTC)
    assert len(page.hourly) == 31 * 24 and page.hourly[-1][1] == Decimal(10)
    assert page.settings["spike_multiple"] == 3 and "sinks" not in page.settings  # thresholds, never the sinks

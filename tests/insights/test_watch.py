"""The anomaly watch over a real SQLite ledger: generated traffic with one injected anomaly per rule, found by
``check_once``, sent once to a sink and stored; the quiet baseline alone raises nothing."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from margin.config import AlertsConfig
from margin.gateway.config import BudgetConfig
from margin.insights.alerts import AlertDispatcher, LogSink
from margin.insights.watch import check_once, day_bounds
from margin.store.sqlite import SQLiteLedger
from margin.usage import UsageEvent

# Mid-hour on a fixed day: the last complete UTC day is 2026-11-19, its baseline 2026-11-12..18.
NOW = datetime(2026, 11, 20, 10, 30, tzinfo=UTC)


def _event(i: int, when: datetime, cost: str, **fields) -> UsageEvent:
    values = {"served_model": "gpt-4o-mini", "key_id": "k-main", "tags": {"team": "ml"}, **fields}
    return UsageEvent(
        event_id=f"e{i}",
        request_id=f"r{i}",
        attempt=0,
        started_at=when,
        finished_at=when,
        status="ok",
        endpoint="chat.completions",
        requested_model="gpt-4o-mini",
        list_cost=Decimal(cost),
        effective_cost=Decimal(cost),
        **values,
    )


def _baseline(start: datetime, end: datetime, per_hour: int = 30, cost: str = "0.05") -> list[tuple]:
    """Steady traffic: ``per_hour`` requests of ``cost`` each hour in [start, end), 2% fallbacks."""
    rng = random.Random(7)
    out = []
    hour = start
    while hour < end:
        for j in range(per_hour):
            fields = {"fallback_from": "gpt-4o"} if rng.random() < 0.02 else {}
            out.append((hour + timedelta(minutes=j * 60 // per_hour), cost, fields))
        hour += timedelta(hours=1)
    return out


def _ledger(tmp_path, rows: list[tuple]) -> SQLiteLedger:
    async def go():
        ledger = SQLiteLedger(tmp_path / "ledger.db")
        for i, (when, cost, fields) in enumerate(rows):
            await ledger.write_event(_event(i, when, cost, **fields), wait=False)
        await ledger.flush()
        return ledger

    return asyncio.run(go())


def _check(ledger, settings=None, budgets=()):
    settings = settings or AlertsConfig()
    dispatcher = AlertDispatcher([LogSink()])
    return asyncio.run(check_once(ledger, dispatcher, settings, budget_rules=list(budgets), now=NOW))


def _rules(outcomes) -> dict[str, list]:
    found: dict[str, list] = {}
    for o in outcomes:
        found.setdefault(o.anomaly.rule, []).append(o.anomaly)
    return found


@pytest.fixture
def quiet(tmp_path):
    """Nine days of steady traffic up to NOW: $1.50 an hour, 30 requests an hour."""
    return _baseline(NOW - timedelta(days=9), NOW)


def test_steady_traffic_raises_nothing(tmp_path, quiet):
    ledger = _ledger(tmp_path, quiet)
    try:
        assert _check(ledger) == []
    finally:
        ledger.close()


def test_cost_per_request_jump_is_found_once(tmp_path, quiet):
    # The hour before NOW: the same 30 requests, each costing 4x (a prompt that grew): $6.00 vs $1.50.
    hour = NOW.replace(minute=0) - timedelta(hours=1)
    rows = [r for r in quiet if not hour <= r[0] < hour + timedelta(hours=1)]
    rows += [(hour + timedelta(minutes=2 * j), "0.20", {}) for j in range(30)]
    ledger = _ledger(tmp_path, rows)
    try:
        found = _rules(_check(ledger))
        jumps = [a for a in found["cost_per_request_jump"] if a.window_start == hour]
        assert {a.scope for a in jumps} == {"global", "team=ml"}
        assert jumps[0].value == Decimal("0.20") and jumps[0].baseline == Decimal("0.05")
        # $6.00 against a $1.50/h trailing average is also a spend spike (more than 3x).
        assert any(a.window_start == hour for a in found["spend_spike"])
        assert _check(ledger) == []  # deduplicated: nothing is sent twice
        stored = {a.kind for a in ledger.alerts()}
        assert {"cost_per_request_jump", "spend_spike"} <= stored
    finally:
        ledger.close()


def test_fallback_rate_rise_over_the_last_day(tmp_path, quiet):
    day_start, day_end = day_bounds(NOW)
    rows = [r for r in quiet if not day_start <= r[0] < day_end]
    # The last complete day: a quarter of the requests fell back (2% before).
    rows += [
        (when, cost, {"fallback_from": "gpt-4o"} if i % 4 == 0 else {})
        for i, (when, cost, _) in enumerate(_baseline(day_start, day_end))
    ]
    ledger = _ledger(tmp_path, rows)
    try:
        found = _rules(_check(ledger))
        rises = found["fallback_rate_rise"]
        assert {a.scope for a in rises} == {"global", "team=ml"}
        rise = rises[0]
        assert (rise.window_start, rise.window_end) == (day_start, day_end)
        assert rise.value == Decimal(180) / Decimal(720)  # 720 requests that day, every 4th fell back
        assert rise.baseline < Decimal("0.05")
        assert set(found) == {"fallback_rate_rise"}
    finally:
        ledger.close()


def test_a_model_and_a_key_suddenly_dominant(tmp_path, quiet):
    day_start, _ = day_bounds(NOW)
    # On the last complete day, a new key sends $40 to gpt-4o: more than half of the day's spend, none before.
    rows = quiet + [
        (day_start + timedelta(minutes=10 * j), "1.00", {"served_model": "gpt-4o", "key_id": "k-new"})
        for j in range(40)
    ]
    ledger = _ledger(tmp_path, rows)
    try:
        found = _rules(_check(ledger))
        shifts = {(a.subject, a.scope) for a in found["dominance_shift"]}
        assert shifts == {("model:gpt-4o", "global"), ("key:k-new", "global")}
        model = next(a for a in found["dominance_shift"] if a.subject == "model:gpt-4o")
        assert abs(model.value - Decimal(40) / Decimal(76)) < Decimal("1e-20")  # $40 of $76 ($36 + $40) that day
        assert model.baseline == 0
    finally:
        ledger.close()


def test_budget_thresholds_are_alerted_once_per_period(tmp_path, quiet):
    ledger = _ledger(tmp_path, quiet)
    try:
        month = BudgetConfig(name="monthly", scope="team", period="month", amount=Decimal("400"))
        spent = ledger.sum_effective_cost(NOW.replace(day=1, hour=0, minute=0), tags={"team": "ml"})
        assert Decimal(300) <= spent < Decimal(360)  # past 75% ($300), short of 90% ($360)
        day = BudgetConfig(name="daily", scope="global", period="day", amount=Decimal("100"))  # $15.75 today
        found = _rules(_check(ledger, budgets=[month, day]))
        crossed = found["budget_threshold"]
        assert [(a.scope, a.subject) for a in crossed] == [("budget monthly (team=ml, per month)", "threshold:0.75")]
        assert crossed[0].window_start == datetime(2026, 11, 1, tzinfo=UTC)
        assert crossed[0].window_end == datetime(2026, 12, 1, tzinfo=UTC)
        assert _check(ledger, budgets=[month, day]) == []
        renamed = month.model_copy(update={"name": "other"})  # a new budget would alert again...
        assert _check(ledger, AlertsConfig(budget_thresholds=False), budgets=[renamed]) == []  # ...unless off
    finally:
        ledger.close()

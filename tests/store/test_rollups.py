"""Hourly rollups: maintained by a trigger as events are written, backfilled when the migration runs on an
existing ledger, and always equal to the aggregates of usage_events they summarize."""

from __future__ import annotations

import asyncio
import random
import sqlite3
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from margin.store.migrations import MIGRATIONS
from margin.store.sqlite import SQLiteLedger
from margin.usage import UsageEvent

START = datetime(2026, 11, 1, tzinfo=UTC)


def _events(n: int, seed: int = 5) -> list[UsageEvent]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        when = START + timedelta(minutes=rng.randrange(0, 60 * 24 * 20))
        cost = Decimal(rng.randrange(0, 10**7)) / Decimal(10**12)  # sub-nano digits: rounded per event in nanos
        out.append(
            UsageEvent(
                event_id=f"e{i}",
                request_id=f"r{i}",
                attempt=0,
                started_at=when,
                finished_at=when,
                status=rng.choice(["ok", "ok", "ok", "cached", "upstream_error"]),
                endpoint="chat.completions",
                requested_model="m",
                served_model=rng.choice(["gpt-4o", "gpt-4o-mini", None]),
                tags=rng.choice([{"team": "ml"}, {"team": "web", "feature": "x"}, {}]),
                input_tokens=rng.randrange(0, 5000),
                output_tokens=rng.randrange(0, 500),
                list_cost=cost,
                effective_cost=cost,
                avoided_cost=cost if rng.random() < 0.2 else Decimal(0),
                fallback_from="gpt-4o" if rng.random() < 0.1 else None,
            )
        )
    return out


def _write(path, events):
    async def go():
        ledger = SQLiteLedger(path)
        for e in events:
            await ledger.write_event(e, wait=False)
        await ledger.aclose()

    asyncio.run(go())


def _compare(path):
    with sqlite3.connect(path) as db:
        from_events = db.execute(
            "SELECT substr(finished_at,1,13), COALESCE(served_model,''), status, tags, COUNT(*), SUM(input_tokens), "
            "SUM(output_tokens), SUM(effective_cost_nanos), SUM(avoided_cost_nanos), "
            "SUM(fallback_from IS NOT NULL) FROM usage_events GROUP BY 1,2,3,4 ORDER BY 1,2,3,4"
        ).fetchall()
        rolled = db.execute(
            "SELECT hour, served_model, status, tags, requests, input_tokens, output_tokens, effective_cost_nanos, "
            "avoided_cost_nanos, fallback_events FROM rollup_hourly ORDER BY 1,2,3,4"
        ).fetchall()
    assert rolled == from_events and len(rolled) > 10
    assert sum(row[-1] for row in rolled) > 0


def test_rollups_follow_every_write(tmp_path):
    path = tmp_path / "ledger.db"
    _write(path, _events(3000))
    _compare(path)


@pytest.mark.parametrize("missing", [{"m009_rollup_hourly", "m010_rollup_fallbacks"}, {"m010_rollup_fallbacks"}])
def test_the_migration_backfills_an_existing_ledger(tmp_path, missing):
    # A ledger written before the rollup migrations (the later column migrations applied, so today's insert
    # works), then opened with every migration: they backfill from the events already there.
    path = tmp_path / "ledger.db"
    before = [m for m in MIGRATIONS if m[0] not in missing]

    async def old_ledger():
        ledger = SQLiteLedger(path, migrations=before)
        for e in _events(1000, seed=9):
            await ledger.write_event(e, wait=False)
        await ledger.aclose()

    asyncio.run(old_ledger())
    _write(path, _events(500, seed=10)[:0])  # opening with every migration backfills
    _write(path, [e.__class__(**{**vars(e), "event_id": "new-" + e.event_id}) for e in _events(200, seed=11)])
    _compare(path)


def test_overview_matches_spend(tmp_path):
    path = tmp_path / "ledger.db"
    events = _events(2000)
    _write(path, events)
    ledger = SQLiteLedger(path)
    try:
        doc = ledger.overview(START, START + timedelta(days=30))
        spend = ledger.spend(START, START + timedelta(days=30))[0]
        assert doc["total"]["requests"] == len(events)
        assert abs(doc["total"]["effective_cost"] - spend.effective_cost) <= Decimal("1e-9") * len(events)
        assert sum(r["requests"] for r in doc["by_day"]) == len(events)
        teams = {r["group"]: r["requests"] for r in doc["by_team"]}
        assert teams["ml"] == sum(1 for e in events if e.tags.get("team") == "ml")
        assert teams[None] == sum(1 for e in events if "team" not in e.tags)
    finally:
        ledger.close()

"""What only the PostgreSQL ledger has to prove: its schema, migrations applied once by two processes starting
together, rollups exact under two processes writing the same cells, reservations owned per instance, the
failed state when the server goes away and recovery when it is back, with nothing acknowledged lost."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from margin.store.base import LedgerError
from margin.store.migrations import MIGRATIONS, Dialects
from tests.pg_server import PostgresServer, start_server

from .conftest import T0, event
from .test_ledger_rows import reservation

psycopg = pytest.importorskip("psycopg")
from margin.store.postgres import PostgresLedger  # noqa: E402

NAMES = [name for name, _ in MIGRATIONS]
WRITER = Path(__file__).with_name("pg_writer_process.py")


def query(url: str, sql: str, params: tuple = ()) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql, params).fetchall()


# -- schema and migrations --------------------------------------------------------------------------------------


def test_open_applies_every_migration_once_and_records_it(pg_empty_database):
    PostgresLedger(pg_empty_database).close()
    recorded = query(pg_empty_database, "SELECT name, applied_at FROM migrations ORDER BY applied_at, name")
    assert [name for name, _ in recorded] == NAMES
    PostgresLedger(pg_empty_database).close()
    assert query(pg_empty_database, "SELECT name, applied_at FROM migrations ORDER BY applied_at, name") == recorded


def test_schema_types_indexes_and_monthly_partitions(pg_database):
    PostgresLedger(pg_database).close()
    types = dict(
        query(
            pg_database,
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'usage_events'",
        )
    )
    for money in ("list_cost", "effective_cost", "reserved_cost", "avoided_cost"):
        assert types[money] == "numeric"  # exact, never float
        assert types[f"{money}_nanos"] == "bigint"
    assert types["finished_at"] == "timestamp with time zone"
    assert types["tags"] == types["decisions"] == "jsonb"
    indexes = " ".join(row[0] for row in query(pg_database, "SELECT indexdef FROM pg_indexes"))
    assert "USING gin (tags jsonb_path_ops)" in indexes
    now = datetime.now(UTC)
    partitions = {row[0] for row in query(pg_database, "SELECT inhrelid::regclass::text FROM pg_inherits")}
    assert f"usage_events_{now:%Y_%m}" in partitions  # this month is created when the ledger opens


def test_a_migration_added_later_runs_exactly_once_and_a_failing_one_is_rolled_back(pg_database):
    later = [*MIGRATIONS, ("m900_extra", "CREATE TABLE extra (x INTEGER); INSERT INTO extra VALUES (1);")]
    PostgresLedger(pg_database, migrations=later).close()
    PostgresLedger(pg_database, migrations=later).close()
    assert query(pg_database, "SELECT COUNT(*) FROM extra") == [(1,)]
    broken = [*later, ("m901_broken", Dialects(sqlite="", postgres="CREATE TABLE half (x INT); SELECT nope;"))]
    with pytest.raises(LedgerError, match="nope"):
        PostgresLedger(pg_database, migrations=broken)
    assert query(pg_database, "SELECT to_regclass('half')") == [(None,)]  # DDL is transactional here
    assert "m901_broken" not in {n for (n,) in query(pg_database, "SELECT name FROM migrations")}


def test_two_processes_start_together_on_an_empty_database_and_write_the_same_rollup_cells(pg_empty_database):
    """Both apply the migrations at the same moment (each applied once, under the advisory lock), create the
    same month partitions on demand, and write 2 x 1500 events into the same hourly rollup cells."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    processes = [
        subprocess.Popen(
            [sys.executable, str(WRITER), pg_empty_database, str(n), "1500"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for n in (1, 2)
    ]
    outputs = [p.communicate(timeout=120) for p in processes]
    for process, (out, err) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, err
        assert out.split() == ["ready", "done", "1500"]
    names = [n for (n,) in query(pg_empty_database, "SELECT name FROM migrations ORDER BY name")]
    assert names == sorted(NAMES)  # each once
    from_events = query(
        pg_empty_database,
        "SELECT date_trunc('hour', finished_at, 'UTC'), COALESCE(served_model, ''), status, tags, COUNT(*), "
        "SUM(input_tokens), SUM(output_tokens), SUM(effective_cost_nanos) FROM usage_events "
        "GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4",
    )
    rolled = query(
        pg_empty_database,
        "SELECT hour, served_model, status, tags, requests, input_tokens, output_tokens, effective_cost_nanos "
        "FROM rollup_hourly ORDER BY 1, 2, 3, 4",
    )
    assert sum(row[4] for row in rolled) == 3000 and len(rolled) > 20
    assert rolled == from_events
    months = {row[0] for row in query(pg_empty_database, "SELECT inhrelid::regclass::text FROM pg_inherits")}
    assert {"usage_events_2026_11", "usage_events_2026_12"} <= months


def test_the_rollup_migration_backfills_an_existing_ledger(pg_empty_database):
    before = [m for m in MIGRATIONS if m[0] not in ("m009_rollup_hourly", "m010_rollup_fallbacks")]

    async def write(ledger, numbers):
        for n in numbers:
            fallback = {"fallback_from": "gpt-4o"} if n % 7 == 0 else {}
            await ledger.write_event(
                event(n, finished_at=T0 + timedelta(minutes=13 * n), tags={"team": f"t{n % 3}"}, **fallback)
            )

    with PostgresLedger(pg_empty_database, migrations=before) as old:
        asyncio.run(write(old, range(200)))
    with PostgresLedger(pg_empty_database) as upgraded:  # m009 runs now, over the 200 events already there
        asyncio.run(write(upgraded, range(200, 300)))
    from_events = query(
        pg_empty_database,
        "SELECT date_trunc('hour', finished_at, 'UTC'), tags, COUNT(*), SUM(effective_cost_nanos), "
        "COUNT(*) FILTER (WHERE fallback_from IS NOT NULL) FROM usage_events "
        "GROUP BY 1, 2 ORDER BY 1, 2",
    )
    rolled = query(
        pg_empty_database,
        "SELECT hour, tags, requests, effective_cost_nanos, fallback_events FROM rollup_hourly ORDER BY 1, 2",
    )
    assert rolled == from_events and sum(row[2] for row in rolled) == 300
    assert sum(row[4] for row in rolled) == 43  # n % 7 == 0 for n in 0..299: the backfill and the trigger


def test_overview_and_breakdowns_from_rollups_match_the_events(ledger_pg):
    async def write():
        for i in range(300):
            when = T0 + timedelta(minutes=17 * i)
            tags = ({"team": "ml", "feature": "chat"}, {"team": "web"}, {})[i % 3]
            await ledger_pg.write_event(event(i, finished_at=when, tags=tags, effective_cost=Decimal(i) / 1000))

    asyncio.run(write())
    since, until = T0, T0 + timedelta(days=7)
    doc = ledger_pg.overview(since, until)
    total = ledger_pg.spend(since, until)[0]
    assert doc["total"]["requests"] == 300 and doc["total"]["effective_cost"] == total.effective_cost
    by_team = {r["group"]: r["effective_cost"] for r in doc["by_team"]}
    assert by_team == {r.group: r.effective_cost for r in ledger_pg.spend(since, until, "team")}
    weeks = ledger_pg.rollup_breakdown(since, until, "week")
    assert sum(r["requests"] for r in weeks) == 300 and [r["group"] for r in weeks] == sorted(r["group"] for r in weeks)
    hours = ledger_pg.hourly_spend(since, until)
    assert hours[0][0] == "2026-11-23T12" and sum(h[3] for h in hours) == 300


@pytest.fixture
def ledger_pg(pg_database):
    store = PostgresLedger(pg_database)
    yield store
    store.close()


# -- reservations are owned per ledger instance ------------------------------------------------------------------


def test_start_up_recovery_charges_only_reservations_of_instances_that_are_gone(pg_database):
    first, second = PostgresLedger(pg_database), PostgresLedger(pg_database)
    try:
        asyncio.run(first.open_reservation(reservation(1, "0.75")))
        asyncio.run(second.open_reservation(reservation(2, "0.50")))
        assert first.reservations_held == 1
        # The first instance is alive (it holds its owner lock): a third starting charges nothing of it.
        with PostgresLedger(pg_database) as third:
            assert third.reconcile_open_reservations(T0) == []
        first.close()  # stands in for a crash: the session (and its lock) is gone
        with PostgresLedger(pg_database) as restarted:
            charged = restarted.reconcile_open_reservations(T0 + timedelta(hours=1))
            assert [e.request_id for e in charged] == ["req-1"]
            assert [r.reservation_id for r in restarted.open_reservations()] == ["res-2"]
            assert restarted.sum_effective_cost(T0) == Decimal("0.75")
        assert asyncio.run(second.settle(event(2, request_id="req-2"), "res-2")) is True
        assert second.reservations_held == 0
    finally:
        first.close()
        second.close()


def test_nul_characters_are_stored_as_replacement_characters_not_a_failed_ledger(ledger_pg):
    asyncio.run(ledger_pg.write_event(event(1, requested_model="gpt\x00x", tags={"team": "a\x00b"})))
    (back,) = ledger_pg.events()
    assert back.requested_model == "gpt\ufffdx" and back.tags == {"team": "a\ufffdb"}
    assert ledger_pg.failed is None


def test_kill_9_of_a_gateway_process_loses_nothing_acknowledged_and_its_reservations_are_charged(pg_database):
    process = subprocess.Popen(
        [sys.executable, str(WRITER), pg_database, "7", "crash"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    printed: list[str] = []
    try:
        assert process.stdout is not None
        for line in process.stdout:
            printed.append(line)
            if len(printed) >= 600:
                break
        process.send_signal(signal.SIGKILL)  # mid-way through some group commit, no cleanup
        rest, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    printed += rest.splitlines(keepends=True)
    lines = [line.split() for line in printed if line.endswith("\n")]  # a cut-off last line acknowledges nothing
    reserved = {rid for kind, rid in lines if kind == "R"}
    settled = {rid for kind, rid in lines if kind == "E"}
    assert len(reserved) >= 300
    deadline = time.monotonic() + 10
    with PostgresLedger(pg_database) as ledger:
        charged: list = []
        while True:  # the server ends the killed process's session (and frees its owner lock) on its own
            charged += ledger.reconcile_open_reservations(datetime.now(UTC))
            if not ledger.open_reservations() or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert ledger.open_reservations() == []
        events = {e.event_id: e for e in ledger.events(limit=100_000)}
    assert settled <= set(events)  # every acknowledged settle is there
    for rid in reserved - settled:  # every acknowledged reservation: settled after all, or charged at worst case
        assert rid in events or events[f"reconciled-{rid}"].effective_cost == Decimal("0.5")
    assert {e.reservation_id for e in charged}.isdisjoint(settled)  # never charged twice


# -- the server goes away ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def own_server(pg_server) -> PostgresServer:
    """A server of this module's own, to stop and start (the session's serves every other test)."""
    server = start_server()
    yield server
    server.destroy()


def test_an_unreachable_server_fails_the_ledger_closed_and_it_recovers_with_nothing_acknowledged_lost(own_server):
    url = own_server.create_database("ledger")
    ledger = PostgresLedger(url, pool_timeout=1.0, recovery_interval_s=0.2)
    acknowledged: list[str] = []

    async def write(numbers) -> list[BaseException | None]:
        async def one(n: int) -> None:
            await ledger.write_event(event(n))
            acknowledged.append(f"ev-{n}")

        return await asyncio.gather(*(one(n) for n in numbers), return_exceptions=True)

    try:
        assert asyncio.run(write(range(200))) == [None] * 200
        own_server.stop()  # mid-test, with the ledger open and its pool full of connections
        results = asyncio.run(write(range(200, 260)))
        assert results and all(isinstance(r, LedgerError) for r in results)
        assert ledger.failed is not None and "reachable again" in str(results[-1])
        started = time.perf_counter()
        with pytest.raises(LedgerError, match="accepts no writes"):
            asyncio.run(ledger.write_event(event(999)))  # refused at once: the gateway answers 503
        assert time.perf_counter() - started < 0.5

        own_server.start()
        deadline = time.monotonic() + 15
        while ledger.failed is not None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert ledger.failed is None, "the ledger did not recover after the server came back"
        assert asyncio.run(write(range(300, 350))) == [None] * 50
    finally:
        ledger.close()
    stored = {row[0] for row in query(url, "SELECT event_id FROM usage_events")}
    assert set(acknowledged) <= stored and len(acknowledged) == 250
    assert not stored & {f"ev-{n}" for n in range(200, 260)}  # refused writes were rolled back, not half-written


def test_opening_an_unreachable_server_says_what_to_check(own_server):
    url = own_server.url("postgres")
    own_server.stop()
    try:
        with pytest.raises(LedgerError, match=r"(?s)cannot open the PostgreSQL ledger at .*is the server running"):
            PostgresLedger(url, pool_timeout=1.0)
    finally:
        own_server.start()


def test_the_password_never_appears_in_errors_or_descriptions(pg_server):
    url = pg_server.url("no_such_database").replace("margin_test@", "margin_test:s3cret@")
    with pytest.raises(LedgerError) as caught:
        PostgresLedger(url, pool_timeout=1.0)
    assert "s3cret" not in str(caught.value) and "no_such_database" in str(caught.value)


def test_replaying_lost_writes_is_exactly_once(pg_database):
    """After a lost connection a batch's commit is ambiguous: replay writes a settle only while its reservation
    is open, and an event only when its id is absent."""
    from psycopg import AsyncConnection

    from margin.store._pg_writer import PgOp, replay_lost
    from margin.store.postgres import _pg_event_row

    with PostgresLedger(pg_database) as ledger:
        asyncio.run(ledger.open_reservation(reservation(1)))
        asyncio.run(ledger.open_reservation(reservation(2)))
        asyncio.run(ledger.settle(event(2, reservation_id="res-2"), "res-2"))  # this one had committed
        asyncio.run(ledger.write_event(event(3)))  # and so had this one
        lost = [
            PgOp("settle", _pg_event_row(event(1, reservation_id="res-1")), "res-1"),
            PgOp("settle", _pg_event_row(event(2, reservation_id="res-2")), "res-2"),
            PgOp("event", _pg_event_row(event(3))),
            PgOp("event", _pg_event_row(event(4))),
        ]

        async def replay():
            async with await AsyncConnection.connect(pg_database) as conn:
                async with conn.transaction():
                    return await replay_lost(conn, lost, ledger.owner)

        assert asyncio.run(replay()) == (2, 2)  # event 1 (its reservation was open) and event 4
        assert asyncio.run(replay()) == (0, 4)  # a second replay writes nothing
        ids = sorted(e.event_id for e in ledger.events(limit=100))
        assert ids == ["ev-1", "ev-2", "ev-3", "ev-4"]
        assert ledger.open_reservations() == []

"""One month of synthetic usage events written into a fresh ledger through its real schema: shared by
``bench/insights/run.py`` (report latency) and ``bench/dashboard/run.py`` (dashboard pages).

The events: 10 teams x 4 features x 6 models x 2 statuses, timestamps spread uniformly over the 30 days from
:data:`START` (in random order), costs up to $0.005 each; seeded, so every run writes the same ledger. SQLite:
``executemany`` in transactions of 10,000 (the gateway's writer batches smaller, but the trigger's per-row work
is the same). PostgreSQL: ``COPY`` in statements of 10,000 rows (the rollup trigger runs once per statement),
then ``VACUUM ANALYZE``. Either way every index and the hourly-rollup trigger fire as in production.

Import it with ``sys.path.insert(0, str(REPO / "bench"))`` (the scripts under bench/ are not a package).
"""

from __future__ import annotations

import random
import sqlite3
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from margin.store._rows import _EVENT_COLUMNS, _INSERT_EVENT, _event_row
from margin.store.sqlite import SQLiteLedger
from margin.usage import UsageEvent

REPO = Path(__file__).resolve().parents[1]

START = datetime(2026, 11, 1, tzinfo=UTC)
END = START + timedelta(days=30)
PERIOD = "2026-11"  # the month START..END covers
MODELS = ["gpt-4o", "gpt-4o-mini", "claude-sonnet-4-6", "claude-haiku-4-5", "gpt-4.1", "text-embedding-3-small"]
TEAMS = [f"team-{i}" for i in range(10)]
FEATURES = ["search", "chat", "summary", "agent"]
BATCH = 10_000


def rows(n: int, seed: int = 1) -> Iterator[tuple]:
    """``n`` usage-event rows (the ledger's column order) for the month from :data:`START`."""
    rng = random.Random(seed)
    for i in range(n):
        when = START + timedelta(seconds=rng.randrange(0, 30 * 86400))
        cost = Decimal(rng.randrange(1, 5_000_000)) / Decimal(10**9)
        yield _event_row(
            UsageEvent(
                event_id=f"{i:012d}",
                request_id=f"{i:012d}",
                attempt=0,
                started_at=when,
                finished_at=when,
                status="ok" if rng.random() < 0.95 else "upstream_error",
                endpoint="chat.completions",
                requested_model="m",
                served_model=rng.choice(MODELS),
                tags={"team": rng.choice(TEAMS), "feature": rng.choice(FEATURES)},
                input_tokens=rng.randrange(10, 4000),
                output_tokens=rng.randrange(1, 800),
                list_cost=cost,
                effective_cost=cost,
            )
        )


@dataclass(frozen=True)
class Filled:
    events: int
    write_s: float  # wall seconds of the inserts (the trigger's rollup upserts included)
    rollup_rows: int
    size_bytes: int  # the database file (SQLite) or pg_database_size after VACUUM ANALYZE (PostgreSQL)


def fill_sqlite(path: Path, events: int, seed: int = 1) -> Filled:
    """A new SQLite ledger at ``path`` (every migration applied) holding ``events`` events."""
    SQLiteLedger(path).close()  # the real schema, every migration
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    started = time.perf_counter()
    batch: list[tuple] = []
    for row in rows(events, seed):
        batch.append(row)
        if len(batch) == BATCH:
            conn.execute("BEGIN")
            conn.executemany(_INSERT_EVENT, batch)
            conn.execute("COMMIT")
            batch.clear()
    if batch:
        conn.execute("BEGIN")
        conn.executemany(_INSERT_EVENT, batch)
        conn.execute("COMMIT")
    write_s = time.perf_counter() - started
    (rollup_rows,) = conn.execute("SELECT COUNT(*) FROM rollup_hourly").fetchone()
    conn.close()
    return Filled(events, write_s, rollup_rows, path.stat().st_size)


def start_postgres() -> Any:
    """A throwaway PostgreSQL server from the installed binaries (tests/pg_server.py), fsync on, with the
    benchmarks' settings. Call ``.destroy()`` on it at the end."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from tests.pg_server import start_server

    return start_server(fsync=True, settings=("shared_buffers=1GB", "work_mem=64MB", "max_wal_size=4GB"))


def new_postgres_database(server_url: str, name: str) -> str:
    """Drop and create database ``name`` on the server at ``server_url`` (needs CREATEDB); its URL."""
    import psycopg

    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    return server_url.rsplit("/", 1)[0] + "/" + name


def fill_postgres(url: str, events: int, seed: int = 1) -> Filled:
    """The ledger's schema in the (empty) database at ``url``, then ``events`` events, then VACUUM ANALYZE."""
    import psycopg

    from margin.store.postgres import PostgresLedger

    PostgresLedger(url).close()  # the real schema, every migration
    copy_sql = f"COPY usage_events ({', '.join(_EVENT_COLUMNS)}) FROM STDIN"

    def copy(conn: Any, batch: list[tuple]) -> None:
        with conn.cursor().copy(copy_sql) as writer:
            for item in batch:
                writer.write_row(item)
        conn.commit()

    with psycopg.connect(url) as conn:
        conn.execute("SELECT margin_ensure_month_partition(%s)", (START,))
        conn.commit()
        started = time.perf_counter()
        batch: list[tuple] = []
        for row in rows(events, seed):
            batch.append(row)
            if len(batch) == BATCH:
                copy(conn, batch)
                batch.clear()
        if batch:
            copy(conn, batch)
        write_s = time.perf_counter() - started
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE")  # autovacuum's job in production; the timings after it assume it ran
        (rollup_rows,) = conn.execute("SELECT COUNT(*) FROM rollup_hourly").fetchone()  # type: ignore[misc]
        (size,) = conn.execute("SELECT pg_database_size(current_database())").fetchone()  # type: ignore[misc]
    return Filled(events, write_s, rollup_rows, size)

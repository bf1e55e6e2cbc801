#!/usr/bin/env python3
"""How fast is a month's overview on a large ledger? Writes N usage events for one month into a fresh SQLite
ledger (through its real schema: indexes and the hourly-rollup trigger fire on every insert), then times
``SQLiteLedger.overview`` (read from the rollups) and, for comparison, the same totals computed straight from
``usage_events``.

    .venv/bin/python bench/insights/run.py [--events 1000000] [--keep PATH] [--backend sqlite|postgres]

``--backend postgres`` does the same on a throwaway PostgreSQL server started from the installed binaries (fsync
on; see tests/pg_server.py) or on ``--postgres-url``'s server (a new database there): the events go in with COPY
in statements of 10,000 rows (the rollup trigger runs once per statement), then ``PostgresLedger.overview`` and
``spend`` are timed the same way.

Events are inserted with executemany in transactions of 10,000 (the gateway's writer batches smaller, but
the trigger's per-row work is the same); 40 tag sets x 6 models x 720 hours give ~170k rollup rows at most.
Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from margin.store._rows import _EVENT_COLUMNS, _INSERT_EVENT, _event_row
from margin.store.sqlite import SQLiteLedger
from margin.usage import UsageEvent

REPO = Path(__file__).resolve().parents[2]

START = datetime(2026, 11, 1, tzinfo=UTC)
MODELS = ["gpt-4o", "gpt-4o-mini", "claude-sonnet-4-6", "claude-haiku-4-5", "gpt-4.1", "text-embedding-3-small"]


def rows(n: int, seed: int):
    rng = random.Random(seed)
    teams = [f"team-{i}" for i in range(10)]
    features = ["search", "chat", "summary", "agent"]
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
                tags={"team": rng.choice(teams), "feature": rng.choice(features)},
                input_tokens=rng.randrange(10, 4000),
                output_tokens=rng.randrange(1, 800),
                list_cost=cost,
                effective_cost=cost,
            )
        )


def time_reads(ledger, events: int) -> tuple[float, float]:
    """(median seconds of 5 month overviews from the rollups, seconds of one month by team from the events)."""
    timings = []
    for _ in range(5):
        t = time.perf_counter()
        doc = ledger.overview(START, START + timedelta(days=30))
        timings.append(time.perf_counter() - t)
    assert doc["total"]["requests"] == events, doc["total"]
    t = time.perf_counter()
    raw = ledger.spend(START, START + timedelta(days=30), "team")
    raw_s = time.perf_counter() - t
    assert sum(r.requests for r in raw) == events
    return statistics.median(timings), raw_s


def print_table(what: str, events: int, rollup_rows: int, write_s: float, overview_s: float, raw_s: float) -> None:
    print(f"{what}, {events:,} events, {rollup_rows:,} rollup rows\n")
    print("| step | seconds |")
    print("|---|---|")
    print(f"| write {events:,} events (trigger maintains rollups) | {write_s:.1f} ({events / write_s:,.0f} events/s) |")
    print(f"| month overview from rollups (median of 5; totals, by model, team, status, day) | {overview_s:.3f} |")
    print(f"| same month by team straight from usage_events (`margin spend --by team`) | {raw_s:.3f} |")


def run_postgres(events: int, url: str | None) -> None:
    import psycopg

    from margin.store.postgres import PostgresLedger

    server = None
    if url is None:
        sys.path.insert(0, str(REPO))
        from tests.pg_server import start_server

        server = start_server(fsync=True, settings=("shared_buffers=1GB", "work_mem=64MB", "max_wal_size=4GB"))
        url = server.url()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS margin_insights_bench")
        conn.execute("CREATE DATABASE margin_insights_bench")
    url = url.rsplit("/", 1)[0] + "/margin_insights_bench"
    try:
        PostgresLedger(url).close()  # the real schema, every migration
        copy_sql = f"COPY usage_events ({', '.join(_EVENT_COLUMNS)}) FROM STDIN"
        with psycopg.connect(url) as conn:
            conn.execute("SELECT margin_ensure_month_partition(%s)", (START,))
            conn.commit()
            started = time.perf_counter()
            batch: list[tuple] = []
            for row in rows(events, seed=1):
                batch.append(row)
                if len(batch) == 10_000:
                    with conn.cursor().copy(copy_sql) as copy:
                        for item in batch:
                            copy.write_row(item)
                    conn.commit()
                    batch.clear()
            if batch:
                with conn.cursor().copy(copy_sql) as copy:
                    for item in batch:
                        copy.write_row(item)
                conn.commit()
            write_s = time.perf_counter() - started
            conn.autocommit = True
            conn.execute("VACUUM ANALYZE")  # autovacuum's job in production; the timings below assume it ran
            (rollup_rows,) = conn.execute("SELECT COUNT(*) FROM rollup_hourly").fetchone()  # type: ignore[misc]
            (size,) = conn.execute("SELECT pg_database_size(current_database())").fetchone()  # type: ignore[misc]
        ledger = PostgresLedger(url)
        try:
            overview_s, raw_s = time_reads(ledger, events)
        finally:
            ledger.close()
        print_table(f"PostgreSQL ledger ({size / 1e6:,.0f} MB)", events, rollup_rows, write_s, overview_s, raw_s)
    finally:
        if server is not None:
            server.destroy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--keep", type=Path, help="write the ledger here (else a temporary directory)")
    ap.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    ap.add_argument("--postgres-url", help="a server to use instead of a throwaway one (needs CREATEDB)")
    a = ap.parse_args()
    if a.backend == "postgres":
        run_postgres(a.events, a.postgres_url)
        return
    path = a.keep or Path(tempfile.mkdtemp(prefix="margin-insights-bench-")) / "ledger.db"
    SQLiteLedger(path).close()  # the real schema, every migration
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    started = time.perf_counter()
    batch = []
    for row in rows(a.events, seed=1):
        batch.append(row)
        if len(batch) == 10_000:
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

    ledger = SQLiteLedger(path)
    try:
        overview_s, raw_s = time_reads(ledger, a.events)
    finally:
        ledger.close()
    size = path.stat().st_size / 1e6
    print_table(f"Ledger {path} ({size:,.0f} MB)", a.events, rollup_rows, write_s, overview_s, raw_s)


if __name__ == "__main__":
    main()

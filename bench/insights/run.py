#!/usr/bin/env python3
"""How fast is a month's overview on a large ledger? Writes N usage events for one month into a fresh SQLite
ledger (through its real schema: indexes and the hourly-rollup trigger fire on every insert), then times
``SQLiteLedger.overview`` (read from the rollups) and, for comparison, the same totals computed straight from
``usage_events``.

    .venv/bin/python bench/insights/run.py [--events 1000000] [--keep PATH]

Events are inserted with executemany in transactions of 10,000 (the gateway's writer batches smaller, but
the trigger's per-row work is the same); 40 tag sets x 6 models x 720 hours give ~170k rollup rows at most.
Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from margin.store._rows import _INSERT_EVENT, _event_row
from margin.store.sqlite import SQLiteLedger
from margin.usage import UsageEvent

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--keep", type=Path, help="write the ledger here (else a temporary directory)")
    a = ap.parse_args()
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
        timings = []
        for _ in range(5):
            t = time.perf_counter()
            doc = ledger.overview(START, START + timedelta(days=30))
            timings.append(time.perf_counter() - t)
        assert doc["total"]["requests"] == a.events, doc["total"]
        t = time.perf_counter()
        raw = ledger.spend(START, START + timedelta(days=30), "team")
        raw_s = time.perf_counter() - t
        assert sum(r.requests for r in raw) == a.events
    finally:
        ledger.close()
    print(f"Ledger {path} ({path.stat().st_size / 1e6:,.0f} MB), {a.events:,} events, {rollup_rows:,} rollup rows\n")
    print("| step | seconds |")
    print("|---|---|")
    rate = a.events / write_s
    print(f"| write {a.events:,} events (trigger maintains rollups) | {write_s:.1f} ({rate:,.0f} events/s) |")
    overview_s = statistics.median(timings)
    print(f"| month overview from rollups (median of 5; totals, by model, team, status, day) | {overview_s:.3f} |")
    print(f"| same month by team straight from usage_events (`margin spend --by team`) | {raw_s:.3f} |")


if __name__ == "__main__":
    main()

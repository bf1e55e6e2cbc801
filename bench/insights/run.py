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

The events and how they are written: bench/ledger_fill.py (shared with bench/dashboard/run.py). SQLite: executemany
in transactions of 10,000 (the gateway's writer batches smaller, but the trigger's per-row work is the same); 40 tag
sets x 6 models x 2 statuses x 720 hours give 345,600 rollup rows at most. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))

from ledger_fill import START, fill_postgres, fill_sqlite, new_postgres_database, start_postgres  # noqa: E402

from margin.store.sqlite import SQLiteLedger  # noqa: E402


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
    from margin.store.postgres import PostgresLedger

    server = None
    if url is None:
        server = start_postgres()
        url = server.url()
    try:
        url = new_postgres_database(url, "margin_insights_bench")
        filled = fill_postgres(url, events)
        ledger = PostgresLedger(url)
        try:
            overview_s, raw_s = time_reads(ledger, events)
        finally:
            ledger.close()
        what = f"PostgreSQL ledger ({filled.size_bytes / 1e6:,.0f} MB)"
        print_table(what, events, filled.rollup_rows, filled.write_s, overview_s, raw_s)
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
    filled = fill_sqlite(path, a.events)
    ledger = SQLiteLedger(path)
    try:
        overview_s, raw_s = time_reads(ledger, a.events)
    finally:
        ledger.close()
    size = path.stat().st_size / 1e6
    print_table(f"Ledger {path} ({size:,.0f} MB)", a.events, filled.rollup_rows, filled.write_s, overview_s, raw_s)


if __name__ == "__main__":
    main()

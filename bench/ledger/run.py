"""Benchmark of the ledger's write path (SQLite and PostgreSQL): events/second with group commit, await latency.

Run: .venv/bin/python bench/ledger/run.py [--events N] [--tasks T] [--backend sqlite|postgres|both]
PostgreSQL: a throwaway server is started from the installed binaries (fsync on, as in production; see
tests/pg_server.py) unless ``--postgres-url`` names one (each case then writes into a new database on it).
Each of T asyncio tasks writes its share of N usage events one after another, awaiting each write (which
returns only once committed), as the gateway does. Prints a Markdown table to paste into bench/README.md:
throughput, p50/p99 of the await latency, transactions committed, the mean batch per commit, and process CPU
(both threads, building the event included) per event. The ``batch_max=1`` rows turn group commit off (one
transaction per event) for comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from margin.store.sqlite import SQLiteLedger
from margin.usage import UsageEvent

REPO = Path(__file__).resolve().parents[2]


def make_event(task: int, number: int, now: datetime) -> UsageEvent:
    event_id = f"t{task}-e{number}"
    return UsageEvent(
        event_id=event_id,
        request_id=event_id,
        attempt=0,
        started_at=now,
        finished_at=now,
        status="ok",
        endpoint="chat.completions",
        requested_model="gpt-4o-mini",
        served_model="gpt-4o-mini-2024-07-18",
        provider="openai",
        key_id=f"key-{task % 8}",
        tags={"team": f"team-{task % 4}", "feature": "chat", "user": f"user-{task}"},
        input_tokens=1200,
        cache_read_tokens=1024,
        output_tokens=250,
        usage_source="upstream",
        list_cost=Decimal("0.00030540"),
        effective_cost=Decimal("0.00027486"),
        price_source="genai-prices 0.2.3",
        latency_ms=840,
        ttft_ms=210,
        reserved_cost=Decimal("0.0026"),
    )


def percentile(sorted_values: list[float], fraction: float) -> float:
    index = min(len(sorted_values) - 1, max(0, round(fraction * (len(sorted_values) - 1))))
    return sorted_values[index]


async def run_case(database: Path | str, events: int, tasks: int, **options: object) -> dict[str, float]:
    if isinstance(database, Path):
        ledger = SQLiteLedger(database, **options)  # type: ignore[arg-type]
    else:
        from margin.store.postgres import PostgresLedger

        ledger = PostgresLedger(database, **options)  # type: ignore[arg-type,assignment]
    latencies: list[float] = []
    now = datetime.now(UTC)

    async def worker(task: int) -> None:
        share = events // tasks + (1 if task < events % tasks else 0)
        for number in range(share):
            event = make_event(task, number, now)
            started = time.perf_counter()
            await ledger.write_event(event)
            latencies.append(time.perf_counter() - started)

    wall0, cpu0 = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker(task) for task in range(tasks)))
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    commits, written = ledger.commit_count, ledger.committed_items
    await ledger.aclose()
    latencies.sort()
    return {
        "events": written,
        "rate": written / wall,
        "p50": percentile(latencies, 0.50),
        "p99": percentile(latencies, 0.99),
        "mean": statistics.fmean(latencies),
        "commits": commits,
        "batch": written / commits,
        "cpu_us": cpu / written * 1e6,
    }


def postgres_databases(url: str | None):
    """Yield a function returning the URL of a new database per case, on ``url``'s server or a throwaway one."""
    import psycopg

    server = None
    if url is None:
        sys.path.insert(0, str(REPO))
        from tests.pg_server import start_server

        server = start_server(fsync=True, settings=("shared_buffers=256MB",))
        url = server.url()
    numbers = iter(range(1, 1000))

    def new_database() -> str:
        name = f"margin_bench_{next(numbers)}"
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'CREATE DATABASE "{name}"')
        return url.rsplit("/", 1)[0] + "/" + name

    try:
        yield new_database
    finally:
        if server is not None:
            server.destroy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=50_000, help="events per group-commit run")
    parser.add_argument("--tasks", type=int, default=64, help="concurrent writer tasks")
    parser.add_argument("--baseline-events", type=int, default=5_000, help="events for the batch_max=1 run")
    parser.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="sqlite")
    parser.add_argument("--postgres-url", help="a server to use instead of a throwaway one (needs CREATEDB)")
    args = parser.parse_args()

    sqlite_cases: list[tuple[str, int, dict[str, object]]] = [
        ("SQLite, group commit, synchronous=NORMAL (default)", args.events, {}),
        ("SQLite, group commit, synchronous=FULL", args.events, {"synchronous": "FULL"}),
        ("SQLite, no group commit (batch_max=1), NORMAL", args.baseline_events, {"batch_max": 1}),
        ("SQLite, no group commit (batch_max=1), FULL", args.baseline_events, {"batch_max": 1, "synchronous": "FULL"}),
    ]
    postgres_cases: list[tuple[str, int, dict[str, object]]] = [
        ("PostgreSQL, group commit (default)", args.events, {}),
        ("PostgreSQL, no group commit (batch_max=1)", args.baseline_events, {"batch_max": 1}),
    ]
    rows = []
    if args.backend in ("sqlite", "both"):
        with tempfile.TemporaryDirectory() as directory:
            for number, (name, events, options) in enumerate(sqlite_cases):
                result = asyncio.run(run_case(Path(directory) / f"ledger-{number}.db", events, args.tasks, **options))
                rows.append((name, result))
                print(f"done: {name}", file=sys.stderr)
    if args.backend in ("postgres", "both"):
        databases = postgres_databases(args.postgres_url)
        new_database = next(databases)
        try:
            for name, events, options in postgres_cases:
                rows.append((name, asyncio.run(run_case(new_database(), events, args.tasks, **options))))
                print(f"done: {name}", file=sys.stderr)
        finally:
            databases.close()

    print(f"{args.tasks} concurrent tasks, each awaiting its writes in turn (returns once committed).")
    print()
    print("| configuration | events | events/s | p50 await | p99 await | commits | events/commit | CPU/event |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, r in rows:
        print(
            f"| {name} | {r['events']:,.0f} | {r['rate']:,.0f} | {r['p50'] * 1e3:.2f} ms | {r['p99'] * 1e3:.2f} ms "
            f"| {r['commits']:,.0f} | {r['batch']:.1f} | {r['cpu_us']:.0f} µs |"
        )


if __name__ == "__main__":
    main()

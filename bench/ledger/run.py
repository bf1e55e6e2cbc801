"""Benchmark of the SQLite ledger's write path: events/second with group commit, and await latency.

Run: .venv/bin/python bench/ledger/run.py [--events N] [--tasks T]
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


async def run_case(path: Path, events: int, tasks: int, **options: object) -> dict[str, float]:
    ledger = SQLiteLedger(path, **options)  # type: ignore[arg-type]
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=50_000, help="events per group-commit run")
    parser.add_argument("--tasks", type=int, default=64, help="concurrent writer tasks")
    parser.add_argument("--baseline-events", type=int, default=5_000, help="events for the batch_max=1 run")
    args = parser.parse_args()

    cases: list[tuple[str, int, dict[str, object]]] = [
        ("group commit, synchronous=NORMAL (default)", args.events, {}),
        ("group commit, synchronous=FULL", args.events, {"synchronous": "FULL"}),
        ("no group commit (batch_max=1), NORMAL", args.baseline_events, {"batch_max": 1}),
        ("no group commit (batch_max=1), FULL", args.baseline_events, {"batch_max": 1, "synchronous": "FULL"}),
    ]
    rows = []
    with tempfile.TemporaryDirectory() as directory:
        for number, (name, events, options) in enumerate(cases):
            result = asyncio.run(run_case(Path(directory) / f"ledger-{number}.db", events, args.tasks, **options))
            rows.append((name, result))
            print(f"done: {name}", file=sys.stderr)

    print(f"{args.tasks} concurrent tasks, each awaiting its writes in turn; SQLite in a temporary directory.")
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

"""What shared budget counters in Redis add per request, against the in-process counters.

One command: starts a throwaway ``redis-server`` (temporary directory, free 127.0.0.1 port, no persistence),
then runs the gateway's per-request counter work with the in-process counters and with Redis, at 1 task
(latency) and at N concurrent tasks (throughput of one process), and prints a Markdown table. Two paths:

- ``2 trips`` (the gateway's): the room as last seen (no I/O), reserve, settle; both replies carry the
  counters' figures, which the response's budget headers use.
- ``4 trips`` (before 2026-11-24): a headroom read, reserve, settle, and a read for the budget headers.

    .venv/bin/python bench/redis/run.py [--requests 5000] [--tasks 64]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))  # the throwaway server of the tests (tests/redis_server.py)

from tests.redis_server import ServerUnavailable, start_server  # noqa: E402

from margin.gateway.backends._redis import RedisBackend  # noqa: E402
from margin.gateway.backends.redis_counters import RedisCounters  # noqa: E402
from margin.gateway.config import BudgetConfig  # noqa: E402
from margin.policy.budgets import RequestScope, applicable_budgets  # noqa: E402
from margin.policy.counters import MemoryCounters  # noqa: E402

NOW = datetime.now(UTC)
RULES = [
    BudgetConfig(name="global-daily", scope="global", period="day", amount=Decimal(10**9)),
    BudgetConfig(name="team-daily", scope="team", period="day", amount=Decimal(10**8)),
]


async def two_trips(counters, applied, index: int) -> float:
    started = time.perf_counter()
    counters.room_hint(applied)
    held, _figures = await counters.reserve_read(f"r{index}", applied, Decimal("0.0123456789"))
    await counters.settle_read(held, Decimal("0.0061728394"))
    return time.perf_counter() - started


async def four_trips(counters, applied, index: int) -> float:
    started = time.perf_counter()
    await counters.headroom(applied)
    held = await counters.reserve(f"r{index}", applied, Decimal("0.0123456789"))
    await counters.settle(held, Decimal("0.0061728394"))
    await counters.snapshots([b.counter for b in applied])
    return time.perf_counter() - started


async def measure(counters, requests: int, tasks: int, one_request) -> tuple[float, float, float, float]:
    """(p50 µs, p99 µs, requests/s, CPU µs per request) with ``tasks`` concurrent loops."""
    applied = applicable_budgets(RULES, RequestScope(key_id="k", tags={"team": "ml"}, model="m"), NOW)
    for i in range(200):  # warm-up: connections, scripts loaded, counters seeded
        await one_request(counters, applied, -i - 1)
    latencies: list[float] = []
    counter = iter(range(requests))

    async def loop() -> None:
        for index in counter:
            latencies.append(await one_request(counters, applied, index))

    wall, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(loop() for _ in range(tasks)))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99) - 1]
    return statistics.median(latencies) * 1e6, p99 * 1e6, requests / wall, cpu / requests * 1e6


async def run(requests: int, tasks: int, url: str) -> list[tuple[str, int, tuple[float, float, float, float]]]:
    rows = []
    for concurrency in (1, tasks):
        memory = await measure(MemoryCounters(), requests, concurrency, two_trips)
        rows.append(("in process", concurrency, memory))

        async def no_ledger(budget, now) -> Decimal:
            return Decimal(0)

        for name, path in (("redis (loopback), 2 trips", two_trips), ("redis (loopback), 4 trips", four_trips)):
            backend = RedisBackend(url, timeout_s=2.0)
            counters = RedisCounters(backend, seed_spend=no_ledger, clock=lambda: NOW)
            await counters.start()
            rows.append((name, concurrency, await measure(counters, requests, concurrency, path)))
            await counters.aclose()
            await backend.aclose()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--tasks", type=int, default=64)
    args = parser.parse_args()
    try:
        server = start_server()  # tests/redis_server.py: a free loopback port, no persistence, waits for PING
    except ServerUnavailable as exc:
        raise SystemExit(str(exc)) from None
    url = server.url
    try:
        rows = asyncio.run(run(args.requests, args.tasks, url))
    finally:
        server.stop()
        shutil.rmtree(server.directory, ignore_errors=True)
    print("| counters | concurrent tasks | p50 per request | p99 | requests/s (one process) | CPU per request |")
    print("|---|---|---|---|---|---|")
    for name, tasks, (p50, p99, rate, cpu) in rows:
        print(f"| {name} | {tasks} | {p50:,.0f} µs | {p99:,.0f} µs | {rate:,.0f} | {cpu:,.0f} µs |")


if __name__ == "__main__":
    main()

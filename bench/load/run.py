#!/usr/bin/env python3
"""A steady-rate load test of the real gateway: metering, budgets and the exact cache on, loopback only,
bounded in time and in requests.

Starts ``margin serve`` (built-in mock provider with a fixed latency, a fresh ledger in a temporary
directory, a global daily budget and a per-team monthly budget, an exact-cache lever route) and sends
requests at a constant rate, open loop: request i is due at ``start + i / rate`` whether or not earlier ones
have answered, and its latency counts from when it was due (so a stall is not hidden by waiting for it:
no coordinated omission). A share of the requests stream, a share repeat an earlier prompt (cache hits),
and each request carries one of ten teams' keys.

At the end it checks the promises: every answered request is in the ledger exactly once, and no budget's
spend is above its cap. Prints a Markdown table. Everything it starts, it stops.

    .venv/bin/python bench/load/run.py [--rate 100] [--duration 180] [--stream-share 0.2] [--repeat-share 0.3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path

import httpx2

HZ = os.sysconf("SC_CLK_TCK")
DAILY_BUDGET = Decimal(500)
TEAM_BUDGET = Decimal(60)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / HZ


CONFIG = """gateway:
  providers:
    - {{name: mock, type: mock, latency_ms: {latency_ms}, ms_per_token: 0.2}}
  budgets:
    - {{name: daily, scope: global, period: day, amount: {daily}}}
    - {{name: team-month, scope: team, period: month, amount: {team}}}
  levers:
    - name: cached
      match: {{models: [gpt-4o-mini]}}
      cache: {{ttl_seconds: 3600, scope: team}}
"""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(q * len(ordered) + 0.5) - 1))]


async def run_load(args: argparse.Namespace, base: str, keys: list[str]) -> tuple[list[dict], float]:
    rng = random.Random(args.seed)
    total = int(args.rate * args.duration)
    results: list[dict] = []
    limits = httpx2.Limits(max_connections=args.connections, max_keepalive_connections=args.connections)
    async with httpx2.AsyncClient(base_url=base, timeout=30, limits=limits) as client:

        async def one(i: int, due: float) -> None:
            team = i % len(keys)
            repeat = rng.random() < args.repeat_share and i >= 100
            content = f"question {rng.randrange(5)} for team {team}" if repeat else f"unique {i} {rng.random()}"
            stream = rng.random() < args.stream_share
            body = {
                "model": "gpt-4o-mini",
                "temperature": 0,
                "max_tokens": 300,
                "stream": stream,
                "messages": [{"role": "user", "content": content}],
            }
            if stream:
                body["stream_options"] = {"include_usage": True}
            headers = {"authorization": f"Bearer {keys[team]}"}
            record = {"status": None, "request_id": None, "stream": stream, "cache": None}
            try:
                if stream:
                    async with client.stream("POST", "/v1/chat/completions", json=body, headers=headers) as resp:
                        async for _ in resp.aiter_bytes():
                            pass
                else:
                    resp = await client.post("/v1/chat/completions", json=body, headers=headers)
                record["status"] = resp.status_code
                record["request_id"] = resp.headers.get("x-margin-request-id")
                record["cache"] = resp.headers.get("x-margin-cache")
            except httpx2.HTTPError as exc:
                record["status"] = type(exc).__name__
            record["latency_ms"] = (time.perf_counter() - due) * 1000
            results.append(record)

        start = time.perf_counter() + 0.5
        tasks = []
        for i in range(total):
            due = start + i / args.rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i, due)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - start
    return results, elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=float, default=100.0, help="requests per second (default 100)")
    ap.add_argument("--duration", type=float, default=180.0, help="seconds (default 180; at most 1800)")
    ap.add_argument("--stream-share", type=float, default=0.2)
    ap.add_argument("--repeat-share", type=float, default=0.3)
    ap.add_argument("--latency-ms", type=int, default=40, help="the mock upstream's latency")
    ap.add_argument("--connections", type=int, default=256)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    if not 0 < args.duration <= 1800 or not 0 < args.rate <= 2000:
        ap.error("bounded load only: --duration in (0, 1800] s and --rate in (0, 2000] per second")

    tmp = Path(tempfile.mkdtemp(prefix="margin-load-"))
    config = tmp / "margin.yaml"
    config.write_text(CONFIG.format(latency_ms=args.latency_ms, daily=DAILY_BUDGET, team=TEAM_BUDGET), encoding="utf-8")
    env = {**os.environ, "MARGIN_HOME": str(tmp / "home"), "MARGIN_MASTER_KEY": "mk-load"}
    env.pop("MARGIN_CONFIG", None)
    margin = [sys.executable, "-m", "margin", "--config", str(config)]
    keys = [
        subprocess.run(
            [*margin, "keys", "create", "--team", f"team-{t}"], env=env, check=True, capture_output=True, text=True
        ).stdout.strip()
        for t in range(10)
    ]
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = open(tmp / "gateway.log", "wb")
    gateway = subprocess.Popen([*margin, "serve", "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx2.get(base + "/health", timeout=1).status_code == 200:
                    break
            except httpx2.HTTPError:
                time.sleep(0.2)
        cpu_before = cpu_seconds(gateway.pid)
        results, elapsed = asyncio.run(run_load(args, base, keys))
        cpu_used = cpu_seconds(gateway.pid) - cpu_before
        httpx2.post(base + "/v1/margin/ledger/flush", headers={"authorization": "Bearer mk-load"}, timeout=30)
    finally:
        gateway.send_signal(signal.SIGTERM)
        try:
            gateway.wait(timeout=20)
        except subprocess.TimeoutExpired:
            gateway.kill()

    with sqlite3.connect(tmp / "home" / "ledger.db") as db:
        answered_ids = Counter(
            r for (r,) in db.execute("SELECT request_id FROM usage_events WHERE status IN ('ok', 'cached')")
        )
        total_spend = Decimal(
            db.execute("SELECT COALESCE(SUM(effective_cost_nanos), 0) FROM usage_events").fetchone()[0]
        )
        team_spend = db.execute(
            "SELECT json_extract(tags, '$.team'), SUM(effective_cost_nanos) FROM usage_events GROUP BY 1"
        ).fetchall()
    ok = [r for r in results if r["status"] == 200]
    ids = [r["request_id"] for r in ok]
    missing = [i for i in ids if answered_ids.get(i, 0) == 0]
    duplicated = [i for i, n in answered_ids.items() if n > 1]
    statuses = Counter(str(r["status"]) for r in results)
    latencies = [r["latency_ms"] for r in ok]
    hits = sum(1 for r in ok if r["cache"] == "hit")
    nanos = Decimal(10**9)
    over_team = [t for t, s in team_spend if Decimal(s) / nanos > TEAM_BUDGET * Decimal("1.10")]
    summary = {
        "requests": len(results),
        "rate_target": args.rate,
        "rate_achieved": round(len(results) / elapsed, 1),
        "duration_s": round(elapsed, 1),
        "statuses": dict(statuses),
        "error_rate": round(1 - len(ok) / len(results), 4),
        "p50_ms": round(statistics.median(latencies), 1),
        "p95_ms": round(percentile(latencies, 0.95), 1),
        "p99_ms": round(percentile(latencies, 0.99), 1),
        "max_ms": round(max(latencies), 1),
        "cache_hits": hits,
        "gateway_cpu_ms_per_request": round(cpu_used * 1000 / len(results), 3),
        "answered_missing_from_ledger": len(missing),
        "duplicated_in_ledger": len(duplicated),
        "spend_usd": str(total_spend / nanos),
        "teams_over_hard_cap": over_team,
    }
    print(json.dumps(summary), file=sys.stderr)
    print(
        f"| rate (target / achieved) | {args.rate:g} / {summary['rate_achieved']} req/s "
        f"over {summary['duration_s']} s |"
    )
    print("|---|---|")
    print(f"| requests, statuses | {len(results):,}: {', '.join(f'{k}: {v:,}' for k, v in sorted(statuses.items()))} |")
    print(f"| error rate | {summary['error_rate'] * 100:.2f}% |")
    print(
        f"| latency from due time, p50 / p95 / p99 / max | {summary['p50_ms']} / {summary['p95_ms']} / "
        f"{summary['p99_ms']} / {summary['max_ms']} ms (upstream {args.latency_ms} ms) |"
    )
    print(f"| cache hits | {hits:,} of {len(ok):,} answered |")
    print(f"| gateway CPU per request | {summary['gateway_cpu_ms_per_request']} ms |")
    print(f"| answered but missing from the ledger / duplicated | {len(missing)} / {len(duplicated)} |")
    print(f"| spend; teams above their hard cap | ${summary['spend_usd']}; {over_team or 'none'} |")
    if missing or duplicated or over_team:
        sys.exit(1)


if __name__ == "__main__":
    main()

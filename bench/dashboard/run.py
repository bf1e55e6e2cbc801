#!/usr/bin/env python3
"""How long does each dashboard page take to serve on a large ledger? Builds a ledger of N usage events for one
month (``bench/ledger_fill.py``, the generator ``bench/insights/run.py`` uses: the real schema, the rollup
trigger on every insert), or reuses one (``--ledger``), starts the real gateway app in this process
(``build_gateway`` + ``create_app``, driven through httpx2's ASGI transport as tests/dashboard/test_routes.py
does), signs in through the login form with the read-only dashboard key (the session cookie), then times every
page's full server response: one warm-up GET, then ``--repeat`` timed GETs of its HTML, body read.

    .venv/bin/python bench/dashboard/run.py [--events 1000000] [--repeat 5] [--keep PATH | --ledger PATH]
    .venv/bin/python bench/dashboard/run.py --backend postgres [--postgres-url URL]

A page is one HTML response: its charts' data is inline (``<script type="application/json">`` blocks drawn by
``/dashboard/static/dashboard.js``), it fetches no JSON of its own; plotly.min.js and dashboard.js are static,
cached for a year by the browser (timed once per run as rows of their own, gzip). ``--api`` also times each
page's JSON document (``/dashboard/api/<page>.json``: the same reads, no HTML).

The gateway's clock is fixed at ``--now`` (default 2026-11-30T23:00Z, the last hour of the synthetic month), so
every page shows the month as the current one: the overview computes its forecast and the budget rows (one
global and one per-team monthly budget are configured) whatever day the benchmark runs. Wall time is per request
(client and server share the process; the ASGI transport skips the socket and HTTP parsing, a few hundred µs at
most); CPU is the whole process's (every thread) over the request, so with PostgreSQL it leaves out the server's
own CPU. Also printed: the gateway's start-up on the ledger (``build_gateway`` rebuilds the budget counters from
the ledger, for the real current month: the fixed clock is set after it). Prints Markdown.

``--backend postgres``: the same on a throwaway PostgreSQL server (fsync on; tests/pg_server.py) or on
``--postgres-url``'s server (a new database there); ``--ledger postgresql://...`` reuses a filled database.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))

import httpx2  # noqa: E402
from ledger_fill import END, PERIOD, START, fill_postgres, fill_sqlite, new_postgres_database, start_postgres  # noqa: E402

from margin.config import MarginConfig  # noqa: E402
from margin.dashboard._reads import PAGES  # noqa: E402
from margin.dashboard._render import NAV  # noqa: E402
from margin.gateway.app import create_app  # noqa: E402
from margin.gateway.config import BudgetConfig, GatewayConfig  # noqa: E402
from margin.gateway.state import build_gateway  # noqa: E402

DASHBOARD_KEY = "md-dashboard-bench"
HTML = {"accept": "text/html,application/xhtml+xml"}
DEFAULT_NOW = datetime(2026, 11, 30, 23, 0, tzinfo=UTC)
# Monthly budgets near this workload's spend (~$2.5k per million events, a tenth of it per team): the overview
# shows a budget row for each, from the daily rollups.
BUDGETS_PER_MILLION = {"global": Decimal(3000), "team": Decimal(300)}


@dataclass
class Timing:
    name: str
    path: str
    status: int
    size: int
    first: float  # the warm-up request's wall seconds (not in the other columns)
    wall: list[float]
    cpu: list[float]


def _config(home: Path, events: int) -> MarginConfig:
    scale = Decimal(max(events, 1)) / Decimal(1_000_000)
    budgets = [
        BudgetConfig(name="all-month", scope="global", period="month", amount=BUDGETS_PER_MILLION["global"] * scale),
        BudgetConfig(
            name="team-0-month",
            scope="team",
            value="team-0",
            period="month",
            amount=BUDGETS_PER_MILLION["team"] * scale,
        ),
    ]
    return MarginConfig(home=str(home), gateway=GatewayConfig(budgets=budgets))


async def _time(client: httpx2.AsyncClient, name: str, path: str, repeat: int, headers: dict[str, str]) -> Timing:
    async def get() -> tuple[httpx2.Response, float, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        response = await client.get(path, headers=headers)  # returns once the whole body is read
        return response, time.perf_counter() - wall, time.process_time() - cpu

    warm, first, _ = await get()
    if warm.status_code != 200:
        raise SystemExit(f"{path}: HTTP {warm.status_code}: {warm.text[:500]}")
    timing = Timing(name, path, warm.status_code, warm.num_bytes_downloaded, first, [], [])
    for _ in range(repeat):
        response, wall, cpu = await get()
        if response.status_code != 200:
            raise SystemExit(f"{path}: HTTP {response.status_code}: {response.text[:500]}")
        timing.wall.append(wall)
        timing.cpu.append(cpu)
    return timing


async def _bench(gw, repeat: int, api: bool) -> tuple[list[Timing], int]:
    transport = httpx2.ASGITransport(app=create_app(gw))
    async with httpx2.AsyncClient(transport=transport, base_url="http://margin.test") as client:
        # Sign in as a browser does: the login form, then the session cookie on every request.
        login = await client.post("/dashboard/login", data={"key": DASHBOARD_KEY, "next": "/dashboard"})
        if login.status_code != 303 or "margin_dashboard" not in client.cookies:
            raise SystemExit(f"sign-in failed: HTTP {login.status_code} {login.text[:300]}")
        paths = {name: path for name, path, _ in NAV}
        timings = []
        for name in PAGES:
            path = f"/dashboard{paths[name]}?period={PERIOD}"
            timings.append(await _time(client, name, path, repeat, HTML))
            print(f"  {name}: median {statistics.median(timings[-1].wall):.3f} s", file=sys.stderr, flush=True)
        if api:
            for name in PAGES:
                timings.append(
                    await _time(client, f"{name}.json", f"/dashboard/api/{name}.json?period={PERIOD}", repeat, {})
                )
        for asset in ("plotly.min.js", "dashboard.js"):
            timings.append(
                await _time(client, asset, f"/dashboard/static/{asset}", repeat, {"accept-encoding": "gzip"})
            )
        check = await client.get(f"/dashboard/api/overview.json?period={PERIOD}")
        return timings, int(check.json()["total"]["requests"])


def _table(timings: list[Timing]) -> str:
    lines = [
        "| page | GET | bytes sent | first GET | median wall | max wall | median CPU |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for t in timings:
        lines.append(
            f"| {t.name} | `{t.path}` | {t.size / 1e3:,.0f} kB | {t.first:.3f} s | {statistics.median(t.wall):.3f} s | "
            f"{max(t.wall):.3f} s | {statistics.median(t.cpu):.3f} s |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--events", type=int, default=1_000_000, help="events to write (with --ledger: only scales the budgets)"
    )
    ap.add_argument("--repeat", type=int, default=5, help="timed requests per page, after one warm-up")
    ap.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    ap.add_argument("--ledger", help="reuse this filled ledger (a SQLite path or a postgresql:// URL)")
    ap.add_argument("--keep", type=Path, help="SQLite: write the new ledger here (else a temporary directory)")
    ap.add_argument("--postgres-url", help="a server to use instead of a throwaway one (needs CREATEDB)")
    ap.add_argument("--now", type=datetime.fromisoformat, default=DEFAULT_NOW, help="the gateway's clock (ISO)")
    ap.add_argument("--api", action="store_true", help="also time each page's JSON document")
    a = ap.parse_args()
    if a.now.tzinfo is None:
        a.now = a.now.replace(tzinfo=UTC)

    server = None
    home = Path(tempfile.mkdtemp(prefix="margin-dashboard-bench-"))  # MARGIN_HOME; the ledger too without --keep
    filled = None
    try:
        if a.ledger:
            database: str | Path = a.ledger if "://" in a.ledger else Path(a.ledger)
            if isinstance(database, Path) and not database.exists():
                raise SystemExit(f"--ledger {database}: no such file")
        elif a.backend == "postgres":
            if a.postgres_url is None:
                server = start_postgres()
            database = new_postgres_database(a.postgres_url or server.url(), "margin_dashboard_bench")
            print(f"writing {a.events:,} events into PostgreSQL ...", file=sys.stderr, flush=True)
            filled = fill_postgres(database, a.events)
        else:
            database = a.keep or home / "ledger.db"
            if database.exists():
                raise SystemExit(f"--keep {database} exists: remove it, or reuse it with --ledger {database}")
            print(f"writing {a.events:,} events into {database} ...", file=sys.stderr, flush=True)
            filled = fill_sqlite(database, a.events)
        if filled is not None:
            print(
                f"  {filled.write_s:.0f} s ({a.events / filled.write_s:,.0f} events/s), "
                f"{filled.rollup_rows:,} rollup rows",
                file=sys.stderr,
                flush=True,
            )
        if isinstance(database, Path):
            where = f"SQLite ledger {database} ({database.stat().st_size / 1e6:,.0f} MB)"
        else:
            where = "PostgreSQL ledger" + (f" ({filled.size_bytes / 1e6:,.0f} MB)" if filled else "")

        os.environ["MARGIN_DASHBOARD_KEY"] = DASHBOARD_KEY
        load_before = os.getloadavg()
        started, started_at = time.perf_counter(), datetime.now(UTC)
        gw = build_gateway(_config(home, filled.events if filled else a.events), database=database)
        startup_s = time.perf_counter() - started
        gw.clock = lambda: a.now
        try:
            timings, requests = asyncio.run(_bench(gw, a.repeat, a.api))
        finally:
            asyncio.run(gw.aclose())
        load_after = os.getloadavg()
    finally:
        if server is not None:
            server.destroy()
        shutil.rmtree(home, ignore_errors=True)

    print(
        f"Dashboard pages, {where}: {requests:,} requests in {PERIOD} "
        f"({START:%Y-%m-%d} to {END:%Y-%m-%d}); the gateway's clock at {a.now:%Y-%m-%dT%H:%MZ}; "
        f"first GET: the warm-up request; the other columns: {a.repeat} timed GETs after it.\n"
    )
    print(_table(timings))
    print(
        f"\nGateway start-up on this ledger (build_gateway: schema check, the two monthly budgets' counters rebuilt "
        f"from the ledger for the real current month, {started_at:%Y-%m}): {startup_s:.2f} s. "
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs, load average "
        f"{load_before[0]:.2f} before / {load_after[0]:.2f} after (1 min), "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC."
    )


if __name__ == "__main__":
    main()

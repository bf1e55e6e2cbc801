"""Operating figures: a hand-built month of six requests whose every figure is worked out in the comments, the
nearest-rank percentile's definition as a property, and ``margin report operations`` over a real ledger."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import math
import os
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from margin.insights.operations import GpuPool, operations, paid_hours, percentile
from margin.store.sqlite import SQLiteLedger
from margin.usage import UsageEvent

from ..cli.test_cli_prices_cost import run

T0 = datetime(2026, 11, 5, 12, tzinfo=UTC)


def _e(rid: str, attempt: int, status: str, route: str | None, cost: str = "0", **fields) -> UsageEvent:
    return UsageEvent(
        event_id=f"{rid}-{attempt}",
        request_id=rid,
        attempt=attempt,
        started_at=T0 + timedelta(minutes=attempt),
        finished_at=T0 + timedelta(minutes=attempt),
        status=status,
        endpoint="chat.completions",
        requested_model="m",
        route=route,
        served_model=route,
        effective_cost=Decimal(cost),
        list_cost=Decimal(cost),
        **fields,
    )


def month() -> list[UsageEvent]:
    alice, bob, carol = {"user": "alice"}, {"user": "bob"}, {"user": "carol"}
    return [
        # r1: answered on big, a cache miss.
        _e("r1", 0, "ok", "big", "0.010", input_tokens=100, cache="miss", tags=alice),
        # r2: a cache hit that avoided $0.010.
        _e("r2", 0, "cached", "big", cache="hit", avoided_cost=Decimal("0.010"), tags=alice),
        # r3: the cascade: small's answer failed validation ($0.001 wasted), big answered.
        _e("r3", 0, "ok", "small", "0.001", input_tokens=200, error_type="cascade_escalated", tags=bob),
        _e("r3", 1, "ok", "big", "0.010", input_tokens=200, fallback_from="small", tags=bob),
        # r4: two retries on big (429, timeout), then an answer; no user tag.
        _e("r4", 0, "upstream_error", "big", error_type="rate_limited"),
        _e("r4", 1, "upstream_error", "big", error_type="timeout"),
        _e("r4", 2, "ok", "big", "0.020", input_tokens=300),
        # r5: refused by a budget.
        _e("r5", 0, "rejected", None, error_type="budget_exceeded", tags=bob),
        # r6: big failed, the backup route (self-hosted on vllm) answered.
        _e("r6", 0, "upstream_error", "big", error_type="server_error", tags=carol),
        _e(
            "r6", 1, "ok", "backup", "0.005", input_tokens=1000, output_tokens=500, provider="vllm",
            fallback_from="big", tags=carol,
        ),
    ]  # fmt: skip


def test_every_figure_of_a_hand_built_month():
    pool = GpuPool(provider="vllm", gpus=2, gpu_hourly=Decimal("1.50"), hours=Decimal(10), tokens_per_gpu_hour=100)
    report = operations(month(), gpu_pools=[pool])
    assert report.events == 10
    assert report.answered_requests == 5  # r1, r2, r3, r4, r6; the rejected r5 is not answered
    assert report.total_cost == Decimal("0.046")  # 0.010 + 0.001 + 0.010 + 0.020 + 0.005
    assert report.cost_per_request == Decimal("0.0092")  # 0.046 / 5
    assert report.fallback_requests == 2  # r3 (escalation) and r6 (provider fallback)
    assert report.fallback_rate == Decimal("0.4")
    assert report.fallback_cost == Decimal("0.001")  # r3's rejected answer; r6's failed attempt cost nothing
    assert (report.cache_lookups, report.cache_hits, report.cache_hit_rate) == (2, 1, Decimal("0.5"))
    assert report.realized_savings == Decimal("0.010")
    assert (report.retries, report.retried_requests) == (2, 1)  # r4 only: changing route is not a retry
    assert report.upstream_errors == {"rate_limited": 1, "server_error": 1, "timeout": 1}
    assert report.rejections == {"budget_exceeded": 1}
    users = [(u["user"], u["answered_requests"], u["cost"], u["cost_per_request"]) for u in report.users]
    assert users == [
        ("(no user)", 1, Decimal("0.020"), Decimal("0.020")),
        ("bob", 1, Decimal("0.011"), Decimal("0.011")),  # the rejected request adds nothing
        ("alice", 2, Decimal("0.010"), Decimal("0.005")),
        ("carol", 1, Decimal("0.005"), Decimal("0.005")),
    ]
    routes = {r["route"]: (r["requests"], r["p50"], r["p95"], r["max"]) for r in report.prompt_tokens_by_route}
    assert routes == {"big": (3, 200, 300, 300), "small": (1, 200, 200, 200), "backup": (1, 1000, 1000, 1000)}
    (gpu,) = report.self_hosted
    assert gpu["gpu_hours"] == 20 and gpu["gpu_cost"] == Decimal("30.00")
    assert gpu["tokens_served"] == 1500
    assert gpu["utilization"] == Decimal("0.75")  # 1,500 / (20 GPU-hours x 100 tokens)
    assert gpu["effective_cost_per_used_gpu_hour"] == Decimal(2)  # $30 / 15 used GPU-hours
    assert gpu["cost_per_million_tokens"] == Decimal(20000)


def test_an_empty_month_has_no_rates():
    report = operations([])
    assert report.answered_requests == 0
    assert report.cost_per_request is None and report.fallback_rate is None and report.cache_hit_rate is None


@given(st.lists(st.integers(min_value=0, max_value=10**6), min_size=1), st.floats(min_value=0.01, max_value=1))
def test_percentile_is_the_nearest_rank(values, q):
    values.sort()
    p = percentile(values, q)
    assert p in values
    assert sum(v <= p for v in values) >= q * len(values) - 1e-9  # at least q of the values at or below it
    assert sum(v < p for v in values) < max(1, math.ceil(q * len(values)))  # and it is the smallest such value


def test_paid_hours_stop_at_now():
    start, end = datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)
    assert paid_hours(start, end, datetime(2026, 11, 2, 6, tzinfo=UTC)) == 30
    assert paid_hours(start, end, datetime(2027, 1, 1, tzinfo=UTC)) == 720


def test_report_operations_cli(capsys, tmp_path):
    home = Path(os.environ["MARGIN_HOME"])
    home.mkdir(parents=True, exist_ok=True)

    async def seed():
        ledger = SQLiteLedger(home / "ledger.db")
        for event in month():
            await ledger.write_event(event)
        await ledger.aclose()

    asyncio.run(seed())
    code, out, err = run(capsys, "report", "operations", "--period", "2026-11", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["answered_requests"] == 5 and Decimal(doc["fallback_cost"]) == Decimal("0.001")
    assert doc["rejections"] == {"budget_exceeded": 1}
    code, out, _ = run(capsys, "report", "operations", "--period", "2026-11", "--csv", "-")
    rows = list(csv.DictReader(io.StringIO(out)))
    figures = {(r["section"], r["name"], r["figure"]): r["value"] for r in rows}
    assert figures[("cache", "", "hit rate")] == "0.5"
    assert figures[("prompt tokens", "big", "p95")] == "300"
    assert figures[("user", "alice", "cost_per_request")] == "0.005"
    code, out, _ = run(capsys, "report", "operations", "--period", "2026-11")
    assert "fallback rate" in out and "40.0%" in out and "budget_exceeded" in out

"""Several gateway processes sharing one Redis (budget counters) and one SQLite ledger file, driven through
the real ``margin serve`` with the official openai SDK.

1. Two instances, 500 concurrent requests split between them, one hard budget that affords about a fifth of
   them: the ledger's total never exceeds the budget, every answered request is in the ledger exactly once,
   the Redis counter agrees with the ledger (to the nano per event it rounds up), no reservation is left open.
2. Redis killed under load (fail closed): clients get 503 budget_backend_unavailable (OpenAI-style body) while
   it is down, the ledger holds every answered request, alerts say what happened (unavailable, recovered,
   state lost), /metrics counts the refusals; Redis restarted EMPTY: the counters come back from the
   ledger, not from zero, and requests are answered again.
"""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path

import httpx2
import openai
import pytest

from margin.pricing import TokenUsage, load_catalog

from .conftest import RunningGateway, start_gateway

MAX_TOKENS = 100
PROMPT = [{"role": "user", "content": "How much does this cost?"}]
MASTER = {"authorization": "Bearer mk-master-test"}


def _config(database: Path | str, redis_url: str, budget: Decimal, *, latency_ms: int, timeout_ms: int = 3000) -> str:
    return f"""
gateway:
  database: {database}
  redis_url: {redis_url}
  redis_timeout_ms: {timeout_ms}
  retries: {{max_retries: 0}}
  providers: [{{name: mock, type: mock, latency_ms: {latency_ms}}}]
  models: [{{name: gpt-4o-mini, provider: mock}}]
  budgets:
    - name: hard-cap
      scope: global
      period: day
      amount: {budget}
      block: 1.0
"""


def _worst_case() -> Decimal:
    return load_catalog().price(TokenUsage(input_tokens=20, output_tokens=MAX_TOKENS), "gpt-4o-mini").effective_cost


def _clients(key: str, *gateways: RunningGateway) -> list[openai.AsyncOpenAI]:
    return [openai.AsyncOpenAI(base_url=g.base_url + "/v1", api_key=key, max_retries=0, timeout=60) for g in gateways]


async def _one(client: openai.AsyncOpenAI) -> tuple[int, str | None, str | None]:
    """(status, x-margin-request-id, error code) of one request through the openai SDK."""
    try:
        raw = await client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=PROMPT, max_tokens=MAX_TOKENS
        )
        raw.parse()
        return 200, raw.headers["x-margin-request-id"], None
    except openai.APIStatusError as exc:
        return exc.status_code, None, (exc.body or {}).get("code")


def _ledger(database: Path) -> tuple[Decimal, int, Counter, int]:
    with sqlite3.connect(database) as db:
        spent = sum((Decimal(v) for (v,) in db.execute("select effective_cost from usage_events")), Decimal(0))
        nanos = db.execute("select coalesce(sum(effective_cost_nanos), 0) from usage_events").fetchone()[0]
        ok = Counter(r for (r,) in db.execute("select request_id from usage_events where status = 'ok'"))
        open_reservations = db.execute("select count(*) from reservations").fetchone()[0]
    return spent, nanos, ok, open_reservations


def _ledger_pg(url: str) -> tuple[Decimal, int, Counter, int]:
    import psycopg

    with psycopg.connect(url) as db:
        spent = sum((Decimal(v) for (v,) in db.execute("select effective_cost from usage_events")), Decimal(0))
        nanos = db.execute("select coalesce(sum(effective_cost_nanos), 0) from usage_events").fetchone()[0]
        ok = Counter(r for (r,) in db.execute("select request_id from usage_events where status = 'ok'"))
        open_reservations = db.execute("select count(*) from reservations").fetchone()[0]
    return spent, int(nanos), ok, open_reservations


@pytest.fixture(params=["sqlite", "postgres"])
def shared_ledger(request, tmp_path):
    """(gateway.database, reader of the ledger's totals): one SQLite file, or a PostgreSQL database."""
    if request.param == "sqlite":
        database = tmp_path / "shared" / "ledger.db"
        return str(database), lambda: _ledger(database)
    url = request.getfixturevalue("pg_database")
    return f"'{url}'", lambda: _ledger_pg(url)


def test_two_instances_500_concurrent_requests_one_hard_budget(tmp_path, redis_url, shared_ledger):
    budget = (_worst_case() * 100).quantize(Decimal("0.000001"))
    database, read_ledger = shared_ledger
    config = _config(database, redis_url, budget, latency_ms=40)
    first = start_gateway(tmp_path / "a", config)
    second = start_gateway(tmp_path / "b", config)
    try:
        key = first.create_key("--team", "load")

        async def load() -> list[tuple[int, str | None, str | None]]:
            clients = _clients(key, first, second)
            try:
                return await asyncio.gather(*(_one(clients[i % 2]) for i in range(500)))
            finally:
                for client in clients:
                    await client.close()

        started = time.monotonic()
        outcomes = asyncio.run(load())
        elapsed = time.monotonic() - started
        counters = httpx2.get(first.base_url + "/v1/margin/budgets", headers=MASTER, timeout=10).json()["counters"]
    finally:
        first.stop()
        second.stop()
    statuses = Counter(status for status, _, _ in outcomes)
    assert set(statuses) <= {200, 402}, statuses
    assert {code for status, _, code in outcomes if status == 402} == {"budget_exceeded"}
    assert statuses[200] >= 80, statuses  # the budget affords 100 worst cases; actual costs are lower
    assert statuses[402] >= 250, statuses
    spent, nanos, ok, open_reservations = read_ledger()
    assert spent <= budget
    answered = [request_id for status, request_id, _ in outcomes if status == 200]
    assert len(set(answered)) == len(answered)
    assert all(ok[request_id] == 1 for request_id in answered)  # every answered request, once
    assert sum(ok.values()) == len(answered)  # and nothing else
    assert open_reservations == 0
    (counter,) = [c for c in counters if c["counter"].startswith("hard-cap|")]
    assert Decimal(counter["reserved"]) == 0
    redis_nanos = int(Decimal(counter["spent"]) * 1_000_000_000)
    assert 0 <= redis_nanos - nanos < len(answered)  # each actual rounded up to the nano, never down
    print(f"\ntwo instances: {len(outcomes)} requests in {elapsed:.2f} s ({len(outcomes) / elapsed:.0f}/s), {statuses}")


def _alerts(gateway: RunningGateway) -> list[dict]:
    return httpx2.get(gateway.base_url + "/v1/margin/alerts", headers=MASTER, timeout=10).json()["alerts"]


def test_redis_killed_under_load_fails_closed_then_recovers_from_the_ledger(tmp_path, own_redis):
    budget = (_worst_case() * 400).quantize(Decimal("0.000001"))
    database = tmp_path / "shared" / "ledger.db"
    config = _config(database, own_redis.url, budget, latency_ms=20)
    first = start_gateway(tmp_path / "a", config)
    second = start_gateway(tmp_path / "b", config)
    phases: dict[str, list[tuple[int, str | None, str | None]]] = {"before": [], "down": [], "after": []}
    try:
        key = first.create_key("--team", "load")
        phase = "before"

        async def drive(seconds: float) -> None:
            deadline = time.monotonic() + seconds
            clients = _clients(key, first, second)

            async def worker(n: int) -> None:
                while time.monotonic() < deadline:
                    phases[phase].append(await _one(clients[n % 2]))

            try:
                await asyncio.gather(*(worker(n) for n in range(8)))
            finally:
                for client in clients:
                    await client.close()

        asyncio.run(drive(1.0))
        own_redis.kill()
        phase = "down"
        asyncio.run(drive(1.5))
        before_restart, _, _, _ = _ledger(database) if first.flush_ledger() is None else (None,) * 4
        own_redis.start()  # empty: no persistence
        time.sleep(2.5)  # the monitor sees it back (0.5 s), a new epoch with its hold (1.5 s)
        phase = "after"
        asyncio.run(drive(1.0))
        first.flush_ledger()
        second.flush_ledger()
        counters = httpx2.get(first.base_url + "/v1/margin/budgets", headers=MASTER, timeout=10).json()["counters"]
        alerts = _alerts(first)
        metrics = httpx2.get(first.base_url + "/metrics", headers=MASTER, timeout=10).text
    finally:
        first.stop()
        second.stop()

    assert {s for s, _, _ in phases["before"]} == {200}
    down = Counter((status, code) for status, _, code in phases["down"])
    assert down[(503, "budget_backend_unavailable")] >= 10, down
    assert set(down) <= {(503, "budget_backend_unavailable"), (200, None)}, down  # 200: in flight at the kill
    after = Counter(status for status, _, _ in phases["after"])
    assert after[200] >= 10, after
    kinds = Counter(alert["kind"] for alert in alerts)
    assert kinds["backend_unavailable"] == 2  # one per instance per outage, not one per request
    assert kinds["backend_recovered"] == 2
    assert kinds["backend_state_lost"] >= 1
    assert 'margin_backend_unavailable_total{backend="redis",outcome="refused"}' in metrics
    # The empty Redis was seeded from the ledger: its counter holds at least everything spent before.
    (counter,) = [c for c in counters if c["counter"].startswith("hard-cap|")]
    assert Decimal(counter["spent"]) >= before_restart
    spent, _, ok, open_reservations = _ledger(database)
    assert spent <= budget
    answered = [rid for outcomes in phases.values() for status, rid, _ in outcomes if status == 200]
    assert all(ok[rid] == 1 for rid in answered) and sum(ok.values()) == len(answered)
    assert open_reservations == 0
    refused = sum(1 for outcomes in phases.values() for status, _, _ in outcomes if status == 503)
    with sqlite3.connect(database) as db:
        rejected = db.execute(
            "select count(*) from usage_events where status = 'rejected' and error_type = 'budget_backend_unavailable'"
        ).fetchone()[0]
    assert rejected == refused  # every refusal is a ledger event too
    print(
        f"\nredis killed: before {len(phases['before'])}, down {dict(down)}, after {dict(after)}, alerts {dict(kinds)}"
    )


def _redis_calls(url: str) -> Counter:
    """Commands the Redis server has executed, by name, from its own statistics (INFO commandstats)."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        stats = client.info("commandstats")
    finally:
        client.close()
    return Counter({name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()})


def test_a_budgeted_request_costs_two_redis_round_trips(tmp_path, redis_url):
    """Reserve and settle are one script each and their replies carry the counters' figures, so the budget
    headers and the exact-count decision need no read of their own: 2 commands per request, as counted by
    the server itself."""
    config = _config(tmp_path / "ledger.db", redis_url, Decimal("5"), latency_ms=0)
    gateway = start_gateway(tmp_path / "a", config)
    try:
        key = gateway.create_key("--team", "load")
        client = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=key, max_retries=0, timeout=30)
        client.chat.completions.create(model="gpt-4o-mini", messages=PROMPT, max_tokens=MAX_TOKENS)  # seeds
        before = _redis_calls(redis_url)
        for _ in range(20):
            raw = client.chat.completions.with_raw_response.create(
                model="gpt-4o-mini", messages=PROMPT, max_tokens=MAX_TOKENS
            )
            raw.parse()
            assert Decimal(raw.headers["x-margin-budget-remaining"]) < Decimal("5")
        after = _redis_calls(redis_url)
        client.close()
    finally:
        gateway.stop()
    calls = after - before
    # The server counts the commands its scripts run too; a client command outside them would be a round trip
    # (the old path read the counters with a third and a fourth script per request: evalsha 80).
    assert calls["evalsha"] == 40, calls
    inside_scripts = {"exists", "hmget", "hget", "hincrby", "hset", "hexists", "pexpireat", "pexpire", "zadd"}
    inside_scripts |= {"zrangebyscore", "zrem", "del", "get", "time"}
    assert set(calls) - inside_scripts - {"evalsha", "info", "hello", "client|setinfo"} == set(), calls


def test_two_instances_share_one_port_with_reuse_port(tmp_path, redis_url):
    """`margin serve --reuse-port`: a second process binds the same port (without it: address in use), the
    kernel spreads connections over both, and when one stops the other goes on answering on that port,
    metering into the shared ledger and budget."""
    database = tmp_path / "shared" / "ledger.db"
    config = _config(database, redis_url, Decimal("5"), latency_ms=0)
    first = start_gateway(tmp_path / "a", config, serve_args=("--reuse-port",))
    port = int(first.base_url.rsplit(":", 1)[1])
    second = start_gateway(tmp_path / "b", config, port=port, serve_args=("--reuse-port",))
    try:
        key = first.create_key("--team", "load")
        client = openai.OpenAI(base_url=first.base_url + "/v1", api_key=key, max_retries=0, timeout=30)
        for _ in range(10):
            client.chat.completions.create(model="gpt-4o-mini", messages=PROMPT, max_tokens=MAX_TOKENS)
        time.sleep(3)  # the second has built its gateway and bound the port by now, or died trying
        assert second.process.poll() is None, (tmp_path / "b" / "gateway.log").read_text()
        first.stop()
        deadline = time.monotonic() + 30
        while True:  # the port is the second's alone now
            try:
                if httpx2.get(first.base_url + "/health", timeout=1).status_code == 200:
                    break
            except httpx2.HTTPError:
                pass
            assert time.monotonic() < deadline, "nobody answers on the shared port after the first stopped"
            time.sleep(0.1)
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=PROMPT, max_tokens=MAX_TOKENS
        )
        raw.parse()
        request_id = raw.headers["x-margin-request-id"]
        client.close()
    finally:
        first.stop()
        second.stop()
    _spent, _nanos, ok, open_reservations = _ledger(database)
    assert sum(ok.values()) == 11 and ok[request_id] == 1
    assert open_reservations == 0
    # Without the option the second process cannot bind the port.
    lone = start_gateway(tmp_path / "c", config)
    try:
        blocked = subprocess.run(
            [
                sys.executable,
                "-m",
                "margin",
                "--config",
                str(lone.config),
                "serve",
                "--port",
                lone.base_url.rsplit(":", 1)[1],
            ],
            env=lone.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        lone.stop()
    assert blocked.returncode != 0
    assert "address already in use" in (blocked.stdout + blocked.stderr).lower()

"""What-if replay of the exact cache from request hashes: TTL, partitions, bypassed and unhashed requests,
and every attempt of a hit request avoided."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from margin.config import PricesConfig
from margin.insights.simulate import CacheReplay, Policy, simulate
from margin.pricing import Catalog, load_price_data

T0 = datetime(2026, 11, 10, 9, tzinfo=UTC)


def _e(rid, minutes, cost, *, team="a", digest="h1", attempt=0, **fields):
    from margin.usage import UsageEvent

    when = T0 + timedelta(minutes=minutes)
    return UsageEvent(
        event_id=f"{rid}-{attempt}",
        request_id=rid,
        attempt=attempt,
        started_at=when,
        finished_at=when,
        status=fields.pop("status", "ok"),
        endpoint="chat.completions",
        requested_model="gpt-4o-mini",
        served_model="gpt-4o-mini",
        tags={"team": team},
        effective_cost=Decimal(cost),
        list_cost=Decimal(cost),
        prompt_hash=digest,
        **fields,
    )


def traffic():
    return [
        _e("r1", 0, "1"),  # fills (a, h1)
        _e("r2", 10, "1"),  # hit: same partition, 10 min later
        _e("r4", 15, "1", team="b"),  # another team: its own partition
        _e("r6", 20, "1", cache="bypass"),  # the gateway bypassed it (non-deterministic): never a hit
        _e("r7", 25, "1", digest=None),  # no hash: never a hit
        _e("r8", 30, "0.5", digest="h3", error_type="cascade_escalated"),  # a rejected answer does not fill
        _e("r8", 31, "2", digest="h3", attempt=1, fallback_from="gpt-4o-mini"),  # the answer fills (a, h3)
        _e("r9", 40, "0.5", digest="h3", error_type="cascade_escalated"),  # hit: both attempts avoided
        _e("r9", 41, "2", digest="h3", attempt=1),
        _e("r3", 120, "1"),  # 2 h after the fill: expired, fills again
        _e("r5", 121, "1", digest="h2"),  # a different prompt
    ]


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    return Catalog.from_data(load_price_data(tmp_path_factory.mktemp("home")), PricesConfig())


def test_replayed_cache_per_team(catalog):
    result = simulate(traffic(), catalog, Policy(cache=CacheReplay(ttl_seconds=3600, scope="team")))
    assert result.recorded_cost == Decimal("12")  # eight $1 requests, r8 and r9 at $0.5 + $2 each
    assert result.cache_hits == 2  # r2 and r9
    assert result.cache_avoided == Decimal("3.5")  # r2's $1 and both of r9's attempts ($0.5 + $2)
    assert result.simulated_cost == Decimal("8.5")
    assert any("request hashes" in a for a in result.assumptions)


def test_a_global_partition_shares_across_teams(catalog):
    result = simulate(traffic(), catalog, Policy(cache=CacheReplay(ttl_seconds=3600, scope="global")))
    assert result.cache_hits == 3  # r4 (team b) is now served by r1's entry too
    assert result.cache_avoided == Decimal("4.5") and result.simulated_cost == Decimal("7.5")


def test_a_short_ttl_and_no_cache(catalog):
    short = simulate(traffic(), catalog, Policy(cache=CacheReplay(ttl_seconds=300, scope="team")))
    assert short.cache_hits == 0  # r2 comes 10 min after the fill, r9 9 min after
    plain = simulate(traffic(), catalog, Policy())
    assert plain.cache_hits == 0 and plain.simulated_cost == plain.recorded_cost
    assert not any("request hashes" in a for a in plain.assumptions)


def test_simulate_cli_with_a_cache_policy(capsys, tmp_path):
    import asyncio
    import json
    import os
    from pathlib import Path

    from margin.store.sqlite import SQLiteLedger

    from ..cli.test_cli_prices_cost import run

    home = Path(os.environ["MARGIN_HOME"])
    home.mkdir(parents=True, exist_ok=True)

    async def seed():
        ledger = SQLiteLedger(home / "ledger.db")
        for event in traffic():
            await ledger.write_event(event)
        await ledger.aclose()

    asyncio.run(seed())
    policy = tmp_path / "policy.yaml"
    policy.write_text("cache: {ttl_seconds: 3600, scope: team}\n")
    code, out, err = run(capsys, "simulate", "--period", "2026-11", "--policy", str(policy), "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["cache_hits"] == 2 and Decimal(doc["cache_avoided"]) == Decimal("3.5")
    assert Decimal(doc["simulated_cost"]) == Decimal("8.5")
    policy.write_text("cache: {ttl_seconds: 3600, scope: planet}\n")
    code, _, err = run(capsys, "simulate", "--period", "2026-11", "--policy", str(policy))
    assert code != 0 and "scope" in err

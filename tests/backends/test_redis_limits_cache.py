"""Rate limits, spend breakers and the exact cache in Redis: the same semantics as in one process, shared by
two clients (two gateway processes' worth), and what each does while Redis is unreachable."""

from __future__ import annotations

import asyncio
from decimal import Decimal

from margin.gateway.backends._redis import RedisBackend
from margin.gateway.backends.memory import LocalBreakers, LocalRateLimits
from margin.gateway.backends.redis_cache import RedisExactCache
from margin.gateway.backends.redis_limits import RedisBreakers, RedisRateLimits


def _backends(url: str, n: int = 2) -> list[RedisBackend]:
    return [RedisBackend(url, timeout_s=5.0) for _ in range(n)]


def test_rate_limit_is_shared_by_two_instances(redis_url):
    async def go():
        backends = _backends(redis_url)
        limits = [RedisRateLimits(b, fallback=LocalRateLimits()) for b in backends]
        checks = [("per-team", "ml", 10, 1000)]
        try:
            waits = [await limits[i % 2].admit(checks, 50) for i in range(12)]
            assert waits[:10] == [0.0] * 10  # 10 requests per minute, whichever instance takes them
            assert waits[10] > 0 and waits[11] > 0
            assert 5.0 < waits[10] <= 6.1  # one request refills in 6 s
            # tokens: 1000/min; 500 taken by the 10 admitted; output charged into debt blocks the next
            await limits[0].charge_tokens(checks, 900)
            other = [("per-team", "ml", None, 1000)]
            assert await limits[1].admit(other, 1) > 20  # 400 tokens of debt -> ~24 s
        finally:
            for backend in backends:
                await backend.aclose()

    asyncio.run(go())


def test_breaker_trips_once_across_instances_and_resets(redis_url):
    async def go():
        backends = _backends(redis_url)
        breakers = [RedisBreakers(b, fallback=LocalBreakers()) for b in backends]
        try:
            limit = Decimal("1.00")
            assert not await breakers[0].record("runaway", "ml", Decimal("0.6"), limit=limit, cooldown_s=60)
            tripped = [await breakers[1].record("runaway", "ml", Decimal("0.5"), limit=limit, cooldown_s=60)]
            tripped.append(await breakers[0].record("runaway", "ml", Decimal("0.1"), limit=limit, cooldown_s=60))
            assert tripped == [True, False]  # one trip, one alert, even with two instances
            decision = await breakers[0].check("runaway", "ml")
            assert decision.open and 59 < decision.retry_after <= 60
            assert decision.spent_last_hour == Decimal("1.2")
            assert not (await breakers[1].check("runaway", "other")).open
            assert await breakers[1].reset("runaway") == 1
            assert not (await breakers[0].check("runaway", "ml")).open
        finally:
            for backend in backends:
                await backend.aclose()

    asyncio.run(go())


def test_breaker_window_rebuilt_only_when_no_instance_keeps_it(redis_url):
    async def go():
        first, second = _backends(redis_url)
        try:
            breaker = RedisBreakers(first, fallback=LocalBreakers())
            # Start-up from the ledger: 4 USD 40 minutes ago and 3 USD 2 minutes ago, limit 6/h.
            breaker.rebuild(
                "teams", "runaway", [(2400.0, Decimal(4)), (120.0, Decimal(3))], limit=Decimal(6), cooldown_s=1800
            )
            await breaker.apply_rebuild()
            decision = await breaker.check("teams", "runaway")
            assert decision.open and decision.spent_last_hour == Decimal(7)
            # A second instance starting later does not add the same hour again.
            again = RedisBreakers(second, fallback=LocalBreakers())
            again.rebuild("teams", "runaway", [(120.0, Decimal(3))], limit=Decimal(6), cooldown_s=1800)
            await again.apply_rebuild()
            assert (await again.check("teams", "runaway")).spent_last_hour == Decimal(7)
        finally:
            await first.aclose()
            await second.aclose()

    asyncio.run(go())


def test_exact_cache_is_shared_and_invalidated_by_route_scope_and_prefix(redis_url):
    async def go():
        first, second = _backends(redis_url)
        writer, reader = RedisExactCache(first), RedisExactCache(second)
        body = {"choices": [{"message": {"content": "hi"}, "finish_reason": "stop"}]}
        try:
            for partition, key, route in (
                ("team:ml", "abc1", "faq"),
                ("team:ml", "abd2", "docs"),
                ("key:k*1", "abc3", "faq"),
            ):
                assert await writer.put(
                    partition, key, body, output_tokens=5, route=route, served_model="m", ttl_seconds=60
                )
            entry = await reader.get("team:ml", "abc1")
            assert entry is not None and entry.body == body and entry.output_tokens == 5 and entry.route == "faq"
            assert await reader.get("team:ml", "abc1", max_output_tokens=4) is None  # answer longer than asked for
            assert await reader.get("team:ops", "abc1") is None  # another team's partition
            assert await reader.clear(route="docs") == 1
            assert await reader.clear(partition="key:k*1") == 1  # glob characters in a scope are literal
            assert await reader.clear(key_prefix="abc") == 1
            assert await reader.get("team:ml", "abc1") is None
            assert await writer.put(
                "global", "x", body, output_tokens=1, route="faq", served_model="m", ttl_seconds=0.05
            )
            await asyncio.sleep(0.1)
            assert await reader.get("global", "x") is None  # expired with its route's TTL
        finally:
            await first.aclose()
            await second.aclose()

    asyncio.run(go())


def test_while_redis_is_unreachable_limits_are_local_and_the_cache_misses():
    async def go():
        backend = RedisBackend("redis://127.0.0.1:1/0", timeout_s=0.2)
        limits = RedisRateLimits(backend, fallback=LocalRateLimits())
        breakers = RedisBreakers(backend, fallback=LocalBreakers())
        cache = RedisExactCache(backend)
        checks = [("per-key", "k", 2, None)]
        try:
            assert [await limits.admit(checks, 0) for _ in range(3)][:2] == [0.0, 0.0]
            assert await limits.admit(checks, 0) > 0  # this instance's own bucket still limits
            assert await breakers.record("b", "v", Decimal(5), limit=Decimal(1), cooldown_s=60)
            assert (await breakers.check("b", "v")).open
            assert await cache.get("global", "k") is None
            assert not await cache.put("global", "k", {}, output_tokens=1, route="r", served_model="m", ttl_seconds=5)
            counts = backend.health.counts
            assert counts[("redis", "outage")] == 1
            assert counts[("redis", "local_limits")] >= 3 and counts[("redis", "cache_miss")] == 2
        finally:
            await backend.aclose()

    asyncio.run(go())

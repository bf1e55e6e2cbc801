"""The in-process rate limits, spend breakers and exact cache behind the async interfaces the gateway calls
(the Redis-backed ones in this package implement the same). The pure classes they wrap
(:mod:`margin.policy.limits`, :mod:`margin.cache._exact`) stay synchronous; nothing here awaits, so each
operation is atomic on the event loop."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

from ...cache._exact import CacheEntry, ExactCache
from ...policy.limits import BreakerDecision, RateLimiter, SpendBreaker

__all__ = ["LocalBreakers", "LocalExactCache", "LocalRateLimits", "RateCheck", "clear_semantic"]

RateCheck = tuple[str, str, int | None, int | None]  # rule name, scope value, requests/min, tokens/min


class LocalRateLimits:
    def __init__(self, limiter: RateLimiter | None = None) -> None:
        self.local = limiter if limiter is not None else RateLimiter()

    async def admit(self, checks: list[RateCheck], tokens: int) -> float:
        """0 when admitted (one request and ``tokens`` taken from every bucket), else the seconds to wait."""
        return self.local.admit(checks, tokens, time.monotonic())

    async def charge_tokens(self, checks: list[RateCheck], tokens: int) -> None:
        self.local.charge_tokens(checks, tokens, time.monotonic())


class LocalBreakers:
    def __init__(self, breaker: SpendBreaker | None = None) -> None:
        self.local = breaker if breaker is not None else SpendBreaker()

    async def check(self, rule: str, value: str) -> BreakerDecision:
        return self.local.check(rule, value, time.monotonic())

    async def record(self, rule: str, value: str, amount: Decimal, *, limit: Decimal, cooldown_s: float) -> bool:
        return self.local.record(rule, value, amount, time.monotonic(), limit=limit, cooldown_s=cooldown_s)

    async def reset(self, rule: str | None = None, value: str | None = None) -> int:
        return self.local.reset(rule, value)

    def rebuild(
        self, rule: str, value: str, buckets: list[tuple[float, Decimal]], *, limit: Decimal, cooldown_s: float
    ) -> bool:
        """Start-up: spend of the last hour as (seconds ago its bucket ended, amount). Returns True when the
        breaker is open again."""
        now = time.monotonic()
        tripped = False
        for ago, amount in buckets:
            tripped |= self.local.record(rule, value, amount, now - ago, limit=limit, cooldown_s=cooldown_s)
        return tripped


class LocalExactCache:
    def __init__(self, cache: ExactCache | None = None) -> None:
        self.local = cache if cache is not None else ExactCache()

    async def get(self, partition: str, key: str, *, max_output_tokens: int | None = None) -> CacheEntry | None:
        return self.local.get(partition, key, max_output_tokens=max_output_tokens)

    async def put(
        self,
        partition: str,
        key: str,
        body: dict[str, Any],
        *,
        output_tokens: int,
        route: str,
        served_model: str,
        ttl_seconds: float,
    ) -> bool:
        stored = self.local.put(
            partition,
            key,
            body,
            output_tokens=output_tokens,
            route=route,
            served_model=served_model,
            ttl_seconds=ttl_seconds,
        )
        return stored is not None

    async def clear(
        self, *, route: str | None = None, partition: str | None = None, key_prefix: str | None = None
    ) -> int:
        return self.local.clear(route=route, partition=partition, key_prefix=key_prefix)

    async def count(self) -> int | None:
        return len(self.local)


def clear_semantic(
    caches: dict[str, Any], *, route: str | None = None, partition: str | None = None, key_prefix: str | None = None
) -> int:
    """Drop the semantic-cache entries (of the lever routes' SemanticCaches) matching every given filter, the
    exact cache's filters: a key prefix matches the cache key (prompt hash) of the request that stored the
    answer. Returns how many."""
    where = None
    if key_prefix is not None:
        prefix = key_prefix

        def where(answer: Any) -> bool:
            return str(getattr(answer, "key", "")).startswith(prefix)

    return sum(cache.clear(partition, where=where) for name, cache in caches.items() if route in (None, name))

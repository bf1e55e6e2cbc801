"""The exact cache in Redis, shared by every gateway instance: one hash per (scope partition, cache key) at
``<prefix>:cache:<partition>:<key>`` with the answer's JSON bytes (``b``), output tokens (``o``), the lever
route that stored it (``r``), the served model (``m``), and the partition and key again (``p``, ``k``) so
invalidation filters on exact values. It expires after the route's TTL. (No hash tag: every operation is on
one key, so entries spread over a cluster.)

Bounds: Redis's own ``maxmemory`` instead of gateway.cache_max_entries/bytes (which bound the in-process
cache). While Redis is unreachable a lookup is a miss and an answer is not stored (counted as cache_miss)."""

from __future__ import annotations

from typing import Any

import orjson

from ...cache._exact import CacheEntry
from ..errors import GatewayError
from ._redis import RedisBackend
from .health import BackendDown

__all__ = ["RedisExactCache"]


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


class RedisExactCache:
    def __init__(self, backend: RedisBackend) -> None:
        self.backend = backend
        self.prefix = f"{backend.prefix}:cache:"

    def _key(self, partition: str, key: str) -> str:
        return f"{self.prefix}{partition}:{key}"

    async def get(self, partition: str, key: str, *, max_output_tokens: int | None = None) -> CacheEntry | None:
        client = self.backend.client
        try:
            body, output, route, model = await self.backend.run(
                lambda: client.hmget(self._key(partition, key), "b", "o", "r", "m")
            )
        except BackendDown:
            self.backend.health.count("cache_miss")
            return None
        if body is None:
            return None
        output_tokens = int(output or 0)
        if max_output_tokens is not None and output_tokens > max_output_tokens:
            return None
        return CacheEntry(
            orjson.loads(body), output_tokens, (route or b"").decode(), (model or b"").decode(), 0, 0, len(body)
        )

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
        if ttl_seconds <= 0:
            return False
        name = self._key(partition, key)
        fields = {"b": orjson.dumps(body), "o": output_tokens, "r": route, "m": served_model, "p": partition, "k": key}

        async def store() -> None:
            async with self.backend.client.pipeline(transaction=True) as pipe:
                pipe.hset(name, mapping=fields)
                pipe.pexpire(name, int(ttl_seconds * 1000))
                await pipe.execute()

        try:
            await self.backend.run(store)
        except BackendDown:
            self.backend.health.count("cache_miss")
            return False
        return True

    async def clear(
        self, *, route: str | None = None, partition: str | None = None, key_prefix: str | None = None
    ) -> int:
        """Drop entries matching every given filter (all when none is given), in every instance's view."""
        client = self.backend.client
        pattern = self.prefix + (_glob_escape(partition) if partition is not None else "*") + ":"
        pattern += (_glob_escape(key_prefix) if key_prefix else "") + "*"

        async def sweep() -> int:
            cleared = 0
            async for name in client.scan_iter(match=pattern, count=1000):
                stored_route, stored_partition, stored_key = await client.hmget(name, "r", "p", "k")
                if stored_key is None:
                    continue  # expired meanwhile
                if route is not None and stored_route.decode() != route:
                    continue
                if partition is not None and stored_partition.decode() != partition:
                    continue
                if key_prefix is not None and not stored_key.decode().startswith(key_prefix):
                    continue
                cleared += await client.delete(name)
            return cleared

        try:
            return int(await self.backend.run(sweep))
        except BackendDown as exc:
            raise GatewayError(
                f"cannot clear the exact cache: redis at {self.backend.health.describe} is unreachable ({exc})",
                status=503,
                error_type="cache_backend_unavailable",
            ) from None

    async def count(self) -> int | None:
        return None  # counting means scanning the keyspace: not on every /metrics scrape

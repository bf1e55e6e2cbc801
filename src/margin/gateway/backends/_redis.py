"""The Redis (or Valkey) connection one gateway process shares between its Redis-backed parts: key names,
the call wrapper that turns an unreachable server into :class:`BackendDown` (and health bookkeeping), the
epoch that detects a server that came back without its data, and the monitor that probes and heartbeats.

Every key starts with the hash tag ``{prefix}``, so a multi-key script touches one Redis Cluster slot.

The epoch: a random token stored at ``{prefix}:epoch`` when the keyspace is first used. Every money script
compares it with the token this process knows; a missing or different token means the server lost its data
(restarted without persistence, flushed, failed over to an empty replica). The first process to notice
stores a new token together with a short hold (``{prefix}:hold``) during which no new reservation is
accepted, so every live process has time (it heartbeats the epoch) to re-register the reservations it holds
before anyone reserves on counters that are being re-seeded from the ledger."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from .health import BackendDown, BackendHealth

__all__ = ["RedisBackend", "redacted_url"]

log = logging.getLogger("margin.gateway")

# Error replies that mean "cannot serve now", not "your script is wrong".
_UNAVAILABLE_REPLIES = ("OOM", "READONLY", "LOADING", "MASTERDOWN", "NOREPLICAS", "CLUSTERDOWN", "TRYAGAIN", "MISCONF")

_EPOCH = """
local e = redis.call('GET', KEYS[1])
if e then return {e, '0'} end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], '1', 'PX', ARGV[2])
return {ARGV[1], '1'}
"""


def redacted_url(url: str) -> str:
    """The URL without its password (for logs, alerts and error messages)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


class RedisBackend:
    def __init__(
        self,
        url: str,
        *,
        prefix: str = "margin",
        timeout_s: float = 0.5,
        password: str | None = None,
        failure_mode: Literal["closed", "open"] = "closed",
        counts: dict[tuple[str, str], int] | None = None,
        heartbeat_s: float = 0.5,
        max_connections: int = 1024,
    ) -> None:
        import redis.asyncio as aioredis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        self.url = url
        self.prefix = prefix
        self.tag = "{" + prefix + "}"
        self.heartbeat_s = heartbeat_s
        # Long enough for every live process to see a new epoch (it checks every heartbeat) and re-register.
        self.hold_ms = int(heartbeat_s * 3000)
        self.health = BackendHealth("redis", failure_mode=failure_mode, describe=redacted_url(url), counters=counts)
        # One retry, at once, for a dropped connection: every money script is idempotent (see redis_counters).
        # A connection per concurrent call, up to max_connections (Redis serves 10,000 clients by default). Not a
        # pool that makes calls wait for a free connection: its waiters can starve under load (measured: calls
        # failing after seconds of waiting at 64 concurrent requests), and a starved call would count as an outage.
        pool = aioredis.ConnectionPool.from_url(
            url,
            max_connections=max_connections,
            password=password,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 1),
            health_check_interval=0,
        )
        self.client = aioredis.Redis(connection_pool=pool)
        self.epoch: bytes | None = None
        self.epoch_key = self.key("epoch")
        self.hold_key = self.key("hold")
        self.on_epoch_change: list[Callable[[], Awaitable[None]]] = []
        self._epoch_script = self.script(_EPOCH)
        self._epoch_lock: asyncio.Lock | None = None
        self._monitor: asyncio.Task[None] | None = None

    def key(self, *parts: str) -> str:
        return ":".join((self.tag, *parts))

    def script(self, lua: str) -> Any:
        return self.client.register_script(lua)

    async def run(self, call: Callable[[], Awaitable[Any]], *, probe: bool = False) -> Any:
        """Run one Redis call. Raises :class:`BackendDown` when Redis is unreachable (and, while it is down,
        without trying until the next probe is due); other errors (a bug in a script) propagate."""
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import ResponseError
        from redis.exceptions import TimeoutError as RedisTimeoutError

        if not probe and not self.health.may_try():
            raise BackendDown(self.health.last_error or "redis is unreachable")
        started = time.monotonic()
        try:
            result = await call()
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            await self._failed(exc)
            raise BackendDown(str(exc)) from exc
        except ResponseError as exc:
            if not str(exc).startswith(_UNAVAILABLE_REPLIES):
                raise
            await self._failed(exc)
            raise BackendDown(str(exc)) from exc
        self.health.succeeded(started)
        return result

    async def _failed(self, error: BaseException) -> None:
        if self.health.failed(error):
            # Drop every pooled connection: once the server is back, none of them would work, and each would
            # fail one request (and look like a new outage) before being replaced.
            await self.client.connection_pool.disconnect()

    async def script_call(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        return await self.run(lambda: script(keys=keys, args=args))

    async def recover_epoch(self) -> bool:
        """Adopt the keyspace's epoch, creating it (with a hold) when it is missing. When it differs from the
        one this process knew, the server lost its data: alert, and re-register what this process holds.
        Returns True when this call created the epoch."""
        if self._epoch_lock is None:
            self._epoch_lock = asyncio.Lock()
        async with self._epoch_lock:
            token = secrets.token_hex(8).encode()
            current, created = await self.script_call(
                self._epoch_script, [self.epoch_key, self.hold_key], [token, self.hold_ms]
            )
            if current == self.epoch:
                return False
            previous, self.epoch = self.epoch, current
            if previous is not None:
                self.health.state_lost(
                    "its epoch changed (restarted without persistence, flushed or failed over to an empty "
                    "replica); counters are re-seeded from the ledger and this instance's open reservations "
                    "re-registered"
                )
                for callback in self.on_epoch_change:
                    await callback()
            return created == b"1"

    async def start(self) -> None:
        """Connect (or note the outage), adopt the epoch, and start the monitor. When this process created the
        epoch it waits out the hold, so its first requests are not refused by it."""
        try:
            if await self.recover_epoch():
                await asyncio.sleep(self.hold_ms / 1000)
        except BackendDown:
            pass  # logged and alerted by the health; the monitor keeps probing
        if self._monitor is None:
            self._monitor = asyncio.create_task(self._watch())

    async def _watch(self) -> None:
        """Probe while down; heartbeat the epoch while up (a changed epoch is recovered at once)."""
        while True:
            await asyncio.sleep(self.heartbeat_s)
            try:
                await self.health.flush_alerts()
                current = await self.run(lambda: self.client.get(self.epoch_key), probe=True)
                if current != self.epoch:
                    await self.recover_epoch()
            except BackendDown:
                continue
            except Exception:
                log.exception("the redis monitor failed; it runs again in %s s", self.heartbeat_s)

    async def aclose(self) -> None:
        if self._monitor is not None:
            self._monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):  # cancelled on purpose; it logs its own failures
                await self._monitor
            self._monitor = None
        await self.health.drain()
        await self.client.aclose()
        await self.client.connection_pool.disconnect()

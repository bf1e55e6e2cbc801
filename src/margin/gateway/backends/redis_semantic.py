"""The semantic cache shared through Redis: entries are stored in Redis, searched in each process.

Redis (without a vector module) cannot search vectors, so every gateway instance keeps its own
:class:`margin.cache.SemanticCache` (the vector index, lookups in process, ~ms) and Redis holds the shared
truth plus a change log that keeps the copies in step:

- ``{prefix}:sem:e:<id>``: one hash per stored answer (the fields of :func:`encode_entry`: lever route,
  scope partition, context fingerprint, text, the embedding as float32 bytes, the answer's JSON, output
  tokens, served model, request key, stored/expiry times, the per-entry threshold and its count of wrong
  reports), expiring with the route's TTL.
- ``{prefix}:sem:<lever>:ids``: a sorted set of the route's entry ids by expiry (what a starting instance
  loads; expired members are pruned on each store).
- ``{prefix}:sem:seq``: the id counter. Ids are global (the feedback endpoint names entries by the id in a
  hit's ``decisions.semantic.entry``) and increasing; the counter starts at the server's clock in
  microseconds, so after Redis lost its data new ids are still above every earlier one.
- ``{prefix}:sem:log``: a stream (trimmed to about ``LOG_MAXLEN`` messages) of what changed: ``s`` an entry
  was stored, ``t`` its threshold rose after a wrong-hit report, ``d`` it was dropped (reported wrong
  ``max_wrong_reports`` times, or on an exact-text hit), ``c`` a clear (route, scope, key prefix).

At start-up an instance notes the log's last message, loads every live entry of its routes, then tails the
log from that message (``XREAD BLOCK`` on a connection of its own) and applies what others did: a stored
entry is fetched and inserted with its vector (:meth:`SemanticCache.insert`: no model run). An instance
applies its own changes at once and skips them in the log. With ``verifier: learned`` the verifier's
prepared form of an entry (word vectors from the token states) is not stored: the receiving instance
computes it from the text the first time the entry is a candidate (one ~6 ms model run, in that lookup).

Wrong-hit reports are decided in Redis (one script: count, raise the threshold or drop), so reports sent to
different instances add up; every instance adopts the outcome. Two instances storing the same text at once
end up with the same entry everywhere: the higher id wins (see :meth:`SemanticCache.insert`).

While Redis is unreachable lookups answer from the local copy, answers are not stored (counted as
``semantic_not_stored``), feedback applies to this instance only (``semantic_not_shared``) and a clear is
refused (503, like the exact cache's). The tailer resumes when Redis answers; when the log no longer reaches
back to its position (trimmed past it, or Redis came back empty: a missing log or a new epoch), it reloads:
the local copy becomes what Redis holds (after a Redis that lost its data, nothing: the semantic cache is
emptied like the exact cache).

All keys share the backend's hash tag, so the scripts and transactions work on Redis Cluster (one slot).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from ...cache._exact import CacheEntry
from ..errors import GatewayError
from ._redis import RedisBackend
from .health import BackendDown
from .memory import clear_semantic

__all__ = ["LOG_MAXLEN", "RedisSemanticCaches", "SharedEntry", "decode_entry", "encode_entry"]

log = logging.getLogger("margin.gateway")

# Messages are ~100 bytes (the entry itself is fetched from its hash), so 100,000 cost ~10 MB of Redis and
# let an instance that lost its connection catch up, rather than reload every entry, after that many changes.
LOG_MAXLEN = 100_000
_BATCH = 500  # log messages per read
_CHUNK = 200  # entry hashes per pipelined read (an answer is a few kB)

# Ids above every earlier one even after Redis lost its data: the counter starts at the server's clock in
# microseconds (16 digits until the year 2286, below 2^53: exact in JSON for every client).
_NEXT_ID = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  local t = redis.call('TIME')
  redis.call('SET', KEYS[1], t[1] .. string.format('%06d', tonumber(t[2])))
end
return redis.call('INCR', KEYS[1])
"""

# A route's id index lives as long as its longest-lived entry (instances may briefly disagree on the TTL,
# during a configuration change): its expiry is only ever pushed later. KEYS: index. ARGV: milliseconds.
_EXTEND = """
local left = redis.call('PTTL', KEYS[1])
if left == -1 or (left >= 0 and left < tonumber(ARGV[1])) then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return 0
"""

# A wrong-hit report, decided once for every instance: the same rule as SemanticCache.report (drop after
# max_wrong_reports or on an exact-text hit, else raise the threshold just above the hit's similarity).
# KEYS: entry, log, ids. ARGV: similarity, adapt_margin, max_wrong_reports, lever, id, origin, log maxlen.
_REPORT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local wrong = redis.call('HINCRBY', KEYS[1], 'w', 1)
local sim = tonumber(ARGV[1])
if wrong >= tonumber(ARGV[3]) or sim >= 1 then
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', KEYS[3], ARGV[5])
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[7], '*', 'op', 'd', 'r', ARGV[4], 'id', ARGV[5], 'o', ARGV[6])
  return {'d', '1', tostring(wrong)}
end
local current = tonumber(redis.call('HGET', KEYS[1], 'h')) or 0
local h = string.format('%.17g', math.max(current, math.min(1, sim + tonumber(ARGV[2]))))
redis.call('HSET', KEYS[1], 'h', h)
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[7], '*', 'op', 't', 'r', ARGV[4], 'id', ARGV[5], 'o', ARGV[6],
  'h', h, 'w', tostring(wrong))
return {'t', h, tostring(wrong)}
"""


@dataclass(frozen=True)
class SharedEntry:
    """One stored answer as it travels between instances."""

    entry_id: int
    lever: str
    partition: str
    fingerprint: str
    text: str
    vector: np.ndarray
    answer: CacheEntry
    threshold: float
    reported_wrong: int
    stored_at: float  # unix seconds
    expires_at: float  # unix seconds; inf: never


def encode_entry(entry: SharedEntry) -> dict[str, bytes | str | int]:
    """The Redis hash fields of an entry (the exact cache's names where they mean the same)."""
    return {
        "b": orjson.dumps(entry.answer.body),
        "o": entry.answer.output_tokens,
        "r": entry.lever,
        "m": entry.answer.served_model,
        "k": entry.answer.key,
        "p": entry.partition,
        "f": entry.fingerprint,
        "t": entry.text,
        "v": np.asarray(entry.vector, dtype="<f4").reshape(-1).tobytes(),
        "h": repr(float(entry.threshold)),
        "w": entry.reported_wrong,
        "s": repr(float(entry.stored_at)),
        "x": repr(float(entry.expires_at)),
        "i": entry.entry_id,
    }


_REQUIRED = (b"b", b"o", b"r", b"m", b"p", b"f", b"t", b"v", b"h", b"s", b"x", b"i")


def decode_entry(fields: Mapping[bytes, bytes], dim: int) -> SharedEntry | None:
    """An entry from its hash fields; None when the hash is gone (expired, dropped) or is not a whole entry
    of this dimension (written by another embedder's configuration)."""
    if not fields or any(name not in fields for name in _REQUIRED):
        return None
    raw = fields[b"v"]
    if len(raw) != dim * 4:
        return None
    try:
        body = orjson.loads(fields[b"b"])
        answer = CacheEntry(
            body,
            int(fields[b"o"]),
            fields[b"r"].decode(),
            fields[b"m"].decode(),
            0.0,
            0.0,
            len(fields[b"b"]),
            key=fields.get(b"k", b"").decode(),
        )
        return SharedEntry(
            entry_id=int(fields[b"i"]),
            lever=fields[b"r"].decode(),
            partition=fields[b"p"].decode(),
            fingerprint=fields[b"f"].decode(),
            text=fields[b"t"].decode(),
            vector=np.frombuffer(raw, dtype="<f4").astype(np.float32),
            answer=answer,
            threshold=float(fields[b"h"]),
            reported_wrong=int(fields.get(b"w", b"0")),
            stored_at=float(fields[b"s"]),
            expires_at=float(fields[b"x"]),
        )
    except (ValueError, UnicodeDecodeError, orjson.JSONDecodeError):
        return None


def _stream_id(value: bytes | str) -> tuple[int, int]:
    text = value.decode() if isinstance(value, bytes) else value
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


_START = b"0-0"


class RedisSemanticCaches:
    """The semantic caches of a gateway's lever routes (``caches``: lever name -> its local SemanticCache),
    shared through Redis. Lookups go to the local caches directly; stores, reports and clears go here."""

    def __init__(self, backend: RedisBackend, caches: Mapping[str, Any], *, block_ms: int = 1000) -> None:
        import redis.asyncio as aioredis

        self.backend = backend
        self.health = backend.health
        self.caches = dict(caches)
        self.origin = secrets.token_hex(8)  # this process: it skips its own changes in the log
        self.block_ms = block_ms
        self.seq_key = backend.key("sem", "seq")
        self.log_key = backend.key("sem", "log")
        # (lever, op) -> changes of other instances applied here (/metrics: margin_semantic_cache_synced_total)
        self.synced: dict[tuple[str, str], int] = {}
        self._next_id = backend.script(_NEXT_ID)
        self._report = backend.script(_REPORT)
        self._extend = backend.script(_EXTEND)
        # The blocking read has a connection of its own, with a socket timeout longer than its block (the
        # shared pool's timeout is the per-command budget, gateway.redis_timeout_ms).
        pool = backend.client.connection_pool
        kwargs = dict(pool.connection_kwargs)
        kwargs["socket_timeout"] = block_ms / 1000 + (kwargs.get("socket_timeout") or 1.0)
        self._tail_client = aioredis.Redis(
            connection_pool=aioredis.ConnectionPool(connection_class=pool.connection_class, max_connections=2, **kwargs)
        )
        self._position = _START  # the last log message applied
        self._need_load = True
        self._suspect = False  # a read failed: check the log still reaches back to our position
        self._clears = 0  # clears applied so far (a store racing a clear checks it)
        self._storing: set[int] = set()  # ids this instance is storing: the log's message for them is skipped
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        backend.on_epoch_change.append(self._state_lost)

    # --- keys -------------------------------------------------------------------------------------------

    def entry_key(self, entry_id: int) -> str:
        return self.backend.key("sem", "e", str(entry_id))

    def ids_key(self, lever: str) -> str:
        return self.backend.key("sem", lever, "ids")

    # --- life cycle -------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Load the live entries (before the gateway serves), then tail the log in the background. With Redis
        unreachable the instance starts empty and loads when it is back."""
        try:
            await self._load()
        except BackendDown:
            pass  # counted and alerted by the health; the tailer loads once Redis answers
        except Exception:
            log.exception("could not load the semantic cache from redis; retried in the background")
        if self._task is None:
            self._task = asyncio.create_task(self._tail())

    async def aclose(self) -> None:
        # The flag as well as the cancel: a test run under load once hung waiting for this task to end, most
        # likely a cancellation lost as a Redis reply arrived; the loop also stops on the flag, and the cancel
        # is repeated until the task has ended.
        self._closing = True
        task, self._task = self._task, None
        while task is not None and not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=1.0)
        if task is not None and not task.cancelled():
            with contextlib.suppress(Exception):
                task.result()
        await self._tail_client.aclose()
        await self._tail_client.connection_pool.disconnect()

    async def _state_lost(self) -> None:
        """Redis lost its data (a new epoch): what this instance holds is no longer what Redis holds."""
        self._need_load = True

    # --- the request path ---------------------------------------------------------------------------------

    async def store(
        self, lever: str, partition: str, fingerprint: str, text: str, answer: CacheEntry, *, vector: Any
    ) -> int | None:
        """Store an answer in Redis, then in this instance's copy; the id, or None when not stored. Never
        raises: it runs in the background after the response."""
        try:
            return await self._store(lever, partition, fingerprint, text, answer, vector)
        except BackendDown:
            self.health.count("semantic_not_stored")
        except Exception:
            log.exception("could not store a semantic-cache entry of route %s", lever)
        return None

    async def _store(
        self, lever: str, partition: str, fingerprint: str, text: str, answer: CacheEntry, vector: Any
    ) -> int | None:
        cache = self.caches.get(lever)
        if cache is None:
            return None
        if vector is None:  # the gateway passes the lookup's vector; embed only when it did not keep one
            vector = (await asyncio.to_thread(cache.embedder.embed, [text]))[0]
        vector = np.asarray(vector, dtype=np.float32).reshape(-1)
        clears = self._clears
        entry_id = int(await self.backend.script_call(self._next_id, [self.seq_key], []))
        self._storing.add(entry_id)
        try:
            return await self._write(cache, lever, entry_id, partition, fingerprint, text, answer, vector, clears)
        finally:
            self._storing.discard(entry_id)

    async def _write(
        self,
        cache: Any,
        lever: str,
        entry_id: int,
        partition: str,
        fingerprint: str,
        text: str,
        answer: CacheEntry,
        vector: np.ndarray,
        clears: int,
    ) -> int:
        ttl = cache.ttl_seconds
        now = time.time()
        expires = now + ttl if ttl is not None else math.inf
        shared = SharedEntry(
            entry_id, lever, partition, fingerprint, text, vector, answer, cache.threshold, 0, now, expires
        )
        name, ids = self.entry_key(entry_id), self.ids_key(lever)
        fields = encode_entry(shared)
        client = self.backend.client

        async def write() -> None:
            async with client.pipeline(transaction=True) as pipe:
                pipe.hset(name, mapping=fields)
                pipe.zadd(ids, {str(entry_id): "+inf" if ttl is None else int(expires * 1000)})
                pipe.zremrangebyscore(ids, "-inf", int(now * 1000))
                if ttl is not None:
                    pipe.pexpire(name, int(ttl * 1000))
                    await self._extend(keys=[ids], args=[int(ttl * 1000)], client=pipe)  # queued
                pipe.xadd(self.log_key, self._message("s", lever, entry_id), maxlen=LOG_MAXLEN, approximate=True)
                await pipe.execute()

        await self.backend.run(write)
        await asyncio.to_thread(cache.insert, entry_id, partition, fingerprint, text, answer, vector, expires_in=ttl)
        if self._clears != clears:
            # A clear was applied while this store was in flight: keep the entry only if Redis still has it.
            if not await self.backend.run(lambda: client.exists(name)):
                cache.invalidate(entry_id)
        return entry_id

    async def report(self, lever: str, entry_id: int, *, correct: bool, similarity: float | None) -> None:
        """A client's verdict on a served hit. A wrong one is decided in Redis for every instance and adopted
        here at once; with Redis unreachable it applies to this instance only."""
        cache = self.caches.get(lever)
        if cache is None:
            return
        if correct:
            cache.report(entry_id, correct=True)  # counted only: nothing to share
            return
        args = [
            1.0 if similarity is None else float(similarity),
            cache.adapt_margin,
            cache.max_wrong_reports,
            lever,
            entry_id,
            self.origin,
            LOG_MAXLEN,
        ]
        keys = [self.entry_key(entry_id), self.log_key, self.ids_key(lever)]
        try:
            outcome = await self.backend.script_call(self._report, keys, args)
        except BackendDown:
            self.health.count("semantic_not_shared")
            outcome = None
        if outcome is None:  # not in Redis (expired, cleared, or Redis unreachable): this copy decides alone
            cache.report(entry_id, correct=False, similarity=similarity)
            return
        op, threshold, wrong = outcome
        if op == b"d":
            cache.invalidate(entry_id)
        else:
            cache.apply_feedback(entry_id, threshold=float(threshold), reported_wrong=int(wrong))

    async def clear(
        self, *, route: str | None = None, partition: str | None = None, key_prefix: str | None = None
    ) -> int:
        """Drop entries matching every given filter, in Redis and (through the log) in every instance's copy.
        Returns how many Redis held."""
        levers = [name for name in self.caches if route is None or name == route]
        client = self.backend.client

        async def sweep() -> int:
            cleared = 0
            for lever in levers:
                ids = [int(i) for i in await client.zrange(self.ids_key(lever), 0, -1)]
                doomed: list[int] = []
                for chunk in _chunks(ids, _CHUNK):
                    if partition is None and key_prefix is None:
                        doomed.extend(chunk)
                        continue
                    async with client.pipeline(transaction=False) as pipe:
                        for entry_id in chunk:
                            pipe.hmget(self.entry_key(entry_id), "p", "k")
                        rows = await pipe.execute()
                    for entry_id, (stored_partition, stored_key) in zip(chunk, rows, strict=True):
                        if partition is not None and stored_partition != partition.encode():
                            continue
                        if key_prefix is not None and not (stored_key or b"").decode().startswith(key_prefix):
                            continue
                        doomed.append(entry_id)
                for chunk in _chunks(doomed, _CHUNK):
                    async with client.pipeline(transaction=False) as pipe:
                        for entry_id in chunk:
                            pipe.delete(self.entry_key(entry_id))
                        pipe.zrem(self.ids_key(lever), *[str(i) for i in chunk])
                        cleared += sum((await pipe.execute())[:-1])
            message = self._message("c", route)
            message.update({k: v for k, v in (("p", partition), ("k", key_prefix)) if v is not None})
            await client.xadd(self.log_key, message, maxlen=LOG_MAXLEN, approximate=True)
            return cleared

        try:
            cleared = int(await self.backend.run(sweep))
        except BackendDown as exc:
            raise GatewayError(
                f"cannot clear the semantic cache: redis at {self.health.describe} is unreachable ({exc})",
                status=503,
                error_type="cache_backend_unavailable",
            ) from None
        self._clears += 1
        clear_semantic(self.caches, route=route, partition=partition, key_prefix=key_prefix)
        return cleared

    def _message(self, op: str, lever: str | None, entry_id: int | None = None) -> dict[str, str | int]:
        message: dict[str, str | int] = {"op": op, "o": self.origin}
        if lever is not None:
            message["r"] = lever
        if entry_id is not None:
            message["id"] = entry_id
        return message

    # --- keeping the local copies in step ----------------------------------------------------------------

    async def _tail(self) -> None:
        """Apply the log's changes as they come; reload when the log no longer reaches back to our position."""
        while not self._closing:
            try:
                if self._need_load:
                    await self._load()
                elif self._suspect:
                    await self._check_log()
                else:
                    await self._read_log()
            except asyncio.CancelledError:
                raise
            except BackendDown:
                self._suspect = True
                await asyncio.sleep(self.health.probe_interval)
            except Exception:
                log.exception("the semantic-cache sync from redis failed; it retries in 1 s")
                self._suspect = True
                await asyncio.sleep(1.0)

    async def _read_log(self) -> None:
        reply = await self.backend.run(
            lambda: self._tail_client.xread({self.log_key: self._position}, count=_BATCH, block=self.block_ms)
        )
        if not reply:
            return
        messages = reply[0][1]
        await self._apply(messages)
        self._position = messages[-1][0]
        if len(messages) == _BATCH:
            self._suspect = True  # far behind: the log may have been trimmed past what we read next

    async def _check_log(self) -> None:
        """After a failed read (or when far behind): is every message after our position still in the log?"""
        from redis.exceptions import ResponseError

        async def info() -> dict[str, Any] | None:
            try:
                return await self._tail_client.xinfo_stream(self.log_key)
            except ResponseError as exc:
                if "no such key" in str(exc).lower():
                    return None
                raise

        found = await self.backend.run(info)
        if found is None:
            lost = self._position != _START  # the log existed and is gone: Redis lost its data
        else:
            # Lost when messages came after our position and the oldest one left is past it (or none is left):
            # conservative by one message (our position's own may be the one trimmed), then a reload is spare.
            first = found.get("first-entry")
            newer = _stream_id(found.get("last-generated-id") or _START) > _stream_id(self._position)
            trimmed = int(found.get("entries-added") or 0) > int(found.get("length") or 0)
            lost = newer and trimmed and (first is None or _stream_id(first[0]) > _stream_id(self._position))
        if lost:
            log.warning("the semantic-cache log in redis no longer reaches back to this instance's position: reload")
            self._need_load = True
        self._suspect = False

    async def _load(self) -> None:
        """Make the local copies what Redis holds: its live entries in, the others out."""
        client = self.backend.client

        async def read() -> tuple[bytes, dict[str, list[dict[bytes, bytes]]]]:
            newest = await client.xrevrange(self.log_key, count=1)
            position = newest[0][0] if newest else _START  # read first: what changes during the load is replayed
            now_ms = int(time.time() * 1000)
            rows: dict[str, list[dict[bytes, bytes]]] = {}
            for lever in self.caches:
                ids = [int(i) for i in await client.zrangebyscore(self.ids_key(lever), now_ms, "+inf")]
                rows[lever] = []
                for chunk in _chunks(sorted(ids), _CHUNK):
                    async with client.pipeline(transaction=False) as pipe:
                        for entry_id in chunk:
                            pipe.hgetall(self.entry_key(entry_id))
                        rows[lever].extend(await pipe.execute())
            return position, rows

        self._need_load = False  # set again by an epoch change during the load
        try:
            position, rows = await self.backend.run(read)
        except BaseException:
            self._need_load = True
            raise
        loaded = await asyncio.to_thread(self._replace, rows)
        self._position = position
        self._suspect = False
        log.info("semantic cache: %d entries loaded from redis (%s)", loaded, ", ".join(self.caches))

    def _replace(self, rows: Mapping[str, list[dict[bytes, bytes]]]) -> int:
        now = time.time()
        loaded = 0
        for lever, cache in self.caches.items():
            entries = [e for e in (decode_entry(f, cache.embedder.dim) for f in rows.get(lever, ())) if e]
            keep = {e.entry_id for e in entries}
            for entry_id in cache.entry_ids():
                if entry_id not in keep:
                    cache.invalidate(entry_id)
            for entry in entries:
                if entry.entry_id in cache:
                    cache.apply_feedback(entry.entry_id, threshold=entry.threshold, reported_wrong=entry.reported_wrong)
                    continue
                loaded += self._insert(cache, entry, now)
        return loaded

    @staticmethod
    def _insert(cache: Any, entry: SharedEntry, now: float) -> bool:
        return cache.insert(
            entry.entry_id,
            entry.partition,
            entry.fingerprint,
            entry.text,
            entry.answer,
            entry.vector,
            expires_in=None if math.isinf(entry.expires_at) else entry.expires_at - now,
            age_seconds=now - entry.stored_at,
            threshold=entry.threshold,
            reported_wrong=entry.reported_wrong,
        )

    async def _apply(self, messages: list[tuple[bytes, dict[bytes, bytes]]]) -> None:
        """Apply a batch of log messages in order (the stored entries fetched first, in one round trip)."""
        wanted: list[int] = []
        for _, fields in messages:
            if fields.get(b"op") != b"s":
                continue
            cache = self.caches.get(fields.get(b"r", b"").decode())
            entry_id = int(fields[b"id"])
            if cache is None:
                continue
            # Its own store is skipped unless a reload dropped it meanwhile (then it is fetched like any other).
            own = fields.get(b"o") == self.origin.encode() and (entry_id in self._storing or entry_id in cache)
            if not own:
                wanted.append(entry_id)
        fetched: dict[int, dict[bytes, bytes]] = {}
        if wanted:
            client = self.backend.client

            async def fetch() -> list[dict[bytes, bytes]]:
                async with client.pipeline(transaction=False) as pipe:
                    for entry_id in wanted:
                        pipe.hgetall(self.entry_key(entry_id))
                    return await pipe.execute()

            fetched = dict(zip(wanted, await self.backend.run(fetch), strict=True))
        # Counted before they are applied: a store in flight compares the count after its own insert.
        self._clears += sum(1 for _, f in messages if f.get(b"op") == b"c" and f.get(b"o") != self.origin.encode())
        for key in await asyncio.to_thread(self._apply_sync, messages, fetched):
            self.synced[key] = self.synced.get(key, 0) + 1  # here, on the event loop that renders /metrics

    def _apply_sync(
        self, messages: Iterable[tuple[bytes, dict[bytes, bytes]]], fetched: dict[int, Any]
    ) -> list[tuple[str, str]]:
        """Apply the messages in a worker thread (index inserts); returns (lever, op) of each change applied."""
        now = time.time()
        own = self.origin.encode()
        applied: list[tuple[str, str]] = []
        for _, fields in messages:
            op = fields.get(b"op", b"").decode()
            lever = fields[b"r"].decode() if b"r" in fields else None
            if op == "s":
                cache = self.caches.get(lever or "")
                if cache is None:  # (a SemanticCache has a length: an empty one is falsy)
                    continue
                entry = decode_entry(fetched.get(int(fields[b"id"])) or {}, cache.embedder.dim)
                if entry is not None and self._insert(cache, entry, now):
                    applied.append((lever or "", "store"))
                continue
            if fields.get(b"o") == own:
                continue  # applied when it was done here
            if op == "c":
                clear_semantic(
                    self.caches,
                    route=lever,
                    partition=fields[b"p"].decode() if b"p" in fields else None,
                    key_prefix=fields[b"k"].decode() if b"k" in fields else None,
                )
                applied.append((lever or "*", "clear"))
                continue
            cache = self.caches.get(lever or "")
            if cache is None:
                continue
            entry_id = int(fields[b"id"])
            if op == "t":
                cache.apply_feedback(entry_id, threshold=float(fields[b"h"]), reported_wrong=int(fields[b"w"]))
                applied.append((lever or "", "feedback"))
            elif op == "d":
                cache.invalidate(entry_id)
                applied.append((lever or "", "drop"))
        return applied


def _chunks(items: list[int], size: int) -> Iterable[list[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]

"""The semantic cache shared through a real Redis (gateway/backends/redis_semantic.py): the entry format, global
ids, two instances' copies kept in step (stores, wrong-hit reports, clears), a starting instance loading the
live entries, expiry, a Redis that lost its data or its log, and what happens while Redis is unreachable.
A deterministic fake embedder stands in for MiniLM (vectors travel with the entries, so nothing here embeds
but the stores)."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from margin.cache import SemanticCache
from margin.cache._exact import CacheEntry
from margin.gateway.backends._redis import RedisBackend
from margin.gateway.backends.redis_semantic import RedisSemanticCaches, SharedEntry, decode_entry, encode_entry
from margin.gateway.errors import GatewayError
from tests.cache.test_semantic import DIM, FakeEmbedder, near, unit

Q = "How do I reset my password?"
P = "How can I reset my password?"
V = unit("q")
TABLE = {Q: V, P: near(V, 0.95), "third": unit("third")}


def _answer(text: str, key: str = "k0") -> CacheEntry:
    body = {"choices": [{"message": {"content": f"answer to {text}"}, "finish_reason": "stop"}]}
    return CacheEntry(body, 7, "faq", "gpt-4o-mini", 0.0, 0.0, 0, key=key)


class Instance:
    """One gateway instance's worth: a backend, a local SemanticCache per route, the shared layer."""

    def __init__(self, url: str, *, ttl: float = 600.0) -> None:
        self.backend = RedisBackend(url, timeout_s=2.0, heartbeat_s=0.2)
        self.cache = SemanticCache(FakeEmbedder(TABLE), threshold=0.9, ttl_seconds=ttl)
        self.shared = RedisSemanticCaches(self.backend, {"faq": self.cache}, block_ms=200)

    async def start(self) -> Instance:
        await self.backend.start()  # the epoch monitor: a Redis that lost its data triggers a reload
        await self.shared.start()
        return self

    async def store(self, text: str, partition: str = "team:a", key: str = "k0") -> int | None:
        return await self.shared.store("faq", partition, "fp", text, _answer(text, key), vector=TABLE[text])

    async def close(self) -> None:
        await self.shared.aclose()
        await self.backend.aclose()


def run(coro: Any, timeout: float = 60.0) -> None:
    """asyncio.run with a deadline: a hang fails the test (with every task's stack) instead of stalling CI."""

    async def bounded() -> None:
        try:
            await asyncio.wait_for(coro, timeout)
        except TimeoutError:
            stacks = []
            for task in asyncio.all_tasks():
                frames, awaited = [], task.get_coro()
                while awaited is not None and hasattr(awaited, "cr_frame"):  # the chain of awaits, outermost first
                    if awaited.cr_frame is not None:
                        frames.append(f"  {awaited.cr_frame.f_code.co_name} line {awaited.cr_frame.f_lineno}")
                    awaited = awaited.cr_await
                stacks.append(f"{task.get_name()}:\n" + "\n".join(frames))
            raise AssertionError(f"the test did not finish in {timeout:g} s; tasks:\n" + "\n".join(stacks)) from None

    asyncio.run(bounded())


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


def test_an_entry_encodes_and_decodes() -> None:
    entry = SharedEntry(
        1_795_490_866_123_456, "faq", "team:a", "fp", Q, V, _answer(Q, "abc"), 0.93, 1, 1000.5, math.inf
    )
    fields = {k.encode(): v if isinstance(v, bytes) else str(v).encode() for k, v in encode_entry(entry).items()}
    assert len(fields[b"v"]) == DIM * 4  # float32
    back = decode_entry(fields, DIM)
    assert back is not None
    assert back.entry_id == entry.entry_id and back.text == Q and back.partition == "team:a"
    assert np.array_equal(back.vector, V) and back.vector.dtype == np.float32
    assert back.answer.body == entry.answer.body and back.answer.key == "abc" and back.answer.output_tokens == 7
    assert back.threshold == 0.93 and back.reported_wrong == 1 and back.stored_at == 1000.5
    assert math.isinf(back.expires_at)
    assert decode_entry({}, DIM) is None  # expired or dropped meanwhile
    assert decode_entry(fields, DIM + 1) is None  # another embedder's entry
    assert decode_entry({k: v for k, v in fields.items() if k != b"t"}, DIM) is None


def test_two_instances_share_entries_feedback_and_clears(redis_url) -> None:
    async def go() -> None:
        a, b = await Instance(redis_url).start(), await Instance(redis_url).start()
        try:
            first = await a.store(Q)
            assert first is not None and first > 10**15  # seeded from the server's clock in microseconds
            await until(lambda: b.shared.synced.get(("faq", "store")) == 1)
            hit = b.cache.lookup("team:a", "fp", P)
            assert hit is not None and hit.entry_id == first and hit.payload.body == _answer(Q).body
            assert b.cache.lookup("team:b", "fp", P) is None  # another scope never gets it
            assert first in b.cache and not a.shared.synced  # an instance skips its own changes in the log
            second = await b.store("third", "team:b", key="xyz")
            assert second == first + 1  # one counter for every instance
            await until(lambda: second in a.cache)

            # A wrong-hit report on B raises the entry's threshold in A too; reports add up across instances.
            await b.shared.report("faq", first, correct=False, similarity=hit.similarity)
            raised = b.cache.entry_threshold(first)
            assert raised is not None and raised > hit.similarity
            await until(lambda: a.cache.entry_threshold(first) == raised)
            assert a.cache.lookup("team:a", "fp", P) is None
            await a.shared.report("faq", first, correct=False, similarity=0.99)
            await b.shared.report("faq", first, correct=False, similarity=0.99)  # the third: dropped everywhere
            await until(lambda: first not in a.cache and first not in b.cache)

            # Clears: by key prefix and scope, then everything; the other instance follows.
            again = await a.store(Q)
            await until(lambda: again in b.cache)
            assert await b.shared.clear(key_prefix="xy") == 1
            await until(lambda: second not in a.cache)
            assert again in a.cache
            assert await b.shared.clear(partition="team:zzz") == 0
            assert await a.shared.clear() == 1
            await until(lambda: len(b.cache) == 0)
            assert len(a.cache) == 0
        finally:
            await a.close()
            await b.close()

    run(go())


def test_a_starting_instance_loads_the_live_entries_and_expiry_applies(redis_url) -> None:
    async def go() -> None:
        a = await Instance(redis_url).start()
        short = await Instance(redis_url, ttl=0.6).start()
        try:
            kept = await a.store(Q)
            await a.shared.report("faq", kept, correct=False, similarity=0.95)  # its raised threshold travels
            gone = await short.store("third")
            late = await Instance(redis_url).start()
            try:
                assert set(late.cache.entry_ids()) == {kept, gone}
                assert late.cache.entry_threshold(kept) == pytest.approx(0.96)
            finally:
                await late.close()
            await asyncio.sleep(0.7)  # past the short TTL: Redis expires the hash, every copy its entry
            assert gone not in short.cache.entry_ids() and gone not in a.cache.entry_ids()
            assert not await a.backend.client.exists(short.shared.entry_key(gone))
            later = await Instance(redis_url).start()
            try:
                assert later.cache.entry_ids() == [kept]
            finally:
                await later.close()
        finally:
            await a.close()
            await short.close()

    run(go())


def test_a_redis_that_lost_its_data_or_its_log_is_reloaded(redis_url, redis_server) -> None:
    async def go() -> None:
        a, b = await Instance(redis_url).start(), await Instance(redis_url).start()
        try:
            first = await a.store(Q)
            await until(lambda: first in b.cache)
            # The log trimmed past B's position while B was not reading: B reloads what Redis holds.
            tailer = b.shared._task
            while tailer is not None and not tailer.done():  # until it has stopped (a cancel can be lost)
                tailer.cancel()
                await asyncio.wait({tailer}, timeout=1.0)
            b.shared._task = None
            second = await a.store("third")
            await a.backend.client.xtrim(a.shared.log_key, maxlen=0)
            await a.backend.client.delete(a.shared.entry_key(first))  # gone from Redis without a log message
            b.shared._suspect = True  # as after a failed read
            b.shared._task = asyncio.create_task(b.shared._tail())
            await until(lambda: b.cache.entry_ids() == [second])

            # FLUSHALL: a new epoch; both copies become what Redis holds (nothing), and new ids stay above old.
            redis_server.flush()
            await until(lambda: len(a.cache) == 0 and len(b.cache) == 0)
            third = await b.store(Q)
            assert third is not None and third > second
            await until(lambda: third in a.cache)
        finally:
            await a.close()
            await b.close()

    run(go())


def test_while_redis_is_unreachable_the_local_copy_serves_and_nothing_is_shared(own_redis) -> None:
    async def go() -> None:
        a, b = await Instance(own_redis.url).start(), await Instance(own_redis.url).start()
        try:
            first = await a.store(Q)
            await until(lambda: first in b.cache)
            own_redis.kill()
            hit = b.cache.lookup("team:a", "fp", P)
            assert hit is not None and hit.entry_id == first  # lookups never touch Redis
            assert await b.store("third") is None  # not stored (not even locally: ids come from Redis)
            await b.shared.report("faq", first, correct=False, similarity=hit.similarity)  # this copy only
            assert b.cache.entry_threshold(first) > hit.similarity  # type: ignore[operator]
            with pytest.raises(GatewayError) as refused:
                await b.shared.clear()
            assert refused.value.http_status == 503
            counts = b.backend.health.counts
            assert counts[("redis", "semantic_not_stored")] == 1 and counts[("redis", "semantic_not_shared")] == 1
            assert counts[("redis", "outage")] == 1

            own_redis.start()  # empty: no persistence
            # The tailers reconnect, find the log gone, reload (empty), and new entries propagate again.
            await until(lambda: not b.backend.health.down and len(a.cache) == 0 and len(b.cache) == 0, 10)
            again = await b.store("third")
            assert again is not None and again > first
            await until(lambda: again in a.cache)
        finally:
            await a.close()
            await b.close()

    run(go())

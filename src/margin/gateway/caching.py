"""The exact cache at the gateway's edge: decide (hit, miss, bypass), serve hits, store answers.

A hit costs nothing upstream: it is served in the client's format (a streaming request gets the answer
replayed as a stream), and written to the ledger as an event with status ``cached`` and the avoided cost
(what the upstream call would cost now, at the requested route's prices). Only complete, successful
answers are stored: never errors, detected refusals, truncated answers (``finish_reason`` ``length`` /
``stop_reason`` ``max_tokens``) or streams (a streamed miss is not stored; see docs/savings.md).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from ..cache._exact import CacheEntry, cache_scope_value, is_deterministic
from ..ids import new_id
from ..money import ZERO
from ..usage import NormalizedUsage, UsageBlockError, UsageEvent
from .levers_config import LeverRoute
from .pipeline import CallContext, normalize
from .replay import replay_anthropic, replay_openai
from .state import Gateway

__all__ = [
    "CacheDecision",
    "SemanticState",
    "clear_caches",
    "decide_cache",
    "semantic_lookup",
    "serve_hit",
    "store_answer",
]


@dataclass(frozen=True)
class SemanticState:
    """A semantic lookup's inputs (kept to store the answer after a miss without embedding twice)."""

    cache: Any
    partition: str
    fingerprint: str
    text: str
    vector: Any
    similarity: float | None = None


@dataclass(frozen=True)
class CacheDecision:
    status: Literal["hit", "semantic-hit", "miss", "bypass", "off"]
    lever: str | None = None
    partition: str | None = None
    key: str | None = None
    entry: CacheEntry | None = None
    ttl_seconds: float = 0.0
    semantic: SemanticState | None = None


_OFF = CacheDecision("off")


def _bypassed(headers: Mapping[str, str]) -> bool:
    control = headers.get("cache-control", "").lower()
    return "no-cache" in control or "no-store" in control or headers.get("x-margin-cache", "").lower() == "bypass"


async def decide_cache(
    gw: Gateway, ctx: CallContext, lever: LeverRoute | None, headers: Mapping[str, str]
) -> CacheDecision:
    """Whether this request may use the exact cache, and the entry if it is a hit."""
    policy = lever.cache if lever is not None else None
    if policy is None or not policy.enabled or ctx.endpoint == "embeddings" or lever is None:
        return _OFF
    if _bypassed(headers) or not (policy.cache_nondeterministic or is_deterministic(ctx.client_body)):
        return CacheDecision("bypass", lever=lever.name)
    partition = cache_scope_value(policy.scope, key_id=ctx.principal.key_id, tags=ctx.tags)
    key = ctx.prompt_hash
    entry = await gw.exact_cache.get(partition, key, max_output_tokens=ctx.requested_max_tokens)
    return CacheDecision(
        "hit" if entry else "miss",
        lever=lever.name,
        partition=partition,
        key=key,
        entry=entry,
        ttl_seconds=policy.ttl_seconds,
    )


async def semantic_lookup(gw: Gateway, ctx: CallContext, decision: CacheDecision) -> CacheDecision:
    """After an exact miss on a route with a semantic cache: embed the last user turn (in a worker thread:
    ~6 ms of CPU) and look for an answer to a question that means the same under the same context."""
    cache = gw.semantic_caches.get(decision.lever or "")
    if cache is None or decision.status != "miss" or decision.partition is None:
        return decision
    from ..cache import semantic_key

    key = semantic_key(ctx.client_body)
    if key is None:
        return decision
    fingerprint, text = key
    found = await asyncio.to_thread(cache.lookup_detailed, decision.partition, fingerprint, text)
    state = SemanticState(cache, decision.partition, fingerprint, text, found.vector)
    hit = found.hit
    if hit is None or not isinstance(hit.payload, CacheEntry):
        return replace(decision, semantic=state)
    if ctx.requested_max_tokens is not None and hit.payload.output_tokens > ctx.requested_max_tokens:
        return replace(decision, semantic=state)
    ctx.decisions["semantic"] = {"similarity": round(hit.similarity, 4), "entry": hit.entry_id}
    return replace(
        decision, status="semantic-hit", entry=hit.payload, semantic=replace(state, similarity=hit.similarity)
    )


def cacheable(ctx: CallContext, body: Mapping[str, Any]) -> bool:
    """A complete, successful answer: no truncation, refusal or content filter, and something in it."""
    if ctx.wire == "anthropic":
        if body.get("stop_reason") not in ("end_turn", "stop_sequence", "tool_use"):
            return False
        return bool(body.get("content"))
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices:
        return False
    for choice in choices:
        if not isinstance(choice, Mapping) or choice.get("finish_reason") not in ("stop", "tool_calls"):
            return False
        message = choice.get("message")
        if not isinstance(message, Mapping) or message.get("refusal"):
            return False
        if not message.get("content") and not message.get("tool_calls"):
            return False
    return True


async def store_answer(
    gw: Gateway,
    ctx: CallContext,
    decision: CacheDecision,
    body: dict[str, Any],
    usage: NormalizedUsage,
    served_model: str,
) -> bool:
    """Store a miss's answer when it is cacheable. Returns whether it was stored."""
    if decision.status != "miss" or decision.key is None or decision.partition is None:
        return False
    if not cacheable(ctx, body):
        return False
    if decision.semantic is not None:
        sem = decision.semantic
        lever = decision.lever or ""
        entry = CacheEntry(body, usage.output_tokens, lever, served_model, 0.0, 0.0, 0, key=decision.key)
        # Off the event loop; the response does not wait for it. With Redis, stored there and announced to
        # the other instances (gateway/backends/redis_semantic.py; it never raises).
        if gw.semantic_shared is not None:
            work: Any = gw.semantic_shared.store(
                lever, sem.partition, sem.fingerprint, sem.text, entry, vector=sem.vector
            )
        else:
            work = asyncio.to_thread(
                sem.cache.store, sem.partition, sem.fingerprint, sem.text, entry, vector=sem.vector
            )
        task = asyncio.get_running_loop().create_task(work)
        gw.background_tasks.add(task)  # referenced until done: an unreferenced task may be collected
        task.add_done_callback(gw.background_tasks.discard)
    return await gw.exact_cache.put(
        decision.partition,
        decision.key,
        body,
        output_tokens=usage.output_tokens,
        route=decision.lever or "",
        served_model=served_model,
        ttl_seconds=decision.ttl_seconds,
    )


async def clear_caches(
    gw: Gateway, *, route: str | None = None, partition: str | None = None, key_prefix: str | None = None
) -> tuple[int, int]:
    """``margin cache clear`` / ``POST /v1/margin/cache/clear``: (exact, semantic) entries dropped, in every
    instance when the caches live in Redis. A key prefix matches a semantic entry by the cache key of the
    request that stored it."""
    exact = await gw.exact_cache.clear(route=route, partition=partition, key_prefix=key_prefix)
    if gw.semantic_shared is not None:
        semantic = await gw.semantic_shared.clear(route=route, partition=partition, key_prefix=key_prefix)
    else:
        from .backends.memory import clear_semantic

        semantic = clear_semantic(gw.semantic_caches, route=route, partition=partition, key_prefix=key_prefix)
    return exact, semantic


async def serve_hit(gw: Gateway, ctx: CallContext, decision: CacheDecision) -> tuple[bytes, dict[str, str], bool]:
    """Record the hit in the ledger and return (body, headers, is_stream) for the client."""
    entry = decision.entry
    assert entry is not None
    try:
        usage = normalize(ctx, entry.body)
    except UsageBlockError:
        usage = NormalizedUsage(source="none")
    # Priced at the model that produced the cached answer (a cascade may have escalated it past the tier
    # routing picks first), at today's prices: what getting this answer from upstream would cost now.
    producer = next((r for r in gw.routes.values() if r.upstream_model == entry.served_model), ctx.route)
    avoided = producer.pricer.price(usage.to_token_usage(), gw.clock()).effective_cost
    now = gw.clock()
    event = UsageEvent(
        event_id=new_id(),
        request_id=ctx.request_id,
        attempt=0,
        started_at=ctx.started_at,
        finished_at=now,
        status="cached",
        endpoint=ctx.endpoint,
        requested_model=str(ctx.body.get("model") or ""),
        served_model=entry.served_model,
        provider="cache",
        key_id=ctx.principal.key_id,
        tags=ctx.tags,
        task_id=ctx.task_id,
        input_tokens=usage.input_tokens,
        cache_read_tokens=usage.cache_read_tokens,
        cache_write_tokens=usage.cache_write_tokens,
        output_tokens=usage.output_tokens,
        reasoning_tokens=usage.reasoning_tokens,
        usage_source=usage.source,
        list_cost=ZERO,
        effective_cost=ZERO,
        price_source="cache",
        latency_ms=int((time.monotonic() - ctx.started_monotonic) * 1000),
        stream=ctx.stream,
        route=decision.lever,
        cache=decision.status,
        avoided_cost=avoided,
        decisions=ctx.decisions,
        prompt_hash=ctx.prompt_hash,
    )
    await gw.ledger.write_event(event, wait=gw.config.wait_for_ledger_commit)
    gw.observe(event)
    headers = {
        "x-margin-request-id": ctx.request_id,
        "x-margin-cache": decision.status,
        "x-margin-cost": "0",
        "x-margin-avoided-cost": f"{avoided:f}",
        "x-margin-served-model": entry.served_model,
    }
    if not ctx.stream:
        import orjson

        return orjson.dumps(entry.body), headers, False
    if ctx.wire == "anthropic":
        return replay_anthropic(entry.body), headers, True
    return replay_openai(entry.body, include_usage=ctx.include_usage_requested), headers, True

"""The cost-reduction levers at the gateway's edge: which lever route applies, the model it routes to, the
prompt it compresses or trims, the cheaper tier a budget can still afford, and whether a cascade answer
passes. The decisions themselves are the pure functions of :mod:`margin.levers`; this module feeds them the
request and records what they decided (``ctx.decisions``, stored with the usage event)."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping
from typing import Any

import orjson

from ..levers import TierMap as _TierMap
from ..levers import (
    TrainedRouter,
    cascade_order,
    compress_messages,
    downgrade_order,
    fit_context,
    score_request,
    summary_request,
    validate_answer,
    with_summary,
)
from ..policy.budgets import RequestScope, applicable_budgets
from ..usage import count_prompt_tokens
from .errors import GatewayError
from .levers_config import LeverRoute, RoutingPolicy
from .providers.base import UpstreamError
from .state import Gateway, ModelRoute, key_budget_rules

__all__ = [
    "affordable_route",
    "answer_of",
    "apply_prompt_levers",
    "cascade_verdict",
    "lever_for",
    "route_model",
    "summarize_dropped",
]


def lever_for(gw: Gateway, model: object, tags: Mapping[str, str]) -> LeverRoute | None:
    """The first lever route covering the request (its public model name and tags)."""
    name = model if isinstance(model, str) else ""
    for lever in gw.config.levers:
        if lever.match.covers(name, dict(tags)):
            return lever
    return None


def _tier_map(policy: RoutingPolicy) -> _TierMap:
    return _TierMap(simple=policy.tiers["simple"], standard=policy.tiers["standard"], complex=policy.tiers["complex"])


def route_model(
    policy: RoutingPolicy, wire: str, body: Mapping[str, Any], learned: TrainedRouter | None = None
) -> tuple[str, dict[str, Any], list[str]]:
    """(model to call, the decision to record, the cascade's later models). A pinned route always answers
    with its pin; otherwise the complexity score picks the tier, and a learned router (when the route has
    one) decides simple vs. not from the same signals: cheap enough -> simple; not -> the heuristic's tier,
    or standard when the heuristic said simple."""
    if policy.pin:
        return policy.pin, {"routing": "pinned", "model": policy.pin}, []
    messages = body.get("messages") if isinstance(body.get("messages"), list) else []
    score = score_request(
        messages,
        tools=body.get("tools") if isinstance(body.get("tools"), list) else None,
        response_format=body.get("response_format") if isinstance(body.get("response_format"), Mapping) else None,
        system=body.get("system") if wire == "anthropic" else None,
    )
    tiers = _tier_map(policy)
    tier = score.tier
    decision: dict[str, Any] = {
        "routing": "tier",
        "score": round(score.score, 4),
        "signals": {k: round(v, 4) for k, v in score.signals.items()},
    }
    if learned is not None:
        probability = learned.predict_cheap_ok(score.signals)
        cheap = probability >= learned.threshold
        tier = "simple" if cheap else ("standard" if score.tier == "simple" else score.tier)
        decision.update(routing="learned", heuristic_tier=score.tier, cheap_ok=round(probability, 4))
    model = tiers.model_for(tier)
    decision.update(tier=tier, model=model)
    later = list(cascade_order(tier, tiers)[1:]) if policy.cascade else []
    return model, decision, later


async def affordable_route(gw: Gateway, ctx: Any, policy: RoutingPolicy, tier: str) -> tuple[ModelRoute, bool]:
    """The chosen tier's route, or the first cheaper tier whose worst case fits every budget that applies to
    it (``downgrade_to_fit``); (route, downgraded). When nothing fits, the chosen route: the reservation then
    refuses it with the usual budget error."""
    order = downgrade_order(tier, _tier_map(policy))  # type: ignore[arg-type]
    now = gw.clock()
    rules = [*gw.config.budgets, *key_budget_rules(ctx.principal.key)]
    max_tokens = min(ctx.requested_max_tokens or gw.config.default_max_tokens, gw.config.max_tokens_cap)
    for name in order:
        route = gw.routes[name]
        applied = applicable_budgets(
            rules, RequestScope(key_id=ctx.principal.key_id, tags=ctx.tags, model=route.upstream_model), now
        )
        headroom = await gw.counters.headroom(applied)
        worst, _, _ = route.pricer.worst_case(ctx.prompt_estimate, max_tokens, now)
        if headroom is None or worst <= headroom:
            return route, name != order[0]
    return gw.routes[order[0]], False


def apply_prompt_levers(gw: Gateway, ctx: Any, lever: LeverRoute) -> None:
    """Compression, then context trimming, of ``ctx.body`` (a copy: the client's body stays for the cache
    key); records tokens before and after, and the exact prompt count of what will be sent."""
    model = ctx.route.upstream_model
    body = ctx.body
    count: int | None = None  # the prompt count of ``body`` when already known
    if lever.compression is not None and lever.compression.enabled:
        before = count_prompt_tokens(ctx.endpoint, body, model)
        result = compress_messages(body["messages"], model=model)
        body = {**body, "messages": result.messages}
        if ctx.wire == "anthropic" and isinstance(body.get("system"), str):
            system = compress_messages([{"role": "system", "content": body["system"]}], model=model)
            body["system"] = system.messages[0]["content"]
        after = count_prompt_tokens(ctx.endpoint, body, model)
        ctx.decisions["compression"] = {"tokens_before": before, "tokens_after": after, "saved": before - after}
        count = after
    if lever.context is not None and lever.context.enabled:
        messages = body["messages"]
        if ctx.wire == "anthropic" and body.get("system"):
            messages = [{"role": "system", "content": body["system"]}, *messages]
        policy = lever.context
        summarize = policy.method == "summarize"
        fitted = fit_context(
            messages,
            model=model,
            max_input_tokens=policy.max_input_tokens,
            keep_recent=policy.keep_recent,
            summarize=summarize and policy.summary_max_tokens < policy.max_input_tokens,
            summary_max_tokens=policy.summary_max_tokens if summarize else 0,
        )
        if fitted.method != "none":
            kept = fitted.messages[1:] if ctx.wire == "anthropic" and body.get("system") else fitted.messages
            if fitted.method == "summary_needed":
                # Done by the edge (an upstream call): the original messages and what to replace.
                ctx.pending_summary = (messages, list(fitted.dropped))
            body = {**body, "messages": kept}
            ctx.decisions["context"] = {
                "method": fitted.method,
                "tokens_before": fitted.tokens_before,
                "tokens_after": fitted.tokens_after,
                "saved": fitted.tokens_before - fitted.tokens_after,
                "dropped_messages": len(fitted.dropped),
                "fits": fitted.fits,
            }
            count = None  # tools and the Anthropic system prompt count too: counted again below
    if body is not ctx.body:
        ctx.body = body
        ctx.prompt_count = count if count is not None else count_prompt_tokens(ctx.endpoint, body, model)


def answer_of(wire: str, body: Mapping[str, Any]) -> tuple[str, str | None]:
    """(answer text, finish reason) of a non-streaming response, for cascade validation. Tool calls count as
    an answer (their arguments as the text)."""
    if wire == "anthropic":
        parts = []
        for block in body.get("content") or []:
            if isinstance(block, Mapping):
                if block.get("type") == "text":
                    parts.append(str(block.get("text") or ""))
                elif block.get("type") == "tool_use":
                    parts.append(str(block.get("input") or ""))
        reason = body.get("stop_reason")
        return "".join(parts), {"max_tokens": "length"}.get(str(reason), str(reason) if reason else None)
    choices = body.get("choices") or [{}]
    first = choices[0] if isinstance(choices[0], Mapping) else {}
    message = first.get("message") or {}
    text = message.get("content") or ""
    if not text and message.get("tool_calls"):
        text = str(message["tool_calls"])
    if message.get("refusal"):
        text = str(message["refusal"])
    return str(text), first.get("finish_reason")


def cascade_verdict(policy: RoutingPolicy, wire: str, request: Mapping[str, Any], response: Mapping[str, Any]):
    text, finish = answer_of(wire, response)
    return validate_answer(text, finish, request, extra=policy.validators)


async def summarize_dropped(gw: Gateway, ctx: Any) -> None:
    """Replace the note fit_context left by a summary of the dropped turns, written by the route's cheap
    ``summary_model``: an attempt of this request of its own (reserved, metered, purpose context_summary),
    cached by the dropped turns' content. If the summary call fails, the note stays (the request goes on)."""
    from .pipeline import make_event, normalize, run_call, settle  # here: pipeline imports this module

    lever, pending = ctx.lever, ctx.pending_summary
    ctx.pending_summary = None
    if lever is None or lever.context is None or pending is None or not lever.context.summary_model:
        return
    messages, dropped = pending
    policy = lever.context
    key = hashlib.sha256(
        orjson.dumps([policy.summary_model, [messages[i] for i in dropped]], option=orjson.OPT_SORT_KEYS)
    ).hexdigest()
    summary = gw.summary_cache.get(key)
    if summary is None:
        route = gw.routes[policy.summary_model]
        body = summary_request([messages[i] for i in dropped], model=route.name, max_tokens=policy.summary_max_tokens)
        sub = dataclasses.replace(
            ctx,
            body=body,
            client_body=body,
            route=route,
            stream=False,
            cascade=[],
            requested_max_tokens=policy.summary_max_tokens,
            prompt_bound=len(orjson.dumps(body)),
            prompt_count=None,
            decisions={"purpose": "context_summary", "lever": lever.name},
            cache=None,
        )
        try:
            used, reserved, response, attempt = await run_call(gw, sub)
        except (UpstreamError, GatewayError) as exc:  # the note stays; the request itself goes on
            ctx.decisions["context"]["summary"] = f"failed: {exc.message[:200]}"
            ctx.attempts = sub.attempts
            return
        ctx.attempts = sub.attempts
        usage = normalize(sub, response.body)
        cost = used.pricer.price(usage.to_token_usage(), gw.clock())
        await settle(
            gw,
            reserved,
            make_event(gw, sub, used, status="ok", usage=usage, cost=cost, reserved=reserved, attempt=attempt),
        )
        choices = response.body.get("choices") or [{}]
        summary = str(((choices[0] or {}).get("message") or {}).get("content") or "").strip()
        if not summary:
            return
        gw.summary_cache[key] = summary
        while len(gw.summary_cache) > 1000:
            gw.summary_cache.pop(next(iter(gw.summary_cache)))
    summarized = with_summary(messages, dropped, summary)
    if ctx.wire == "anthropic" and ctx.body.get("system"):
        summarized = summarized[1:]
    ctx.body = {**ctx.body, "messages": summarized}
    ctx.prompt_count = count_prompt_tokens(ctx.endpoint, ctx.body, ctx.route.upstream_model)
    ctx.decisions["context"].update(method="summarized", tokens_after=ctx.prompt_count, summary_cached=key[:12])

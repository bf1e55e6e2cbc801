"""The request pipeline: authenticate -> tags -> plan the call -> reserve -> call (retries, fallbacks)
-> price -> settle and record -> respond. One function per step; each takes plain data and the
:class:`Gateway`; none reads module-level state.

Money path rule: a request reaches an upstream only after its worst-case cost is reserved on every budget
that applies AND that reservation is durable (the ledger's reservation journal, see store/journal.py); its
response (or the last event of its stream) reaches the client once the settled usage event is queued for
the ledger, and the reservation stays open until that event is committed, so a crash in between charges
the request at its worst case (``gateway.wait_for_ledger_commit: true`` makes responses wait for the
commit). A ledger failure refuses the request (fail closed) instead of serving it unmetered.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar

from ..cache._exact import exact_key
from ..errors import MarginError
from ..ids import new_id
from ..money import ZERO
from ..policy.budgets import (
    AppliedBudget,
    Figures,
    RequestScope,
    applicable_budgets,
    budget_rooms,
    budget_status,
    max_affordable_output_tokens,
    room_left,
)
from ..policy.budgets import Reservation as CounterReservation
from ..policy.limits import scope_value
from ..pricing import Cost
from ..store.base import Reservation as StoredReservation
from ..store.base import VirtualKey
from ..tokens import token_upper_bound
from ..usage import (
    NormalizedUsage,
    UsageBlockError,
    UsageEvent,
    count_prompt_tokens,
    from_anthropic,
    from_openai_chat,
    from_openai_embeddings,
)
from .config import BreakerConfig
from .errors import GatewayError
from .levers import apply_prompt_levers, lever_for, route_model
from .levers_config import LeverRoute
from .providers.base import Endpoint, UpstreamCall, UpstreamError, UpstreamResponse, Wire
from .state import Gateway, ModelRoute, key_budget_rules

__all__ = [
    "CallContext",
    "Principal",
    "authenticate",
    "call_with_fallbacks",
    "plan_request",
    "run_call",
]

T = TypeVar("T")
log = logging.getLogger("margin.gateway")

# The smallest max_tokens worth sending: below this a budget is treated as exhausted.
MIN_USEFUL_OUTPUT_TOKENS = 16
# A request whose worst case, priced on the prompt's size bound, would take more than this share of a
# budget's remaining room gets its prompt tokenized so that it reserves no more than it must.
EXACT_COUNT_SHARE = Decimal("0.01")


@dataclass(frozen=True)
class Principal:
    key: VirtualKey | None  # None: the master key
    key_id: str | None
    tags: dict[str, str]


def _bearer(headers: Mapping[str, str]) -> str | None:
    auth = headers.get("authorization")
    if auth and auth.lower().startswith("bearer "):
        return auth[7:].strip() or None
    return headers.get("x-api-key") or None


async def authenticate(gw: Gateway, headers: Mapping[str, str]) -> Principal:
    secret = _bearer(headers)
    if not secret:
        raise GatewayError(
            "missing API key: send your margin key as 'Authorization: Bearer KEY' (or x-api-key); "
            "create one with `margin keys create`",
            status=401,
            error_type="authentication_error",
            code="missing_api_key",
        )
    if gw.master_key is not None and secret == gw.master_key:
        return Principal(key=None, key_id="master", tags={})
    key = await gw.lookup_key(secret)
    if key is None:
        raise GatewayError("invalid API key", status=401, error_type="authentication_error", code="invalid_api_key")
    if key.revoked_at is not None:
        raise GatewayError(
            "this API key was revoked", status=401, error_type="authentication_error", code="revoked_api_key"
        )
    tags = dict(key.tags)
    for name, value in (("user", key.user), ("team", key.team), ("project", key.project)):
        if value:
            tags.setdefault(name, value)
    return Principal(key=key, key_id=key.key_id, tags=tags)


def parse_tag_header(value: str | None) -> dict[str, str]:
    """``X-Margin-Tags: team=ml, feature=search`` -> {"team": "ml", "feature": "search"}."""
    tags: dict[str, str] = {}
    if not value:
        return tags
    for part in value.split(","):
        part = part.strip()
        if not part:
            continue
        name, sep, tag_value = part.partition("=")
        name, tag_value = name.strip(), tag_value.strip()
        if not sep or not name or not tag_value:
            raise GatewayError(
                f"X-Margin-Tags: {part!r} is not name=value; send e.g. 'X-Margin-Tags: team=ml,feature=search'",
                status=400,
                error_type="invalid_request_error",
                code="invalid_tags",
            )
        if len(name) > 64 or len(tag_value) > 256 or any(c in name + tag_value for c in "\r\n\x00"):
            raise GatewayError(
                "X-Margin-Tags: tag names are at most 64 characters and values 256, on one line",
                status=400,
                error_type="invalid_request_error",
                code="invalid_tags",
            )
        tags[name] = tag_value
    return tags


def request_tags(
    gw: Gateway, principal: Principal, headers: Mapping[str, str], body: Mapping[str, Any]
) -> dict[str, str]:
    """Key tags, then request metadata, then the X-Margin-Tags header (later wins), checked against the
    tag policy. A key's own user/team/project cannot be overridden by the request."""
    tags = dict(principal.tags)
    metadata = body.get("metadata")
    if isinstance(metadata, Mapping):
        for name, value in metadata.items():
            if isinstance(name, str) and isinstance(value, str) and name not in ("user_id",):
                tags.setdefault(name, value)
    for name, value in parse_tag_header(headers.get("x-margin-tags")).items():
        if principal.key is not None and name in ("user", "team", "project") and name in principal.tags:
            continue
        tags[name] = value
    policy = gw.config.tag_policy
    if policy.enabled:
        missing = [name for name in policy.required if not tags.get(name)]
        if missing:
            raise GatewayError(
                f"missing required tags: {', '.join(missing)}; add them to the key (`margin keys create --tag`) "
                "or send 'X-Margin-Tags: " + ",".join(f"{m}=..." for m in missing) + "'",
                status=400,
                error_type="invalid_request_error",
                code="missing_tags",
            )
    return tags


@dataclass
class CallContext:
    """Everything known about one request once it is accepted."""

    request_id: str
    wire: Wire
    endpoint: Endpoint
    body: dict[str, Any]
    stream: bool
    principal: Principal
    tags: dict[str, str]
    task_id: str | None
    route: ModelRoute
    prompt_bound: int  # an upper bound of the prompt count, from the body's size (no tokenizing)
    requested_max_tokens: int | None
    started_at: datetime
    started_monotonic: float
    passthrough_headers: dict[str, str] = field(default_factory=dict)
    include_usage_requested: bool = False
    attempts: int = 0
    # The route the first attempt went to (after routing); a later attempt on another route (a provider
    # fallback or a cascade escalation) records it as ``fallback_from``.
    first_route: str | None = None
    prompt_count: int | None = None  # the local count, once something needed it
    cache: str | None = None  # the exact cache's decision: hit, miss, bypass (None: no cache policy)
    decisions: dict[str, Any] = field(default_factory=dict)  # the levers' decisions, for the ledger
    lever: LeverRoute | None = None  # the lever route that applies (gateway.levers), if any
    cascade: list[str] = field(default_factory=list)  # models to escalate to when an answer fails validation
    client_body: dict[str, Any] = field(default_factory=dict)  # the body as sent (the levers may rewrite body)
    pending_summary: tuple[list[Any], list[int]] | None = None  # context lever: turns to summarize, by the edge
    _prompt_hash: tuple[dict[str, Any], str] | None = None  # (the body hashed, its hash)

    @property
    def prompt_hash(self) -> str:
        """The exact-cache key of ``client_body`` (computed once per body; the cache and the ledger's
        ``prompt_hash`` share it; a context copied for a side call with its own body gets its own)."""
        if self._prompt_hash is None or self._prompt_hash[0] is not self.client_body:
            key = exact_key(str(self.client_body.get("model")), self.endpoint, self.client_body)
            self._prompt_hash = (self.client_body, key)
        return self._prompt_hash[1]

    @property
    def prompt_tokens(self) -> int:
        """The local prompt count, tokenized on first use: only when the bound is not good enough (input
        ceiling, token rate limits, a budget near its cap) or when the upstream reports no usage."""
        if self.prompt_count is None:
            self.prompt_count = _count_prompt(self.endpoint, self.body, self.route.upstream_model)
        return self.prompt_count

    @property
    def prompt_estimate(self) -> int:
        """The count if known, else the bound: what the worst case is priced on."""
        return self.prompt_bound if self.prompt_count is None else self.prompt_count


def resolve_route(gw: Gateway, model: Any, principal: Principal) -> ModelRoute:
    if not isinstance(model, str) or not model:
        raise GatewayError(
            "'model' is required: the name of a configured model (GET /v1/models lists them)",
            status=400,
            error_type="invalid_request_error",
            param="model",
            code="missing_model",
        )
    route = gw.routes.get(model)
    if route is None:
        names = ", ".join(sorted(gw.routes))
        raise GatewayError(
            f"model {model!r} is not served by this gateway; available: {names}",
            status=404,
            error_type="invalid_request_error",
            param="model",
            code="model_not_found",
        )
    if principal.key is not None and principal.key.models and model not in principal.key.models:
        raise GatewayError(
            f"this key may not use model {model!r}; allowed: {', '.join(principal.key.models)}",
            status=403,
            error_type="permission_error",
            param="model",
            code="model_not_allowed",
        )
    return route


def _requested_max_tokens(wire: Wire, endpoint: Endpoint, body: Mapping[str, Any]) -> int | None:
    if endpoint == "embeddings":
        return None
    for name in ("max_completion_tokens", "max_tokens") if wire == "openai" else ("max_tokens",):
        value = body.get(name)
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise GatewayError(
                    f"'{name}' must be a positive integer, got {value!r}",
                    status=400,
                    error_type="invalid_request_error",
                    param=name,
                    code="invalid_max_tokens",
                )
            return value
    return None


def _invalid_messages(exc: MarginError) -> GatewayError:
    """The 400 for a prompt the token counter (or a lever reading it) cannot read."""
    return GatewayError(
        f"cannot read the request's messages: {exc.message}",
        status=400,
        error_type="invalid_request_error",
        code="invalid_messages",
    )


def _count_prompt(endpoint: Endpoint, body: Mapping[str, Any], model: str) -> int:
    try:
        return count_prompt_tokens(endpoint, body, model)
    except MarginError as exc:
        raise _invalid_messages(exc) from None


def _check_prompt_shape(endpoint: Endpoint, body: Mapping[str, Any], model: str) -> None:
    """Refuse a malformed prompt up front without tokenizing it: the shape checks are cheap, and the token
    counter, run only when they fail, says precisely what is wrong."""
    if endpoint == "embeddings":
        ok = "input" in body
    else:
        messages = body.get("messages")
        ok = isinstance(messages, list) and all(isinstance(message, dict) for message in messages)
    if not ok:
        _count_prompt(endpoint, body, model)  # raises the precise 400
        raise GatewayError(  # pragma: no cover - the counter refuses every shape refused above
            "cannot read the request's messages",
            status=400,
            error_type="invalid_request_error",
            code="invalid_messages",
        )


def plan_request(
    gw: Gateway,
    *,
    wire: Wire,
    endpoint: Endpoint,
    body: dict[str, Any],
    body_size: int,
    headers: Mapping[str, str],
    principal: Principal,
) -> CallContext:
    """Everything decided before any budget is touched. ``body_size`` is the request body's length in bytes:
    it bounds the prompt's token count from above without tokenizing (see :func:`token_upper_bound`)."""
    tags = request_tags(gw, principal, headers, body)
    lever = lever_for(gw, body.get("model"), tags)
    model, decisions, cascade = body.get("model"), {}, []
    if lever is not None:
        decisions["lever"] = lever.name
        if lever.routing is not None and lever.routing.enabled and endpoint != "embeddings":
            _check_prompt_shape(endpoint, body, gw.config.models[0].name)
            model, routing, cascade = route_model(lever.routing, wire, body, gw.learned_routers.get(lever.name))
            decisions.update(routing)
    route = resolve_route(gw, model, principal)
    stream = bool(body.get("stream")) and endpoint != "embeddings"
    _check_prompt_shape(endpoint, body, route.upstream_model)
    stream_options = body.get("stream_options")
    include_usage = isinstance(stream_options, Mapping) and bool(stream_options.get("include_usage"))
    passthrough = {k: v for k, v in headers.items() if k in ("anthropic-beta", "x-mock-fault")}
    ctx = CallContext(
        request_id=new_id(),
        wire=wire,
        endpoint=endpoint,
        body=body,
        stream=stream,
        principal=principal,
        tags=tags,
        task_id=headers.get("x-margin-task-id") or None,
        route=route,
        prompt_bound=token_upper_bound(body_size, route.upstream_model),
        requested_max_tokens=_requested_max_tokens(wire, endpoint, body),
        started_at=gw.clock(),
        started_monotonic=time.monotonic(),
        passthrough_headers=passthrough,
        include_usage_requested=include_usage,
        lever=lever,
        cascade=[] if stream else cascade,  # a stream's answer cannot be checked before it is sent
        decisions=decisions,
        client_body=body,
    )
    ctx.prompt_hash  # noqa: B018 -- hashed now, as the client sent it, before any lever or cap touches the body
    if lever is not None and (lever.compression is not None or lever.context is not None):
        try:
            apply_prompt_levers(gw, ctx, lever)
        except MarginError as exc:
            raise _invalid_messages(exc) from None
    # The bound decides alone when it is below the ceiling; otherwise the count does.
    if ctx.prompt_bound > gw.config.max_input_tokens and ctx.prompt_tokens > gw.config.max_input_tokens:
        raise GatewayError(
            f"the prompt has about {ctx.prompt_tokens:,} tokens, above this gateway's limit of "
            f"{gw.config.max_input_tokens:,} (gateway.max_input_tokens); shorten the conversation",
            status=413,
            error_type="invalid_request_error",
            code="input_too_large",
        )
    return ctx


@dataclass
class Reserved:
    """A reservation held for one attempt."""

    reservation_id: str
    counters_reservation: CounterReservation
    applied: list[AppliedBudget]
    amount: Decimal
    max_tokens: int | None
    # The counted budgets' (spent, reserved) from the last reserve or settle reply (None: not known), so the
    # budget headers need no read of their own.
    figures: Figures | None = None


async def reserve(gw: Gateway, ctx: CallContext, route: ModelRoute) -> Reserved:
    """Clamp max_tokens to what the budgets allow and reserve the worst case, atomically and durably."""
    now = gw.clock()
    rules = [*gw.config.budgets, *key_budget_rules(ctx.principal.key)]
    scope = RequestScope(key_id=ctx.principal.key_id, tags=ctx.tags, model=route.upstream_model)
    applied = applicable_budgets(rules, scope, now)
    margin = gw.config.reserve_margin_exact if route.exact_prompt_count else gw.config.reserve_margin_estimate
    max_tokens: int | None = None
    if ctx.endpoint != "embeddings":
        cap = min(gw.config.max_tokens_cap, route.max_tokens_cap or gw.config.max_tokens_cap)
        max_tokens = min(ctx.requested_max_tokens or gw.config.default_max_tokens, cap)

    def worst_case(prompt_tokens: int) -> tuple[Decimal, Decimal, Decimal]:
        prompt = int((Decimal(prompt_tokens) * margin).to_integral_value(rounding="ROUND_CEILING"))
        return route.pricer.worst_case(prompt, max_tokens or 0, now)

    # Priced on the body-size bound first (no tokenizing); counted exactly only when that over-reservation
    # could matter: when the bound's worst case would take more than EXACT_COUNT_SHARE of a budget's room (as
    # far as this process knows without asking: a shared backend's figures cost a round trip), or when the
    # reservation is refused.
    worst, input_cost, per_token = worst_case(ctx.prompt_estimate)
    hint = gw.counters.room_hint(applied)
    if ctx.prompt_count is None and hint is not None and worst > hint * EXACT_COUNT_SHARE:
        worst, input_cost, per_token = worst_case(ctx.prompt_tokens)
    reservation_id = new_id()
    held, figures = await gw.counters.reserve_read(reservation_id, applied, worst)
    if held is None:
        # Refused at the worst case: count exactly if not done yet, fit max_tokens to the room the refusal
        # reported, and try once more. (One try more is enough to be correct: a refusal is always safe.)
        headroom = room_left(applied, figures) if figures is not None else await gw.counters.headroom(applied)
        headroom = headroom if headroom is not None else ZERO
        if ctx.prompt_count is None:
            worst, input_cost, per_token = worst_case(ctx.prompt_tokens)
        if worst > headroom:
            if max_tokens is None:
                raise _budget_error(applied, figures, worst, headroom)
            affordable = max_affordable_output_tokens(headroom, input_cost, per_token)
            if affordable < min(MIN_USEFUL_OUTPUT_TOKENS, max_tokens):
                raise _budget_error(applied, figures, worst, headroom)
            max_tokens = min(max_tokens, affordable)
            worst = input_cost + per_token * max_tokens
        held, figures = await gw.counters.reserve_read(reservation_id, applied, worst)
        if held is None:
            headroom = room_left(applied, figures) if figures is not None else ZERO
            raise _budget_error(applied, figures, worst, headroom if headroom is not None else ZERO)
    try:
        # Key, tags and model travel with the reservation so that, after a crash, the worst-case charge
        # lands on the same budgets when counters are rebuilt from the ledger.
        await gw.ledger.open_reservation(
            StoredReservation(
                reservation_id=reservation_id,
                request_id=ctx.request_id,
                scopes=held.counters,
                amount=worst,
                created_at=now,
                expires_at=None,
                key_id=ctx.principal.key_id,
                tags=dict(ctx.tags),
                endpoint=ctx.endpoint,
                model=route.upstream_model,
            )
        )
    except BaseException:
        await asyncio.shield(gw.counters.settle(held, ZERO))
        raise
    return Reserved(reservation_id, held, applied, worst, max_tokens, figures)


def _budget_error(
    applied: list[AppliedBudget], figures: Figures | None, worst: Decimal, headroom: Decimal
) -> GatewayError:
    """The 402 for a request no applicable budget can cover; ``figures`` (the refusal's reading, None when
    the backend could not give one) name the tightest budget."""
    if figures is None:  # unknown: the caps themselves
        figures = tuple((ZERO, ZERO) for budget in applied if budget.counter is not None)
    rooms = budget_rooms(applied, figures)
    tightest = applied[rooms.index(min(rooms))]
    return GatewayError(
        f"budget exceeded: {tightest.label} has ${max(headroom, ZERO):.6f} left of its ${tightest.cap} cap, "
        f"this request could cost up to ${worst:.6f}; lower max_tokens, shorten the prompt, or raise the budget",
        status=402,
        error_type="budget_exceeded",
        code="budget_exceeded",
        headers={"x-margin-budget-remaining": f"{max(headroom, ZERO):f}"},
    )


def upstream_body(ctx: CallContext, route: ModelRoute, max_tokens: int | None) -> dict[str, Any]:
    body = dict(ctx.body)
    body["model"] = route.upstream_model
    # metadata carried margin's tags; upstreams restrict it (Anthropic accepts only user_id, OpenAI only
    # with store=true), so only what they accept goes on.
    metadata = body.pop("metadata", None)
    if isinstance(metadata, Mapping):
        if ctx.wire == "anthropic" and "user_id" in metadata:
            body["metadata"] = {"user_id": metadata["user_id"]}
        elif ctx.wire == "openai" and body.get("store"):
            body["metadata"] = metadata
    if max_tokens is not None:
        if ctx.wire == "openai" and "max_completion_tokens" in body:
            body["max_completion_tokens"] = max_tokens
        else:
            body["max_tokens"] = max_tokens
    if ctx.stream and ctx.wire == "openai":
        options = dict(body.get("stream_options") or {})
        options["include_usage"] = True  # always meter; stripped again if the client did not ask
        body["stream_options"] = options
    return body


def normalize(ctx: CallContext, body: Mapping[str, Any]) -> NormalizedUsage:
    usage = body.get("usage")
    if not isinstance(usage, Mapping):
        raise UsageBlockError("the upstream response has no usage block")
    if ctx.endpoint == "embeddings":
        return from_openai_embeddings(usage)
    if ctx.wire == "anthropic":
        return from_anthropic(usage)
    return from_openai_chat(usage)


def make_event(
    gw: Gateway,
    ctx: CallContext,
    route: ModelRoute,
    *,
    status: str,
    usage: NormalizedUsage | None,
    cost: Cost | None,
    reserved: Reserved | None,
    attempt: int,
    error: UpstreamError | MarginError | None = None,
    ttft_ms: int | None = None,
    served_model: str | None = None,
) -> UsageEvent:
    usage = usage or NormalizedUsage(source="none")
    return UsageEvent(
        event_id=new_id(),
        request_id=ctx.request_id,
        attempt=attempt,
        started_at=ctx.started_at,
        finished_at=gw.clock(),
        status=status,  # type: ignore[arg-type]
        endpoint=ctx.endpoint,
        requested_model=ctx.body.get("model") if isinstance(ctx.body.get("model"), str) else "",
        served_model=served_model or route.upstream_model,
        provider=route.provider.name,
        key_id=ctx.principal.key_id,
        tags=ctx.tags,
        task_id=ctx.task_id,
        input_tokens=usage.input_tokens,
        cache_read_tokens=usage.cache_read_tokens,
        cache_write_tokens=usage.cache_write_tokens,
        output_tokens=usage.output_tokens,
        reasoning_tokens=usage.reasoning_tokens,
        usage_source=usage.source,
        list_cost=cost.list_cost if cost else ZERO,
        effective_cost=cost.effective_cost if cost else ZERO,
        price_source=cost.source.describe() if cost else None,
        latency_ms=int((time.monotonic() - ctx.started_monotonic) * 1000),
        ttft_ms=ttft_ms,
        error_type=getattr(error, "error_type", None) if error else None,
        error_message=(getattr(error, "message", None) or str(error))[:500] if error else None,
        retries=attempt,
        stream=ctx.stream,
        route=route.name,
        fallback_from=ctx.first_route if ctx.first_route is not None and route.name != ctx.first_route else None,
        max_tokens=reserved.max_tokens if reserved else None,
        reserved_cost=reserved.amount if reserved else ZERO,
        reservation_id=reserved.reservation_id if reserved else None,
        cache=ctx.cache,
        decisions=ctx.decisions,
        prompt_hash=ctx.prompt_hash,
    )


async def settle(gw: Gateway, reserved: Reserved, event: UsageEvent) -> None:
    """Replace the reservation by the actual cost, in memory and durably in one ledger transaction, then
    feed the token rate limits and the spend breakers."""
    if event.effective_cost > reserved.amount:
        # Only possible when the upstream counted far more prompt than the local count plus its margin
        # (e.g. images); the truth is recorded, and the miss is reported so the margin can be raised.
        log.warning(
            "request %s cost %s USD, above its reserved worst case %s USD; raise gateway.reserve_margin_*",
            event.request_id,
            event.effective_cost,
            reserved.amount,
        )
    reserved.figures = await gw.counters.settle_read(reserved.counters_reservation, event.effective_cost)
    await gw.ledger.settle(event, reserved.reservation_id, wait=gw.config.wait_for_ledger_commit)
    gw.observe(event)
    await after_spend(gw, event)


def _rate_checks(
    gw: Gateway, key_id: str | None, tags: Mapping[str, str]
) -> list[tuple[str, str, int | None, int | None]]:
    checks = []
    for rule in gw.config.rate_limits:
        value = scope_value(rule.scope, key_id=key_id, tags=tags)
        if value is None or (rule.value is not None and rule.value != value):
            continue
        checks.append((rule.name, value, rule.requests_per_minute, rule.tokens_per_minute))
    return checks


def _breakers(gw: Gateway, key_id: str | None, tags: Mapping[str, str]) -> list[tuple[BreakerConfig, str]]:
    found = []
    for rule in gw.config.breakers:
        value = scope_value(rule.scope, key_id=key_id, tags=tags)
        if value is not None and (rule.value is None or rule.value == value):
            found.append((rule, value))
    return found


async def admit(gw: Gateway, ctx: CallContext) -> None:
    """Spend breakers, then rate limits (requests, and prompt tokens now; output tokens after the call)."""
    key_id, tags = ctx.principal.key_id, ctx.tags
    for rule, value in _breakers(gw, key_id, tags):
        decision = await gw.breaker.check(rule.name, value)
        if decision.open:
            raise GatewayError(
                f"spend circuit breaker {rule.name!r} is open for {rule.scope}={value}: spend in the last hour "
                f"exceeded {rule.multiple} x the expected ${rule.expected_hourly}/hour; requests resume in "
                f"{decision.retry_after / 60:.0f} min or after an admin reset (POST /v1/margin/breakers/reset)",
                status=402,
                error_type="spend_circuit_open",
                code="spend_circuit_open",
                headers={"retry-after": str(int(decision.retry_after) + 1)},
            )
    checks = _rate_checks(gw, key_id, tags)
    if checks:
        tokens = ctx.prompt_tokens if any(check[3] is not None for check in checks) else 0
        wait = await gw.rate_limiter.admit(checks, tokens)
        if wait > 0:
            raise GatewayError(
                f"rate limit exceeded; retry in {wait:.1f} s",
                status=429,
                error_type="rate_limit_exceeded",
                code="rate_limit_exceeded",
                headers={"retry-after": str(int(wait) + 1)},
            )


async def after_spend(gw: Gateway, event: UsageEvent) -> None:
    checks = _rate_checks(gw, event.key_id, event.tags)
    if checks and event.output_tokens:
        await gw.rate_limiter.charge_tokens(checks, event.output_tokens)
    for rule, value in _breakers(gw, event.key_id, event.tags):
        limit = rule.expected_hourly * rule.multiple
        if await gw.breaker.record(
            rule.name, value, event.effective_cost, limit=limit, cooldown_s=rule.cooldown_minutes * 60
        ):
            await gw.ledger.write_alert(
                "spend_circuit_open",
                f"spend breaker {rule.name} opened for {rule.scope}={value}: last-hour spend above {limit} USD",
                scope=f"{rule.scope}={value}",
                data={"rule": rule.name, "limit": str(limit), "cooldown_minutes": rule.cooldown_minutes},
            )


async def budget_headers(gw: Gateway, reserved: Reserved) -> dict[str, str]:
    """``x-margin-budget-remaining`` (USD left under the tightest applicable budget, or ``unlimited``) and, when
    an applicable budget crossed its warn or review threshold, ``x-margin-budget-status`` (the most severe),
    from the counters' figures of the last reserve or settle (one read of the counters when not known)."""
    counted = [b for b in reserved.applied if b.counter is not None]
    figures = reserved.figures
    if figures is None:
        figures = tuple(await gw.counters.snapshots([b.counter for b in counted if b.counter is not None]))
    rooms = budget_rooms(reserved.applied, figures)
    worst = None
    order = {"ok": 0, "warn": 1, "review": 2, "block": 3}
    for budget, (spent, _held) in zip(counted, figures, strict=True):
        status = budget_status(budget.rule, spent)
        if status != "ok" and (worst is None or order[status] > order[worst[0]]):
            worst = (status, budget.label)
    headers = {"x-margin-budget-remaining": f"{max(min(rooms), ZERO):f}" if rooms else "unlimited"}
    if worst:
        headers["x-margin-budget-status"] = f"{worst[0]}: {worst[1]}"
    return headers


def backoff_seconds(gw: Gateway, attempt: int, error: UpstreamError) -> float:
    """Exponential backoff with full jitter, honouring Retry-After when the upstream sent one."""
    retry = gw.config.retries
    ceiling = min(retry.max_delay_ms, retry.base_delay_ms * (2**attempt)) / 1000
    delay = random.uniform(0, ceiling)
    if error.retry_after is not None:
        delay = max(delay, min(error.retry_after, retry.max_delay_ms / 1000))
    return delay


def candidates(gw: Gateway, ctx: CallContext) -> list[ModelRoute]:
    return [ctx.route, *(gw.routes[name] for name in ctx.route.fallbacks if name in gw.routes)]


async def call_with_fallbacks(
    gw: Gateway, ctx: CallContext, start: Callable[[ModelRoute, UpstreamCall], Awaitable[T]]
) -> tuple[ModelRoute, Reserved, T, int]:
    """Try the route, then its fallbacks, each with retries (exponential backoff, full jitter). Every
    attempt holds its own reservation, and every failed attempt is metered (status upstream_error, no
    cost). Returns the route that answered, its reservation (still open), ``start``'s result and the
    attempt number. A non-retryable failure ends the search at once (a bad request fails everywhere)."""
    attempt = ctx.attempts  # a cascade calls this again: attempts keep counting across its steps
    if ctx.first_route is None:
        ctx.first_route = ctx.route.name
    last_error: UpstreamError | None = None
    for route in candidates(gw, ctx):
        for retry in range(gw.config.retries.max_retries + 1):
            reserved = await reserve(gw, ctx, route)
            call = UpstreamCall(
                wire=ctx.wire,
                endpoint=ctx.endpoint,
                body=upstream_body(ctx, route, reserved.max_tokens),
                headers=ctx.passthrough_headers,
            )
            try:
                result = await start(route, call)
            except UpstreamError as exc:
                last_error = exc
                failed = make_event(
                    gw,
                    ctx,
                    route,
                    status="upstream_error",
                    usage=None,
                    cost=None,
                    reserved=reserved,
                    attempt=attempt,
                    error=exc,
                )
                await settle(gw, reserved, failed)
                attempt += 1
                if not exc.retryable:
                    raise
                if retry < gw.config.retries.max_retries:
                    await asyncio.sleep(backoff_seconds(gw, retry, exc))
                continue
            except BaseException:
                # Cancelled (client gone) or a bug: release the reservation before propagating.
                aborted = make_event(
                    gw, ctx, route, status="client_abort", usage=None, cost=None, reserved=reserved, attempt=attempt
                )
                await asyncio.shield(settle(gw, reserved, aborted))
                raise
            ctx.attempts = attempt + 1
            return route, reserved, result, attempt
    ctx.attempts = attempt
    assert last_error is not None
    raise last_error


async def run_call(gw: Gateway, ctx: CallContext) -> tuple[ModelRoute, Reserved, UpstreamResponse, int]:
    """A non-streaming call with retries and fallbacks."""

    async def send(route: ModelRoute, call: UpstreamCall) -> UpstreamResponse:
        return await route.provider.send(call)

    return await call_with_fallbacks(gw, ctx, send)

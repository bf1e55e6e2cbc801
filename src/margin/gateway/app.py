"""The ASGI app: OpenAI routes (/v1/chat/completions, /v1/embeddings, /v1/models), the Anthropic route
(/v1/messages), health. Thin: parse, call the pipeline, render. Errors become OpenAI-style (or, on
/v1/messages, Anthropic-style) JSON with the right status; never a bare 500."""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..dashboard.routes import dashboard_routes
from ..errors import MarginError
from ..ids import new_id
from ..policy.budgets import period_key
from ..tokens import count_text
from ..usage import NormalizedUsage, UsageBlockError, UsageEvent
from ._sse_response import SSEResponse
from .admin import admin_routes
from .backends.health import BackendDown
from .caching import decide_cache, semantic_lookup, serve_hit, store_answer
from .errors import GatewayError, render_error
from .levers import affordable_route, cascade_verdict, summarize_dropped
from .pipeline import (
    CallContext,
    Principal,
    admit,
    authenticate,
    budget_headers,
    make_event,
    normalize,
    plan_request,
    run_call,
    settle,
)
from .providers.base import Endpoint, UpstreamError, Wire
from .retention import purge_loop, retain_request
from .state import Gateway, key_budget_rules
from .streaming import open_stream

__all__ = ["create_app"]

log = logging.getLogger("margin.gateway")
JSON = "application/json"


def _json(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type=JSON, headers=dict(headers or {}))


def _error_response(error: MarginError, wire: Wire) -> Response:
    status, body, headers = render_error(error, wire=wire)
    return Response(body, status_code=status, media_type=JSON, headers=headers)


def _upstream_error(error: UpstreamError) -> GatewayError:
    """The upstream's failure as the client sees it: its own message for 4xx, a gateway message otherwise."""
    if 400 <= error.status < 500 and error.status != 429:
        message = error.message
        if isinstance(error.body, Mapping):
            inner = error.body.get("error")
            if isinstance(inner, Mapping) and isinstance(inner.get("message"), str):
                message = inner["message"]
        return GatewayError(
            message, status=error.status, error_type="upstream_" + error.error_type, code=error.error_type
        )
    status = 429 if error.status == 429 else (504 if error.error_type == "timeout" else 502)
    return GatewayError(
        f"the upstream failed after retries and fallbacks: {error.message}",
        status=status,
        error_type="upstream_error",
        code=error.error_type,
    )


async def _read_json(
    headers: Mapping[str, str], read_body: Callable[[], Awaitable[bytes]], gw: Gateway
) -> tuple[dict[str, Any], int]:
    """The body as a JSON object, and its size in bytes (which bounds the prompt's token count)."""
    length = headers.get("content-length")
    if length and length.isdigit() and int(length) > gw.config.max_body_bytes:
        raise GatewayError(
            f"request body larger than {gw.config.max_body_bytes:,} bytes (gateway.max_body_bytes)",
            status=413,
            error_type="invalid_request_error",
            code="body_too_large",
        )
    raw = await read_body()
    if len(raw) > gw.config.max_body_bytes:
        raise GatewayError(
            f"request body larger than {gw.config.max_body_bytes:,} bytes (gateway.max_body_bytes)",
            status=413,
            error_type="invalid_request_error",
            code="body_too_large",
        )
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise GatewayError(
            f"the request body is not valid JSON: {exc}",
            status=400,
            error_type="invalid_request_error",
            code="invalid_json",
        ) from None
    if not isinstance(body, dict):
        raise GatewayError(
            "the request body must be a JSON object",
            status=400,
            error_type="invalid_request_error",
            code="invalid_json",
        )
    return body, len(raw)


def _local_usage(ctx: CallContext, body: Mapping[str, Any], model: str) -> NormalizedUsage:
    """When an upstream returns no usage block: the prompt as counted, the output counted from the text."""
    texts: list[str] = []
    for choice in body.get("choices") or []:
        message = choice.get("message") if isinstance(choice, Mapping) else None
        if isinstance(message, Mapping) and isinstance(message.get("content"), str):
            texts.append(message["content"])
    for block in body.get("content") or []:
        if isinstance(block, Mapping) and isinstance(block.get("text"), str):
            texts.append(block["text"])
    output = count_text("".join(texts), model).tokens if texts else 0
    return NormalizedUsage(input_tokens=ctx.prompt_tokens, output_tokens=output, source="local_count")


async def _record_rejection(
    gw: Gateway,
    principal: Principal | None,
    body: Mapping[str, Any],
    wire: Wire,
    endpoint: Endpoint,
    error: MarginError,
) -> None:
    """Rejected requests from known keys are ledger events too (status rejected, no cost)."""
    if principal is None:
        return
    now = gw.clock()
    model = body.get("model") if isinstance(body.get("model"), str) else ""
    event = UsageEvent(
        event_id=new_id(),
        request_id=new_id(),
        attempt=0,
        started_at=now,
        finished_at=now,
        status="rejected",
        endpoint=endpoint,
        requested_model=model,
        key_id=principal.key_id,
        tags=principal.tags,
        error_type=getattr(error, "code", None) or error.error_type,
        error_message=error.message[:500],
    )
    await gw.ledger.write_event(event)
    gw.observe(event)


async def _downgrade_to_fit(gw: Gateway, ctx: CallContext) -> str | None:
    """Budget-aware routing: a cheaper tier when the chosen one's worst case does not fit the remaining
    budget (the route's ``downgrade_to_fit``). Returns "from -> to" when it downgraded."""
    lever = ctx.lever
    if lever is None or lever.routing is None or not lever.routing.downgrade_to_fit or "tier" not in ctx.decisions:
        return None
    route, downgraded = await affordable_route(gw, ctx, lever.routing, ctx.decisions["tier"])
    if not downgraded:
        return None
    chosen = ctx.route.name
    ctx.decisions["downgraded_from"] = chosen
    ctx.route = route
    ctx.cascade = []  # the budget cannot afford the tiers above either
    return f"{chosen} -> {route.name}"


def _cascade_rejects(ctx: CallContext, body: dict[str, Any]):
    """The failed validation of a cascade step's answer, or None (accepted, or no cascade step left)."""
    if not ctx.cascade or ctx.lever is None or ctx.lever.routing is None:
        return None
    verdict = cascade_verdict(ctx.lever.routing, ctx.wire, ctx.body, body)
    return None if verdict.ok else verdict


async def _json_object(request: Request) -> dict[str, Any] | None:
    """A small JSON-object request body (the margin endpoints' own), or None when it is not one."""
    try:
        body = orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        return None
    return body if isinstance(body, dict) else None


async def _single(payload: bytes) -> AsyncIterator[bytes]:
    yield payload


Handler = Callable[[Mapping[str, str], Callable[[], Awaitable[bytes]]], Awaitable[Response | SSEResponse]]


def _handler(gw: Gateway, wire: Wire, endpoint: Endpoint) -> Handler:
    """The handler of one proxied route: (lower-cased request headers, body reader) -> a response (an ASGI
    app). Framework-free, so the hot routes can skip Starlette's routing (see :class:`_FastRoutes`)."""

    async def handle(
        request_headers: Mapping[str, str], read_body: Callable[[], Awaitable[bytes]]
    ) -> Response | SSEResponse:
        principal: Principal | None = None
        body: dict[str, Any] = {}
        try:
            principal = await authenticate(gw, request_headers)
            body, body_size = await _read_json(request_headers, read_body, gw)
            ctx = plan_request(
                gw,
                wire=wire,
                endpoint=endpoint,
                body=body,
                body_size=body_size,
                headers=request_headers,
                principal=principal,
            )
            await admit(gw, ctx)
            if gw.retention_rules is not None:
                await retain_request(gw, ctx)
            if ctx.pending_summary is not None:
                await summarize_dropped(gw, ctx)
            cache = await decide_cache(gw, ctx, ctx.lever, request_headers)
            if cache.status == "miss" and gw.semantic_caches:
                cache = await semantic_lookup(gw, ctx, cache)
            if cache.status != "off":
                ctx.cache = cache.status
            if cache.entry is not None:
                payload, hit_headers, as_stream = await serve_hit(gw, ctx, cache)
                if as_stream:
                    return SSEResponse(_single(payload), hit_headers)
                return Response(payload, media_type=JSON, headers=hit_headers)
            downgraded = await _downgrade_to_fit(gw, ctx)
            if ctx.stream:
                headers, chunks = await open_stream(gw, ctx)
                if ctx.cache is not None:
                    headers["x-margin-cache"] = ctx.cache
                if downgraded:
                    headers["x-margin-downgraded"] = downgraded
                return SSEResponse(chunks, headers)
            route, reserved, response, attempt = await run_call(gw, ctx)
            while True:
                try:
                    usage = normalize(ctx, response.body)
                except UsageBlockError:
                    usage = _local_usage(ctx, response.body, route.upstream_model)
                cost = route.pricer.price(usage.to_token_usage(), gw.clock())
                event = make_event(
                    gw, ctx, route, status="ok", usage=usage, cost=cost, reserved=reserved, attempt=attempt
                )
                rejected = _cascade_rejects(ctx, response.body)
                if rejected is None:
                    break
                # The answer failed validation: metered at its real cost (the cascade's "hidden multiplier"),
                # then the next tier up answers the same request.
                ctx.decisions.setdefault("cascade", []).append(
                    {
                        "model": route.name,
                        "check": rejected.check,
                        "reason": rejected.reason,
                        "cost": str(cost.effective_cost),
                    }
                )
                await settle(
                    gw,
                    reserved,
                    replace(event, error_type="cascade_escalated", error_message=(rejected.reason or "")[:500]),
                )
                ctx.route = gw.routes[ctx.cascade.pop(0)]
                route, reserved, response, attempt = await run_call(gw, ctx)
            await settle(gw, reserved, event)
            headers = {
                "x-margin-request-id": ctx.request_id,
                "x-margin-cost": f"{cost.effective_cost:f}",
                "x-margin-list-cost": f"{cost.list_cost:f}",
                "x-margin-served-model": route.upstream_model,
                **await budget_headers(gw, reserved),
            }
            if reserved.max_tokens is not None:
                headers["x-margin-max-tokens"] = str(reserved.max_tokens)
            if ctx.cache is not None:
                headers["x-margin-cache"] = ctx.cache
                await store_answer(gw, ctx, cache, response.body, usage, route.upstream_model)
            if downgraded:
                headers["x-margin-downgraded"] = downgraded
            if "tier" in ctx.decisions:
                headers["x-margin-route"] = f"{ctx.decisions['tier']} -> {route.name}"
            if "cascade" in ctx.decisions:
                headers["x-margin-cascade"] = " -> ".join([*(c["model"] for c in ctx.decisions["cascade"]), route.name])
            return _json(response.body, headers=headers)
        except UpstreamError as exc:
            return _error_response(_upstream_error(exc), wire)
        except GatewayError as exc:
            # Every refusal of an authenticated request (budget, breaker, rate limit, tags, bad input) is a
            # ledger event, so rejections can be counted by reason; unauthenticated ones are not recorded.
            try:
                await _record_rejection(gw, principal, body, wire, endpoint, exc)
            except MarginError as ledger_error:
                return _error_response(ledger_error, wire)
            return _error_response(exc, wire)
        except MarginError as exc:
            log.error("request failed: %s", exc.message)
            return _error_response(exc, wire)
        except Exception:
            log.exception("unexpected error in the gateway")
            return _error_response(
                GatewayError("internal gateway error; see the gateway log", status=500, error_type="internal_error"),
                wire,
            )

    return handle


def _starlette_route(handler: Handler):
    async def endpoint(request: Request) -> Response | SSEResponse:
        return await handler(request.headers, request.body)

    return endpoint


class _FastRoutes:
    """The proxied POST routes straight from ASGI, everything else through Starlette.

    Starlette's router, middleware stack and Request object cost ~30-40 µs per request, a noticeable share of
    the gateway's ~1 ms CPU budget per request; the three hot routes need none of it. Their handlers get the
    request headers as a plain dict (ASGI servers send lower-case names) and a body reader."""

    def __init__(
        self, routes: dict[str, Handler], fallback: Starlette, *, max_body_bytes: int, body_timeout_s: float
    ) -> None:
        self.routes = routes
        self.fallback = fallback
        self.max_body_bytes = max_body_bytes
        self.body_timeout_s = body_timeout_s

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        handler = self.routes.get(scope.get("path", "")) if scope["type"] == "http" else None
        if handler is None or scope["method"] != "POST":
            await self.fallback(scope, receive, send)
            return
        headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}

        async def read_body() -> bytes:
            try:
                async with asyncio.timeout(self.body_timeout_s):
                    return await read_all()
            except TimeoutError:
                raise GatewayError(
                    f"the request body did not arrive within {self.body_timeout_s:g} s (gateway.body_timeout_s); "
                    "send the whole body at once",
                    status=408,
                    error_type="invalid_request_error",
                    code="request_timeout",
                ) from None

        async def read_all() -> bytes:
            chunks = []
            size = 0
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise GatewayError("the client disconnected", status=499, error_type="client_closed_request")
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > self.max_body_bytes:  # a chunked upload without Content-Length: stop reading here
                    raise GatewayError(
                        f"request body larger than {self.max_body_bytes:,} bytes (gateway.max_body_bytes)",
                        status=413,
                        error_type="invalid_request_error",
                        code="body_too_large",
                    )
                chunks.append(chunk)
                if not message.get("more_body"):
                    return b"".join(chunks) if len(chunks) != 1 else chunks[0]

        response = await handler(headers, read_body)
        await response(scope, receive, send)


def create_app(gw: Gateway) -> _FastRoutes:
    async def models(request: Request) -> Response:
        try:
            await authenticate(gw, request.headers)
        except GatewayError as exc:
            return _error_response(exc, "openai")
        data = [
            {"id": name, "object": "model", "created": 0, "owned_by": route.provider.name}
            for name, route in sorted(gw.routes.items())
        ]
        return _json({"object": "list", "data": data})

    async def feedback(request: Request) -> Response:
        """``POST /v1/margin/feedback {"request_id": ..., "correct": false}``: a client's verdict on an answer
        it got from the semantic cache. A wrong one raises that entry's own threshold (vCache-style), and
        an entry reported wrong often enough is dropped. A key may report only its own requests."""
        try:
            principal = await authenticate(gw, request.headers)
            body = await _json_object(request)
            if body is None or not isinstance(body.get("request_id"), str):
                raise GatewayError(
                    'send {"request_id": "...", "correct": true|false}',
                    status=400,
                    error_type="invalid_request_error",
                    code="invalid_feedback",
                )
            correct = body.get("correct")
            if not isinstance(correct, bool):
                raise GatewayError("'correct' must be true or false", status=400, error_type="invalid_request_error")
            await gw.ledger.flush()
            found = await asyncio.to_thread(gw.ledger.events, body["request_id"])
            hits = [e for e in found if e.cache == "semantic-hit"]
            if not hits or (principal.key is not None and hits[0].key_id != principal.key_id):
                raise GatewayError(
                    "no semantic-cache hit with this request_id for this key",
                    status=404,
                    error_type="not_found_error",
                    code="hit_not_found",
                )
            hit = hits[0]
            cache = gw.semantic_caches.get(str(hit.decisions.get("lever")))
            semantic = hit.decisions.get("semantic") or {}
            if cache is not None and isinstance(semantic.get("entry"), int):
                if gw.semantic_shared is not None:  # decided in Redis, adopted by every instance
                    await gw.semantic_shared.report(
                        str(hit.decisions.get("lever")),
                        semantic["entry"],
                        correct=correct,
                        similarity=semantic.get("similarity"),
                    )
                else:
                    cache.report(semantic["entry"], correct=correct, similarity=semantic.get("similarity"))
            return _json({"request_id": body["request_id"], "recorded": cache is not None, "correct": correct})
        except GatewayError as exc:
            return _error_response(exc, "openai")

    async def metrics(request: Request) -> Response:
        """Prometheus metrics (gateway/metrics.py): the master key as a bearer token, unless
        gateway.metrics_open lets any scraper in (keep /metrics on an internal network then)."""
        if not gw.config.metrics_open:
            secret = request.headers.get("authorization", "")[7:].strip()
            if gw.master_key is None or not hmac.compare_digest(secret.encode(), gw.master_key.encode()):
                return _error_response(
                    GatewayError(
                        "/metrics needs the master key as a bearer token (or gateway.metrics_open: true)",
                        status=401,
                        error_type="authentication_error",
                    ),
                    "openai",
                )
        now = gw.clock()
        rules = {rule.name: rule for rule in gw.config.budgets}
        budgets = []
        try:
            counters = await gw.counters.items()
        except BackendDown:
            counters = []  # Redis unreachable: margin_backend_up says so
        for counter, (spent, _reserved) in counters:
            name, scope, period = counter.split("|", 2)
            rule = rules.get(name)
            if rule is None or rule.amount <= 0 or period != period_key(rule.period, now):
                continue  # keys' own budgets and past periods are left out (bounded series)
            budgets.append((name, scope.partition("=")[2], float(spent / rule.amount)))
        gauges = {
            "margin_ledger_writes_in_flight": float(gw.ledger.in_flight),
            "margin_open_reservations": float(gw.ledger.reservations_held),
            # 0 while the ledger refuses writes (every metered request then gets 503 ledger_unavailable)
            "margin_ledger_up": 0.0 if gw.ledger.failed is not None else 1.0,
        }
        cache_entries = await gw.exact_cache.count()
        if cache_entries is not None:  # None: in Redis, where counting means scanning the keyspace
            gauges["margin_exact_cache_entries"] = float(cache_entries)
        if gw.redis is not None:
            gauges["margin_backend_up"] = 0.0 if gw.redis.health.down else 1.0
            gauges["margin_backend_pending_settles"] = float(gw.counters.pending_settles)  # type: ignore[attr-defined]
        semantic = {(name,): float(len(cache)) for name, cache in gw.semantic_caches.items()}
        synced = dict(gw.semantic_shared.synced) if gw.semantic_shared is not None else {}
        text = gw.metrics.render(budgets=budgets, gauges=lambda: gauges, semantic=semantic, synced=synced)
        return Response(text, media_type="text/plain; version=0.0.4")

    async def task_outcome(request: Request) -> Response:
        """``POST /v1/margin/tasks/{task_id}/outcome {"outcome": "success"|"failure", "note": ...}``: how a task
        (requests sent with ``X-Margin-Task-Id``) ended, for the cost per successful task. A key may record
        outcomes only of tasks its own requests belong to; the master key, of any task."""
        try:
            principal = await authenticate(gw, request.headers)
            task_id = request.path_params["task_id"]
            body = await _json_object(request) or {}
            outcome, note = body.get("outcome"), body.get("note")
            if outcome not in ("success", "failure") or not (note is None or isinstance(note, str)):
                raise GatewayError(
                    'send {"outcome": "success"} or {"outcome": "failure"} (and optionally "note")',
                    status=400,
                    error_type="invalid_request_error",
                    code="invalid_outcome",
                )
            await gw.ledger.flush()
            owners = await asyncio.to_thread(gw.ledger.task_keys, task_id)
            if not owners or (principal.key is not None and principal.key_id not in owners):
                raise GatewayError(
                    f"no requests of this key carry task id {task_id!r} (send them with X-Margin-Task-Id)",
                    status=404,
                    error_type="not_found_error",
                    code="task_not_found",
                )
            await asyncio.to_thread(
                gw.ledger.set_task_outcome, task_id, outcome, note=(note or None), key_id=principal.key_id
            )
            return _json({"task_id": task_id, "outcome": outcome})
        except GatewayError as exc:
            return _error_response(exc, "openai")

    async def health(request: Request) -> Response:
        return _json({"status": "ok", "models": len(gw.routes)})

    async def watch_anomalies() -> None:
        """insights.alerts: every interval, the ledger through the anomaly rules, fresh alerts to the sinks.
        A failing pass is logged at ERROR and the next one runs (the watch never stops the gateway)."""
        from ..insights.watch import build_dispatcher, check_once

        settings = gw.alerts
        dispatcher = build_dispatcher(settings)
        while True:
            await asyncio.sleep(settings.interval_seconds)
            try:
                keys = await asyncio.to_thread(gw.ledger.list_keys, include_revoked=False)
                rules = [*gw.config.budgets, *(rule for key in keys for rule in key_budget_rules(key))]
                outcomes = await check_once(gw.ledger, dispatcher, settings, budget_rules=rules)
                for outcome in outcomes:
                    log.warning(
                        "alert %s: %s (delivered: %s)", outcome.anomaly.rule, outcome.anomaly.message, outcome.ok
                    )
            except Exception:
                log.exception("the anomaly watch failed; it runs again in %s s", settings.interval_seconds)

    @asynccontextmanager
    async def lifespan(app: Starlette):
        watcher = asyncio.create_task(watch_anomalies()) if gw.alerts is not None else None
        purger = asyncio.create_task(purge_loop(gw)) if gw.retention_rules is not None else None
        await gw.start()  # shared backends: connect, adopt the Redis epoch, apply the start-up rebuild
        yield
        for task in (watcher, purger):
            if task is not None:
                task.cancel()
        await gw.aclose()  # drain the ledger queue on graceful shutdown

    proxied = {
        "/v1/chat/completions": _handler(gw, "openai", "chat.completions"),
        "/v1/embeddings": _handler(gw, "openai", "embeddings"),
        "/v1/messages": _handler(gw, "anthropic", "messages"),
    }
    routes = [
        *(Route(path, _starlette_route(handler), methods=["POST"]) for path, handler in proxied.items()),
        Route("/v1/models", models, methods=["GET"]),
        Route("/v1/margin/feedback", feedback, methods=["POST"]),
        Route("/v1/margin/tasks/{task_id}/outcome", task_outcome, methods=["POST"]),
        Route("/health", health, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        *admin_routes(gw),
        *dashboard_routes(gw),
    ]
    return _FastRoutes(
        proxied,
        Starlette(routes=routes, lifespan=lifespan),
        max_body_bytes=gw.config.max_body_bytes,
        body_timeout_s=gw.config.body_timeout_s,
    )

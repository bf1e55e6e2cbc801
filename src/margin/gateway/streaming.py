"""Streaming relay: pass the upstream's server-sent events to the client while metering them.

The gateway always asks OpenAI-wire upstreams for usage (``stream_options.include_usage``) and drops the
usage-only chunk again when the client did not ask for it. The terminating event (``data: [DONE]`` or
Anthropic's ``message_stop``) is sent only after the stream is settled (its usage event queued for the
ledger, its reservation held until that commit), so a client that received the whole stream is always in
the ledger. A client that disconnects midway is still billed for
what was generated (counted locally when the upstream's usage never arrived), with status client_abort.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
import orjson

from ..errors import MarginError
from ..usage import AnthropicStreamTracker, NormalizedUsage, OpenAIStreamTracker
from .pipeline import CallContext, Reserved, budget_headers, call_with_fallbacks, make_event, settle
from .providers.base import SSEEvent, UpstreamCall, UpstreamError
from .providers.sse import encode_sse
from .state import Gateway, ModelRoute

__all__ = ["open_stream"]

log = logging.getLogger("margin.gateway")


async def open_stream(gw: Gateway, ctx: CallContext) -> tuple[dict[str, str], AsyncIterator[bytes]]:
    """Start the upstream stream (retrying and falling back until its first event arrives) and return the
    response headers and the body iterator."""

    async def first_event(route: ModelRoute, call: UpstreamCall) -> tuple[AsyncIterator[SSEEvent], SSEEvent]:
        events = route.provider.stream(call)
        try:
            return events, await anext(events)
        except StopAsyncIteration:
            raise UpstreamError(
                "the upstream closed the stream without any event",
                status=502,
                error_type="stream_dropped",
                retryable=True,
            ) from None

    route, reserved, (events, first), attempt = await call_with_fallbacks(gw, ctx, first_event)
    headers = {
        "x-margin-request-id": ctx.request_id,
        "x-margin-served-model": route.upstream_model,
        "x-margin-max-tokens": str(reserved.max_tokens or ""),
        "x-margin-reserved": f"{reserved.amount:f}",
    }
    headers["x-margin-budget-remaining"] = (await budget_headers(gw, reserved))["x-margin-budget-remaining"]
    return headers, _relay(gw, ctx, route, reserved, first, events, attempt)


async def _relay(
    gw: Gateway,
    ctx: CallContext,
    route: ModelRoute,
    reserved: Reserved,
    first: SSEEvent,
    events: AsyncIterator[SSEEvent],
    attempt: int,
) -> AsyncIterator[bytes]:
    tracker: OpenAIStreamTracker | AnthropicStreamTracker
    tracker = (
        OpenAIStreamTracker(route.upstream_model)
        if ctx.wire == "openai"
        else AnthropicStreamTracker(route.upstream_model)
    )
    ttft_ms = int((time.monotonic() - ctx.started_monotonic) * 1000)
    status = "client_abort"
    error: UpstreamError | None = None
    settled = False

    async def finish(final_status: str) -> bytes:
        """Settle durably; returns an SSE comment carrying the cost for clients that want it."""
        nonlocal settled
        usage = _usage(ctx, tracker)
        cost = route.pricer.price(usage.to_token_usage(), gw.clock())
        event = make_event(
            gw,
            ctx,
            route,
            status=final_status,
            usage=usage,
            cost=cost,
            reserved=reserved,
            attempt=attempt,
            error=error,
            ttft_ms=ttft_ms,
        )
        await settle(gw, reserved, event)
        settled = True
        return f": margin-cost={cost.effective_cost:f} request-id={ctx.request_id}\n\n".encode()

    # Events that arrived together in one upstream read go to the client in one write (see
    # SSEEvent.more_ready): each write costs a send through the ASGI server and a syscall.
    pending: list[bytes] = []

    def take(last: bytes = b"") -> bytes:
        out = b"".join(pending) + last
        pending.clear()
        return out

    try:
        event: SSEEvent | None = first
        while event is not None:
            terminal = _is_terminal(ctx, event)
            if terminal:
                status = "ok"
                yield take(await finish("ok") + encode_sse(event))
                # Read the upstream to its end so its connection goes back to the pool.
                async for _ in events:
                    pass
                break
            data = _parse(event)
            if data is not None:
                tracker.feed(data) if ctx.wire == "openai" else tracker.feed(event.event, data)  # type: ignore[call-arg]
            if not (ctx.wire == "openai" and not ctx.include_usage_requested and _usage_only_chunk(data)):
                pending.append(encode_sse(event))
            if pending and not event.more_ready:
                yield take()
            try:
                event = await anext(events)
            except StopAsyncIteration:
                event = None
        if not settled:
            # The upstream ended without its terminal event: meter what came, tell the client.
            error = UpstreamError(
                "the upstream stream ended early", status=502, error_type="stream_dropped", retryable=False
            )
            status = "upstream_error"
            yield take(await finish(status))
    except UpstreamError as exc:
        error = exc
        status = "upstream_error"
        if not settled:
            yield take(await finish(status))
        yield take(_error_event(ctx, exc))
    finally:
        with anyio.CancelScope(shield=True):
            if not settled:
                # The client went away (cancellation) or the relay broke: bill what was generated anyway.
                try:
                    await finish(status)
                except MarginError as exc:
                    # Nobody is left to answer; say it loudly (the ledger also fails every later write).
                    log.error("request %s: could not record its %s stream: %s", ctx.request_id, status, exc.message)
            await events.aclose()  # type: ignore[attr-defined]


def _parse(event: SSEEvent) -> dict[str, Any] | None:
    if event.data == "[DONE]":
        return None
    try:
        data = orjson.loads(event.data)
    except orjson.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


def _is_terminal(ctx: CallContext, event: SSEEvent) -> bool:
    if ctx.wire == "openai":
        return event.data.strip() == "[DONE]"
    return event.event == "message_stop"


def _usage_only_chunk(data: dict[str, Any] | None) -> bool:
    return bool(data) and data.get("usage") is not None and not data.get("choices")  # type: ignore[union-attr]


def _usage(ctx: CallContext, tracker: OpenAIStreamTracker | AnthropicStreamTracker) -> NormalizedUsage:
    # The prompt as the gateway counts it (tools included), counted only if the upstream sent no usage.
    messages = ctx.body.get("messages") or []
    if isinstance(tracker, OpenAIStreamTracker):
        return tracker.usage(messages, prompt_tokens=lambda: ctx.prompt_tokens)
    return tracker.usage(messages, system=ctx.body.get("system"), prompt_tokens=lambda: ctx.prompt_tokens)


def _error_event(ctx: CallContext, error: UpstreamError) -> bytes:
    if ctx.wire == "anthropic":
        body = {"type": "error", "error": {"type": "api_error", "message": f"upstream stream failed: {error.message}"}}
        return encode_sse(SSEEvent(event="error", data=orjson.dumps(body).decode()))
    body = {
        "error": {
            "message": f"upstream stream failed: {error.message}",
            "type": error.error_type,
            "code": error.error_type,
        }
    }
    return encode_sse(SSEEvent(data=orjson.dumps(body).decode()))

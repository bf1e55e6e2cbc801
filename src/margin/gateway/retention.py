"""Opt-in prompt retention (``gateway.prompt_retention``): each proxied request's body, redacted, goes to the
ledger's ``retained_prompts`` through the writer queue (the response does not wait for it), and rows older
than the retention days are purged at start-up and every hour. Off by default: the ledger then keeps only
each request's hash (``usage_events.prompt_hash``)."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

import orjson

from ..redact import redact_body
from .pipeline import CallContext
from .state import Gateway

__all__ = ["PURGE_INTERVAL_SECONDS", "purge_expired", "purge_loop", "retain_request"]

log = logging.getLogger("margin.gateway")
PURGE_INTERVAL_SECONDS = 3600.0


async def retain_request(gw: Gateway, ctx: CallContext) -> None:
    """Queue the request's redacted body (as the client sent it) unless it is too long once redacted."""
    rules = gw.retention_rules
    if rules is None:
        return
    text = orjson.dumps(redact_body(ctx.client_body, rules)).decode()
    if len(text) > gw.config.prompt_retention.max_chars:
        log.info(
            "request %s not retained: %d characters (gateway.prompt_retention.max_chars)", ctx.request_id, len(text)
        )
        return
    model = ctx.client_body.get("model")
    await gw.ledger.retain_prompt(
        ctx.request_id, ctx.prompt_hash, ctx.started_at, ctx.endpoint, model if isinstance(model, str) else "", text
    )


def purge_expired(gw: Gateway) -> int:
    """Delete retained bodies older than the retention days (sync; a thread from the loop)."""
    cutoff = gw.clock() - timedelta(days=gw.config.prompt_retention.days)
    return gw.ledger.purge_retained_prompts(cutoff)


async def purge_loop(gw: Gateway) -> None:
    """Purge now and every hour. A failing purge is logged at ERROR and tried again next hour: retention must
    not stop the gateway, and the next pass deletes what this one missed."""
    while True:
        try:
            removed = await asyncio.to_thread(purge_expired, gw)
            if removed:
                log.info("purged %d retained prompts older than %d days", removed, gw.config.prompt_retention.days)
        except Exception:
            log.exception("purging retained prompts failed; trying again in %.0f s", PURGE_INTERVAL_SECONDS)
        await asyncio.sleep(PURGE_INTERVAL_SECONDS)

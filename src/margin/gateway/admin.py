"""The admin API under /v1/margin/, protected by the master key: keys, spend, budgets, breakers, alerts,
ledger flush, cache invalidation.
A virtual key gets 403 here: keys cannot read other keys' spend or manage keys."""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..errors import MarginError
from ..keys import new_virtual_key
from ..store.base import GROUP_BY_CHOICES, VirtualKey
from .backends.health import BackendDown
from .caching import clear_caches
from .errors import GatewayError, render_error
from .state import Gateway

__all__ = ["admin_routes"]


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, tuple | set | frozenset):
        return list(value)
    raise TypeError(type(value).__name__)


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body, default=_default), status_code=status, media_type="application/json")


def _require_master(gw: Gateway, request: Request) -> None:
    auth = request.headers.get("authorization", "")
    secret = auth[7:].strip() if auth.lower().startswith("bearer ") else request.headers.get("x-api-key")
    if not secret:
        raise GatewayError(
            "the admin API needs the master key as 'Authorization: Bearer KEY'",
            status=401,
            error_type="authentication_error",
            code="missing_api_key",
        )
    if gw.master_key is None:
        raise GatewayError(
            f"the admin API is disabled: set {gw.config.master_key_env} to a master key and restart",
            status=403,
            error_type="permission_error",
            code="admin_disabled",
        )
    if not hmac.compare_digest(secret.encode(), gw.master_key.encode()):  # constant time: no timing oracle
        raise GatewayError(
            "the admin API needs the master key; virtual keys cannot use it",
            status=403,
            error_type="permission_error",
            code="master_key_required",
        )


def _admin(
    gw: Gateway, handler: Callable[[Request], Awaitable[Response]], *, query: tuple[str, ...] = ()
) -> Callable[[Request], Awaitable[Response]]:
    """The master-key check, the endpoint's query parameters (an unknown one is a 400, so a typo such as
    ``?group=team`` is not silently ignored) and errors as OpenAI-style JSON."""

    async def wrapped(request: Request) -> Response:
        try:
            _require_master(gw, request)
            unknown = sorted(set(request.query_params) - set(query))
            if unknown:
                takes = f"it takes {', '.join(query)}" if query else "it takes none"
                raise ValueError(f"unknown query parameter {unknown[0]!r} for {request.url.path}: {takes}")
            return await handler(request)
        except BackendDown as exc:
            unavailable = GatewayError(
                f"the shared backend (redis) is unreachable: {exc}", status=503, error_type="backend_unavailable"
            )
            status, body, headers = render_error(unavailable, wire="openai")
            return Response(body, status_code=status, media_type="application/json", headers=headers)
        except GatewayError as exc:
            status, body, headers = render_error(exc, wire="openai")
            return Response(body, status_code=status, media_type="application/json", headers=headers)
        except MarginError as exc:  # e.g. the ledger cannot record or read: 503 with what happened, not a 500
            status, body, headers = render_error(
                GatewayError(exc.message, status=exc.http_status, error_type=exc.error_type), wire="openai"
            )
            return Response(body, status_code=status, media_type="application/json", headers=headers)
        except ValueError as exc:
            status, body, headers = render_error(
                GatewayError(str(exc), status=400, error_type="invalid_request_error"), wire="openai"
            )
            return Response(body, status_code=status, media_type="application/json", headers=headers)

    return wrapped


def _public_key(key: VirtualKey) -> dict[str, Any]:
    data = asdict(key)
    data.pop("key_hash")
    return data


def admin_routes(gw: Gateway) -> list[Route]:
    async def list_keys(request: Request) -> Response:
        keys = await asyncio.to_thread(gw.ledger.list_keys)
        return _json({"keys": [_public_key(k) for k in keys]})

    async def create_key(request: Request) -> Response:
        try:
            body = orjson.loads(await request.body() or b"{}")
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"the request body is not valid JSON: {exc}") from None
        if not isinstance(body, dict):
            raise ValueError("the request body must be a JSON object")
        unknown = sorted(set(body) - {"user", "team", "project", "tags", "budget", "models"})
        if unknown:
            raise ValueError(f"unknown field {unknown[0]!r}: a key has user, team, project, tags, budget and models")
        for name in ("user", "team", "project", "budget"):
            value = body.get(name)
            if value is not None and (not isinstance(value, str) or len(value) > 200):
                raise ValueError(f"'{name}' must be a string of at most 200 characters")
        tags = {} if body.get("tags") is None else body["tags"]
        if not isinstance(tags, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in tags.items()):
            raise ValueError("'tags' must be an object of string values")
        models = [] if body.get("models") is None else body["models"]
        if not isinstance(models, list) or not all(isinstance(m, str) and m for m in models):
            raise ValueError("'models' must be a list of model names")
        secret, key = new_virtual_key(
            user=body.get("user"),
            team=body.get("team"),
            project=body.get("project"),
            tags=tags,
            budget=body.get("budget"),
            models=tuple(models),
        )
        # Sync ledger writes must not run on the event loop thread.
        await asyncio.to_thread(gw.ledger.create_key, key)
        return _json({"key": secret, **_public_key(key)}, status=201)

    async def keys(request: Request) -> Response:
        return await (create_key(request) if request.method == "POST" else list_keys(request))

    async def revoke_key(request: Request) -> Response:
        done = await asyncio.to_thread(gw.ledger.revoke_key, request.path_params["key"])
        if not done:
            raise GatewayError("no active key with that id or prefix", status=404, error_type="not_found")
        gw.forget_cached_keys()
        return _json({"revoked": request.path_params["key"]})

    async def spend(request: Request) -> Response:
        by = request.query_params.get("by")
        if by is not None and by not in GROUP_BY_CHOICES and not by.startswith("tag:"):
            raise ValueError(f"'by' must be one of {', '.join(GROUP_BY_CHOICES)} or tag:NAME")
        since_text = request.query_params.get("since")
        try:
            since = datetime.fromisoformat(since_text) if since_text is not None else None
        except ValueError:
            raise ValueError(f"'since' must be an ISO 8601 date or date-time, got {since_text!r}") from None
        if since is not None and since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
        await gw.ledger.flush()  # read your writes: events of answered requests may still be queued
        rows = await asyncio.to_thread(gw.ledger.spend, since, None, by)
        return _json({"by": by, "since": since, "rows": [asdict(r) for r in rows]})

    async def budgets(request: Request) -> Response:
        rows = []
        for name, (spent, reserved) in await gw.counters.items():
            rows.append({"counter": name, "spent": spent, "reserved": reserved})
        return _json({"budgets": [r.model_dump() for r in gw.config.budgets], "counters": rows})

    async def reset_breakers(request: Request) -> Response:
        body = orjson.loads(await request.body() or b"{}")
        if not isinstance(body, dict) or not set(body) <= {"rule", "value"}:
            raise ValueError("the body may only name 'rule' (a breaker's name) and 'value' (its scope value)")
        for name, value in body.items():
            if value is not None and not isinstance(value, str):
                raise ValueError(f"'{name}' must be a string")
        count = await gw.breaker.reset(body.get("rule"), body.get("value"))
        return _json({"reset": count})

    async def flush_ledger(request: Request) -> Response:
        await gw.ledger.flush()
        return _json({"flushed": True, "committed_items": gw.ledger.committed_items})

    async def clear_cache(request: Request) -> Response:
        raw = await request.body()
        try:
            body = orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError:
            raise ValueError('the body must be JSON: {"route": ..., "scope": ..., "prefix": ...}') from None
        if not isinstance(body, dict) or not set(body) <= {"route", "scope", "prefix"}:
            raise ValueError("the body may only name 'route' (lever route), 'scope' (e.g. team:ml) and 'prefix'")
        for name, value in body.items():
            if value is not None and not isinstance(value, str):
                raise ValueError(f"'{name}' must be a string")
        exact, semantic = await clear_caches(
            gw, route=body.get("route"), partition=body.get("scope"), key_prefix=body.get("prefix")
        )
        remaining = await gw.exact_cache.count()
        return _json({"cleared": exact + semantic, "exact": exact, "semantic": semantic, "remaining": remaining})

    async def alerts(request: Request) -> Response:
        found = await asyncio.to_thread(gw.ledger.alerts, limit=200)
        return _json({"alerts": [asdict(a) for a in found]})

    async def openapi(request: Request) -> Response:
        from .. import __version__
        from .openapi import openapi_spec

        return _json(openapi_spec(__version__))

    return [
        # One route per path (Starlette answers 405 with the Allow header of the first route matching a path).
        Route("/v1/margin/keys", _admin(gw, keys), methods=["GET", "POST"]),
        Route("/v1/margin/keys/{key}/revoke", _admin(gw, revoke_key), methods=["POST"]),
        Route("/v1/margin/spend", _admin(gw, spend, query=("by", "since")), methods=["GET"]),
        Route("/v1/margin/budgets", _admin(gw, budgets), methods=["GET"]),
        Route("/v1/margin/breakers/reset", _admin(gw, reset_breakers), methods=["POST"]),
        Route("/v1/margin/alerts", _admin(gw, alerts), methods=["GET"]),
        Route("/v1/margin/ledger/flush", _admin(gw, flush_ledger), methods=["POST"]),
        Route("/v1/margin/cache/clear", _admin(gw, clear_cache), methods=["POST"]),
        Route("/v1/margin/openapi.json", openapi, methods=["GET"]),  # public: it describes, it reveals nothing
    ]

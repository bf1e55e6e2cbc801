"""The dashboard's routes on the gateway (``/dashboard...``): pages, their JSON documents, the two scripts,
sign-in and sign-out. The only dashboard module that touches the running gateway.

Access (see _auth.py): the master key or the read-only dashboard key, as ``Authorization: Bearer KEY`` or
through the login form's session cookie. Virtual keys never open it, and the dashboard key opens nothing but
the dashboard (the admin API and /metrics compare against the master key only). Unauthenticated browser
page loads are sent to the login form; everything else gets an OpenAI-style JSON error with 401.

Ledger reads are synchronous: each page flushes the ledger's write queue first (so it shows every answered
request), then reads and renders in a worker thread, off the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlencode, urlsplit

import orjson
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from ..config import AlertsConfig
from ..errors import MarginError
from ..gateway.errors import GatewayError, render_error
from ..insights.reports import PeriodError
from ..store.base import LedgerError
from ._assets import Asset, AssetError, loader_js, plotly_js
from ._auth import SESSION_COOKIE, SESSION_SECONDS, DashboardKeys, Role
from ._data import document, period_of
from ._reads import PAGES, Sources, read_page
from ._render import NAV, dashboard_html, error_html, login_html

if TYPE_CHECKING:
    from ..gateway.state import Gateway

__all__ = ["dashboard_keys", "dashboard_routes"]

log = logging.getLogger("margin.dashboard")

# Pages are made of the server's own HTML, one stylesheet inline (plotly adds inline styles too) and scripts
# from /dashboard/static only: no inline script runs, nothing is fetched from anywhere else.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "font-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
PAGE_HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    # same-origin, not no-referrer: with no-referrer browsers send "Origin: null" on the login form's POST, which
    # the cross-site check (_same_origin) must refuse.
    "referrer-policy": "same-origin",
    "x-frame-options": "DENY",
    "cache-control": "no-store",  # spend figures: never kept by a shared cache
}
MAX_LOGIN_BODY = 8192
ROLE_LABELS = {"master": "master key", "dashboard": "read-only key"}


def dashboard_keys(gw: Gateway) -> DashboardKeys:
    """The keys that open this gateway's dashboard: its master key and the key in gateway.dashboard_key_env."""
    return DashboardKeys(
        master=gw.master_key,
        dashboard=os.environ.get(gw.config.dashboard_key_env) or None,
        master_env=gw.config.master_key_env,
        dashboard_env=gw.config.dashboard_key_env,
    )


def _decimal_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value, "f")
    raise TypeError(type(value).__name__)


def _json(body: Any, status: int = 200) -> Response:
    return Response(
        orjson.dumps(body, default=_decimal_default),
        status_code=status,
        media_type="application/json",
        headers={"cache-control": "no-store", "x-content-type-options": "nosniff"},
    )


def _json_error(message: str, status: int, error_type: str, code: str) -> Response:
    status, body, headers = render_error(
        GatewayError(message, status=status, error_type=error_type, code=code), wire="openai"
    )
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def _html(text: str, status: int = 200) -> Response:
    return Response(text, status_code=status, media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)


def _bearer(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    return (auth[7:].strip() or None) if auth.lower().startswith("bearer ") else None


def _wants_html(request: Request) -> bool:
    return (
        request.method == "GET"
        and not request.url.path.startswith(("/dashboard/api/", "/dashboard/static/"))
        and "text/html" in request.headers.get("accept", "")
    )


def _safe_next(value: str | None) -> str:
    """Where to go after signing in: a dashboard page on this host only (never an open redirect)."""
    if not value or not value.startswith("/dashboard") or "//" in value or "\\" in value:
        return "/dashboard"
    if value.startswith(("/dashboard/login", "/dashboard/logout")):
        return "/dashboard"
    return value


def _same_origin(request: Request) -> bool:
    """A form POST from this site (or from a client that sends no Origin): refuse cross-site posts."""
    origin = request.headers.get("origin")
    return origin is None or urlsplit(origin).netloc == request.headers.get("host", "")


def dashboard_routes(gw: Gateway) -> list[Route]:
    keys = dashboard_keys(gw)
    sources = Sources(
        budgets=gw.config.budgets,
        # insights.alerts as configured, whether or not the watch runs (defaults for a hand-built gateway).
        alerts=gw.alert_rules or AlertsConfig(),
        catalog=gw.catalog,
        default_max_tokens=gw.config.default_max_tokens,
    )

    def now_seconds() -> int:
        return int(gw.clock().timestamp())

    def role_of(request: Request) -> Role | None:
        bearer = _bearer(request)
        if bearer is not None:
            return keys.role_of(bearer)
        return keys.role_of_session(request.cookies.get(SESSION_COOKIE), now_seconds())

    def guarded(handler: Callable[[Request, Role], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            if not keys.enabled:
                if _wants_html(request):
                    return _html(error_html("Dashboard disabled", keys.disabled_reason()), 403)
                return _json_error(keys.disabled_reason(), 403, "permission_error", "dashboard_disabled")
            role = role_of(request)
            if role is None:
                if _bearer(request) is None and _wants_html(request):
                    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                    return RedirectResponse("/dashboard/login?" + urlencode({"next": target}), status_code=303)
                return _json_error(
                    f"the dashboard needs the dashboard key ({keys.dashboard_env}) or the master key, as "
                    "'Authorization: Bearer KEY' or by signing in at /dashboard/login; virtual keys cannot open it",
                    401,
                    "authentication_error",
                    "dashboard_key_required",
                )
            return await handler(request, role)

        return endpoint

    async def load(request: Request, name: str, render: Callable[[Any], Any]) -> Any:
        period = period_of(request.query_params.get("period") or None, gw.clock())
        await gw.ledger.flush()  # read your writes: events of answered requests may still be queued

        def work() -> Any:
            return render(read_page(gw.ledger, name, period, sources))

        return await asyncio.to_thread(work)

    def page_endpoint(name: str) -> Callable[[Request], Awaitable[Response]]:
        async def page(request: Request, role: Role) -> Response:
            try:
                text = await load(
                    request, name, lambda model: dashboard_html(model, nav_page=name, signed_in_as=ROLE_LABELS[role])
                )
                return _html(text)
            except PeriodError as exc:
                return _html(error_html("Bad period", exc.message + " (e.g. ?period=2026-11)"), 400)
            except (LedgerError, AssetError) as exc:
                return _html(error_html("Cannot show this page", exc.message), exc.http_status)
            except Exception:
                log.exception("dashboard page %s failed", name)
                return _html(error_html("Internal error", "the page failed; see the gateway log"), 500)

        return guarded(page)

    def api_endpoint(name: str) -> Callable[[Request], Awaitable[Response]]:
        async def api(request: Request, role: Role) -> Response:
            try:
                return _json(await load(request, name, document))
            except MarginError as exc:
                status = exc.http_status if isinstance(exc, PeriodError | LedgerError) else 500
                return _json_error(exc.message, status, exc.error_type, exc.error_type)
            except Exception:
                log.exception("dashboard API %s failed", name)
                return _json_error("the page failed; see the gateway log", 500, "internal_error", "internal_error")

        return guarded(api)

    def static_endpoint(find: Callable[[], Asset]) -> Callable[[Request], Awaitable[Response]]:
        async def static(request: Request, role: Role) -> Response:
            try:
                asset = await asyncio.to_thread(find)
            except AssetError as exc:
                return _json_error(exc.message, 500, exc.error_type, exc.error_type)
            etag = f'"{asset.version}"'
            # Versioned URLs (?v=content hash) make a year-long cache safe; "private": the files sit behind
            # the dashboard's sign-in.
            headers = {
                "cache-control": "private, max-age=31536000, immutable",
                "etag": etag,
                "vary": "Accept-Encoding",
                "x-content-type-options": "nosniff",
            }
            if request.headers.get("if-none-match") == etag:
                return Response(status_code=304, headers=headers)
            body = asset.body
            if "gzip" in request.headers.get("accept-encoding", ""):
                body = await asyncio.to_thread(lambda: asset.gzipped)
                headers["content-encoding"] = "gzip"
            return Response(body, media_type="text/javascript; charset=utf-8", headers=headers)

        return guarded(static)

    async def login(request: Request) -> Response:
        next_path = _safe_next(request.query_params.get("next"))
        if not keys.enabled:
            return _html(login_html(next_path=next_path, disabled=keys.disabled_reason()), 403)
        if request.method == "GET":
            if role_of(request) is not None:
                return RedirectResponse(next_path, status_code=303)
            return _html(login_html(next_path=next_path))
        if not _same_origin(request):
            return _html(login_html(next_path=next_path, error="sign-in refused: the form came from another site"), 403)
        raw = await request.body()
        if len(raw) > MAX_LOGIN_BODY:
            return _html(login_html(next_path=next_path, error="the form is too large"), 413)
        form = parse_qs(raw.decode("utf-8", "replace"), keep_blank_values=True)
        next_path = _safe_next((form.get("next") or [next_path])[0])
        role = keys.role_of((form.get("key") or [""])[0].strip())
        if role is None:
            error = (
                f"that key does not open the dashboard: use the dashboard key ({keys.dashboard_env}) or the master "
                "key; virtual keys cannot open it"
            )
            return _html(login_html(next_path=next_path, error=error), 401)
        response = RedirectResponse(next_path, status_code=303)
        response.set_cookie(
            SESSION_COOKIE,
            keys.session_token(role, now_seconds()),
            max_age=SESSION_SECONDS,
            path="/dashboard",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response

    async def logout(request: Request) -> Response:
        if request.method == "POST" and not _same_origin(request):
            return _html(error_html("Sign-out refused", "the form came from another site"), 403)
        response = RedirectResponse("/dashboard/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/dashboard", httponly=True, samesite="strict")
        return response

    paths = {name: path for name, path, _ in NAV}
    routes = [
        Route("/dashboard/login", login, methods=["GET", "POST"]),
        Route("/dashboard/logout", logout, methods=["GET", "POST"]),
        Route("/dashboard/static/plotly.min.js", static_endpoint(plotly_js), methods=["GET"]),
        Route("/dashboard/static/dashboard.js", static_endpoint(loader_js), methods=["GET"]),
    ]
    for name in PAGES:
        routes.append(Route("/dashboard" + paths[name], page_endpoint(name), methods=["GET"]))
        routes.append(Route(f"/dashboard/api/{name}.json", api_endpoint(name), methods=["GET"]))
    return routes

"""The dashboard's routes on the real gateway app, in process (httpx2's ASGI transport): who gets in, what the
login cookie holds, what the dashboard key cannot open, static files, errors."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import httpx2
import pytest

from margin.config import MarginConfig
from margin.dashboard._auth import SESSION_COOKIE
from margin.gateway.app import create_app
from margin.gateway.config import GatewayConfig
from margin.gateway.state import build_gateway

MASTER = "mk-master-dashboard-test"
DASH = "dash-key-for-tests"
HTML = {"accept": "text/html,application/xhtml+xml"}


def _gateway(tmp_path, monkeypatch, *, master: str | None = MASTER, dashboard: str | None = DASH):
    for name, value in (("MARGIN_MASTER_KEY", master), ("MARGIN_DASHBOARD_KEY", dashboard)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    return build_gateway(MarginConfig(home=str(tmp_path), gateway=GatewayConfig()), database=tmp_path / "ledger.db")


def _run(gw, steps):
    """Run ``steps(client)`` against the app in process; the gateway closes afterwards."""

    async def go():
        transport = httpx2.ASGITransport(app=create_app(gw))
        async with httpx2.AsyncClient(transport=transport, base_url="http://margin.test") as client:
            return await steps(client)

    try:
        return asyncio.run(go())
    finally:
        asyncio.run(gw.aclose())


async def _traffic(client, team: str, n: int = 2) -> Decimal:
    total = Decimal(0)
    for i in range(n):
        response = await client.post(
            "/v1/chat/completions",
            headers={"authorization": f"Bearer {MASTER}", "x-margin-tags": f"team={team}"},
            json={"model": "gpt-4o-mini", "max_tokens": 20, "messages": [{"role": "user", "content": f"hi {i}"}]},
        )
        assert response.status_code == 200, response.text
        total += Decimal(response.headers["x-margin-cost"])
    return total


def test_bearer_keys_pages_and_json_match_the_ledger(tmp_path, monkeypatch):
    gw = _gateway(tmp_path, monkeypatch)

    async def steps(client):
        spent = {"ml": await _traffic(client, "ml", 3), "web": await _traffic(client, "web", 1)}
        # No flush here: the page itself flushes the ledger's queue before reading.
        for key in (DASH, MASTER):
            page = await client.get("/dashboard/teams", headers={"authorization": f"Bearer {key}"})
            assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
            assert "script-src 'self'" in page.headers["content-security-policy"]
            assert page.headers["cache-control"] == "no-store"
        doc = (await client.get("/dashboard/api/teams.json", headers={"authorization": f"Bearer {DASH}"})).json()
        assert {r["group"]: Decimal(r["effective_cost"]) for r in doc["rows"]} == spent
        overview = await client.get("/dashboard/api/overview.json", headers={"authorization": f"Bearer {DASH}"})
        assert Decimal(overview.json()["total"]["effective_cost"]) == sum(spent.values())
        bad = await client.get("/dashboard/api/teams.json?period=2026-13", headers={"authorization": f"Bearer {DASH}"})
        assert bad.status_code == 400 and "2026-11" in bad.json()["error"]["message"]
        bad_page = await client.get("/dashboard?period=nope", headers={"authorization": f"Bearer {DASH}", **HTML})
        assert bad_page.status_code == 400 and "a month like 2026-11" in bad_page.text

    _run(gw, steps)


def test_who_cannot_open_the_dashboard_and_what_the_dashboard_key_cannot_open(tmp_path, monkeypatch):
    gw = _gateway(tmp_path, monkeypatch)

    async def steps(client):
        created = await client.post("/v1/margin/keys", headers={"authorization": f"Bearer {MASTER}"}, json={})
        virtual = created.json()["key"]
        for key in (virtual, "wrong-key", MASTER + "x"):
            denied = await client.get("/dashboard/api/overview.json", headers={"authorization": f"Bearer {key}"})
            assert denied.status_code == 401 and denied.json()["error"]["code"] == "dashboard_key_required"
            page = await client.get("/dashboard", headers={"authorization": f"Bearer {key}", **HTML})
            assert page.status_code == 401  # a key was presented and is wrong: no redirect to a form
        # Unauthenticated: browsers go to the login form, API clients get a JSON 401.
        browser = await client.get("/dashboard/teams?period=2026-11", headers=HTML)
        assert browser.status_code == 303
        assert browser.headers["location"] == "/dashboard/login?next=%2Fdashboard%2Fteams%3Fperiod%3D2026-11"
        api = await client.get("/dashboard/api/teams.json", headers=HTML)
        assert api.status_code == 401 and "MARGIN_DASHBOARD_KEY" in api.json()["error"]["message"]
        assert (await client.get("/dashboard/static/plotly.min.js")).status_code == 401
        # The dashboard key is read-only: not the admin API, not /metrics, not the proxy.
        dash = {"authorization": f"Bearer {DASH}"}
        assert (await client.get("/v1/margin/keys", headers=dash)).status_code == 403
        assert (await client.get("/v1/margin/spend", headers=dash)).status_code == 403
        assert (await client.get("/metrics", headers=dash)).status_code == 401
        chat = await client.post(
            "/v1/chat/completions",
            headers=dash,
            json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
        )
        assert chat.status_code == 401

    _run(gw, steps)


def test_login_form_sets_a_strict_http_only_cookie_without_the_key(tmp_path, monkeypatch):
    gw = _gateway(tmp_path, monkeypatch)

    async def steps(client):
        form = await client.get("/dashboard/login?next=/dashboard/tasks")
        assert form.status_code == 200 and 'name="next" value="/dashboard/tasks"' in form.text
        wrong = await client.post("/dashboard/login", data={"key": "nope", "next": "/dashboard/tasks"})
        assert wrong.status_code == 401 and "does not open the dashboard" in wrong.text
        assert SESSION_COOKIE not in wrong.headers.get("set-cookie", "")
        cross = await client.post("/dashboard/login", data={"key": DASH}, headers={"origin": "https://evil.example"})
        assert cross.status_code == 403 and "set-cookie" not in cross.headers
        ok = await client.post(
            "/dashboard/login", data={"key": DASH, "next": "/dashboard/tasks"}, headers={"origin": "http://margin.test"}
        )
        assert ok.status_code == 303 and ok.headers["location"] == "/dashboard/tasks"
        cookie = ok.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/dashboard" in cookie
        assert DASH not in cookie and MASTER not in cookie
        token = ok.cookies[SESSION_COOKIE]
        jar = {"cookie": f"{SESSION_COOKIE}={token}"}
        assert (await client.get("/dashboard/tasks", headers={**jar, **HTML})).status_code == 200
        assert (await client.get("/dashboard/api/tasks.json", headers=jar)).status_code == 200
        assert (await client.get("/v1/margin/keys", headers=jar)).status_code == 401  # cookies open no admin API
        forged = {"cookie": f"{SESSION_COOKIE}=master{token[len('dashboard') :]}"}
        assert (await client.get("/dashboard/api/tasks.json", headers=forged)).status_code == 401
        # Signed in already: the form sends you on.
        again = await client.get("/dashboard/login?next=/dashboard/models", headers=jar)
        assert again.status_code == 303 and again.headers["location"] == "/dashboard/models"
        out = await client.post("/dashboard/logout", headers={**jar, "origin": "http://margin.test"})
        assert out.status_code == 303 and f'{SESSION_COOKIE}=""' in out.headers["set-cookie"]
        # Only dashboard pages are places to go after signing in.
        for target in ("//evil.example/x", "https://evil.example", "/v1/margin/keys", "/dashboard/logout"):
            sent = await client.post("/dashboard/login", data={"key": DASH, "next": target})
            assert sent.headers["location"] == "/dashboard"

    _run(gw, steps)


def test_static_scripts_are_cached_and_compressed(tmp_path, monkeypatch):
    gw = _gateway(tmp_path, monkeypatch)

    async def steps(client):
        auth = {"authorization": f"Bearer {DASH}"}
        plain = await client.get("/dashboard/static/plotly.min.js", headers={**auth, "accept-encoding": "identity"})
        assert plain.status_code == 200 and plain.content.startswith(b"/**\n* plotly.js v")
        assert plain.headers["cache-control"] == "private, max-age=31536000, immutable"
        assert "content-encoding" not in plain.headers
        zipped = await client.get("/dashboard/static/plotly.min.js", headers={**auth, "accept-encoding": "gzip"})
        assert zipped.headers["content-encoding"] == "gzip" and zipped.content == plain.content  # decoded by httpx2
        assert int(zipped.headers["content-length"]) < len(plain.content) / 2
        etag = plain.headers["etag"]
        cached = await client.get("/dashboard/static/plotly.min.js", headers={**auth, "if-none-match": etag})
        assert cached.status_code == 304 and not cached.content
        loader = await client.get("/dashboard/static/dashboard.js", headers=auth)
        assert loader.status_code == 200 and b"Plotly.newPlot" in loader.content

    _run(gw, steps)


@pytest.mark.parametrize("master", [None, MASTER])
def test_without_a_dashboard_key_or_master_key_the_dashboard_says_what_to_set(tmp_path, monkeypatch, master):
    gw = _gateway(tmp_path, monkeypatch, master=master, dashboard=None)

    async def steps(client):
        api = await client.get("/dashboard/api/overview.json", headers={"authorization": f"Bearer {MASTER}"})
        page = await client.get("/dashboard", headers=HTML)
        login = await client.get("/dashboard/login")
        return api, page, login

    api, page, login = _run(gw, steps)
    if master is None:
        assert api.status_code == 403 and api.json()["error"]["code"] == "dashboard_disabled"
        assert "MARGIN_DASHBOARD_KEY" in api.json()["error"]["message"]
        assert page.status_code == 403 and "MARGIN_DASHBOARD_KEY" in page.text
        assert login.status_code == 403 and "MARGIN_MASTER_KEY" in login.text and "<form" not in login.text
    else:  # the master key alone opens it
        assert api.status_code == 200 and page.status_code == 303 and login.status_code == 200


def test_the_alerts_page_uses_the_configured_thresholds_when_the_watch_is_off(tmp_path, monkeypatch):
    from margin.config import AlertsConfig, InsightsConfig

    monkeypatch.setenv("MARGIN_MASTER_KEY", MASTER)
    monkeypatch.setenv("MARGIN_DASHBOARD_KEY", DASH)
    insights = InsightsConfig(alerts=AlertsConfig(enabled=False, spike_multiple=Decimal(7)))
    config = MarginConfig(home=str(tmp_path), gateway=GatewayConfig(), insights=insights)
    gw = build_gateway(config, database=tmp_path / "ledger.db")
    assert gw.alerts is None  # the watch does not run...

    async def steps(client):
        doc = (await client.get("/dashboard/api/alerts.json", headers={"authorization": f"Bearer {DASH}"})).json()
        assert Decimal(str(doc["settings"]["spike_multiple"])) == 7  # ...but its thresholds are the page's

    _run(gw, steps)

"""Guards through the real server: admin API behind the master key, tag policy, key budgets and model
lists, revocation, oversized input, rate limits and the spend circuit breaker."""

from __future__ import annotations

import sqlite3

import httpx2
import openai
import pytest

from .conftest import start_gateway

MASTER = {"authorization": "Bearer mk-master-test"}
CONFIG = """
gateway:
  retries: {max_retries: 0}
  max_input_tokens: 2000
  tag_policy: {enabled: true, required: [team, project]}
  rate_limits:
    - {name: per-key, scope: tag:limited, requests_per_minute: 2}
  breakers:
    - {name: runaway, scope: tag:breaker, expected_hourly: 0.000001, multiple: 2, cooldown_minutes: 10}
"""


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    running = start_gateway(tmp_path_factory.mktemp("guards"), CONFIG)
    yield running
    running.stop()


def post(gw, key, body, headers=None):
    return httpx2.post(
        gw.base_url + "/v1/chat/completions",
        json=body,
        timeout=20,
        headers={"authorization": f"Bearer {key}", **(headers or {})},
    )


def ask(model="gpt-4o-mini", content="hi", **extra):
    return {"model": model, "messages": [{"role": "user", "content": content}], "max_tokens": 20, **extra}


def test_admin_api_needs_the_master_key(gw):
    key = gw.create_key("--team", "a", "--project", "p")
    assert httpx2.get(gw.base_url + "/v1/margin/keys").status_code == 401
    forbidden = httpx2.get(gw.base_url + "/v1/margin/spend", headers={"authorization": f"Bearer {key}"})
    assert forbidden.status_code == 403 and forbidden.json()["error"]["code"] == "master_key_required"
    created = httpx2.post(
        gw.base_url + "/v1/margin/keys",
        headers=MASTER,
        json={"user": "bob", "team": "web", "project": "p", "budget": "1/day"},
    )
    assert created.status_code == 201
    secret = created.json()["key"]
    listed = httpx2.get(gw.base_url + "/v1/margin/keys", headers=MASTER).json()["keys"]
    assert any(k["user"] == "bob" for k in listed)
    assert all("key_hash" not in k and secret not in str(k) for k in listed)  # secrets never listed
    assert post(gw, secret, ask()).status_code == 200
    spend = httpx2.get(gw.base_url + "/v1/margin/spend?by=team", headers=MASTER).json()
    assert any(r["group"] == "web" and r["requests"] >= 1 for r in spend["rows"])
    revoked = httpx2.post(gw.base_url + f"/v1/margin/keys/{created.json()['key_id']}/revoke", headers=MASTER)
    assert revoked.status_code == 200
    after = post(gw, secret, ask())
    assert after.status_code == 401 and after.json()["error"]["code"] == "revoked_api_key"


def test_tag_policy_names_the_missing_tags(gw):
    key = gw.create_key("--team", "ml")
    response = post(gw, key, ask())
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "missing_tags" and "project" in response.json()["error"]["message"]
    assert post(gw, key, ask(), {"X-Margin-Tags": "project=search"}).status_code == 200
    bad = post(gw, key, ask(), {"X-Margin-Tags": "project"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_tags"


def test_key_budget_and_model_list(gw):
    key = gw.create_key("--team", "t", "--project", "p", "--budget", "0.00005/day", "--models", "gpt-4o-mini")
    denied = post(gw, key, ask(model="gpt-4o"))
    assert denied.status_code == 403 and denied.json()["error"]["code"] == "model_not_allowed"
    statuses = [post(gw, key, ask(max_tokens=100)).status_code for _ in range(6)]
    assert 402 in statuses and statuses[0] == 200
    over = post(gw, key, ask(max_tokens=100))
    assert over.json()["error"]["code"] == "budget_exceeded"
    gw.flush_ledger()
    with sqlite3.connect(gw.home / "ledger.db") as db:
        spent = db.execute(
            "select sum(effective_cost_nanos) from usage_events where key_id = ?", (_key_id(gw, key),)
        ).fetchone()[0]
    assert spent <= 55_000  # nano-dollars: the key's $0.00005/day budget x 1.10 block threshold


def _key_id(gw, secret):
    listed = httpx2.get(gw.base_url + "/v1/margin/keys", headers=MASTER).json()["keys"]
    return next(k["key_id"] for k in listed if secret.startswith(k["prefix"]))


def test_oversized_prompt_gets_413(gw):
    key = gw.create_key("--team", "t", "--project", "p")
    response = post(gw, key, ask(content="word " * 5000))
    assert response.status_code == 413 and response.json()["error"]["code"] == "input_too_large"


def test_rate_limit_returns_429_with_retry_after(gw):
    key = gw.create_key("--team", "t", "--project", "p", "--tag", "limited=yes")
    codes = [post(gw, key, ask()).status_code for _ in range(3)]
    assert codes[:2] == [200, 200] and codes[2] == 429
    limited = post(gw, key, ask())
    assert int(limited.headers["retry-after"]) >= 1
    gw.flush_ledger()
    with sqlite3.connect(gw.home / "ledger.db") as db:
        reasons = {r for (r,) in db.execute("select error_type from usage_events where status = 'rejected'")}
    assert "rate_limit_exceeded" in reasons  # rejections are metered with their reason
    client = openai.OpenAI(base_url=gw.base_url + "/v1", api_key=key, max_retries=0)
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(**ask())


def test_spend_breaker_trips_writes_an_alert_and_resets(gw):
    key = gw.create_key("--team", "t", "--project", "p", "--tag", "breaker=on")
    first = post(gw, key, ask())
    assert first.status_code == 200  # this spend pushes the last hour over 2 x $0.000001
    tripped = post(gw, key, ask())
    assert tripped.status_code == 402 and tripped.json()["error"]["code"] == "spend_circuit_open"
    alerts = httpx2.get(gw.base_url + "/v1/margin/alerts", headers=MASTER).json()["alerts"]
    assert any(a["kind"] == "spend_circuit_open" for a in alerts)
    reset = httpx2.post(gw.base_url + "/v1/margin/breakers/reset", headers=MASTER, json={"rule": "runaway"})
    assert reset.json()["reset"] >= 1
    assert post(gw, key, ask()).status_code == 200


def test_a_prompt_whose_size_exceeds_the_ceiling_but_whose_tokens_do_not_is_served(gw):
    # 9,000 bytes (above the 2,000-token ceiling as a byte bound) but about 1,800 tokens: counted, then served.
    key = gw.create_key("--team", "t", "--project", "p")
    response = post(gw, key, ask(content="word " * 1800))
    assert response.status_code == 200, response.text

"""Routing, cascade, budget-aware downgrade, prompt compression and context management through the real
server with the official SDK, against a fake upstream that records what it received."""

from __future__ import annotations

import json
import sqlite3
from decimal import Decimal

import openai
import pytest

from tests.fakes.upstream import FakeUpstream

from .conftest import start_gateway


@pytest.fixture(scope="module")
def upstream():
    with FakeUpstream() as server:
        yield server


@pytest.fixture(scope="module")
def gw(tmp_path_factory, upstream):
    config = f"""
gateway:
  retries: {{max_retries: 0}}
  providers:
    - {{name: up, type: openai_compatible, base_url: "{upstream.base_url}/v1"}}
  models:
    - {{name: small, provider: up, upstream_model: gpt-4o-mini}}
    - {{name: large, provider: up, upstream_model: gpt-4o}}
    - {{name: xl, provider: up, upstream_model: gpt-4.1}}
  levers:
    - name: auto
      match: {{models: [auto]}}
      routing: {{tiers: {{simple: small, standard: large, complex: xl}}, cascade: true, downgrade_to_fit: true}}
    - name: lean
      match: {{models: [small], tags: {{feature: lean}}}}
      compression: {{}}
      context: {{max_input_tokens: 300, keep_recent: 2}}
    - name: summarized
      match: {{models: [small], tags: {{feature: summ}}}}
      context:
        {{max_input_tokens: 400, keep_recent: 2, method: summarize, summary_model: small, summary_max_tokens: 60}}
"""
    running = start_gateway(tmp_path_factory.mktemp("levers"), config)
    yield running
    running.stop()


@pytest.fixture(autouse=True)
def _clean(upstream):
    upstream.reset()
    yield


def events(gw, request_id):
    gw.flush_ledger()
    with sqlite3.connect(gw.home / "ledger.db") as db:
        db.row_factory = sqlite3.Row
        rows = db.execute("select * from usage_events where request_id = ? order by attempt", (request_id,))
        return [dict(r) for r in rows]


def client(gw, key):
    return openai.OpenAI(base_url=gw.base_url + "/v1", api_key=key, max_retries=0)


def test_simple_and_complex_requests_route_to_their_tiers(gw, upstream):
    c = client(gw, gw.create_key("--team", "route"))
    simple = c.chat.completions.with_raw_response.create(
        model="auto", max_tokens=50, messages=[{"role": "user", "content": "Translate 'hello' to French."}]
    )
    assert simple.headers["x-margin-served-model"] == "gpt-4o-mini"
    assert simple.headers["x-margin-route"].startswith("simple")
    hard = (
        "Analyze step by step and prove rigorously why the algorithm below is correct, then design a faster "
        "one, compare their complexity, and explain the trade-offs in depth.\n```python\n"
        + "def f(xs):\n    return sorted(xs)\n" * 20
        + "```"
    )
    complex_ = c.chat.completions.with_raw_response.create(
        model="auto", max_tokens=50, messages=[{"role": "user", "content": hard}]
    )
    assert complex_.headers["x-margin-route"].split(" ")[0] in ("standard", "complex")
    (row,) = events(gw, complex_.headers["x-margin-request-id"])
    decisions = json.loads(row["decisions"])
    assert decisions["lever"] == "auto" and decisions["routing"] == "tier"
    assert decisions["tier"] in ("standard", "complex") and 0 <= decisions["score"] <= 1
    assert row["served_model"] == upstream.requests[-1].body["model"]


def test_cascade_escalates_when_json_is_invalid_and_meters_both_attempts(gw, upstream):
    c = client(gw, gw.create_key("--team", "cascade"))
    raw = c.chat.completions.with_raw_response.create(
        model="auto",
        max_tokens=1000,  # never truncated: the JSON check is what rejects
        response_format={"type": "json_object"},
        messages=[{"role": "user", "content": "List two colours."}],
    )
    # The fake upstream answers prose, never JSON: every tier but the last is rejected and escalated.
    rows = events(gw, raw.headers["x-margin-request-id"])
    assert [r["status"] for r in rows] == ["ok"] * len(rows) and len(rows) >= 2
    assert [r["error_type"] for r in rows[:-1]] == ["cascade_escalated"] * (len(rows) - 1)
    assert rows[-1]["error_type"] is None
    assert [r["attempt"] for r in rows] == list(range(len(rows)))
    assert all(Decimal(r["effective_cost"]) > 0 for r in rows)  # the rejected answers cost real money
    assert len(upstream.requests) == len(rows)
    chain = raw.headers["x-margin-cascade"].split(" -> ")
    assert len(chain) == len(rows) and chain[-1] == "xl"
    assert json.loads(rows[-1]["decisions"])["cascade"][0]["check"] == "json"
    # Escalations count as fallbacks (for the fallback rate): every attempt after the first names the first route.
    assert rows[0]["fallback_from"] is None
    assert [r["fallback_from"] for r in rows[1:]] == [chain[0]] * (len(rows) - 1)


def test_a_tight_budget_downgrades_instead_of_refusing(gw, upstream):
    # A budget that cannot cover the xl tier's worst case at 2,000 output tokens but covers the small tier's.
    key = gw.create_key("--team", "thrifty", "--budget", "0.01/day")
    c = client(gw, key)
    hard = "Prove step by step, analyze in depth and design an algorithm; compare trade-offs. " * 8
    raw = c.chat.completions.with_raw_response.create(
        model="auto", max_tokens=2000, messages=[{"role": "user", "content": hard}]
    )
    assert raw.headers["x-margin-downgraded"].endswith("-> small")
    assert upstream.requests[-1].body["model"] == "gpt-4o-mini"


def test_compression_keeps_code_and_json_byte_identical(gw, upstream):
    key = gw.create_key("--team", "lean", "--tag", "feature=lean")
    code = "```python\ndef add(a, b):\n    # please keep   these   spaces\n    return a + b\n```"
    data = '{"please": "I would like you to keep this", "n": [1,  2]}'
    prompt = f"Could you please kindly review   this code:\n\n{code}\n\nand this JSON: {data}\n\n\n\nThanks in advance!"
    raw = client(gw, key).chat.completions.with_raw_response.create(
        model="small", max_tokens=30, messages=[{"role": "user", "content": prompt}]
    )
    sent = upstream.requests[-1].body["messages"][0]["content"]
    assert code in sent and data in sent
    assert len(sent) < len(prompt)
    (row,) = events(gw, raw.headers["x-margin-request-id"])
    compression = json.loads(row["decisions"])["compression"]
    assert compression["tokens_after"] < compression["tokens_before"]
    assert row["input_tokens"] <= compression["tokens_after"] + 10  # what the upstream counted is what was sent


def test_a_long_conversation_is_trimmed_instead_of_refused(gw, upstream):
    key = gw.create_key("--team", "lean", "--tag", "feature=lean")
    messages = [{"role": "system", "content": "You are terse."}]
    for i in range(12):
        messages.append({"role": "user", "content": f"Question {i}: " + "words " * 30})
        messages.append({"role": "assistant", "content": f"Answer {i}: " + "more " * 30})
    messages.append({"role": "user", "content": "And the last question?"})
    raw = client(gw, key).chat.completions.with_raw_response.create(model="small", max_tokens=20, messages=messages)
    assert raw.http_response.status_code == 200
    sent = upstream.requests[-1].body["messages"]
    assert sent[0] == messages[0]  # the system prompt is kept
    assert sent[-1]["content"].endswith("And the last question?")
    assert len(sent) < len(messages)
    (row,) = events(gw, raw.headers["x-margin-request-id"])
    context = json.loads(row["decisions"])["context"]
    assert context["method"] == "dropped_middle" and context["tokens_after"] <= 300 < context["tokens_before"]


def test_the_dropped_middle_is_summarized_by_the_cheap_model_once(gw, upstream):
    key = gw.create_key("--team", "summ", "--tag", "feature=summ")
    messages = [{"role": "system", "content": "You are terse."}]
    for i in range(12):
        messages.append({"role": "user", "content": f"Question {i}: " + "words " * 30})
        messages.append({"role": "assistant", "content": f"Answer {i}: " + "more " * 30})
    messages.append({"role": "user", "content": "And the last question?"})
    c = client(gw, key)
    raw = c.chat.completions.with_raw_response.create(model="small", max_tokens=20, messages=messages)
    assert raw.http_response.status_code == 200
    summary_call, main_call = upstream.requests[-2].body, upstream.requests[-1].body
    assert "Question 0" in summary_call["messages"][-1]["content"]  # the dropped turns, as a transcript
    assert summary_call["max_tokens"] == 60
    assert any("[Summary of" in str(m.get("content")) for m in main_call["messages"])
    rows = events(gw, raw.headers["x-margin-request-id"])
    assert [r["attempt"] for r in rows] == [0, 1]
    assert json.loads(rows[0]["decisions"])["purpose"] == "context_summary"
    assert all(Decimal(r["effective_cost"]) > 0 for r in rows)  # the summary is metered like any call
    assert json.loads(rows[1]["decisions"])["context"]["method"] == "summarized"
    # The same conversation again: the summary comes from the cache, one upstream call only.
    before = len(upstream.requests)
    again = c.chat.completions.with_raw_response.create(model="small", max_tokens=20, messages=messages)
    assert again.http_response.status_code == 200 and len(upstream.requests) == before + 1

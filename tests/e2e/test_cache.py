"""The exact cache through the real server with the official SDKs: miss then hit, hits free and metered as
cached with the avoided cost, scoped by team, bypass on request, nondeterministic and truncated answers
never stored, and a hit replayed as a stream in both wires."""

from __future__ import annotations

import json
import sqlite3
import time
from decimal import Decimal

import anthropic
import openai
import pytest

from .conftest import start_gateway

CONFIG = """
gateway:
  levers:
    - name: cached-chat
      match: {models: [gpt-4o-mini, claude-haiku-4-5]}
      cache: {ttl_seconds: 600, scope: team}
"""


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    running = start_gateway(tmp_path_factory.mktemp("cache"), CONFIG)
    yield running
    running.stop()


def client(gw, key):
    return openai.OpenAI(base_url=gw.base_url + "/v1", api_key=key, max_retries=0)


def ask(c, content, **extra):
    params = {"model": "gpt-4o-mini", "temperature": 0, "max_tokens": 200, **extra}
    return c.chat.completions.with_raw_response.create(messages=[{"role": "user", "content": content}], **params)


def ledger(gw, sql, *params):
    gw.flush_ledger()
    with sqlite3.connect(gw.home / "ledger.db") as db:
        return db.execute(sql, params).fetchall()


def test_a_repeat_is_a_free_hit_with_its_avoided_cost_in_the_ledger(gw):
    c = client(gw, gw.create_key("--team", "alpha"))
    first = ask(c, "What is the capital of France?")
    assert first.headers["x-margin-cache"] == "miss" and Decimal(first.headers["x-margin-cost"]) > 0
    second = ask(c, "What is the capital of France?")
    assert second.headers["x-margin-cache"] == "hit" and second.headers["x-margin-cost"] == "0"
    assert second.parse().choices[0].message.content == first.parse().choices[0].message.content
    assert Decimal(second.headers["x-margin-avoided-cost"]) == Decimal(first.headers["x-margin-cost"])
    (row,) = ledger(
        gw,
        "select status, effective_cost, avoided_cost, cache, output_tokens from usage_events where request_id = ?",
        second.headers["x-margin-request-id"],
    )
    assert row[0] == "cached" and Decimal(row[1]) == 0 and row[3] == "hit"
    assert Decimal(row[2]) == Decimal(first.headers["x-margin-cost"])
    assert row[4] == first.parse().usage.completion_tokens
    # Both events carry the request's hash (the cache key), so repeats are countable without the prompt text.
    hashes = ledger(
        gw,
        "select prompt_hash from usage_events where request_id in (?, ?)",
        first.headers["x-margin-request-id"],
        second.headers["x-margin-request-id"],
    )
    assert len(hashes) == 2 and hashes[0] == hashes[1] and len(hashes[0][0]) == 64
    other = ask(c, "What is the capital of Spain?")
    (other_hash,) = ledger(
        gw, "select prompt_hash from usage_events where request_id = ?", other.headers["x-margin-request-id"]
    )
    assert other_hash != hashes[0]


def test_no_cross_team_hits_and_bypass_on_request(gw):
    alpha = client(gw, gw.create_key("--team", "team-a"))
    beta = client(gw, gw.create_key("--team", "team-b"))
    assert ask(alpha, "Shared words, separate teams").headers["x-margin-cache"] == "miss"
    assert ask(beta, "Shared words, separate teams").headers["x-margin-cache"] == "miss"
    assert ask(alpha, "Shared words, separate teams").headers["x-margin-cache"] == "hit"
    bypass = ask(alpha, "Shared words, separate teams", extra_headers={"Cache-Control": "no-cache"})
    assert bypass.headers["x-margin-cache"] == "bypass" and Decimal(bypass.headers["x-margin-cost"]) > 0
    other_header = ask(alpha, "Shared words, separate teams", extra_headers={"X-Margin-Cache": "bypass"})
    assert other_header.headers["x-margin-cache"] == "bypass"


def test_nondeterministic_and_truncated_answers_are_not_stored(gw):
    c = client(gw, gw.create_key("--team", "gamma"))
    warm = ask(c, "Tell me a story", temperature=0.7)
    assert warm.headers["x-margin-cache"] == "bypass"
    assert ask(c, "Tell me a story", temperature=0.7).headers["x-margin-cache"] == "bypass"
    cut = ask(c, "Write a long essay about the sea", max_tokens=3)
    assert cut.parse().choices[0].finish_reason == "length"
    assert ask(c, "Write a long essay about the sea", max_tokens=3).headers["x-margin-cache"] == "miss"


def test_an_upstream_failure_is_never_cached(gw):
    c = client(gw, gw.create_key("--team", "delta"))
    with pytest.raises(openai.APIStatusError):
        ask(c, "fails once", extra_headers={"x-mock-fault": "400"})
    assert ask(c, "fails once").headers["x-margin-cache"] == "miss"


def test_a_hit_is_replayed_as_a_stream_in_both_wires(gw):
    key = gw.create_key("--team", "epsilon")
    c = client(gw, key)
    answer = ask(c, "Stream me from the cache").parse()
    with c.chat.completions.with_streaming_response.create(
        model="gpt-4o-mini",
        temperature=0,
        max_tokens=200,
        stream=True,
        stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "Stream me from the cache"}],
    ) as response:
        assert response.headers["x-margin-cache"] == "hit"
        chunks = list(response.parse())
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == answer.choices[0].message.content
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == answer.usage.completion_tokens

    claude = anthropic.Anthropic(base_url=gw.base_url, api_key=key, max_retries=0)
    params = {
        "model": "claude-haiku-4-5",
        "max_tokens": 200,
        "extra_body": {"temperature": 0},  # this SDK version no longer takes temperature as an argument
        "messages": [{"role": "user", "content": "Anthropic from the cache"}],
    }
    message = claude.messages.create(**params)
    with claude.messages.stream(**params) as stream:
        replayed = stream.get_final_message()
    assert "".join(b.text for b in replayed.content) == "".join(b.text for b in message.content)
    assert replayed.usage.output_tokens == message.usage.output_tokens
    rows = ledger(gw, "select count(*) from usage_events where status = 'cached' and stream = 1")
    assert rows[0][0] >= 2


def test_invalidation_through_the_admin_api_and_the_cli(gw):
    import subprocess
    import sys

    import httpx2

    c = client(gw, gw.create_key("--team", "zeta"))
    ask(c, "invalidate me")
    assert ask(c, "invalidate me").headers["x-margin-cache"] == "hit"
    master = {"authorization": "Bearer mk-master-test"}
    denied = httpx2.post(gw.base_url + "/v1/margin/cache/clear", json={}, headers={"authorization": "Bearer nope"})
    assert denied.status_code in (401, 403)
    cleared = httpx2.post(gw.base_url + "/v1/margin/cache/clear", json={"scope": "team:zeta"}, headers=master)
    assert cleared.status_code == 200 and cleared.json()["cleared"] == 1
    assert ask(c, "invalidate me").headers["x-margin-cache"] == "miss"
    assert ask(c, "invalidate me").headers["x-margin-cache"] == "hit"
    done = subprocess.run(
        [sys.executable, "-m", "margin", "cache", "clear", "--url", gw.base_url, "--route", "cached-chat"],
        env=gw.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "cleared" in done.stdout
    assert ask(c, "invalidate me").headers["x-margin-cache"] == "miss"


SEMANTIC_CONFIG = """
gateway:
  levers:
    - name: faq
      match: {models: [gpt-4o-mini]}
      cache: {ttl_seconds: 600, scope: team, semantic: {threshold: 0.89}}
"""


@pytest.fixture(scope="module")
def semantic_gw(tmp_path_factory):
    running = start_gateway(tmp_path_factory.mktemp("semantic"), SEMANTIC_CONFIG)
    yield running
    running.stop()


def test_semantic_cache_serves_a_paraphrase_and_refuses_a_trap(semantic_gw):
    gw = semantic_gw
    c = client(gw, gw.create_key("--team", "faq"))
    first = ask(c, "How do I reset my password?")
    assert first.headers["x-margin-cache"] == "miss"
    time.sleep(0.5)  # the semantic store runs in the background after the response
    paraphrase = ask(c, "How can I reset my password?")
    assert paraphrase.headers["x-margin-cache"] == "semantic-hit", paraphrase.headers
    assert paraphrase.parse().choices[0].message.content == first.parse().choices[0].message.content
    assert Decimal(paraphrase.headers["x-margin-avoided-cost"]) > 0
    trap = ask(c, "How do I not reset my password?")  # negation: the verification gate refuses it
    assert trap.headers["x-margin-cache"] == "miss"
    other_team = client(gw, gw.create_key("--team", "elsewhere"))
    assert ask(other_team, "How can I reset my password?").headers["x-margin-cache"] == "miss"
    (row,) = ledger(
        gw,
        "select status, cache, decisions from usage_events where request_id = ?",
        paraphrase.headers["x-margin-request-id"],
    )
    assert row[0] == "cached" and row[1] == "semantic-hit"
    assert json.loads(row[2])["semantic"]["similarity"] >= 0.89


def test_feedback_on_a_wrong_semantic_hit_stops_it_being_served(semantic_gw):
    import httpx2

    gw = semantic_gw
    key = gw.create_key("--team", "feedback")
    c = client(gw, key)
    ask(c, "How do I update my billing details?")
    time.sleep(0.5)
    hit = ask(c, "How can I update my billing details?")
    assert hit.headers["x-margin-cache"] == "semantic-hit"
    request_id = hit.headers["x-margin-request-id"]
    stranger = gw.create_key("--team", "feedback")
    url = gw.base_url + "/v1/margin/feedback"
    denied = httpx2.post(
        url, json={"request_id": request_id, "correct": False}, headers={"authorization": f"Bearer {stranger}"}
    )
    assert denied.status_code == 404  # a key may only judge its own answers
    bad = httpx2.post(url, json={"request_id": request_id}, headers={"authorization": f"Bearer {key}"})
    assert bad.status_code == 400
    ok = httpx2.post(url, json={"request_id": request_id, "correct": False}, headers={"authorization": f"Bearer {key}"})
    assert ok.status_code == 200 and ok.json()["recorded"] is True
    # The entry's own threshold now sits above that similarity: the same paraphrase is no longer served.
    assert ask(c, "How can I update my billing details?").headers["x-margin-cache"] == "miss"


def test_cache_clear_drops_semantic_entries_too(semantic_gw):
    import httpx2

    gw = semantic_gw
    c = client(gw, gw.create_key("--team", "clearing"))
    ask(c, "How do I change my email address?")
    time.sleep(0.5)
    assert ask(c, "How can I change my email address?").headers["x-margin-cache"] == "semantic-hit"
    master = {"authorization": "Bearer mk-master-test"}
    cleared = httpx2.post(gw.base_url + "/v1/margin/cache/clear", json={"scope": "team:clearing"}, headers=master)
    assert cleared.status_code == 200
    assert cleared.json()["semantic"] == 1 and cleared.json()["exact"] == 1
    assert ask(c, "How can I change my email address?").headers["x-margin-cache"] == "miss"

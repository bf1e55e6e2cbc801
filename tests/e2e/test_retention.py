"""Prompt retention through the real server: off by default (hashes only), opt-in with redaction, listed and
purged with the CLI."""

from __future__ import annotations

import json
import sqlite3

import openai
import pytest

from .conftest import start_gateway

SECRET_PROMPT = "Email ana@example.com the key sk-proj-abcdefghijklmnop1234 and summarise our refund policy."


def _ask(gw, key, content):
    client = openai.OpenAI(base_url=gw.base_url + "/v1", api_key=key, max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", max_tokens=20, messages=[{"role": "user", "content": content}]
    )
    return raw.headers["x-margin-request-id"]


def _rows(gw, sql, *params):
    gw.flush_ledger()
    with sqlite3.connect(gw.home / "ledger.db") as db:
        return db.execute(sql, params).fetchall()


@pytest.fixture(scope="module")
def retaining(tmp_path_factory):
    config = """
gateway:
  prompt_retention:
    enabled: true
    days: 7
    redact: {ticket: 'TCK-\\d{5}'}
"""
    running = start_gateway(tmp_path_factory.mktemp("retain"), config)
    yield running
    running.stop()


def test_without_opt_in_only_hashes_are_kept(tmp_path):
    gw = start_gateway(tmp_path, "gateway: {}\n")
    try:
        request_id = _ask(gw, gw.create_key("--team", "t"), SECRET_PROMPT)
        assert _rows(gw, "select count(*) from retained_prompts") == [(0,)]
        (row,) = _rows(gw, "select prompt_hash from usage_events where request_id = ?", request_id)
        assert len(row[0]) == 64
        assert SECRET_PROMPT not in (gw.home / "ledger.db").read_bytes().decode("latin-1")
    finally:
        gw.stop()


def test_retained_bodies_are_redacted_and_carry_the_hash(retaining):
    gw = retaining
    request_id = _ask(gw, gw.create_key("--team", "t"), SECRET_PROMPT + " Ref TCK-12345.")
    ((prompt_hash, body),) = _rows(
        gw, "select prompt_hash, body from retained_prompts where request_id = ?", request_id
    )
    (event_hash,) = _rows(gw, "select prompt_hash from usage_events where request_id = ?", request_id)[0]
    assert prompt_hash == event_hash
    text = json.loads(body)["messages"][0]["content"]
    assert text == (
        "Email [REDACTED:email] the key [REDACTED:secret] and summarise our refund policy. Ref [REDACTED:ticket]."
    )
    raw = (gw.home / "ledger.db").read_bytes() + b"".join(p.read_bytes() for p in gw.home.glob("ledger.db-wal"))
    assert b"ana@example.com" not in raw and b"sk-proj-abcdefghijklmnop1234" not in raw

    listed = json.loads(gw.margin("prompts", "list", "--json").stdout)
    assert [r["request_id"] for r in listed] == [request_id]
    assert "purged 0 " in gw.margin("prompts", "purge").stdout  # nothing older than 7 days
    assert "purged 1 " in gw.margin("prompts", "purge", "--older-than", "0").stdout
    assert _rows(gw, "select count(*) from retained_prompts") == [(0,)]


def test_a_bad_redaction_pattern_is_refused_at_start(tmp_path):
    from margin.config import load_config
    from margin.errors import ConfigError

    path = tmp_path / "margin.yaml"
    path.write_text("gateway:\n  prompt_retention: {enabled: true, redact: {broken: 'a('}}\n")
    with pytest.raises(ConfigError, match="broken"):
        load_config(path)


def test_recommendations_group_retained_near_duplicates(retaining):
    gw = retaining
    key = gw.create_key("--team", "helpdesk")
    for i in range(7):
        _ask(gw, key, "How do I change the email on my account?" + ("" if i % 2 else " "))
    gw.flush_ledger()
    result = gw.margin("report", "recommendations", "--since", "1d", "--near-duplicates", "--json")
    kinds = {r["kind"]: r for r in json.loads(result.stdout)}
    assert "cache_repeats" in kinds  # exact repeats by hash (4 identical texts, 3 with a trailing space)
    semantic = kinds["semantic_cache_repeats"]
    assert semantic["evidence"]["repeat_requests"] == 6  # both spellings in one group: 7 requests, 1 fills
    assert kinds["cache_repeats"]["evidence"]["repeat_requests"] < 6

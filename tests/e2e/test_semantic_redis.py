"""The semantic cache shared through Redis, through the real ``margin serve`` with the official openai SDK:
two instances on one Redis and one ledger file.

1. A paraphrase answered through instance A is a ``semantic-hit`` on instance B (a ``cached`` ledger event);
   another team never gets it; a wrong-hit report sent to B stops A serving it; ``margin cache clear`` sent
   to A empties B's copy too.
2. An instance started after the entries were stored loads them before serving.
3. Redis killed: the local copies keep answering, no request fails because of the cache, the outage and the
   answers not stored are counted; Redis back (empty): the copies follow it, new entries propagate again.
"""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx2
import openai
import pytest

from .conftest import RunningGateway, start_gateway

MASTER = {"authorization": "Bearer mk-master-test"}
ENTRIES = 'margin_semantic_cache_entries{route="faq"}'


def _config(database: Path, redis_url: str) -> str:
    return f"""
gateway:
  database: {database}
  redis_url: {redis_url}
  redis_timeout_ms: 3000
  levers:
    - name: faq
      match: {{models: [gpt-4o-mini]}}
      cache: {{ttl_seconds: 600, scope: team, semantic: {{threshold: 0.89}}}}
"""


def client(gw: RunningGateway, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.base_url + "/v1", api_key=key, max_retries=0, timeout=30)


def ask(c: openai.OpenAI, content: str):
    return c.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", temperature=0, max_tokens=200, messages=[{"role": "user", "content": content}]
    )


def metric(gw: RunningGateway, series: str) -> float:
    text = httpx2.get(gw.base_url + "/metrics", headers=MASTER, timeout=10).text
    match = re.search("^" + re.escape(series) + r" (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def wait_for(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def shared(tmp_path_factory, redis_server):
    """Two instances on the session's Redis (emptied first) and one ledger file."""
    if redis_server.process is None or redis_server.process.poll() is not None:
        redis_server.start()
    redis_server.flush()
    tmp = tmp_path_factory.mktemp("semantic-redis")
    database = tmp / "shared" / "ledger.db"
    config = _config(database, redis_server.url)
    first = start_gateway(tmp / "a", config)
    second = start_gateway(tmp / "b", config)
    yield first, second, database, config, tmp
    first.stop()
    second.stop()


def test_a_paraphrase_answered_by_one_instance_is_a_semantic_hit_on_the_other(shared):
    a, b, database, *_ = shared
    key = a.create_key("--team", "support")
    on_a, on_b = client(a, key), client(b, key)
    first = ask(on_a, "How do I reset my password?")
    assert first.headers["x-margin-cache"] == "miss"
    wait_for(lambda: metric(b, ENTRIES) >= 1)  # stored on A in the background, announced to B through Redis

    hit = ask(on_b, "How can I reset my password?")
    assert hit.headers["x-margin-cache"] == "semantic-hit", hit.headers
    assert hit.parse().choices[0].message.content == first.parse().choices[0].message.content
    b.flush_ledger()
    with sqlite3.connect(database) as db:
        status, cache = db.execute(
            "select status, cache from usage_events where request_id = ?", (hit.headers["x-margin-request-id"],)
        ).fetchone()
    assert (status, cache) == ("cached", "semantic-hit")

    stranger = client(b, a.create_key("--team", "elsewhere"))
    assert ask(stranger, "How can I reset my password?").headers["x-margin-cache"] == "miss"  # scope: team

    # A wrong-hit report sent to B: the entry's threshold rises in Redis and in A's copy.
    synced = 'margin_semantic_cache_synced_total{route="faq",op="feedback"}'
    reported = httpx2.post(
        b.base_url + "/v1/margin/feedback",
        json={"request_id": hit.headers["x-margin-request-id"], "correct": False},
        headers={"authorization": f"Bearer {key}"},
        timeout=10,
    )
    assert reported.status_code == 200 and reported.json()["recorded"] is True
    wait_for(lambda: metric(a, synced) >= 1)
    assert ask(on_a, "How can I reset my password?").headers["x-margin-cache"] == "miss"

    # `margin cache clear` sent to A: both copies (and the shared exact cache) are emptied.
    assert metric(b, ENTRIES) >= 2
    done = subprocess.run(
        [sys.executable, "-m", "margin", "cache", "clear", "--url", a.base_url, "--route", "faq"],
        env=a.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    wait_for(lambda: metric(b, ENTRIES) == 0)
    assert metric(a, ENTRIES) == 0
    assert ask(on_b, "How do I reset my password?").headers["x-margin-cache"] == "miss"


def test_an_instance_started_later_loads_the_entries(shared):
    a, _, _, config, tmp = shared
    key = a.create_key("--team", "billing")
    assert ask(client(a, key), "How do I update my billing details?").headers["x-margin-cache"] == "miss"
    wait_for(lambda: metric(a, ENTRIES) >= 1 and metric(shared[1], ENTRIES) >= 1)
    late = start_gateway(tmp / "late", config)
    try:
        assert metric(late, ENTRIES) == metric(a, ENTRIES)  # loaded before it answered /health
        hit = ask(client(late, key), "How can I update my billing details?")
        assert hit.headers["x-margin-cache"] == "semantic-hit", hit.headers
    finally:
        late.stop()


def test_redis_killed_the_local_copies_answer_and_sharing_resumes(tmp_path, own_redis):
    config = _config(tmp_path / "shared" / "ledger.db", own_redis.url)
    a = start_gateway(tmp_path / "a", config)
    b = start_gateway(tmp_path / "b", config)
    try:
        key = a.create_key("--team", "support")
        on_a, on_b = client(a, key), client(b, key)
        assert ask(on_a, "How do I reset my password?").headers["x-margin-cache"] == "miss"
        wait_for(lambda: metric(b, ENTRIES) == 1)

        own_redis.kill()
        hit = ask(on_b, "How can I reset my password?")  # the exact cache misses (Redis is down), B's copy answers
        assert hit.headers["x-margin-cache"] == "semantic-hit", hit.headers
        fresh = ask(on_a, "What is the capital of France?")  # answered; its answer cannot be shared, so not stored
        assert fresh.headers["x-margin-cache"] == "miss"
        not_stored = 'margin_backend_unavailable_total{backend="redis",outcome="semantic_not_stored"}'
        wait_for(lambda: metric(a, not_stored) == 1)
        assert metric(b, 'margin_backend_unavailable_total{backend="redis",outcome="cache_miss"}') >= 1
        assert metric(a, "margin_backend_up") == 0

        own_redis.start()  # empty: no persistence
        # Both copies follow Redis (empty now: the log is gone), then new answers are shared again.
        wait_for(lambda: all(metric(g, "margin_backend_up") == 1 and metric(g, ENTRIES) == 0 for g in (a, b)))
        assert ask(on_a, "How do I update my billing details?").headers["x-margin-cache"] == "miss"
        wait_for(lambda: metric(b, ENTRIES) == 1)
        again = ask(on_b, "How can I update my billing details?")
        assert again.headers["x-margin-cache"] == "semantic-hit", again.headers
    finally:
        a.stop()
        b.stop()

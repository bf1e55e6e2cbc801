"""The gateway in front of a real fake upstream server with injected faults: retries with backoff,
fallbacks, upstream errors passed on, dropped streams, client aborts and slow clients. Every attempt is
metered."""

from __future__ import annotations

import json
import socket
import sqlite3
import threading
import time
from decimal import Decimal

import anthropic
import httpx2
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
    tmp = tmp_path_factory.mktemp("faults")
    config = f"""
gateway:
  retries: {{max_retries: 2, base_delay_ms: 1, max_delay_ms: 20}}
  body_timeout_s: 1
  providers:
    - {{name: up, type: openai_compatible, base_url: "{upstream.base_url}/v1", timeout_s: 1.0}}
    - {{name: up-anthropic, type: anthropic, base_url: "{upstream.base_url}", timeout_s: 1.0}}
  models:
    - {{name: main, provider: up, upstream_model: gpt-4o-mini, fallbacks: [backup]}}
    - {{name: backup, provider: up, upstream_model: gpt-4o}}
    - {{name: solo, provider: up, upstream_model: gpt-4o-mini}}
    - {{name: claude, provider: up-anthropic, upstream_model: claude-haiku-4-5}}
"""
    running = start_gateway(tmp, config)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def key(gw) -> str:
    return gw.create_key("--team", "faults")


@pytest.fixture(autouse=True)
def _clean(upstream):
    upstream.reset()
    yield
    upstream.reset()


def events(gw, request_id: str) -> list[dict]:
    gw.flush_ledger()
    with sqlite3.connect(gw.home / "ledger.db") as db:
        db.row_factory = sqlite3.Row
        return [
            dict(r)
            for r in db.execute("select * from usage_events where request_id = ? order by attempt", (request_id,))
        ]


def chat(gw, key, model="main", **extra):
    client = openai.OpenAI(base_url=gw.base_url + "/v1", api_key=key, max_retries=0)
    return client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": "fault test"}], max_tokens=40, **extra
    )


def test_429_is_retried_and_every_attempt_metered(gw, key, upstream):
    upstream.faults.push(429, times=2, retry_after=0.01)
    raw = chat(gw, key)
    assert raw.parse().choices[0].message.content
    rows = events(gw, raw.headers["x-margin-request-id"])
    assert [r["status"] for r in rows] == ["upstream_error", "upstream_error", "ok"], [
        (r["status"], r["error_type"], r["error_message"]) for r in rows
    ]
    assert [r["error_type"] for r in rows[:2]] == ["rate_limited", "rate_limited"]
    assert all(Decimal(r["effective_cost"]) == 0 for r in rows[:2])  # a refused attempt costs nothing
    assert len(upstream.requests) == 3


def test_persistent_500_falls_back_to_the_backup_model(gw, key, upstream):
    upstream.faults.push(500, times=3)  # all three attempts on `main` fail
    raw = chat(gw, key)
    assert raw.headers["x-margin-served-model"] == "gpt-4o"
    rows = events(gw, raw.headers["x-margin-request-id"])
    assert [r["status"] for r in rows] == ["upstream_error"] * 3 + ["ok"]
    assert rows[-1]["route"] == "backup" and rows[-1]["fallback_from"] == "main"
    assert Decimal(rows[-1]["effective_cost"]) > 0  # the fallback's cost is visible


def test_upstream_400_is_passed_on_and_not_retried(gw, key, upstream):
    upstream.faults.push(400)
    with pytest.raises(openai.BadRequestError):
        chat(gw, key, model="solo")
    assert len(upstream.requests) == 1


def test_timeouts_and_malformed_bodies_end_in_clear_errors(gw, key, upstream):
    upstream.faults.push("delay", seconds=2, times=3)
    with pytest.raises(openai.APIStatusError) as info:
        chat(gw, key, model="solo")
    assert info.value.status_code == 504
    assert info.value.body["code"] == "timeout"
    upstream.faults.push("malformed", times=1)
    raw = chat(gw, key, model="solo")  # retried after the malformed body
    assert raw.parse().choices


def test_dropped_stream_is_metered_from_what_arrived(gw, key, upstream):
    upstream.faults.push("drop", after=3)
    response = httpx2.post(
        gw.base_url + "/v1/chat/completions",
        headers={"authorization": f"Bearer {key}"},
        json={
            "model": "solo",
            "stream": True,
            "max_tokens": 200,
            "messages": [{"role": "user", "content": "stream and drop"}],
        },
        timeout=10,
    )
    body = response.text
    assert "upstream stream failed" in body
    request_id = response.headers["x-margin-request-id"]
    rows = events(gw, request_id)
    assert rows[-1]["status"] == "upstream_error" and rows[-1]["error_type"] == "stream_dropped"
    assert rows[-1]["usage_source"] == "local_count" and rows[-1]["output_tokens"] > 0


def _stream(client: httpx2.Client, gw, key: str, content: str, *, max_tokens: int, **extra: object):
    """A streamed chat request to the ``solo`` route, read as the test pleases (``with ... as response``)."""
    body = {"model": "solo", "stream": True, "max_tokens": max_tokens, **extra}
    body["messages"] = [{"role": "user", "content": content}]
    return client.stream(
        "POST", gw.base_url + "/v1/chat/completions", headers={"authorization": f"Bearer {key}"}, json=body
    )


def test_client_abort_mid_stream_is_still_billed(gw, key, upstream):
    upstream.faults.push("stall", after=3, seconds=3)
    with httpx2.Client(timeout=10) as client:
        with _stream(client, gw, key, "abort me", max_tokens=200) as response:
            request_id = response.headers["x-margin-request-id"]
            for line in response.iter_lines():
                if not line.startswith("data:") or "[DONE]" in line:
                    continue
                choices = json.loads(line[5:]).get("choices") or [{}]
                if choices[0].get("delta", {}).get("content"):
                    break  # got some generated text: hang up
    deadline = time.monotonic() + 10
    rows: list[dict] = []
    while time.monotonic() < deadline:
        rows = events(gw, request_id)
        if rows:
            break
        time.sleep(0.1)
    assert rows and rows[-1]["status"] == "client_abort"
    assert rows[-1]["output_tokens"] > 0 and Decimal(rows[-1]["effective_cost"]) > 0


def test_anthropic_provider_through_the_gateway(gw, key, upstream):
    client = anthropic.Anthropic(base_url=gw.base_url, api_key=key, max_retries=0)
    message = client.messages.create(
        model="claude",
        max_tokens=50,
        messages=[{"role": "user", "content": "hi"}],
        system=[{"type": "text", "text": "cached system prompt " * 50, "cache_control": {"type": "ephemeral"}}],
    )
    assert message.usage.cache_creation_input_tokens or message.usage.cache_read_input_tokens
    upstream.faults.push(429, times=1, retry_after=0.01)
    with client.messages.stream(
        model="claude",
        max_tokens=50,
        messages=[{"role": "user", "content": "again"}],
        system=[{"type": "text", "text": "cached system prompt " * 50, "cache_control": {"type": "ephemeral"}}],
    ) as stream:
        final = stream.get_final_message()
    assert final.usage.cache_read_input_tokens > 0
    sent = [r for r in upstream.requests if r.path.endswith("/messages")]
    assert all(r.body.get("max_tokens") == 50 for r in sent)
    assert json.dumps(sent[-1].body).count("cache_control") >= 1


def _raw_exchange(gw, key: str, body: bytes, *, declared: int, pause_s: float) -> tuple[int, dict, float]:
    """POST with a raw socket, sending ``body`` one byte every ``pause_s`` s (or only the headers, then
    nothing, when ``pause_s`` is 0); (status, JSON body, seconds until the answer)."""
    host, port = gw.base_url.removeprefix("http://").split(":")
    started = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=15) as sock:
        head = (
            f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {declared}\r\n\r\n"
        )
        sock.sendall(head.encode())
        if pause_s:
            sock.settimeout(pause_s)
            for byte in body:
                try:
                    sock.sendall(bytes([byte]))
                    if sock.recv(1, socket.MSG_PEEK):
                        break  # the gateway answered: stop sending
                except TimeoutError:
                    continue
                except OSError:
                    break
            sock.settimeout(15)
        data = b""
        while b"\r\n\r\n" not in data:
            data += sock.recv(65536)
        head_bytes, _, rest = data.partition(b"\r\n\r\n")
        length = int(
            next(
                v
                for k, v in (line.split(b": ", 1) for line in head_bytes.split(b"\r\n")[1:])
                if k.lower() == b"content-length"
            )
        )
        while len(rest) < length:
            rest += sock.recv(65536)
    return int(head_bytes.split(b" ")[1]), json.loads(rest[:length]), time.monotonic() - started


def test_a_stalled_or_trickling_request_body_gets_408(gw, key, upstream):
    """A client that sends the headers and then stalls, or trickles the body a byte at a time, is answered
    408 request_timeout once gateway.body_timeout_s (1 s here) has passed, instead of holding a task."""
    body = json.dumps({"model": "solo", "messages": [{"role": "user", "content": "slow"}], "max_tokens": 5}).encode()
    status, error, waited = _raw_exchange(gw, key, body, declared=len(body), pause_s=0)
    assert status == 408 and error["error"]["code"] == "request_timeout"
    assert "body_timeout_s" in error["error"]["message"]
    assert 0.9 < waited < 10
    status, error, waited = _raw_exchange(gw, key, body, declared=len(body), pause_s=0.05)  # ~4.5 s to send
    assert status == 408 and error["error"]["code"] == "request_timeout"
    assert upstream.requests == []  # nothing reached the upstream
    assert chat(gw, key, model="solo").parse().choices  # and the gateway serves the next client as usual


def test_a_slow_stream_reader_holds_only_its_own_request(gw, key, upstream):
    """A client reading a stream slowly does not hold up other requests, and its event is complete."""
    with httpx2.Client(timeout=30) as client:
        with _stream(
            client, gw, key, "a slow reader", max_tokens=60, stream_options={"include_usage": True}
        ) as response:
            request_id = response.headers["x-margin-request-id"]
            lines = response.iter_lines()
            usage = None
            answered: list[object] = []
            for number, line in enumerate(lines):
                if number == 3:
                    # Mid-stream, another client's request is answered in full.
                    other = threading.Thread(target=lambda: answered.append(chat(gw, key, model="solo").parse()))
                    other.start()
                    other.join(timeout=20)
                    assert answered and answered[0].choices
                if line.startswith("data:") and "[DONE]" not in line:
                    chunk = json.loads(line[5:])
                    usage = chunk.get("usage") or usage
                time.sleep(0.02)
    rows = events(gw, request_id)
    assert [r["status"] for r in rows] == ["ok"]
    assert usage is not None and rows[0]["output_tokens"] == usage["completion_tokens"] > 0

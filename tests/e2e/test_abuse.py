"""Bad input and abuse against the proxied routes of the real server: malformed, huge, deeply nested and
non-UTF-8 bodies, header injection in tags, keys that try to read others' spend. Every refusal is a clear
OpenAI-style error, nothing crashes the server, and neither keys nor prompt text reach the log or the ledger
in clear."""

from __future__ import annotations

import socket
import sqlite3
import time

import httpx2
import pytest

from .conftest import start_gateway

PROMPT = "the secret sauce is 7f3a9c-unique-prompt-text"


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("abuse")
    running = start_gateway(tmp, "gateway:\n  max_body_bytes: 200000\n")
    running.key = running.create_key("--team", "abuse")
    running.log = tmp / "gateway.log"
    yield running
    running.stop()


def post(gw, content: bytes, headers=None, path="/v1/chat/completions"):
    return httpx2.post(
        gw.base_url + path,
        content=content,
        headers={"authorization": f"Bearer {gw.key}", "content-type": "application/json", **(headers or {})},
        timeout=30,
    )


def error_of(response):
    body = response.json()
    assert set(body) == {"error"} and body["error"]["message"], body
    return body["error"]


@pytest.mark.parametrize(
    ("content", "code"),
    [
        (b"{not json", "invalid_json"),
        (b"[1, 2, 3]", "invalid_json"),
        (b'{"model": "gpt-4o-mini", "messages": "hello"}', None),
        (b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "\xff\xfe bad utf-8"}]}', "invalid_json"),
        (b"[" * 100_000 + b"]" * 100_000, "invalid_json"),  # nesting far past any parser's recursion limit
        (b'{"model": "gpt-4o-mini", "messages": [' + b'{"a": ' * 5000 + b"1" + b"}" * 5000 + b"]}", None),
    ],
    ids=["truncated", "not-an-object", "messages-not-a-list", "invalid-utf8", "deeply-nested-array", "deep-message"],
)
def test_malformed_bodies_are_400_with_a_clear_error(gw, content, code):
    response = post(gw, content)
    assert response.status_code == 400, response.text
    error = error_of(response)
    assert error["type"] == "invalid_request_error"
    if code:
        assert error["code"] == code


def test_huge_bodies_are_refused_before_they_are_read_whole(gw):
    big = b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "' + b"a" * 300_000 + b'"}]}'
    response = post(gw, big)
    assert response.status_code == 413 and error_of(response)["code"] == "body_too_large"

    def chunks():  # no Content-Length: the gateway must stop at its limit, not buffer everything
        yield b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "'
        for _ in range(50):
            yield b"b" * 10_000
        yield b'"}]}'

    response = httpx2.post(
        gw.base_url + "/v1/chat/completions",
        content=chunks(),
        headers={"authorization": f"Bearer {gw.key}", "content-type": "application/json"},
        timeout=30,
    )
    assert response.status_code == 413 and error_of(response)["code"] == "body_too_large"


def test_header_injection_in_tags_is_refused(gw):
    # A raw request: HTTP client libraries refuse to send these headers at all.
    body = b'{"model": "gpt-4o-mini", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}'
    host, port = gw.base_url.removeprefix("http://").split(":")
    for tags in (b"team=a\x00b", b"team=" + b"x" * 300, b"team", b"=v"):
        request = (
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + gw.key.encode() + b"\r\n"
            b"Content-Type: application/json\r\nX-Margin-Tags: " + tags + b"\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body
        )
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(request)
            reply = b""
            while chunk := sock.recv(65536):
                reply += chunk
        status = int(reply.split(b" ", 2)[1])
        assert status == 400, (tags, reply[:300])
    with sqlite3.connect(gw.home / "ledger.db") as db:
        stored = [t for (t,) in db.execute("select tags from usage_events")]
    assert not any("\x00" in t for t in stored)


def test_a_virtual_key_cannot_read_spend_or_keys(gw):
    for path in ("/v1/margin/spend", "/v1/margin/keys", "/v1/margin/alerts", "/metrics"):
        response = httpx2.get(gw.base_url + path, headers={"authorization": f"Bearer {gw.key}"})
        assert response.status_code in (401, 403), (path, response.text)


def test_keys_are_stored_hashed_and_nothing_secret_is_logged(gw):
    response = post(
        gw,
        b'{"model": "gpt-4o-mini", "max_tokens": 5, "messages": [{"role": "user", "content": "'
        + PROMPT.encode()
        + b'"}]}',
    )
    assert response.status_code == 200, response.text
    post(gw, b'{"model": "no-such-model", "messages": [{"role": "user", "content": "' + PROMPT.encode() + b'"}]}')
    gw.flush_ledger()
    time.sleep(0.2)
    files = [gw.home / "ledger.db", *gw.home.glob("ledger.db-wal")]
    stored = b"".join(p.read_bytes() for p in files)
    assert gw.key.encode() not in stored and b"mk-master-test" not in stored
    assert PROMPT.encode() not in stored  # no retention configured: hashes only
    log = gw.log.read_bytes()
    assert gw.key.encode() not in log and b"mk-master-test" not in log and PROMPT.encode() not in log


def test_the_server_survives_all_of_it(gw):
    response = post(gw, b'{"model": "gpt-4o-mini", "max_tokens": 5, "messages": [{"role": "user", "content": "ok?"}]}')
    assert response.status_code == 200

"""Providers: the SSE parser, the in-process mock, the HTTP providers (against httpx2.MockTransport and a real
fake upstream server), and the official SDKs parsing the fake server's answers."""

from __future__ import annotations

import asyncio
import base64
import json
import math
import socket
import struct
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import anthropic
import httpx2
import openai
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from margin.errors import ConfigError
from margin.gateway.providers.anthropic import AnthropicProvider
from margin.gateway.providers.base import Provider, SSEEvent, UpstreamCall, UpstreamError, UpstreamResponse
from margin.gateway.providers.http import parse_retry_after
from margin.gateway.providers.mock import MockProvider
from margin.gateway.providers.openai import OpenAIProvider
from margin.gateway.providers.sse import SSEParser, encode_sse
from margin.tokens import count_messages, count_text

pytest_plugins = ["tests.fakes.fixtures"]

GPT = "gpt-4o-mini"
CLAUDE = "claude-haiku-4-5"
MESSAGES = [{"role": "user", "content": "How do I keep my LLM bill under control?"}]


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def chat(**extra: Any) -> UpstreamCall:
    headers = extra.pop("headers", {})
    timeout = extra.pop("timeout", 60.0)
    return UpstreamCall(
        wire="openai",
        endpoint="chat.completions",
        headers=headers,
        timeout=timeout,
        body={"model": GPT, "messages": MESSAGES, **extra},
    )


def messages(**extra: Any) -> UpstreamCall:
    headers = extra.pop("headers", {})
    timeout = extra.pop("timeout", 60.0)
    return UpstreamCall(
        wire="anthropic",
        endpoint="messages",
        headers=headers,
        timeout=timeout,
        body={"model": CLAUDE, "max_tokens": 1024, "messages": MESSAGES, **extra},
    )


def embeddings(**extra: Any) -> UpstreamCall:
    return UpstreamCall(
        wire="openai",
        endpoint="embeddings",
        body={"model": "text-embedding-3-small", "input": ["hello world", "cost"], **extra},
    )


async def collect(provider: Any, call: UpstreamCall) -> list[SSEEvent]:
    return [event async for event in provider.stream(call)]


async def collect_until_error(provider: Any, call: UpstreamCall) -> tuple[list[SSEEvent], UpstreamError]:
    events: list[SSEEvent] = []
    with pytest.raises(UpstreamError) as info:
        async for event in provider.stream(call):
            events.append(event)
    return events, info.value


def openai_text(events: list[SSEEvent]) -> str:
    chunks = [json.loads(e.data) for e in events if e.data != "[DONE]"]
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])


def anthropic_text(events: list[SSEEvent]) -> str:
    return "".join(json.loads(e.data)["delta"]["text"] for e in events if e.event == "content_block_delta")


# --- SSE ---------------------------------------------------------------------------------------------------------


def test_sse_parses_fields_comments_and_line_endings():
    parser = SSEParser()
    raw = (
        b'\xef\xbb\xbf: keep-alive\r\nevent: message_start\r\ndata: {"a": 1}\r\n\r\n'
        b"data:no-space\rdata:  two spaces\r\rid: 7\nretry: 10\ndata\n\nevent: lonely\n\n"
    )
    assert parser.feed(raw) == [
        SSEEvent(event="message_start", data='{"a": 1}'),
        SSEEvent(data="no-space\n two spaces"),
        SSEEvent(data=""),  # a bare "data" line is an empty data line; an event without data is not dispatched
    ]
    assert parser.flush() == []


def test_sse_handles_splits_inside_crlf_and_utf8():
    parser = SSEParser()
    raw = "data: héllo → 世界\r\n\r\n".encode()
    events = [event for i in range(len(raw)) for event in parser.feed(raw[i : i + 1])]
    assert events == [SSEEvent(data="héllo → 世界")]
    # A trailing \r waits for the next read: it may be half of \r\n.
    assert parser.feed(b"data: x\r") == []
    assert parser.feed(b"\n\r") == []
    assert parser.feed(b"\n") == [SSEEvent(data="x")]


def test_sse_flush_is_lenient_about_a_missing_final_blank_line():
    parser = SSEParser()
    assert parser.feed(b"data: [DONE]") == []
    assert parser.flush() == [SSEEvent(data="[DONE]")]


def test_encode_sse_splits_lines_and_rejects_bad_names():
    assert encode_sse(SSEEvent(event="ping", data='{"type": "ping"}')) == b'event: ping\ndata: {"type": "ping"}\n\n'
    assert encode_sse(SSEEvent(data="a\nb\r\nc")) == b"data: a\ndata: b\ndata: c\n\n"
    with pytest.raises(ValueError):
        encode_sse(SSEEvent(event="a\nb", data="x"))


_line = st.text(st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)), max_size=20)
_events = st.lists(
    st.builds(
        lambda lines, name: SSEEvent(data="\n".join(lines), event=name or None),
        st.lists(_line, min_size=1, max_size=3),
        st.one_of(st.none(), _line),
    ),
    max_size=6,
)


@settings(max_examples=200, deadline=None)
@given(_events, st.sampled_from(["\n", "\r\n", "\r"]), st.booleans(), st.data())
def test_sse_any_split_parses_to_the_same_events(events, newline, comments, data):
    text = "".join((": ping\n" if comments else "") + encode_sse(e).decode() for e in events)
    raw = text.replace("\n", newline).encode()
    cuts = sorted(data.draw(st.lists(st.integers(0, len(raw)), max_size=8)))
    parser = SSEParser()
    parsed = []
    for start, end in zip([0, *cuts], [*cuts, len(raw)], strict=True):
        parsed.extend(parser.feed(raw[start:end]))
    parsed.extend(parser.flush())
    assert parsed == [SSEEvent(data=e.data, event=e.event or None) for e in events]


# --- MockProvider ------------------------------------------------------------------------------------------------


def test_mock_is_a_provider_and_deterministic():
    a, b = MockProvider(), MockProvider()
    assert isinstance(a, Provider)
    first, second = run(a.send(chat())), run(b.send(chat()))
    text = first.body["choices"][0]["message"]["content"]
    assert text == second.body["choices"][0]["message"]["content"]
    other = run(a.send(chat(messages=[{"role": "user", "content": "Something else"}])))
    assert other.body["choices"][0]["message"]["content"] != text
    assert run(MockProvider(seed=1).send(chat())).body["choices"][0]["message"]["content"] != text
    assert all(word.strip(".?!").isalpha() for word in text.split())


@pytest.mark.parametrize("model", [GPT, "gpt-4", CLAUDE, "llama-3.1-8b"])
def test_mock_reply_length_and_usage(model):
    mock = MockProvider(reply_tokens=(20, 60))
    for i in range(5):
        msgs = [{"role": "user", "content": f"question {i}"}]
        body = run(mock.send(chat(model=model, messages=msgs))).body
        text = body["choices"][0]["message"]["content"]
        usage = body["usage"]
        assert usage["completion_tokens"] == count_text(text, model).tokens
        assert 20 <= usage["completion_tokens"] <= 60
        assert usage["prompt_tokens"] == count_messages(msgs, model).tokens
        assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
        assert body["choices"][0]["finish_reason"] == "stop"


def test_mock_truncates_at_max_tokens():
    mock = MockProvider(reply_tokens=(100, 100))
    for limit_key in ("max_tokens", "max_completion_tokens"):
        body = run(mock.send(chat(**{limit_key: 7}))).body
        assert body["choices"][0]["finish_reason"] == "length"
        assert body["usage"]["completion_tokens"] <= 7
        assert body["usage"]["completion_tokens"] == count_text(body["choices"][0]["message"]["content"], GPT).tokens
    body = run(mock.send(messages(max_tokens=9))).body
    assert body["stop_reason"] == "max_tokens"
    assert body["usage"]["output_tokens"] == count_text(body["content"][0]["text"], CLAUDE).tokens <= 9
    assert run(mock.send(messages())).body["stop_reason"] == "end_turn"


def test_mock_openai_stream_sequence_and_usage():
    mock = MockProvider()
    whole = run(mock.send(chat())).body
    events = run(collect(mock, chat(stream=True, stream_options={"include_usage": True})))
    chunks = [json.loads(e.data) for e in events[:-1]]
    assert events[-1].data == "[DONE]"
    assert all(c["object"] == "chat.completion.chunk" and "usage" in c for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop" and chunks[-2]["choices"][0]["delta"] == {}
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == whole["usage"]
    assert openai_text(events) == whole["choices"][0]["message"]["content"]
    plain = run(collect(mock, chat(stream=True)))
    assert all("usage" not in json.loads(e.data) for e in plain[:-1])
    assert json.loads(plain[-2].data)["choices"][0]["finish_reason"] == "stop"


def test_mock_anthropic_stream_sequence():
    mock = MockProvider()
    whole = run(mock.send(messages(max_tokens=30))).body
    events = run(collect(mock, messages(max_tokens=30)))
    names = [e.event for e in events]
    deltas = names.count("content_block_delta")
    assert names == [
        "message_start",
        "content_block_start",
        "ping",
        *["content_block_delta"] * deltas,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert all(json.loads(e.data)["type"] == e.event for e in events)
    assert anthropic_text(events) == whole["content"][0]["text"]
    final = json.loads(events[-2].data)
    assert final["delta"]["stop_reason"] == "max_tokens"
    assert final["usage"]["output_tokens"] == whole["usage"]["output_tokens"]
    assert json.loads(events[0].data)["message"]["usage"]["input_tokens"] == whole["usage"]["input_tokens"]


def test_mock_anthropic_prompt_caching():
    mock = MockProvider()
    system = [{"type": "text", "text": "You are a cost expert. " * 80, "cache_control": {"type": "ephemeral"}}]
    total = count_messages([{"role": "system", "content": system}, *MESSAGES], CLAUDE).tokens
    first = run(mock.send(messages(system=system))).body["usage"]
    second = run(mock.send(messages(system=system))).body["usage"]
    assert first["cache_creation_input_tokens"] > 0 and first["cache_read_input_tokens"] == 0
    assert second["cache_read_input_tokens"] == first["cache_creation_input_tokens"]
    assert second["cache_creation_input_tokens"] == 0
    for usage in (first, second):
        cached = usage["cache_creation_input_tokens"] + usage["cache_read_input_tokens"]
        assert usage["input_tokens"] + cached == total
    # A longer prefix with a second breakpoint (1h TTL) reads the first and writes only the new part.
    turn = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Long document. " * 50, "cache_control": {"type": "ephemeral", "ttl": "1h"}}
            ],
        }
    ]
    third = run(mock.send(messages(system=system, messages=turn))).body["usage"]
    assert third["cache_read_input_tokens"] == first["cache_creation_input_tokens"]
    assert third["cache_creation"]["ephemeral_1h_input_tokens"] == third["cache_creation_input_tokens"] > 0
    assert run(mock.send(messages())).body["usage"]["cache_creation_input_tokens"] == 0


def test_mock_embeddings():
    mock = MockProvider()
    body = run(mock.send(embeddings())).body
    vectors = [item["embedding"] for item in body["data"]]
    assert [len(v) for v in vectors] == [8, 8]
    assert all(math.isclose(sum(x * x for x in v), 1.0) for v in vectors)
    assert body["usage"]["prompt_tokens"] == count_text("hello world", "text-embedding-3-small").tokens + 1
    assert run(MockProvider().send(embeddings())).body["data"] == body["data"]
    assert len(run(mock.send(embeddings(dimensions=3))).body["data"][0]["embedding"]) == 3
    encoded = run(mock.send(embeddings(encoding_format="base64"))).body["data"][0]["embedding"]
    decoded = struct.unpack("<8f", base64.b64decode(encoded))
    assert all(math.isclose(a, b, rel_tol=1e-6) for a, b in zip(decoded, vectors[0], strict=True))


@pytest.mark.parametrize(
    ("fault", "status", "error_type", "retryable"),
    [
        ("429", 429, "rate_limited", True),
        ("500", 500, "server_error", True),
        ("503", 503, "server_error", True),
        ("400", 400, "bad_request", False),
        ("timeout", 504, "timeout", True),
        ("malformed", 502, "malformed_response", True),
        ("drop", 502, "connection_error", True),
    ],
)
def test_mock_faults_on_send(fault, status, error_type, retryable):
    for call in (chat(headers={"x-mock-fault": fault}, timeout=0.5), messages(headers={"X-Mock-Fault": fault})):
        with pytest.raises(UpstreamError) as info:
            run(MockProvider().send(call))
        assert (info.value.status, info.value.error_type, info.value.retryable) == (status, error_type, retryable)
    if fault == "429":
        assert info.value.retry_after is not None
        assert info.value.body["error"]["type"] == "rate_limit_error"


def test_mock_timeout_fault_respects_the_call_timeout():
    started = time.monotonic()
    with pytest.raises(UpstreamError):
        run(MockProvider().send(chat(headers={"x-mock-fault": "timeout"}, timeout=0.01)))
    assert time.monotonic() - started < MockProvider.timeout_fault_s


def test_mock_stream_faults():
    mock = MockProvider()
    events, error = run(collect_until_error(mock, chat(stream=True, headers={"x-mock-fault": "drop"})))
    assert error.error_type == "stream_dropped" and not error.retryable
    assert len(events) == 1 + MockProvider.drop_after  # the role chunk and three deltas
    events, error = run(collect_until_error(mock, messages(headers={"x-mock-fault": "drop"}, max_tokens=2)))
    assert error.error_type == "stream_dropped" and events[-1].event == "content_block_delta"
    events, error = run(collect_until_error(mock, chat(stream=True, headers={"x-mock-fault": "503"})))
    assert events == [] and error.status == 503
    _, error = run(collect_until_error(mock, chat(headers={"x-mock-fault": "bogus"})))
    assert error.status == 400 and "x-mock-fault" in error.message


def test_mock_fault_rates_are_seeded():
    def outcomes(seed: int) -> list[str]:
        mock = MockProvider(fault_rates={"500": 0.3, "429": 0.3}, seed=seed)
        result = []
        for _ in range(30):
            try:
                run(mock.send(chat()))
                result.append("ok")
            except UpstreamError as exc:
                result.append(str(exc.status))
        return result

    assert outcomes(1) == outcomes(1)
    assert {"ok", "500", "429"} <= set(outcomes(1))
    with pytest.raises(ConfigError):
        MockProvider(fault_rates={"explode": 0.1})
    with pytest.raises(ConfigError):
        MockProvider(fault_rates={"500": 0.8, "429": 0.8})


def test_mock_pacing():
    mock = MockProvider(ms_per_token=10, reply_tokens=(10, 10), latency_ms=20)
    started = time.monotonic()
    events = run(collect(mock, chat(stream=True)))
    deltas = len(events) - 3
    assert time.monotonic() - started >= 0.02 + deltas * 0.01 * 0.9


# --- HTTP providers against httpx2.MockTransport -----------------------------------------------------------------


def transport(handler: Callable[[httpx2.Request], Any]) -> httpx2.MockTransport:
    return httpx2.MockTransport(handler)


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> httpx2.Response:
    return httpx2.Response(
        status, content=json.dumps(body).encode(), headers={"content-type": "application/json", **(headers or {})}
    )


def openai_with(handler: Callable[[httpx2.Request], Any], **options: Any) -> OpenAIProvider:
    return OpenAIProvider(
        "oa", base_url="https://example.test/v1", api_key="sk-test", transport=transport(handler), **options
    )


def anthropic_with(handler: Callable[[httpx2.Request], Any], **options: Any) -> AnthropicProvider:
    return AnthropicProvider(
        "an", base_url="https://example.test", api_key="ak-test", transport=transport(handler), **options
    )


def send(provider: Any, call: UpstreamCall) -> UpstreamResponse:
    async def go() -> UpstreamResponse:
        try:
            return await provider.send(call)
        finally:
            await provider.aclose()

    return run(go())


def send_error(provider: Any, call: UpstreamCall) -> UpstreamError:
    with pytest.raises(UpstreamError) as info:
        send(provider, call)
    return info.value


def test_openai_request_shape():
    seen: list[httpx2.Request] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        return json_response(200, {"id": "x", "choices": []})

    response = send(openai_with(handler), chat(headers={"authorization": "Bearer stolen", "x-mock-fault": "429"}))
    assert response.status == 200 and response.body == {"id": "x", "choices": []}
    request = seen[0]
    assert str(request.url) == "https://example.test/v1/chat/completions"
    assert request.headers["authorization"] == "Bearer sk-test"
    assert request.headers["x-mock-fault"] == "429"  # other call headers pass through
    assert json.loads(request.content)["messages"] == MESSAGES
    send(OpenAIProvider("local", base_url="http://local.test/v1/", transport=transport(handler)), embeddings())
    assert str(seen[1].url) == "http://local.test/v1/embeddings" and "authorization" not in seen[1].headers


def test_anthropic_request_shape():
    seen: list[httpx2.Request] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        return json_response(200, {"id": "msg", "content": []})

    send(
        anthropic_with(handler),
        messages(headers={"anthropic-beta": "prompt-caching-2024-07-31", "x-api-key": "stolen"}),
    )
    request = seen[0]
    assert str(request.url) == "https://example.test/v1/messages"
    assert request.headers["x-api-key"] == "ak-test"
    assert request.headers["anthropic-version"] == "2023-06-01"
    assert request.headers["anthropic-beta"] == "prompt-caching-2024-07-31"
    assert send_error(anthropic_with(handler), chat()).error_type == "bad_request"


def test_retry_after_parsing():
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert parse_retry_after({"retry-after": "2"}) == 2.0
    assert parse_retry_after({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert 25 < parse_retry_after({"retry-after": later}) <= 30
    assert parse_retry_after({"retry-after": "soon"}) is None and parse_retry_after({}) is None


@pytest.mark.parametrize(
    ("status", "error_type", "retryable"),
    [
        (429, "rate_limited", True),
        (500, "server_error", True),
        (529, "server_error", True),
        (400, "bad_request", False),
        (401, "auth_error", False),
        (404, "not_found", False),
        (422, "bad_request", False),
    ],
)
def test_http_status_mapping(status, error_type, retryable):
    body = {"error": {"message": "upstream says no", "type": "invalid_request_error"}}
    error = send_error(openai_with(lambda _: json_response(status, body, {"retry-after": "3"})), chat())
    assert (error.status, error.error_type, error.retryable) == (status, error_type, retryable)
    assert error.body == body and "upstream says no" in error.message
    assert error.retry_after == 3.0


def test_http_timeouts_and_connection_errors():
    def read_timeout(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ReadTimeout("slow", request=request)

    def refused(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ConnectError("refused", request=request)

    async def slow(request: httpx2.Request) -> httpx2.Response:
        await asyncio.sleep(5)
        return json_response(200, {})

    for handler in (read_timeout, slow):
        started = time.monotonic()
        error = send_error(openai_with(handler), chat(timeout=0.05))
        assert (error.status, error.error_type, error.retryable) == (504, "timeout", True)
        assert time.monotonic() - started < 2
    error = send_error(anthropic_with(refused), messages())
    assert (error.status, error.error_type, error.retryable) == (502, "connection_error", True)


@pytest.mark.parametrize("content", [b"<html>oops</html>", b"[1, 2]", b'{"id": "chatcmpl-', b""])
def test_http_malformed_body(content):
    error = send_error(openai_with(lambda _: httpx2.Response(200, content=content)), chat())
    assert (error.status, error.error_type, error.retryable) == (502, "malformed_response", True)


def sse_response(chunks: list[bytes], *, fail_with: Exception | None = None, status: int = 200) -> httpx2.Response:
    async def body() -> AsyncIterator[bytes]:
        for chunk in chunks:
            yield chunk
        if fail_with is not None:
            raise fail_with

    return httpx2.Response(status, content=body(), headers={"content-type": "text/event-stream"})


def stream_with(provider: Any, call: UpstreamCall) -> tuple[list[SSEEvent], UpstreamError | None]:
    async def go() -> tuple[list[SSEEvent], UpstreamError | None]:
        events: list[SSEEvent] = []
        try:
            async for event in provider.stream(call):
                events.append(event)
        except UpstreamError as exc:
            return events, exc
        finally:
            await provider.aclose()
        return events, None

    return run(go())


def test_http_stream_success_with_awkward_chunks():
    mock_events = run(collect(MockProvider(), messages()))
    raw = b"".join(encode_sse(e) for e in mock_events).replace(b"\n", b"\r\n")
    chunks = [raw[i : i + 7] for i in range(0, len(raw), 7)]
    events, error = stream_with(anthropic_with(lambda _: sse_response(chunks)), messages())
    assert error is None and events == mock_events


def test_http_stream_failures():
    good = [b'data: {"choices": [{"delta": {"content": "hi"}}]}\n\n'] * 2
    events, error = stream_with(openai_with(lambda r: sse_response(good, fail_with=httpx2.ReadError("reset"))), chat())
    assert len(events) == 2 and error is not None
    assert (error.status, error.error_type, error.retryable) == (502, "stream_dropped", False)
    events, error = stream_with(openai_with(lambda r: sse_response(good, fail_with=httpx2.ReadTimeout("slow"))), chat())
    assert len(events) == 2 and error is not None and error.error_type == "stream_dropped"
    events, error = stream_with(openai_with(lambda r: json_response(503, {"error": {"message": "busy"}})), chat())
    assert events == [] and error is not None and (error.status, error.retryable) == (503, True)
    events, error = stream_with(openai_with(lambda r: json_response(200, {"id": "not a stream"})), chat())
    assert events == [] and error is not None and error.error_type == "malformed_response"
    overloaded = b'event: error\ndata: {"type": "error", "error": {"type": "overloaded_error", "message": "busy"}}\n\n'
    events, error = stream_with(anthropic_with(lambda r: sse_response([overloaded])), messages())
    assert events == [] and error is not None and (error.error_type, error.retryable) == ("server_error", True)
    start = b'event: message_start\ndata: {"type": "message_start", "message": {}}\n\n'
    events, error = stream_with(anthropic_with(lambda r: sse_response([start, overloaded])), messages())
    assert len(events) == 1 and error is not None and error.error_type == "stream_dropped"
    assert error.body["error"]["type"] == "overloaded_error"


# --- HTTP providers against the fake upstream server -------------------------------------------------------------


def test_openai_against_fake_server(fake_upstream):
    provider = OpenAIProvider("oa", base_url=fake_upstream.base_url + "/v1", api_key="sk-fake")
    expected = run(MockProvider().send(chat())).body

    async def go() -> None:
        response = await provider.send(chat())
        assert response.body["choices"] == expected["choices"] and response.body["usage"] == expected["usage"]
        events = await collect(provider, chat(stream=True, stream_options={"include_usage": True}))
        assert events[-1].data == "[DONE]" and openai_text(events) == expected["choices"][0]["message"]["content"]
        assert json.loads(events[-2].data)["usage"] == expected["usage"]
        vectors = (await provider.send(embeddings())).body
        assert vectors == (await MockProvider().send(embeddings())).body
        await asyncio.gather(*(provider.send(chat()) for _ in range(10)))
        await provider.aclose()

    run(go())
    assert fake_upstream.requests[0].headers["authorization"] == "Bearer sk-fake"
    assert fake_upstream.requests[0].body["messages"] == MESSAGES
    assert [r.path for r in fake_upstream.requests[:3]] == ["/v1/chat/completions"] * 2 + ["/v1/embeddings"]


def test_anthropic_against_fake_server(fake_upstream):
    provider = AnthropicProvider("an", base_url=fake_upstream.base_url, api_key="ak-fake")
    expected = run(MockProvider().send(messages())).body
    response = send(provider, messages(headers={"anthropic-beta": "beta-1"}))
    assert response.body["content"] == expected["content"] and response.body["usage"] == expected["usage"]
    events, error = stream_with(AnthropicProvider("an", base_url=fake_upstream.base_url), messages())
    expected_events = run(collect(MockProvider(), messages()))
    assert error is None and [e.event for e in events] == [e.event for e in expected_events]
    assert anthropic_text(events) == anthropic_text(expected_events) == expected["content"][0]["text"]
    assert fake_upstream.requests[1].body["stream"] is True
    headers = fake_upstream.requests[0].headers
    assert (headers["x-api-key"], headers["anthropic-version"], headers["anthropic-beta"]) == (
        "ak-fake",
        "2023-06-01",
        "beta-1",
    )


def test_fake_server_faults_map_to_upstream_errors(fake_upstream):
    def provider(**options: Any) -> OpenAIProvider:
        return OpenAIProvider("oa", base_url=fake_upstream.base_url + "/v1", **options)

    fake_upstream.faults.push(429, times=2, retry_after=1.5)
    for _ in range(2):
        error = send_error(provider(), chat())
        assert (error.error_type, error.retryable, error.retry_after) == ("rate_limited", True, 1.5)
    assert send(provider(), chat()).status == 200
    fake_upstream.faults.push(500)
    assert send_error(provider(), chat()).error_type == "server_error"
    fake_upstream.faults.push(400)
    error = send_error(provider(), chat())
    assert (error.status, error.retryable) == (400, False)
    assert error.body["error"]["type"] == "invalid_request_error"
    fake_upstream.faults.push("malformed")
    assert send_error(provider(), chat()).error_type == "malformed_response"
    fake_upstream.faults.push("drop")
    assert send_error(provider(), chat()).error_type == "connection_error"
    fake_upstream.faults.push("delay", seconds=2)
    started = time.monotonic()
    error = send_error(provider(), chat(timeout=0.2))
    assert (error.status, error.error_type) == (504, "timeout") and time.monotonic() - started < 1.5
    assert send_error(provider(), chat(headers={"x-mock-fault": "503"})).status == 503
    fake_upstream.api_key = "right"
    assert send_error(provider(api_key="wrong"), chat()).error_type == "auth_error"
    assert len(fake_upstream.faults) == 0


def test_fake_server_stream_faults(fake_upstream):
    def provider() -> AnthropicProvider:
        return AnthropicProvider("an", base_url=fake_upstream.base_url)

    fake_upstream.faults.push("drop", after=3)
    events, error = stream_with(provider(), messages())
    assert len(events) == 3 and error is not None and error.error_type == "stream_dropped"
    fake_upstream.faults.push("stall", after=4, seconds=2)
    events, error = stream_with(provider(), messages(timeout=0.2))
    assert len(events) == 4 and error is not None and error.error_type == "stream_dropped"
    fake_upstream.faults.push(503, path="/v1/messages")
    events, error = stream_with(provider(), messages())
    assert events == [] and error is not None and error.error_type == "server_error"
    assert error.body["error"]["type"] == "overloaded_error"
    fake_upstream.faults.push("malformed")
    events, error = stream_with(provider(), messages())
    assert events == [] and error is not None and error.error_type == "malformed_response"
    events, error = stream_with(provider(), messages(headers={"x-mock-fault": "drop"}))
    assert events and error is not None and error.error_type == "stream_dropped"


def test_connection_refused():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    error = send_error(OpenAIProvider("oa", base_url=f"http://127.0.0.1:{port}/v1", connect_timeout=1), chat())
    assert (error.status, error.error_type, error.retryable) == (502, "connection_error", True)


# --- the official SDKs parse the fake server's answers -----------------------------------------------------------


def test_openai_sdk_parses_fake_server(fake_upstream):
    client = openai.OpenAI(base_url=fake_upstream.base_url + "/v1", api_key="x", max_retries=0)
    expected = run(MockProvider().send(chat())).body
    completion = client.chat.completions.create(model=GPT, messages=MESSAGES)
    assert completion.choices[0].message.content == expected["choices"][0]["message"]["content"]
    assert completion.usage is not None and completion.usage.completion_tokens == expected["usage"]["completion_tokens"]
    short = client.chat.completions.create(model=GPT, messages=MESSAGES, max_completion_tokens=5)
    assert short.choices[0].finish_reason == "length"
    chunks = list(
        client.chat.completions.create(
            model=GPT, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == completion.choices[0].message.content
    assert chunks[-1].choices == [] and chunks[-1].usage == completion.usage
    vectors = client.embeddings.create(model="text-embedding-3-small", input=["hello world", "cost"])
    assert len(vectors.data[0].embedding) == 8 and vectors.usage.prompt_tokens > 0
    assert GPT in [m.id for m in client.models.list()]
    fake_upstream.faults.push(429, retry_after=1)
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model=GPT, messages=MESSAGES)
    fake_upstream.faults.push(400)
    with pytest.raises(openai.BadRequestError, match="Invalid request"):
        client.chat.completions.create(model=GPT, messages=MESSAGES)


def test_anthropic_sdk_parses_fake_server(fake_upstream):
    client = anthropic.Anthropic(base_url=fake_upstream.base_url, api_key="x", max_retries=0)
    system = [{"type": "text", "text": "Be brief. " * 100, "cache_control": {"type": "ephemeral"}}]
    message = client.messages.create(model=CLAUDE, max_tokens=1024, system=system, messages=MESSAGES)
    assert message.stop_reason == "end_turn" and message.content[0].type == "text"
    assert message.usage.cache_creation_input_tokens and not message.usage.cache_read_input_tokens
    with client.messages.stream(model=CLAUDE, max_tokens=1024, system=system, messages=MESSAGES) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == message.content[0].text == final.content[0].text
    assert final.usage.output_tokens == message.usage.output_tokens
    assert final.usage.cache_read_input_tokens == message.usage.cache_creation_input_tokens
    truncated = client.messages.create(model=CLAUDE, max_tokens=4, messages=MESSAGES)
    assert truncated.stop_reason == "max_tokens" and truncated.usage.output_tokens <= 4
    fake_upstream.faults.push(429, retry_after=1)
    with pytest.raises(anthropic.RateLimitError):
        client.messages.create(model=CLAUDE, max_tokens=10, messages=MESSAGES)
    fake_upstream.faults.push("drop", after=4)
    with (
        pytest.raises(httpx2.RemoteProtocolError),
        client.messages.stream(model=CLAUDE, max_tokens=64, messages=MESSAGES) as stream,
    ):
        stream.get_final_message()

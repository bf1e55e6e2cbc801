#!/usr/bin/env python3
"""margin's fast OpenAI-compatible mock upstream for the gateway benchmark.

A raw asyncio protocol (uvloop when importable), HTTP/1.1 keep-alive, no framework, answers prepared
once at start-up so that the mock costs as little CPU per request as possible:

  POST /v1/chat/completions (or /chat/completions)
      non-streaming: one ``chat.completion`` with a ``usage`` block;
      ``"stream": true``: SSE over chunked transfer encoding: a role chunk, content chunks, a finish chunk,
      a usage chunk (``choices: []``) when ``stream_options.include_usage`` is set, then ``data: [DONE]``.
  GET /health, /v1/models    small JSON.
  GET /stats                 {"served": chat requests answered, "connections": connections accepted}.

Loopback only. At exit (SIGTERM/SIGINT) it prints how many chat requests it served on how many connections.

    python bench/gateway/mock_upstream.py --port 18181
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import time

MODEL = "mock-gpt"
PROMPT_TOKENS = 430  # about what the benchmark's 356-word request counts as
COMPLETION_PIECES = (
    "Thanks for ",
    "the details. ",
    "A replacement ",
    "drill and ",
    "bit set ",
    "ship free ",
    "of charge.",
)
COMPLETION_TOKENS = 16
STARTED = int(time.time())
CHAT_ID = "chatcmpl-margin-bench-mock"


def _dumps(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _usage() -> dict:
    return {
        "prompt_tokens": PROMPT_TOKENS,
        "completion_tokens": COMPLETION_TOKENS,
        "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }


def _response(status: bytes, ctype: bytes, body: bytes) -> bytes:
    return (
        b"HTTP/1.1 "
        + status
        + b"\r\ncontent-type: "
        + ctype
        + b"\r\ncontent-length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )


def _completion() -> bytes:
    return _response(
        b"200 OK",
        b"application/json",
        _dumps(
            {
                "id": CHAT_ID,
                "object": "chat.completion",
                "created": STARTED,
                "model": MODEL,
                "system_fingerprint": "fp_bench",
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "stop",
                        "logprobs": None,
                        "message": {"role": "assistant", "content": "".join(COMPLETION_PIECES), "refusal": None},
                    }
                ],
                "usage": _usage(),
            }
        ),
    )


def _stream(with_usage: bool) -> bytes:
    def event(choices: list, usage: dict | None = None) -> bytes:
        chunk = {
            "id": CHAT_ID,
            "object": "chat.completion.chunk",
            "created": STARTED,
            "model": MODEL,
            "system_fingerprint": "fp_bench",
            "choices": choices,
        }
        if with_usage:
            chunk["usage"] = usage  # null on every chunk but the last, as OpenAI does
        return b"data: " + _dumps(chunk) + b"\n\n"

    def choice(delta: dict, finish: str | None = None) -> list:
        return [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]

    events = [event(choice({"role": "assistant", "content": ""}))]
    events += [event(choice({"content": piece})) for piece in COMPLETION_PIECES]
    events.append(event(choice({}, "stop")))
    if with_usage:
        events.append(event([], _usage()))
    events.append(b"data: [DONE]\n\n")
    body = b"".join(b"%x\r\n%s\r\n" % (len(e), e) for e in events) + b"0\r\n\r\n"
    return (
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
        b"transfer-encoding: chunked\r\n\r\n" + body
    )


ANSWERS = {
    "json": _completion(),
    "stream": _stream(with_usage=False),
    "stream_usage": _stream(with_usage=True),
    "health": _response(b"200 OK", b"application/json", b'{"status":"ok"}'),
    "models": _response(
        b"200 OK",
        b"application/json",
        _dumps({"object": "list", "data": [{"id": MODEL, "object": "model", "created": STARTED, "owned_by": "bench"}]}),
    ),
    "404": _response(b"404 Not Found", b"application/json", b'{"error":{"message":"not found"}}'),
    "400": _response(b"400 Bad Request", b"application/json", b'{"error":{"message":"invalid JSON body"}}'),
}
CHAT = (b"/v1/chat/completions", b"/chat/completions")
LIMIT = 32 * 1024 * 1024
served = 0
connections = 0


def answer(method: bytes, target: bytes, body: bytes) -> bytes:
    global served
    path = target.split(b"?", 1)[0]
    if method == b"POST" and path in CHAT:
        served += 1
        if b'"stream"' not in body:  # cheap fast path: no need to parse the prompt
            return ANSWERS["json"]
        try:
            request = json.loads(body)
        except ValueError:
            return ANSWERS["400"]
        if not request.get("stream"):
            return ANSWERS["json"]
        options = request.get("stream_options") or {}
        return ANSWERS["stream_usage" if options.get("include_usage") else "stream"]
    if method == b"GET" and path in (b"/health", b"/"):
        return ANSWERS["health"]
    if method == b"GET" and path in (b"/v1/models", b"/models"):
        return ANSWERS["models"]
    if method == b"GET" and path == b"/stats":
        return _response(b"200 OK", b"application/json", _dumps({"served": served, "connections": connections}))
    return ANSWERS["404"]


class Connection(asyncio.Protocol):
    """One client connection: buffer bytes, cut complete requests (Content-Length or chunked), answer."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.pending = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        global connections
        connections += 1
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.pending += data
        if len(self.pending) > LIMIT:
            self.transport.close()
            return
        out = []
        close = False
        while not close:
            request = self._next_request()
            if request is None:
                break
            method, target, body, close = request
            out.append(answer(method, target, body))
        if out:
            self.transport.write(b"".join(out))
        if close:
            self.transport.close()

    def _next_request(self) -> tuple[bytes, bytes, bytes, bool] | None:
        buf = self.pending
        head_end = buf.find(b"\r\n\r\n")
        if head_end < 0:
            return None
        lines = bytes(buf[:head_end]).split(b"\r\n")
        try:
            method, target, version = lines[0].split(b" ", 2)
        except ValueError:
            self.pending.clear()
            return b"BAD", b"", b"", True
        length, chunked = 0, False
        close = version == b"HTTP/1.0"
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif name == b"connection":
                close = value.strip().lower() == b"close"
        start = head_end + 4
        if not chunked:
            if len(buf) < start + length:
                return None
            body = bytes(buf[start : start + length])
            del buf[: start + length]
            return method, target, body, close
        parts, pos = [], start
        while True:  # chunked request body (httpx/aiohttp may send one)
            size_end = buf.find(b"\r\n", pos)
            if size_end < 0:
                return None
            size = int(bytes(buf[pos:size_end]).split(b";", 1)[0], 16)
            if size == 0:
                trailer_end = buf.find(b"\r\n\r\n", size_end)
                if trailer_end < 0:
                    return None
                del buf[: trailer_end + 4]
                return method, target, b"".join(parts), close
            if len(buf) < size_end + 2 + size + 2:
                return None
            parts.append(bytes(buf[size_end + 2 : size_end + 2 + size]))
            pos = size_end + 2 + size + 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18181)
    parser.add_argument("--no-uvloop", action="store_true", help="use the standard asyncio loop")
    args = parser.parse_args()
    if args.host not in ("127.0.0.1", "::1", "localhost"):
        raise SystemExit("mock_upstream: loopback addresses only")
    if not args.no_uvloop:
        try:
            import uvloop

            asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        except ImportError:
            pass
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    server = loop.run_until_complete(
        loop.create_server(Connection, args.host, args.port, backlog=2048, reuse_address=True)
    )
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, loop.stop)
    print(
        f"mock upstream on http://{args.host}:{args.port}/v1 pid={os.getpid()} "
        f"loop={type(loop).__module__}.{type(loop).__name__}",
        flush=True,
    )
    try:
        loop.run_forever()
    finally:
        server.close()
        print(f"mock upstream served {served} chat requests on {connections} connections", flush=True)


if __name__ == "__main__":
    main()

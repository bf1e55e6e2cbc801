"""A real fake upstream HTTP server: Starlette served by uvicorn in a background thread on 127.0.0.1.

It speaks OpenAI (``/v1/chat/completions`` incl. streaming, ``/v1/embeddings``, ``/v1/models``) and Anthropic
(``/v1/messages`` incl. streaming), generating every body and event with :class:`MockProvider`, so it answers
exactly like the in-process mock (an ``x-mock-fault`` request header works here too). Tests steer it with:

* ``server.faults.push(429, times=2, retry_after=1.5)``: the next 2 calls get HTTP 429 (any status works; the
  body is the wire's error format);
* ``push("malformed")`` (HTTP 200 with broken JSON), ``push("delay", seconds=2)`` (wait before answering),
  ``push("drop", after=3)`` (a stream breaks after 3 events; a plain call gets a truncated body),
  ``push("stall", after=3, seconds=2)`` (a stream stops sending for a while after 3 events);
* ``server.requests``: every request received (method, path, headers, parsed JSON body);
* ``server.api_key``: when set, requests must carry it (``Authorization: Bearer`` or ``x-api-key``), else 401.

Use it as a context manager (``with FakeUpstream() as server: ...``) or through the fixtures in
``tests/fakes/fixtures.py``.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from margin.gateway.providers.base import Endpoint, UpstreamCall, UpstreamError, Wire
from margin.gateway.providers.mock import MockProvider, error_body
from margin.gateway.providers.sse import encode_sse

__all__ = ["FakeUpstream", "Fault", "Faults", "RecordedRequest"]

_KINDS = ("status", "malformed", "delay", "drop", "stall")
MALFORMED_BODY = b'{"id": "chatcmpl-broken", "object": "chat.completion", "choices": [{"index": 0, "mess'


@dataclass(frozen=True)
class Fault:
    kind: str  # "status", "malformed", "delay", "drop", "stall"
    status: int = 500
    retry_after: float | None = None
    seconds: float = 0.0
    after: int = 3
    path: str | None = None  # only requests to this path (e.g. "/v1/messages"); None: any


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


class Faults:
    """A thread-safe queue of faults for the next requests (the first matching one is used up)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: deque[Fault] = deque()

    def push(
        self,
        kind: int | str,
        *,
        times: int = 1,
        retry_after: float | None = None,
        seconds: float = 0.0,
        after: int = 3,
        path: str | None = None,
    ) -> None:
        """Queue ``times`` copies of a fault: an HTTP status (``429``, ``"500"``, ...) or one of ``malformed``,
        ``delay`` (``seconds``), ``drop`` (``after`` events), ``stall`` (``after`` events, then ``seconds``)."""
        if isinstance(kind, int) or (isinstance(kind, str) and kind.isdigit()):
            fault = Fault("status", status=int(kind), retry_after=retry_after, path=path)
        elif kind in _KINDS[1:]:
            fault = Fault(kind, retry_after=retry_after, seconds=seconds, after=after, path=path)
        else:
            raise ValueError(f"unknown fault {kind!r}: use an HTTP status or one of {', '.join(_KINDS[1:])}")
        with self._lock:
            self._queue.extend([fault] * times)

    def take(self, path: str) -> Fault | None:
        with self._lock:
            for fault in self._queue:
                if fault.path is None or fault.path == path:
                    self._queue.remove(fault)
                    return fault
        return None

    def clear(self) -> None:
        with self._lock:
            self._queue.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._queue)


_ENDPOINTS: dict[str, tuple[Wire, Endpoint]] = {
    "/v1/chat/completions": ("openai", "chat.completions"),
    "/v1/embeddings": ("openai", "embeddings"),
    "/v1/messages": ("anthropic", "messages"),
}


@dataclass
class FakeUpstream:
    """The server (see the module docs). ``mock`` generates the answers; replace it to change its options."""

    mock: MockProvider = field(default_factory=MockProvider)
    faults: Faults = field(default_factory=Faults)
    requests: list[RecordedRequest] = field(default_factory=list)
    api_key: str | None = None
    models: tuple[str, ...] = ("gpt-4o-mini", "gpt-4o", "text-embedding-3-small", "claude-haiku-4-5")
    host: str = "127.0.0.1"
    port: int = 0
    _server: uvicorn.Server | None = field(default=None, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def reset(self) -> None:
        """Forget requests, faults, the mock's cache state and the API key requirement."""
        self.requests.clear()
        self.faults.clear()
        self.mock = MockProvider()
        self.api_key = None

    # --- lifecycle ---------------------------------------------------------------------------------------------
    def start(self, timeout: float = 10.0) -> FakeUpstream:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app(),
            loop="asyncio",
            http="h11",
            ws="none",
            lifespan="off",
            log_config=None,
            log_level="critical",
            access_log=False,
            timeout_graceful_shutdown=1,
            timeout_keep_alive=5,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name=f"fake-upstream:{self.port}", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the fake upstream server did not start")
            time.sleep(0.005)
        with socket.create_connection((self.host, self.port), timeout=timeout):
            pass  # the port accepts connections
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._server.force_exit = True  # do not wait for stalled or delayed handlers
            self._thread.join(timeout=10)
        self._server = self._thread = None

    def __enter__(self) -> FakeUpstream:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- the app -----------------------------------------------------------------------------------------------
    def app(self) -> Starlette:
        routes = [Route(path, self._handle, methods=["POST"]) for path in _ENDPOINTS]
        routes.append(Route("/v1/models", self._models, methods=["GET"]))
        return Starlette(routes=routes)

    async def _models(self, request: Request) -> Response:
        self.requests.append(RecordedRequest(request.method, request.url.path, dict(request.headers), None))
        if error := self._auth_error(request, "openai"):
            return error
        data = [{"id": m, "object": "model", "created": 0, "owned_by": "fake-upstream"} for m in self.models]
        return JSONResponse({"object": "list", "data": data})

    def _auth_error(self, request: Request, wire: Wire) -> Response | None:
        if self.api_key is None:
            return None
        given = request.headers.get("x-api-key") or request.headers.get("authorization", "").removeprefix("Bearer ")
        if given == self.api_key:
            return None
        return JSONResponse(error_body(wire, 401), status_code=401)

    async def _handle(self, request: Request) -> Response:
        path = request.url.path
        wire, endpoint = _ENDPOINTS[path]
        raw = await request.body()
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        self.requests.append(RecordedRequest(request.method, path, dict(request.headers), body))
        if error := self._auth_error(request, wire):
            return error
        if not isinstance(body, dict):
            return JSONResponse(error_body(wire, 400, "the request body is not a JSON object"), status_code=400)
        fault = self.faults.take(path)
        if fault is not None and fault.kind == "delay":
            await asyncio.sleep(fault.seconds)
        if fault is not None and fault.kind == "status":
            headers = {"retry-after": f"{fault.retry_after:g}"} if fault.retry_after is not None else {}
            return JSONResponse(error_body(wire, fault.status), status_code=fault.status, headers=headers)
        if fault is not None and fault.kind == "malformed":
            return Response(MALFORMED_BODY, media_type="application/json")
        mock_fault = request.headers.get("x-mock-fault")
        call = UpstreamCall(
            wire=wire,
            endpoint=endpoint,
            body=body,
            timeout=30.0,
            headers={"x-mock-fault": mock_fault} if mock_fault else {},
        )
        if body.get("stream") and endpoint != "embeddings":
            return await self._stream(call, fault)
        try:
            response = await self.mock.send(call)
        except UpstreamError as exc:
            return _error_response(exc, wire)
        content = json.dumps(response.body).encode()
        if fault is not None and fault.kind == "drop":
            return _Truncated(content)
        return Response(content, media_type="application/json")

    async def _stream(self, call: UpstreamCall, fault: Fault | None) -> Response:
        events = self.mock.stream(call)
        try:
            first = await anext(events)
        except UpstreamError as exc:
            return _error_response(exc, call.wire)

        async def body() -> AsyncIterator[bytes]:
            sent = 0
            event = first
            while True:
                if fault is not None and fault.kind in ("drop", "stall") and sent == fault.after:
                    if fault.kind == "drop":
                        raise _Dropped  # uvicorn closes the connection mid-body
                    await asyncio.sleep(fault.seconds)
                yield encode_sse(event)
                sent += 1
                try:
                    event = await anext(events)
                except StopAsyncIteration:
                    return
                except UpstreamError:  # the mock's own "drop" fault
                    raise _Dropped from None

        return StreamingResponse(body(), media_type="text/event-stream", headers={"cache-control": "no-cache"})


class _Dropped(Exception):
    """Raised inside a response body to make the server drop the connection."""


class _Truncated(Response):
    """A response that announces its full length, sends half of it and drops the connection."""

    def __init__(self, content: bytes) -> None:
        super().__init__(content, media_type="application/json")

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        await send({"type": "http.response.body", "body": self.body[: len(self.body) // 2], "more_body": True})
        raise _Dropped


def _error_response(error: UpstreamError, wire: Wire) -> Response:
    """The HTTP answer for a fault the mock raised, as a real upstream would send it."""
    if error.error_type == "malformed_response":
        return Response(MALFORMED_BODY, media_type="application/json")
    if error.error_type == "connection_error":
        return _Truncated(MALFORMED_BODY)
    body = error.body if isinstance(error.body, dict) else error_body(wire, error.status, error.message)
    headers = {"retry-after": f"{error.retry_after:g}"} if error.retry_after is not None else {}
    return JSONResponse(body, status_code=error.status, headers=headers)

"""The shared base of HTTP upstreams: one pooled client per provider (margin's own HTTP/1.1 pool,
:class:`~margin.gateway.providers._h1.H1Pool`, on the network; an ``httpx2`` client when a test injects an httpx2
transport), explicit timeouts, and every failure mapped onto :class:`~margin.gateway.providers.base.UpstreamError`.

Subclasses say where an endpoint lives (:meth:`HTTPProvider._url`), which headers authenticate
(:meth:`HTTPProvider._auth_headers`) and how their wire reports an error inside a stream
(:meth:`HTTPProvider._stream_error`). Timeouts: ``connect_timeout`` to open a connection, ``pool_timeout``
to wait for a free pooled connection, ``write_timeout`` to send the body; reads use the smaller of the
provider's ``timeout`` and the call's ``timeout``, which also bounds a whole non-streaming call.
"""

from __future__ import annotations

import asyncio
import email.utils
import ssl
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx2
import orjson

from ._h1 import H1Error, H1Pool, H1TimeoutError
from .base import SSEEvent, UpstreamCall, UpstreamError, UpstreamResponse, Wire
from .sse import SSEParser

__all__ = ["HTTPProvider", "error_for_status", "parse_retry_after"]


class _StreamBroken(Exception):
    """A stream's connection broke or timed out after it started (becomes stream_dropped)."""


# Headers a call may not set: the provider owns authentication, framing and content negotiation.
_PROTECTED = frozenset(
    {
        "authorization",
        "x-api-key",
        "api-key",
        "host",
        "content-length",
        "content-type",
        "transfer-encoding",
        "connection",
        "accept",
        "accept-encoding",
        "anthropic-version",
    }
)
_MAX_ERROR_BODY = 64 * 1024
_USER_AGENT = "margin-gateway/0.1"


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``retry-after`` (seconds or an HTTP date), else None."""
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _error_message(body: Any) -> str | None:
    """The provider's own message from an OpenAI (``{"error": {...}}``) or Anthropic error body."""
    if isinstance(body, Mapping):
        inner = body.get("error")
        if isinstance(inner, Mapping) and isinstance(inner.get("message"), str):
            return inner["message"]
        if isinstance(inner, str):
            return inner
        if isinstance(body.get("message"), str):
            return body["message"]
    return None


def error_for_status(provider: str, status: int, body: Any, headers: Mapping[str, str]) -> UpstreamError:
    """The :class:`UpstreamError` for a non-2xx response: 429 rate_limited and 5xx server_error are retryable
    (with Retry-After parsed); 408 is a retryable timeout; other 4xx are not retryable and keep the body."""
    if status == 429:
        error_type, retryable = "rate_limited", True
    elif status >= 500:
        error_type, retryable = "server_error", True
    elif status == 408:
        error_type, retryable = "timeout", True
    elif status in (401, 403):
        error_type, retryable = "auth_error", False
    elif status == 404:
        error_type, retryable = "not_found", False
    else:
        error_type, retryable = "bad_request", False
    detail = _error_message(body) or (body[:300] if isinstance(body, str) and body else "no error message")
    return UpstreamError(
        f"{provider}: HTTP {status} from upstream: {detail}",
        status=status,
        error_type=error_type,
        retryable=retryable,
        body=body,
        retry_after=parse_retry_after(headers),
    )


def _decode_body(content: bytes) -> Any:
    """An error body as JSON if it parses, else as (truncated) text."""
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError:
        return content[:_MAX_ERROR_BODY].decode("utf-8", errors="replace")


def _json_default(value: Any) -> Any:
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, tuple | set | frozenset):
        return list(value)
    raise TypeError(f"cannot send a {type(value).__name__} as JSON")


class HTTPProvider:
    """Base class of the OpenAI and Anthropic providers (see the module docs)."""

    wires: frozenset[Wire] = frozenset()

    def __init__(
        self,
        name: str,
        *,
        base_url: str,
        timeout: float = 60.0,
        connect_timeout: float = 5.0,
        write_timeout: float | None = None,
        pool_timeout: float | None = None,
        max_connections: int = 100,
        max_keepalive_connections: int | None = None,  # None: keep as many idle as max_connections
        keepalive_expiry: float = 30.0,
        transport: httpx2.AsyncBaseTransport | None = None,
    ) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.write_timeout = write_timeout if write_timeout is not None else timeout
        self.pool_timeout = pool_timeout if pool_timeout is not None else connect_timeout
        keepalive = None if max_keepalive_connections is None else min(max_keepalive_connections, max_connections)
        self.max_connections = max_connections
        self.max_keepalive_connections = keepalive
        self.keepalive_expiry = keepalive_expiry
        # The real network path is H1Pool (a small fraction of httpx2's or aiohttp's CPU per request, see
        # bench/gateway/client_overhead.py); an injected httpx2 transport (httpx2.MockTransport in tests)
        # keeps the httpx2 client, so fakes are injected as transports, never patched.
        self._client: httpx2.AsyncClient | None = None
        if transport is not None:
            self._client = httpx2.AsyncClient(
                transport=transport,
                limits=httpx2.Limits(
                    max_connections=max_connections,
                    max_keepalive_connections=keepalive,
                    keepalive_expiry=keepalive_expiry,
                ),
                timeout=self._timeouts(timeout),
                headers={"user-agent": _USER_AGENT},
                follow_redirects=False,
            )
        # One pool per event loop (tests run several loops); the TLS context is built here, once, because
        # loading the CA store blocks and must not happen on the loop.
        self._pool: H1Pool | None = None
        self._pool_loop: asyncio.AbstractEventLoop | None = None
        https = transport is None and self.base_url.lower().startswith("https:")
        self._ssl_context = ssl.create_default_context() if https else None

    # --- subclass hooks ----------------------------------------------------------------------------------------
    def _url(self, call: UpstreamCall) -> str:
        raise NotImplementedError

    def _auth_headers(self) -> dict[str, str]:
        return {}

    def _stream_error(self, event: SSEEvent) -> Any:
        """The error body when ``event`` is the wire's in-stream error report, else None."""
        return None

    # --- the Provider interface --------------------------------------------------------------------------------
    async def send(self, call: UpstreamCall) -> UpstreamResponse:
        url, headers, content = self._encode(call, stream=False)
        limit = self._read_timeout(call)
        try:
            async with asyncio.timeout(limit):
                if self._client is not None:
                    response = await self._client.send(
                        self._client.build_request(
                            "POST", url, content=content, headers=headers, timeout=self._timeouts(limit)
                        )
                    )
                    status, body_bytes, response_headers = response.status_code, response.content, response.headers
                else:
                    resp = await self._h1_pool().request("POST", url, headers, content, read_timeout=limit)
                    status, body_bytes, response_headers = resp.status, resp.body, resp.headers
        except (TimeoutError, httpx2.TimeoutException) as exc:  # H1TimeoutError is a TimeoutError
            raise self._timeout_error(limit, exc) from None
        except (httpx2.TransportError, H1Error) as exc:
            raise self._connection_error(exc) from None
        if not 200 <= status < 300:
            raise error_for_status(self.name, status, _decode_body(body_bytes), response_headers)
        try:
            body = orjson.loads(body_bytes)
        except orjson.JSONDecodeError:
            body = None
        if not isinstance(body, dict):
            snippet = body_bytes[:200].decode("utf-8", errors="replace")
            raise UpstreamError(
                f"{self.name}: the upstream answered HTTP {status} with a body that is not a JSON object: {snippet!r}",
                status=502,
                error_type="malformed_response",
                retryable=True,
                body=body_bytes[:_MAX_ERROR_BODY].decode("utf-8", errors="replace"),
            )
        return UpstreamResponse(status=status, body=body, headers=dict(response_headers))

    async def stream(self, call: UpstreamCall) -> AsyncIterator[SSEEvent]:
        chunks = self._stream_httpx(call) if self._client is not None else self._stream_h1(call)
        parser = SSEParser()
        seen = 0
        try:
            async for chunk in chunks:
                events = parser.feed(chunk)
                last = len(events) - 1
                for index, event in enumerate(events):
                    self._check_event(event, seen)
                    seen += 1
                    yield event if index == last else SSEEvent(data=event.data, event=event.event, more_ready=True)
        except _StreamBroken as exc:
            raise UpstreamError(
                f"{self.name}: the stream broke after {seen} events ({exc})",
                status=502,
                error_type="stream_dropped",
                retryable=False,
            ) from None
        finally:
            await chunks.aclose()
        for event in parser.flush():
            self._check_event(event, seen)
            seen += 1
            yield event

    async def _stream_httpx(self, call: UpstreamCall) -> AsyncIterator[bytes]:
        assert self._client is not None
        url, headers, content = self._encode(call, stream=True)
        limit = self._read_timeout(call)
        request = self._client.build_request(
            "POST", url, content=content, headers=headers, timeout=self._timeouts(limit)
        )
        try:
            response = await self._client.send(request, stream=True)
        except httpx2.TimeoutException as exc:
            raise self._timeout_error(limit, exc) from None
        except httpx2.TransportError as exc:
            raise self._connection_error(exc) from None
        try:
            if not 200 <= response.status_code < 300 or "json" in response.headers.get("content-type", ""):
                try:
                    error_body = await response.aread()
                except httpx2.HTTPError:
                    error_body = b""
                raise self._start_error(response.status_code, response.headers, error_body)
            try:
                async for chunk in response.aiter_bytes():
                    yield chunk
            except (httpx2.TimeoutException, httpx2.TransportError) as exc:
                kind = "read timeout" if isinstance(exc, httpx2.TimeoutException) else "connection broken"
                raise _StreamBroken(f"{kind}: {exc or type(exc).__name__}") from None
        finally:
            await response.aclose()

    async def _stream_h1(self, call: UpstreamCall) -> AsyncIterator[bytes]:
        url, headers, content = self._encode(call, stream=True)
        limit = self._read_timeout(call)
        try:
            response = await self._h1_pool().stream("POST", url, headers, content, read_timeout=limit)
        except H1TimeoutError as exc:
            raise self._timeout_error(limit, exc) from None
        except H1Error as exc:
            raise self._connection_error(exc) from None
        try:
            if not 200 <= response.status < 300 or "json" in response.headers.get("content-type", ""):
                try:
                    error_body = await response.read()
                except H1Error:
                    error_body = b""
                raise self._start_error(response.status, response.headers, error_body)
            try:
                async for chunk in response.iter_chunks():
                    yield chunk
            except H1TimeoutError as exc:
                raise _StreamBroken(f"read timeout: {exc}") from None
            except H1Error as exc:
                raise _StreamBroken(f"connection broken: {type(exc).__name__}: {exc}") from None
        finally:
            # A fully read response returns its connection to the pool; a cut one is closed.
            response.release()

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
        if self._pool is not None:
            await self._pool.aclose()
            self._pool = None

    # --- helpers -----------------------------------------------------------------------------------------------
    def _timeouts(self, read: float) -> httpx2.Timeout:
        return httpx2.Timeout(connect=self.connect_timeout, read=read, write=self.write_timeout, pool=self.pool_timeout)

    def _read_timeout(self, call: UpstreamCall) -> float:
        return min(self.timeout, call.timeout)

    def _encode(self, call: UpstreamCall, *, stream: bool) -> tuple[str, dict[str, str], bytes]:
        """(url, headers, JSON body) of a call; the method (stream or not) decides the body's ``stream``."""
        headers = {k.lower(): v for k, v in call.headers.items() if k.lower() not in _PROTECTED}
        headers.update(self._auth_headers())
        headers["content-type"] = "application/json"
        headers["accept"] = "text/event-stream" if stream else "application/json"
        body = dict(call.body)
        if call.endpoint != "embeddings" and bool(body.get("stream")) != stream:
            body["stream"] = stream  # the method decides, whatever the body says
            if not stream:
                body.pop("stream_options", None)
        try:
            content = orjson.dumps(body, default=_json_default)
        except TypeError as exc:
            raise UpstreamError(
                f"{self.name}: the request body cannot be encoded as JSON: {exc}",
                status=400,
                error_type="bad_request",
                retryable=False,
            ) from None
        headers["user-agent"] = _USER_AGENT
        return self._url(call), headers, content

    def _h1_pool(self) -> H1Pool:
        """The connection pool of the running event loop (created on first use, in that loop)."""
        loop = asyncio.get_running_loop()
        if self._pool is None or self._pool_loop is not loop or self._pool.closed:
            self._pool = H1Pool(
                self.base_url,
                max_connections=self.max_connections,
                max_idle=self.max_keepalive_connections,
                connect_timeout=self.connect_timeout,
                pool_timeout=self.pool_timeout,
                write_timeout=self.write_timeout,
                keepalive_expiry=self.keepalive_expiry,
                ssl_context=self._ssl_context,
            )
            self._pool_loop = loop
        return self._pool

    def _timeout_error(self, limit: float, exc: BaseException) -> UpstreamError:
        what = type(exc).__name__ if isinstance(exc, httpx2.TimeoutException | H1TimeoutError) else "deadline"
        return UpstreamError(
            f"{self.name}: the upstream did not answer in time ({what}, limit {limit:g}s)",
            status=504,
            error_type="timeout",
            retryable=True,
        )

    def _connection_error(self, exc: BaseException) -> UpstreamError:
        return UpstreamError(
            f"{self.name}: cannot reach the upstream at {self.base_url}: {type(exc).__name__}: {exc}",
            status=502,
            error_type="connection_error",
            retryable=True,
        )

    def _start_error(self, status: int, headers: Mapping[str, str], content: bytes) -> UpstreamError:
        body = _decode_body(content)
        if not 200 <= status < 300:
            return error_for_status(self.name, status, body, headers)
        return UpstreamError(
            f"{self.name}: asked for a stream, the upstream answered with JSON instead",
            status=502,
            error_type="malformed_response",
            retryable=True,
            body=body,
        )

    def _check_event(self, event: SSEEvent, seen: int) -> None:
        """Raise for an in-stream error report: retryable before the first event, stream_dropped after."""
        body = self._stream_error(event)
        if body is None:
            return
        message = _error_message(body) or event.data[:300]
        if seen:
            raise UpstreamError(
                f"{self.name}: the upstream reported an error midway through the stream: {message}",
                status=502,
                error_type="stream_dropped",
                retryable=False,
                body=body,
            )
        kind = body.get("error", {}).get("type") if isinstance(body, Mapping) else None
        if kind in ("rate_limit_error", "rate_limit_exceeded", "requests", "tokens"):
            raise UpstreamError(
                f"{self.name}: rate limited: {message}",
                status=429,
                error_type="rate_limited",
                retryable=True,
                body=body,
            )
        if kind in ("invalid_request_error", "authentication_error", "permission_error", "not_found_error"):
            raise UpstreamError(
                f"{self.name}: {message}", status=400, error_type="bad_request", retryable=False, body=body
            )
        raise UpstreamError(
            f"{self.name}: the upstream failed at the start of the stream: {message}",
            status=502,
            error_type="server_error",
            retryable=True,
            body=body,
        )

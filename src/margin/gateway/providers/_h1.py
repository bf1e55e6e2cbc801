"""A lean pooled HTTP/1.1 client for the gateway's upstream calls: asyncio protocols feeding httptools' parser.

Why it exists: the gateway's CPU per proxied request must stay under a millisecond, and general-purpose clients
spend a large share of that on features the gateway never uses (aiohttp about 260-320 µs per keep-alive POST,
httpx2 twice that; see ``bench/gateway/client_overhead.py``). The gateway needs one thing: send a request with a
small body to one origin over a pool of keep-alive connections and read the answer, whole or as it streams.

One :class:`H1Pool` per origin (and per event loop). The rules that make it safe for money-path traffic:

* a connection goes back to the pool only when its response was read completely, the server allowed keep-alive
  (parser's ``should_keep_alive()`` and no ``connection: close``) and it has not been closed since; a cancelled,
  timed-out or failed exchange closes its connection, so a connection in an unknown state is never reused;
* a request is never sent twice: an idle connection the server has closed is dropped before reuse, and a
  connection that dies after the request went out fails the call (the gateway retries it as a new, metered
  attempt), because a server that read a POST may bill it;
* bodies are framed by content-length, chunked transfer encoding or the end of the connection, and a gzip or
  deflate ``content-encoding`` is decoded (hence the ``accept-encoding: gzip, deflate`` it sends by default).

Not supported, because the gateway does not need them: HEAD (llhttp would wait for a body), request bodies that
are not bytes, pipelining, upgrades, proxies, redirects.
"""

from __future__ import annotations

import asyncio
import ssl
import zlib
from collections import deque
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import cast
from urllib.parse import urlsplit

from httptools import HttpParserError, HttpParserUpgrade, HttpResponseParser

__all__ = [
    "H1ConnectError",
    "H1ConnectTimeout",
    "H1ConnectionLost",
    "H1Error",
    "H1Pool",
    "H1PoolTimeout",
    "H1ProtocolError",
    "H1ReadTimeout",
    "H1Response",
    "H1Stream",
    "H1TimeoutError",
    "H1WriteTimeout",
]

_HIGH_WATER = 1 << 20  # a stream pauses reading while this much body is buffered and unread
_OWNED = frozenset({"host", "content-length", "transfer-encoding", "connection"})  # the pool writes these
_LARGE_BODY = 64 * 1024  # above this the body is written after the head instead of being copied into one buffer


class H1Error(Exception):
    """Base of this client's errors."""


class H1ConnectError(H1Error):
    """A connection could not be opened: refused, unreachable, DNS or TLS failure, or the pool is closed."""


class H1ConnectionLost(H1Error):
    """The connection broke, or the server closed it, before the response was complete."""


class H1ProtocolError(H1Error):
    """The server's answer is not valid HTTP/1.1, or its content-encoded body does not decode."""


class H1TimeoutError(H1Error, TimeoutError):
    """Base of the timeouts (a :class:`TimeoutError`, like the deadline the caller may wrap around a call)."""


class H1ConnectTimeout(H1TimeoutError):
    """Opening a connection took longer than ``connect_timeout``."""


class H1WriteTimeout(H1TimeoutError):
    """The socket did not accept the request within ``write_timeout``."""


class H1ReadTimeout(H1TimeoutError):
    """No response data arrived within ``read_timeout`` (measured per wait, not for the whole response)."""


class H1PoolTimeout(H1TimeoutError):
    """Every connection stayed busy for ``pool_timeout``."""


class H1Response:
    """A response read whole: status, headers (lower-case names; repeated headers joined by ", ") and body."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body


def _expire(waiter: asyncio.Future[object], error: type[H1TimeoutError], message: str, seconds: float) -> None:
    """A timer's end: fail the waiter (the message is formatted only now, not on every request)."""
    if not waiter.done():
        waiter.set_exception(error(f"{message} {seconds:g}s"))


class _Decoder:
    """Incremental gzip / deflate decoding; deflate may come zlib-wrapped (as the RFC says) or raw (as some send)."""

    __slots__ = ("_encoding", "_fed", "_obj", "_pending")

    def __init__(self, encoding: str) -> None:
        self._encoding = encoding
        self._obj: zlib._Decompress | None = zlib.decompressobj(31) if encoding == "gzip" else None
        self._pending = b""
        self._fed = False  # an empty body (204, HEAD-like answers) decodes to nothing

    @staticmethod
    def of(encoding: str | None) -> _Decoder | None:
        """The decoder for a ``content-encoding`` value, None for identity or a coding this client never asked for
        (that body is passed through as it came)."""
        if not encoding:
            return None
        name = encoding.strip().lower()
        name = "gzip" if name == "x-gzip" else name
        return _Decoder(name) if name in ("gzip", "deflate") else None

    def feed(self, data: bytes) -> bytes:
        if not data:
            return b""
        self._fed = True
        try:
            if self._obj is None:  # deflate: the first two bytes tell a zlib header from a raw stream
                data, self._pending = self._pending + data, b""
                if len(data) < 2:
                    self._pending = data
                    return b""
                zlib_header = data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0
                self._obj = zlib.decompressobj(15 if zlib_header else -15)
            out = self._obj.decompress(data)
            while self._encoding == "gzip" and self._obj.eof and self._obj.unused_data:  # multi-member gzip
                rest = self._obj.unused_data
                self._obj = zlib.decompressobj(31)
                out += self._obj.decompress(rest)
            return out
        except zlib.error as exc:
            raise H1ProtocolError(f"cannot decode the {self._encoding} body: {exc}") from None

    def flush(self) -> bytes:
        """The rest of the decoded body; a compressed stream that stops short is an error, not a shorter body."""
        if not self._fed:
            return b""
        if self._obj is None or not self._obj.eof:
            raise H1ProtocolError(f"the {self._encoding} body ends before its compressed stream does")
        return self._obj.flush()


class _Connection(asyncio.Protocol):
    """One connection and the state of its current response.

    The parser callbacks only record what arrived; the single task using the connection reads that state after each
    :meth:`wait`, which every event (data, end, error) resolves. No queue, so a response that arrives in one packet
    costs one wake-up.
    """

    transport: asyncio.Transport

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._parser = HttpResponseParser(self)
        self._waiter: asyncio.Future[None] | None = None
        self._write_paused = False
        self._active = False  # a request is in flight (else bytes from the server are out of step)
        self.lost = False  # the server closed it or it broke: never reuse
        self.idle = False  # parked in the pool's idle stack
        self.idle_since = 0.0
        self.reused = False
        self.on_idle_lost: Callable[[_Connection], None] | None = None  # the pool's, when an idle one closes
        self._reset(streaming=False)

    def _reset(self, *, streaming: bool) -> None:
        self.status = 0
        self.headers: dict[str, str] = {}
        self.headers_done = False
        self.complete = False
        self.keep_alive = False
        self.error: H1Error | None = None
        self.received = 0  # response bytes seen, decides whether a failed request may be retried
        self.body: list[bytes] = []
        self.buffered = 0
        self._until_close = False  # body framed by the end of the connection
        self._interim = False
        self._streaming = streaming
        self._reading_paused = False

    async def send(self, head: bytes, body: bytes, *, streaming: bool, write_timeout: float | None) -> None:
        """Reset the response state and send one request, head and body in a single write; wait only if the socket
        pushed back (a large body on a slow link)."""
        self._reset(streaming=streaming)
        self._active = True
        if len(body) > _LARGE_BODY:
            self.transport.writelines((head, body))
        else:
            self.transport.write(head + body)
        while self._write_paused and not self.lost:
            await self.wait(write_timeout, H1WriteTimeout, "could not send the request within")

    def close(self, *, abort: bool) -> None:
        self._active = False
        self.idle = False
        self.lost = True
        if abort:
            self.transport.abort()
        else:
            self.transport.close()

    def take(self) -> bytes:
        """The body bytes buffered so far (resumes a paused socket)."""
        chunks = self.body
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self.body = []
        self.buffered = 0
        if self._reading_paused and not self.lost:
            self._reading_paused = False
            self.transport.resume_reading()
        return data

    async def wait(
        self,
        timeout: float | None,
        error: type[H1TimeoutError] = H1ReadTimeout,
        message: str = "no data from the server within",
    ) -> None:
        """Until the next event on this connection (data, end, error, write buffer drained), at most ``timeout``
        seconds. A timer handle rather than ``asyncio.timeout``: this runs once per response and must stay cheap."""
        waiter: asyncio.Future[None] = self._loop.create_future()
        self._waiter = waiter
        timer = None
        if timeout is not None:
            timer = self._loop.call_later(timeout, _expire, waiter, error, message, timeout)
        try:
            await waiter
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # --- asyncio.Protocol ------------------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not registered subclasses

    def data_received(self, data: bytes) -> None:
        if not self._active:  # bytes on an idle connection: the stream is out of step, so it can never be reused
            self.lost = True
            self.transport.abort()
            return
        self.received += len(data)
        try:
            self._parser.feed_data(data)
        except (HttpParserError, HttpParserUpgrade) as exc:
            if self.complete:
                self.keep_alive = False  # bytes after a complete response: it stands, the connection does not
            elif self.error is None:
                self.error = H1ProtocolError(f"malformed HTTP response: {exc}")
                self.lost = True
                self.transport.abort()
        self._wake()

    def eof_received(self) -> bool:
        self._peer_closed(None)
        return False  # let the transport close itself

    def connection_lost(self, exc: Exception | None) -> None:
        self._peer_closed(exc)
        if self.idle and self.on_idle_lost is not None:
            self.on_idle_lost(self)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._wake()

    def _peer_closed(self, exc: Exception | None) -> None:
        self.lost = True
        if self._active and not self.complete and self.error is None:
            if exc is None and self.headers_done and self._until_close:
                self.complete = True  # the end of the connection is the end of this body
                self.keep_alive = False
            else:
                where = "mid-body" if self.headers_done else "mid-headers" if self.received else "before answering"
                detail = f": {type(exc).__name__}: {exc}" if exc is not None else ""
                self.error = H1ConnectionLost(f"the server closed the connection {where}{detail}")
        self._wake()

    # --- httptools callbacks ---------------------------------------------------------------------------------------
    def on_message_begin(self) -> None:
        if self.complete:  # a second response we never asked for: stop the parser (see data_received)
            raise H1ProtocolError("unexpected bytes after the response")

    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        previous = self.headers.get(key)
        self.headers[key] = text if previous is None else f"{previous}, {text}"

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if status < 200:  # 1xx (103 Early Hints, ...): llhttp completes it as a message of its own; skip it
            self._interim = True
            self.headers = {}
            return
        self.status = status
        self.headers_done = True
        coding = self.headers.get("transfer-encoding")
        if coding is not None:
            self._until_close = not coding.rstrip().lower().endswith("chunked")
        else:
            self._until_close = "content-length" not in self.headers and status not in (204, 304)

    def on_body(self, body: bytes) -> None:
        self.body.append(body)
        self.buffered += len(body)
        if self._streaming and self.buffered > _HIGH_WATER and not self._reading_paused:
            self._reading_paused = True
            self.transport.pause_reading()

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            return
        self.complete = True
        self.keep_alive = self._parser.should_keep_alive() and "close" not in self.headers.get("connection", "").lower()


class H1Stream:
    """A response whose body is read as it arrives: ``status`` and ``headers`` now, then ``async for chunk in
    stream.iter_chunks()`` (decoded bytes, as much as has arrived per chunk, ``read_timeout`` per wait).

    Call :meth:`release` (or use ``async with``) when done: a completely read response returns its connection to
    the pool, anything else closes it.
    """

    __slots__ = ("_conn", "_decoder", "_pool", "_read_timeout", "headers", "status")

    def __init__(self, pool: H1Pool, conn: _Connection, read_timeout: float | None) -> None:
        self._pool = pool
        self._conn: _Connection | None = conn
        self._read_timeout = read_timeout
        self._decoder = _Decoder.of(conn.headers.get("content-encoding"))
        self.status = conn.status
        self.headers = conn.headers

    def iter_chunks(self) -> H1Stream:
        return self

    def __aiter__(self) -> H1Stream:
        return self

    async def __anext__(self) -> bytes:
        conn = self._conn
        if conn is None:
            raise StopAsyncIteration
        decoder = self._decoder
        while True:
            if conn.body:
                data = conn.take()
                if decoder is not None:
                    data = decoder.feed(data)
                if data:
                    return data
                continue
            if conn.complete:
                tail = decoder.flush() if decoder is not None else b""
                self.release()
                if tail:
                    return tail
                raise StopAsyncIteration
            if conn.error is not None:
                raise conn.error
            await conn.wait(self._read_timeout)

    async def read(self) -> bytes:
        """The rest of the body."""
        return b"".join([chunk async for chunk in self])

    def release(self) -> None:
        """Back to the pool if the response was read completely, else close the connection. Idempotent."""
        conn, self._conn = self._conn, None
        if conn is not None:
            self._pool._finish(conn, ok=conn.complete)

    async def __aenter__(self) -> H1Stream:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


class H1Pool:
    """Keep-alive HTTP/1.1 connections to the origin of ``base_url`` (``http`` or ``https``), for one event loop.

    At most ``max_connections`` are open; further callers wait up to ``pool_timeout`` (None: as long as it takes)
    for one to come back. Idle connections form a LIFO stack (the warmest is reused first, the coldest expire after
    ``keepalive_expiry`` seconds), at most ``max_idle`` of them (default: ``max_connections``).
    """

    def __init__(
        self,
        base_url: str,
        *,
        max_connections: int = 100,
        max_idle: int | None = None,
        connect_timeout: float | None = 5.0,
        pool_timeout: float | None = None,
        write_timeout: float | None = None,
        keepalive_expiry: float = 30.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname or "@" in parts.netloc:
            raise ValueError(f"H1Pool needs an http(s)://host[:port] URL without credentials, not {base_url!r}")
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._origin = f"{parts.scheme}://{parts.netloc}"
        self._host_header = parts.netloc
        self._ssl = (ssl_context or ssl.create_default_context()) if parts.scheme == "https" else None
        self._max = max_connections
        self._max_idle = max_connections if max_idle is None else max_idle
        self._connect_timeout = connect_timeout
        self._pool_timeout = pool_timeout
        self._write_timeout = write_timeout
        self._expiry = keepalive_expiry
        self._loop: asyncio.AbstractEventLoop | None = None
        self._idle: list[_Connection] = []  # LIFO: the top is the most recently used
        self._waiters: deque[asyncio.Future[_Connection | None]] = deque()  # a connection, or None: a free slot
        self._conns: set[_Connection] = set()
        self._open = 0  # slots taken: open or opening connections
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    # --- the two calls ---------------------------------------------------------------------------------------------
    async def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes = b"",
        *,
        read_timeout: float | None,
    ) -> H1Response:
        """Send a request and read the whole response (the body decoded if gzip/deflate)."""
        conn = await self._exchange(method, url, headers, body, read_timeout, streaming=False)
        try:
            while not conn.complete:
                if conn.error is not None:
                    raise conn.error
                await conn.wait(read_timeout)
            status, response_headers, chunks = conn.status, conn.headers, conn.body
            conn.body = []
        except BaseException:
            self._finish(conn, ok=False)
            raise
        self._finish(conn, ok=True)
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        decoder = _Decoder.of(response_headers.get("content-encoding"))
        if decoder is not None:
            data = decoder.feed(data) + decoder.flush()
        return H1Response(status, response_headers, data)

    async def stream(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes = b"",
        *,
        read_timeout: float | None,
    ) -> H1Stream:
        """Send a request and return once the response's status and headers are in; see :class:`H1Stream`."""
        conn = await self._exchange(method, url, headers, body, read_timeout, streaming=True)
        return H1Stream(self, conn, read_timeout)

    async def aclose(self) -> None:
        """Close every connection; waiting callers fail with :class:`H1ConnectError`, later calls too."""
        self._closed = True
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(H1ConnectError("the connection pool was closed"))
        self._idle.clear()
        for conn in list(self._conns):
            conn.close(abort=True)
        self._conns.clear()

    # --- one exchange ----------------------------------------------------------------------------------------------
    async def _exchange(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes,
        read_timeout: float | None,
        *,
        streaming: bool,
    ) -> _Connection:
        """Send the request and wait for the response head; on any failure the connection is closed."""
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        head = self._head(method, url, headers, len(body))
        conn = await self._acquire()
        try:
            await conn.send(head, body, streaming=streaming, write_timeout=self._write_timeout)
            while not conn.headers_done:
                error = conn.error
                if error is None:
                    await conn.wait(read_timeout)
                    continue
                # Never re-sent here, not even on a reused keep-alive connection that died before answering: the
                # server may have read the request, and a second POST to an LLM API can be billed twice. The
                # failure surfaces as a connection error, which the gateway retries as a new, metered attempt.
                raise error
        except BaseException:
            self._finish(conn, ok=False)
            raise
        return conn

    def _head(self, method: str, url: str, headers: Mapping[str, str], length: int) -> bytes:
        """The request line and headers: ``host`` and ``content-length`` written by the pool, the caller's headers
        after them (except the ones the pool owns), ``accept-encoding: gzip, deflate`` unless the caller set one."""
        if method == "HEAD":
            raise ValueError("H1Pool does not support HEAD")
        if url.startswith("/"):
            target = url
        elif url.startswith(self._origin) and url[len(self._origin) : len(self._origin) + 1] in ("", "/", "?"):
            target = url[len(self._origin) :] or "/"
            if target[0] == "?":
                target = "/" + target
        else:
            raise ValueError(f"{url!r} is not on this pool's origin {self._origin}")
        target = target.partition("#")[0]
        lines = [f"{method} {target} HTTP/1.1", f"host: {self._host_header}", f"content-length: {length}"]
        accept_encoding = False
        for name, value in headers.items():
            lower = name.lower()
            if lower in _OWNED:
                continue
            accept_encoding = accept_encoding or lower == "accept-encoding"
            lines.append(f"{name}: {value}")
        if not accept_encoding:
            lines.append("accept-encoding: gzip, deflate")
        text = "\r\n".join(lines)
        # A CR or LF inside a header or the target would let a value inject headers; every line break in the
        # head must be one of ours. (Spaces in the method or target would split the request line.)
        breaks = len(lines) - 1
        if text.count("\n") != breaks or text.count("\r") != breaks or " " in target or " " in method:
            raise ValueError("a request header, method or target contains CR, LF or a space")
        return (text + "\r\n\r\n").encode()

    # --- the pool --------------------------------------------------------------------------------------------------
    async def _acquire(self) -> _Connection:
        idle = self._idle
        if idle:
            assert self._loop is not None
            now = self._loop.time()
            while idle:
                conn = idle.pop()
                conn.idle = False
                if not conn.lost and not conn.transport.is_closing() and now - conn.idle_since < self._expiry:
                    conn.reused = True
                    return conn
                self._drop(conn)  # expired (so is everything below it) or closed by the server
        if self._closed:
            raise H1ConnectError("the connection pool was closed")
        if self._open < self._max:
            self._open += 1
            return await self._connect_in_slot()
        return await self._wait_for_slot()

    async def _wait_for_slot(self) -> _Connection:
        loop = self._loop
        assert loop is not None
        waiter: asyncio.Future[_Connection | None] = loop.create_future()
        self._waiters.append(waiter)
        timer = None
        if self._pool_timeout is not None:
            message = f"all {self._max} connections stayed busy for"
            timer = loop.call_later(self._pool_timeout, _expire, waiter, H1PoolTimeout, message, self._pool_timeout)
        try:
            conn = await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                handed = waiter.result()  # a connection or a slot came just as we were cancelled: pass it on
                self._free_slot() if handed is None else self._park(handed)
            else:
                try:
                    self._waiters.remove(waiter)
                except ValueError:
                    pass
            raise
        finally:
            if timer is not None:
                timer.cancel()
        if conn is None:  # a slot was freed for us
            return await self._connect_in_slot()
        if conn.lost or conn.transport.is_closing():
            self._conns.discard(conn)
            conn.close(abort=True)
            return await self._connect_in_slot()
        return conn

    async def _connect_in_slot(self) -> _Connection:
        """Open a connection in a slot already counted in ``_open`` (freed again if this fails)."""
        try:
            return await self._connect()
        except BaseException:
            self._free_slot()
            raise

    async def _connect(self) -> _Connection:
        loop = self._loop
        assert loop is not None
        if self._closed:
            raise H1ConnectError("the connection pool was closed")
        conn = _Connection(loop)
        try:
            async with asyncio.timeout(self._connect_timeout):
                await loop.create_connection(
                    lambda: conn,
                    self._host,
                    self._port,
                    ssl=self._ssl,
                    server_hostname=self._host if self._ssl is not None else None,
                )
        except TimeoutError:  # before OSError: TimeoutError is one
            raise H1ConnectTimeout(f"could not connect to {self._origin} within {self._connect_timeout:g}s") from None
        except OSError as exc:  # refused, unreachable, DNS, TLS (ssl.SSLError is an OSError)
            raise H1ConnectError(f"cannot connect to {self._origin}: {type(exc).__name__}: {exc}") from exc
        conn.on_idle_lost = self._idle_lost
        self._conns.add(conn)
        return conn

    def _finish(self, conn: _Connection, *, ok: bool) -> None:
        """The end of an exchange: park a connection whose response was read completely and may be kept alive,
        close any other one."""
        conn._active = False
        if ok and conn.complete and conn.keep_alive and not conn.lost and not self._closed:
            conn.body = []
            self._park(conn)
        else:
            self._conns.discard(conn)
            conn.close(abort=not conn.complete)
            self._free_slot()

    def _park(self, conn: _Connection) -> None:
        """A healthy idle connection: to the first waiter, else on top of the idle stack."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                conn.reused = True
                waiter.set_result(conn)
                return
        idle = self._idle
        assert self._loop is not None
        now = self._loop.time()
        while idle and now - idle[0].idle_since >= self._expiry:  # the coldest ones expire at the bottom
            self._drop(idle.pop(0))
        if len(idle) >= self._max_idle:
            self._conns.discard(conn)
            conn.close(abort=False)
            self._free_slot()
            return
        conn.idle = True
        conn.idle_since = now
        idle.append(conn)

    def _drop(self, conn: _Connection) -> None:
        """Close a connection taken off the idle stack."""
        self._conns.discard(conn)
        conn.close(abort=False)
        self._free_slot()

    def _free_slot(self) -> None:
        """A connection closed: its slot goes to the first waiter (who opens a connection in it) or is released."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._open -= 1

    def _idle_lost(self, conn: _Connection) -> None:
        """The server closed an idle connection: forget it now, so its slot is free again."""
        conn.idle = False
        try:
            self._idle.remove(conn)
        except ValueError:
            return
        self._conns.discard(conn)
        self._free_slot()

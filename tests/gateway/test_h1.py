"""The pooled HTTP/1.1 client (margin.gateway.providers._h1) against small raw asyncio servers on real sockets.

Each server runs a scripted handler per connection, so every edge case is exactly the bytes a server would send:
framing (content-length, chunked, until close), keep-alive and its failures, pool limits, timeouts, broken and
malformed answers, content encodings, size and concurrency. Every test runs on asyncio's loop and on uvloop.
"""

from __future__ import annotations

import asyncio
import gzip
import shutil
import socket
import ssl
import subprocess
import zlib
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import pytest
import uvloop

from margin.gateway.providers._h1 import (
    H1ConnectError,
    H1ConnectionLost,
    H1ConnectTimeout,
    H1Pool,
    H1PoolTimeout,
    H1ProtocolError,
    H1ReadTimeout,
)


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> Callable[[Coroutine[Any, Any, Any]], Any]:
    factory = uvloop.new_event_loop if request.param == "uvloop" else None

    def runner(coro: Coroutine[Any, Any, Any]) -> Any:
        with asyncio.Runner(loop_factory=factory) as loop_runner:
            return loop_runner.run(coro)

    return runner


class Peer:
    """One accepted connection, as the handler sees it."""

    def __init__(self, server: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, index: int):
        self.server, self.reader, self.writer, self.index = server, reader, writer, index

    async def request(self) -> tuple[str, dict[str, str], bytes] | None:
        """The next request (request line, lower-cased headers, body), None when the client closed."""
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        line, *rest = head.decode().rstrip("\r\n").split("\r\n")
        headers = {name.lower(): value for name, value in (item.split(": ", 1) for item in rest)}
        body = await self.reader.readexactly(int(headers.get("content-length", "0")))
        self.server.requests.append((self.index, line, headers, body))
        return line, headers, body

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()


Handler = Callable[[Peer], Awaitable[None]]


class Server:
    """A raw TCP server on 127.0.0.1 running ``handler`` per connection; counts connections and requests."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.requests: list[tuple[int, str, dict[str, str], bytes]] = []

    async def __aenter__(self) -> Server:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.handler(Peer(self, reader, writer, self.connections))
        except ConnectionError:
            pass
        finally:
            writer.close()


def response(body: bytes = b"", *, status: str = "200 OK", headers: dict[str, str] | None = None) -> bytes:
    lines = [f"HTTP/1.1 {status}", f"content-length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def chunked(*pieces: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces) + b"0\r\n\r\n"


async def echo(peer: Peer) -> None:
    """Keep-alive: answer every request with its own body."""
    while (request := await peer.request()) is not None:
        await peer.send(response(request[2], headers={"X-Echo": request[0]}))


async def post(pool: H1Pool, body: bytes = b"{}", timeout: float = 5.0, path: str = "/v1/x") -> Any:
    return await pool.request("POST", path, {"content-type": "application/json"}, body, read_timeout=timeout)


# --- framing ------------------------------------------------------------------------------------------------------


def test_content_length_body_and_the_request_bytes(run):
    async def go() -> None:
        async with Server(echo) as server:
            pool = H1Pool(server.url + "/v1")
            url = server.url + "/v1/chat/completions?x=1"
            answer = await pool.request("POST", url, {"Authorization": "Bearer k"}, b'{"a": 1}', read_timeout=5)
            assert (answer.status, answer.body) == (200, b'{"a": 1}')
            assert answer.headers["x-echo"] == "POST /v1/chat/completions?x=1 HTTP/1.1"  # names are lower-cased
            _, _, headers, body = server.requests[0]
            assert headers["host"] == server.url.removeprefix("http://")
            assert (headers["content-length"], headers["authorization"], body) == ("8", "Bearer k", b'{"a": 1}')
            assert headers["accept-encoding"] == "gzip, deflate"
            await pool.aclose()

    run(go())


def test_chunked_body_arriving_in_pieces(run):
    async def handler(peer: Peer) -> None:
        while await peer.request() is not None:
            await peer.send(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
            for piece in (b"data: 1\n\n", b"data: 2\n\n", b"data: [DONE]\n\n"):
                await asyncio.sleep(0.01)
                await peer.send(b"%x\r\n%s\r\n" % (len(piece), piece))
            await peer.send(b"0\r\n\r\n")

    async def go() -> None:
        async with Server(handler) as server:
            pool = H1Pool(server.url)
            assert (await post(pool)).body == b"data: 1\n\ndata: 2\n\ndata: [DONE]\n\n"
            async with await pool.stream("POST", "/", {}, b"{}", read_timeout=5) as stream:
                assert stream.status == 200
                pieces = [chunk async for chunk in stream.iter_chunks()]
            assert pieces == [b"data: 1\n\n", b"data: 2\n\n", b"data: [DONE]\n\n"]  # each as it arrived
            assert (await post(pool)).status == 200
            assert server.connections == 1
            await pool.aclose()

    run(go())


def test_body_read_until_the_server_closes(run):
    async def handler(peer: Peer) -> None:
        await peer.request()
        await peer.send(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\npart one, ")
        await asyncio.sleep(0.01)
        await peer.send(b"part two")

    async def go() -> None:
        async with Server(handler) as server:
            pool = H1Pool(server.url)
            assert (await post(pool)).body == b"part one, part two"
            stream = await pool.stream("POST", "/", {}, b"", read_timeout=5)
            assert await stream.read() == b"part one, part two"
            assert server.connections == 2  # such a connection is never reused

    run(go())


def test_interim_1xx_response_is_skipped(run):
    async def handler(peer: Peer) -> None:
        await peer.request()
        await peer.send(b"HTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n" + response(b"final"))

    async def go() -> None:
        async with Server(handler) as server:
            answer = await post(H1Pool(server.url))
            assert (answer.status, answer.body) == (200, b"final") and "link" not in answer.headers

    run(go())


# --- keep-alive ---------------------------------------------------------------------------------------------------


def test_keep_alive_reuses_one_connection(run):
    async def go() -> None:
        async with Server(echo) as server:
            pool = H1Pool(server.url)
            for i in range(20):
                assert (await post(pool, b"%d" % i)).body == b"%d" % i
            assert server.connections == 1 and len(server.requests) == 20
            await pool.aclose()

    run(go())


def test_connection_close_from_the_server_means_a_new_connection(run):
    async def handler(peer: Peer) -> None:
        await peer.request()
        await peer.send(response(b"ok", headers={"Connection": "close"}))
        await asyncio.sleep(0.5)  # keep the socket open: the header alone must stop reuse

    async def go() -> None:
        async with Server(handler) as server:
            pool = H1Pool(server.url)
            for _ in range(3):
                assert (await post(pool)).body == b"ok"
            assert server.connections == 3

    run(go())


def test_http_1_0_answer_is_not_kept(run):
    async def handler(peer: Peer) -> None:
        await peer.request()
        await peer.send(b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await asyncio.sleep(0.5)

    async def go() -> None:
        async with Server(handler) as server:
            pool = H1Pool(server.url)
            assert (await post(pool)).body == b"ok" and (await post(pool)).body == b"ok"
            assert server.connections == 2

    run(go())


def test_server_closing_an_idle_connection_is_transparent(run):
    async def handler(peer: Peer) -> None:
        await peer.request()
        await peer.send(response(b"ok"))  # keep-alive by default, then closed while idle

    async def go() -> None:
        async with Server(handler) as server:
            pool = H1Pool(server.url)
            for _ in range(3):
                assert (await post(pool)).body == b"ok"
                await asyncio.sleep(0.05)
            assert server.connections == 3 and len(server.requests) == 3  # each request sent once

    run(go())


def test_a_request_is_never_sent_twice_even_on_a_reused_connection(run):
    """The keep-alive race (the server read the request on a reused connection, then closed it) fails the
    call instead of re-sending the POST: the server may have processed and billed it. The gateway retries it
    as a new, metered attempt."""

    async def handler(peer: Peer) -> None:
        if peer.index == 1:
            await peer.request()
            await peer.send(response(b"first"))
        await peer.request()
        peer.writer.transport.abort()

    async def go() -> None:
        async with Server(handler) as server:
            pool = H1Pool(server.url)
            assert (await post(pool)).body == b"first"
            with pytest.raises(H1ConnectionLost):  # reused connection, request read, then dropped
                await post(pool)
            assert server.connections == 1 and len(server.requests) == 2
            with pytest.raises(H1ConnectionLost):  # a fresh connection: the same
                await post(pool)
            assert server.connections == 2 and len(server.requests) == 3

    run(go())


def test_idle_connections_expire(run):
    async def go() -> None:
        async with Server(echo) as server:
            pool = H1Pool(server.url, keepalive_expiry=0.05)
            await post(pool)
            await post(pool)
            await asyncio.sleep(0.1)
            await post(pool)
            assert server.connections == 2

    run(go())


def test_bytes_after_the_response_make_the_connection_unusable(run):
    async def handler(peer: Peer) -> None:
        await peer.request()
        await peer.send(response(b"ok") + b"HTTP/1.1 200 OK\r\n")
        await asyncio.sleep(0.5)

    async def go() -> None:
        async with Server(handler) as server:
            pool = H1Pool(server.url)
            assert (await post(pool)).body == b"ok" and (await post(pool)).body == b"ok"
            assert server.connections == 2

    run(go())


# --- pool limits and timeouts -------------------------------------------------------------------------------------


def test_pool_limit_makes_callers_wait_then_time_out(run):
    async def go() -> None:
        gate = asyncio.Event()

        async def handler(peer: Peer) -> None:
            while (request := await peer.request()) is not None:
                await gate.wait()
                await peer.send(response(request[2]))

        async with Server(handler) as server:
            pool = H1Pool(server.url, max_connections=2, pool_timeout=0.2)
            busy = [asyncio.create_task(post(pool, b"%d" % i)) for i in range(2)]
            await asyncio.sleep(0.05)
            with pytest.raises(H1PoolTimeout):
                await post(pool)
            patient = H1Pool(server.url, max_connections=1, pool_timeout=5)
            first = asyncio.create_task(post(patient, b"a"))
            await asyncio.sleep(0.05)
            second = asyncio.create_task(post(patient, b"b"))  # waits for the first one's connection
            await asyncio.sleep(0.05)
            gate.set()
            assert [r.body for r in await asyncio.gather(*busy, first, second)] == [b"0", b"1", b"a", b"b"]
            assert server.connections == 3
            await asyncio.gather(*(post(pool) for _ in range(6)))  # the timed-out waiter left no slot behind
            assert server.connections == 3

    run(go())


def test_read_timeout_closes_the_connection(run):
    async def handler(peer: Peer) -> None:
        await peer.request()
        await peer.send(response(b"ok"))
        await peer.request()
        await asyncio.sleep(5)  # never answers the second one

    async def go() -> None:
        async with Server(handler) as server:
            pool = H1Pool(server.url)
            await post(pool)
            with pytest.raises(H1ReadTimeout):
                await post(pool, timeout=0.1)
            assert len(server.requests) == 2  # a timeout is never retried
            assert (await post(pool)).body == b"ok"
            assert server.connections == 2
            await pool.aclose()

    run(go())


def test_cancelled_request_closes_its_connection(run):
    async def go() -> None:
        async def handler(peer: Peer) -> None:
            while (request := await peer.request()) is not None:
                if request[2] == b"slow":
                    await asyncio.sleep(5)
                await peer.send(response(request[2]))

        async with Server(handler) as server:
            pool = H1Pool(server.url, max_connections=1)
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.1):
                    await post(pool, b"slow")
            assert (await post(pool, b"fast")).body == b"fast"
            assert server.connections == 2
            await pool.aclose()

    run(go())


def test_connect_refused(run):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    async def go() -> None:
        pool = H1Pool(f"http://127.0.0.1:{port}", max_connections=1)
        for _ in range(2):  # the failed attempt frees its slot
            with pytest.raises(H1ConnectError):
                await post(pool)

    run(go())


# --- broken and malformed answers ---------------------------------------------------------------------------------


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_stream_cut_mid_body(run, framing):
    async def handler(peer: Peer) -> None:
        await peer.request()
        if framing == "chunked":
            await peer.send(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        else:
            await peer.send(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nfirst")
        await asyncio.sleep(0.02)
        await peer.send(b"6\r\nsecond\r\n" if framing == "chunked" else b"second")
        await asyncio.sleep(0.02)
        peer.writer.close()

    async def go() -> None:
        async with Server(handler) as server:
            pool = H1Pool(server.url)
            stream = await pool.stream("POST", "/", {}, b"", read_timeout=5)
            received = []
            with pytest.raises(H1ConnectionLost, match="mid-body"):
                async for chunk in stream.iter_chunks():
                    received.append(chunk)
            stream.release()
            assert received == [b"first", b"second"]
            with pytest.raises(H1ConnectionLost):
                await post(pool)

    run(go())


@pytest.mark.parametrize(
    "answer",
    [b"HTTP/1.1 2OO OK\r\n\r\n", b"garbage\r\n\r\n", b"HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n"],
)
def test_malformed_answer_is_a_protocol_error(run, answer):
    async def handler(peer: Peer) -> None:
        await peer.request()
        await peer.send(answer)
        await asyncio.sleep(0.5)

    async def go() -> None:
        async with Server(handler) as server:
            with pytest.raises(H1ProtocolError):
                await post(H1Pool(server.url))

    run(go())


# --- encodings, size and concurrency ------------------------------------------------------------------------------


@pytest.mark.parametrize("coding", ["gzip", "deflate", "raw-deflate"])
def test_compressed_bodies_are_decoded(run, coding):
    payload = b'{"text": "' + b"compressible " * 5000 + b'"}'
    if coding == "gzip":
        encoded = gzip.compress(payload)
    elif coding == "deflate":
        encoded = zlib.compress(payload)
    else:
        squeeze = zlib.compressobj(wbits=-15)
        encoded = squeeze.compress(payload) + squeeze.flush()
    name = "gzip" if coding == "gzip" else "deflate"

    async def handler(peer: Peer) -> None:
        await peer.request()
        await peer.send(response(encoded, headers={"content-encoding": name}))
        await peer.request()
        pieces = [encoded[i : i + 1000] for i in range(0, len(encoded), 1000)]
        await peer.send(
            b"HTTP/1.1 200 OK\r\ncontent-encoding: %s\r\ntransfer-encoding: chunked\r\n\r\n" % name.encode()
        )
        await peer.send(chunked(*pieces))

    async def go() -> None:
        async with Server(handler) as server:
            pool = H1Pool(server.url)
            assert (await post(pool)).body == payload
            stream = await pool.stream("POST", "/", {}, b"", read_timeout=5)
            assert await stream.read() == payload

    run(go())


def test_truncated_gzip_is_an_error(run):
    async def handler(peer: Peer) -> None:
        await peer.request()
        await peer.send(response(gzip.compress(b"x" * 1000)[:-8], headers={"content-encoding": "gzip"}))

    async def go() -> None:
        async with Server(handler) as server:
            with pytest.raises(H1ProtocolError):
                await post(H1Pool(server.url))

    run(go())


def test_large_bodies_intact_and_a_slow_reader_bounds_the_buffer(run):
    big = bytes(range(256)) * (5 * 1024 * 1024 // 256)

    async def handler(peer: Peer) -> None:
        while (request := await peer.request()) is not None:
            assert request[2] == big
            await peer.send(response(big))

    async def go() -> None:
        async with Server(handler) as server:
            pool = H1Pool(server.url)
            assert (await post(pool, big)).body == big
            stream = await pool.stream("POST", "/", {}, big, read_timeout=5)
            received, most = [], 0
            async for chunk in stream.iter_chunks():
                received.append(chunk)
                await asyncio.sleep(0.005)  # slower than loopback
                most = max(most, stream._conn.buffered if stream._conn else 0)
            assert b"".join(received) == big
            assert most <= 2 * 1024 * 1024  # reading paused above 1 MiB (plus one socket read)
            assert server.connections == 1

    run(go())


def test_many_concurrent_requests_over_a_small_pool(run):
    async def go() -> None:
        async with Server(echo) as server:
            pool = H1Pool(server.url, max_connections=10, pool_timeout=10)
            bodies = [b'{"n": %d}' % i for i in range(200)]
            answers = await asyncio.gather(*(post(pool, body, path=f"/r/{i}") for i, body in enumerate(bodies)))
            assert [a.body for a in answers] == bodies
            assert [a.headers["x-echo"] for a in answers] == [f"POST /r/{i} HTTP/1.1" for i in range(200)]
            assert server.connections <= 10
            await pool.aclose()

    run(go())


def test_header_injection_and_foreign_urls_are_refused(run):
    async def go() -> None:
        pool = H1Pool("http://127.0.0.1:9")
        with pytest.raises(ValueError):
            await pool.request("POST", "/", {"x-a": "1\r\nx-b: 2"}, b"", read_timeout=1)
        with pytest.raises(ValueError):
            await pool.request("POST", "http://other.test/", {}, b"", read_timeout=1)

    run(go())


def test_connect_timeout(run):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)  # never accepts: once its queue is full, the kernel drops further SYNs
    fillers = []
    try:
        for _ in range(4):
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(listener.getsockname())
            fillers.append(filler)

        async def go() -> None:
            pool = H1Pool(f"http://127.0.0.1:{listener.getsockname()[1]}", connect_timeout=0.2)
            with pytest.raises(H1ConnectTimeout):
                await post(pool)

        run(go())
    finally:
        for sock in [*fillers, listener]:
            sock.close()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = str(folder / "cert.pem"), str(folder / "key.pem")
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"),
            *("-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=localhost"),
            *("-addext", "subjectAltName=DNS:localhost"),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def test_https_with_sni_and_verification(run, certificate):
    cert, key = certificate
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    names: list[str | None] = []
    server_context.sni_callback = lambda sock, name, context: names.append(name)
    trusting = ssl.create_default_context(cafile=cert)

    async def echo_stream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = Peer(Server(echo), reader, writer, 1)
        try:
            await echo(peer)
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    async def go() -> None:
        server = await asyncio.start_server(echo_stream, "127.0.0.1", 0, ssl=server_context)
        port = server.sockets[0].getsockname()[1]
        try:
            pool = H1Pool(f"https://localhost:{port}", ssl_context=trusting)
            for i in range(3):
                assert (await post(pool, b"%d" % i)).body == b"%d" % i
            assert names == ["localhost"]  # SNI sent, one TLS connection kept alive
            await pool.aclose()
            with pytest.raises(H1ConnectError):  # the default context does not trust a self-signed certificate
                await post(H1Pool(f"https://localhost:{port}"))
        finally:
            server.close()

    run(go())

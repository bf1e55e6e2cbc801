"""Throwaway Redis servers for tests, started from the installed ``redis-server`` binary.

Each server runs in a new temporary directory on a free 127.0.0.1 port with persistence off
(``--save '' --appendonly no``), so a kill and restart comes back EMPTY, as an unpersisted production Redis
would. A server already running on the machine is never touched (nothing here uses the default port).
Without the binary the tests are skipped with how to install it, except in CI (``CI=true``), where they fail.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

INSTALL_HINT = (
    "install Redis (Debian/Ubuntu: apt-get install redis-server; or run "
    "MARGIN_INSTALL_TEST_DEPS=1 bash scripts/install-test-servers.sh), or point MARGIN_TEST_REDIS_SERVER at a "
    "redis-server "
    "or valkey-server binary"
)


class ServerUnavailable(RuntimeError):
    """No redis-server binary on this machine."""


def find_binary() -> str:
    override = os.environ.get("MARGIN_TEST_REDIS_SERVER")
    for candidate in (override, shutil.which("redis-server"), shutil.which("valkey-server"), "/usr/bin/redis-server"):
        if candidate and Path(candidate).exists():
            return candidate
    raise ServerUnavailable(f"no redis-server binary found: {INSTALL_HINT}")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class RedisServer:
    binary: str
    directory: Path
    port: int
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start (or start again, on the same port, empty) and wait until it answers PING."""
        command = [
            self.binary,
            "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--dir", str(self.directory), "--logfile", str(self.directory / "redis.log"), "--daemonize", "no",
        ]  # fmt: skip
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                log = (self.directory / "redis.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"redis-server exited at start ({self.process.returncode}): {log}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"redis-server on port {self.port} did not answer within 10 s")

    def kill(self) -> None:
        """SIGKILL: what a crash looks like to clients (connections reset, data gone)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def flush(self) -> None:
        import redis

        client = redis.Redis.from_url(self.url)
        try:
            client.flushall()
        finally:
            client.close()


def start_server() -> RedisServer:
    binary = find_binary()
    directory = Path(tempfile.mkdtemp(prefix="margin-redis-"))
    for attempt in range(3):
        server = RedisServer(binary, directory, _free_port())
        try:
            server.start()
            return server
        except RuntimeError:
            server.stop()
            if attempt == 2:
                shutil.rmtree(directory, ignore_errors=True)
                raise
    raise AssertionError("unreachable")


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _require() -> None:
    try:
        import redis  # noqa: F401
    except ImportError:
        message = "the redis client is not installed: pip install -e '.[dev]' (or 'margin[redis]')"
        if _in_ci():
            pytest.fail(message)
        pytest.skip(message)


def _server_or_skip() -> RedisServer:
    _require()
    try:
        return start_server()
    except ServerUnavailable as exc:
        if _in_ci():
            pytest.fail(f"CI must run the Redis tests: {exc}")
        pytest.skip(f"Redis tests skipped: {exc}")


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One throwaway Redis for the session (skipped without the binary, failed in CI)."""
    server = _server_or_skip()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.directory, ignore_errors=True)


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session server's URL, emptied for this test (restarted first if an earlier test killed it)."""
    if redis_server.process is None or redis_server.process.poll() is not None:
        redis_server.start()
    redis_server.flush()
    return redis_server.url


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A Redis of this test's own, which the test may kill and restart."""
    server = _server_or_skip()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.directory, ignore_errors=True)

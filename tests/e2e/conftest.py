"""Start the real gateway (``margin serve`` in a subprocess) for end-to-end tests with the official SDKs."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx2
import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class RunningGateway:
    base_url: str
    home: Path
    config: Path
    process: subprocess.Popen
    env: dict[str, str]

    def margin(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "margin", "--config", str(self.config), *args],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=60,
            check=check,
        )

    def flush_ledger(self) -> None:
        """Wait until every usage event the gateway has queued is committed (responses leave before)."""
        response = httpx2.post(
            self.base_url + "/v1/margin/ledger/flush", headers={"authorization": "Bearer mk-master-test"}, timeout=10
        )
        assert response.status_code == 200, response.text

    def create_key(self, *args: str) -> str:
        return self.margin("keys", "create", *args).stdout.strip()

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def start_gateway(
    tmp: Path,
    config_text: str,
    *,
    port: int | None = None,
    extra_env: dict[str, str] | None = None,
    serve_args: tuple[str, ...] = (),
) -> RunningGateway:
    port = port or free_port()
    home = tmp / "home"
    home.mkdir(parents=True, exist_ok=True)
    config = tmp / "margin.yaml"
    config.write_text(config_text)
    env = {**os.environ, "MARGIN_HOME": str(home), "MARGIN_MASTER_KEY": "mk-master-test", **(extra_env or {})}
    env.pop("MARGIN_CONFIG", None)
    log = open(tmp / "gateway.log", "ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "margin", "--config", str(config), "serve", "--port", str(port), *serve_args],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gateway exited early: {(tmp / 'gateway.log').read_text()}")
        try:
            if httpx2.get(base + "/health", timeout=0.5).status_code == 200:
                return RunningGateway(base, home, config, process, env)
        except httpx2.HTTPError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"gateway did not start: {(tmp / 'gateway.log').read_text()}")


@pytest.fixture(scope="module")
def gateway(tmp_path_factory) -> Iterator[RunningGateway]:
    tmp = tmp_path_factory.mktemp("gw")
    running = start_gateway(tmp, "gateway:\n  retries: {max_retries: 1, base_delay_ms: 1, max_delay_ms: 5}\n")
    yield running
    running.stop()

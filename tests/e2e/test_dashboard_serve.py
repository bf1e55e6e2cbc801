"""``margin serve`` tells where the dashboard is; with ``--demo-key`` (what ``make run`` does) and no key set, it
makes a dashboard key for that run, which opens the dashboard and nothing else."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import httpx2

from margin.cli.gateway import _announce_dashboard
from margin.config import MarginConfig

from .conftest import free_port


def test_demo_key_run_prints_a_working_dashboard_key(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("MARGIN_MASTER_KEY", "MARGIN_DASHBOARD_KEY")}
    env["MARGIN_HOME"] = str(tmp_path / "home")
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "margin", "serve", "--demo-key", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        found = None
        while time.monotonic() < deadline and found is None:
            assert process.poll() is None, log.read_text()
            found = re.search(r"dashboard: (\S+)  \(dashboard key for this run: (\S+)\)", log.read_text())
            time.sleep(0.05)
        assert found, log.read_text()
        url, key = found.groups()
        assert url == base + "/dashboard" and key.startswith("md-")
        while time.monotonic() < deadline:
            try:
                if httpx2.get(base + "/health", timeout=0.5).status_code == 200:
                    break
            except httpx2.HTTPError:
                time.sleep(0.05)
        overview = httpx2.get(base + "/dashboard/api/overview.json", headers={"authorization": f"Bearer {key}"})
        assert overview.status_code == 200 and overview.json()["page"] == "overview"
        assert httpx2.get(base + "/v1/margin/keys", headers={"authorization": f"Bearer {key}"}).status_code == 403
        assert httpx2.get(base + "/dashboard/api/overview.json").status_code == 401
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_serve_says_which_key_opens_the_dashboard(capsys, monkeypatch):
    config = MarginConfig()
    monkeypatch.delenv("MARGIN_DASHBOARD_KEY", raising=False)
    _announce_dashboard("http://h:1", config, has_master_key=False, demo=False)
    assert "http://h:1/dashboard is disabled: set MARGIN_DASHBOARD_KEY" in capsys.readouterr().out
    _announce_dashboard("http://h:1", config, has_master_key=True, demo=True)  # the master key: no demo key made
    out = capsys.readouterr().out
    assert "sign in with the master key" in out and "MARGIN_DASHBOARD_KEY" not in os.environ
    monkeypatch.setenv("MARGIN_DASHBOARD_KEY", "mine")
    _announce_dashboard("http://h:1", config, has_master_key=False, demo=True)
    out = capsys.readouterr().out
    assert "sign in with the key in MARGIN_DASHBOARD_KEY" in out and "mine" not in out
    assert os.environ["MARGIN_DASHBOARD_KEY"] == "mine"  # a key that is set is never replaced

"""Tasks through the real server: requests grouped by X-Margin-Task-Id, outcomes posted by the key that
made them (or set with the CLI), and the cost per successful task."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from decimal import Decimal

import httpx2
import openai
import pytest

from .conftest import start_gateway


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    running = start_gateway(tmp_path_factory.mktemp("tasks"), "gateway: {}\n")
    yield running
    running.stop()


def test_cost_per_successful_task(gw):
    key = gw.create_key("--team", "agents")
    other = gw.create_key("--team", "agents")
    client = openai.OpenAI(base_url=gw.base_url + "/v1", api_key=key, max_retries=0)
    costs = {}
    for task, steps in (("t-ok", 2), ("t-bad", 1)):
        for step in range(steps):
            raw = client.chat.completions.with_raw_response.create(
                model="gpt-4o-mini",
                max_tokens=30,
                messages=[{"role": "user", "content": f"{task} step {step}"}],
                extra_headers={"X-Margin-Task-Id": task},
            )
            costs[task] = costs.get(task, Decimal(0)) + Decimal(raw.headers["x-margin-cost"])
    url = gw.base_url + "/v1/margin/tasks/t-ok/outcome"
    assert (
        httpx2.post(url, json={"outcome": "success"}, headers={"authorization": f"Bearer {other}"}).status_code == 404
    )
    assert httpx2.post(url, json={"outcome": "maybe"}, headers={"authorization": f"Bearer {key}"}).status_code == 400
    ok = httpx2.post(url, json={"outcome": "success", "note": "merged"}, headers={"authorization": f"Bearer {key}"})
    assert ok.status_code == 200 and ok.json()["outcome"] == "success"

    def cli(*args):
        done = subprocess.run(
            [sys.executable, "-m", "margin", *args], env=gw.env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    cli("tasks", "outcome", "t-bad", "failure")
    gw.flush_ledger()
    report = json.loads(cli("report", "tasks", "--period", datetime.now(UTC).strftime("%Y-%m"), "--json"))
    assert (report["tasks"], report["succeeded"], report["failed"], report["requests"]) == (2, 1, 1, 3)
    total = costs["t-ok"] + costs["t-bad"]
    assert Decimal(report["total_cost"]) == total
    # Both tasks' spend was needed to get the one success.
    assert Decimal(report["cost_per_successful_task"]) == total.quantize(Decimal("0.000000001"))

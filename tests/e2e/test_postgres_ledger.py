"""The real gateway (``margin serve``) on a PostgreSQL ledger: requests through the official openai SDK, spend
read back through ``/v1/margin/spend``, ``margin spend`` and ``margin report overview``, all exact and equal
to the costs the gateway sent in its headers; a restart of the gateway keeps every event."""

from __future__ import annotations

import json
import signal
from datetime import UTC, datetime
from decimal import Decimal

import httpx2
import openai

from .conftest import start_gateway

MASTER = {"authorization": "Bearer mk-master-test"}


def test_gateway_on_postgres_meters_every_request_and_reports_it(tmp_path, pg_database):
    config = f"gateway:\n  database: {pg_database}\n  retries: {{max_retries: 1, base_delay_ms: 1, max_delay_ms: 5}}\n"
    gateway = start_gateway(tmp_path, config)
    try:
        assert "ledger: postgres postgresql://margin_test@127.0.0.1" in (tmp_path / "gateway.log").read_text()
        key = gateway.create_key("--user", "alice", "--team", "ml")
        client = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=key)
        costs = []
        for n in range(6):
            raw = client.chat.completions.with_raw_response.create(
                model=("gpt-4o-mini", "gpt-4o")[n % 2],
                messages=[{"role": "user", "content": f"Question number {n} for the ledger."}],
                max_tokens=40,
            )
            assert raw.parse().choices[0].message.content
            costs.append(Decimal(raw.headers["x-margin-cost"]))
        chunks = list(
            client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "Stream it."}], stream=True, max_tokens=30
            )
        )
        assert chunks
        served = httpx2.get(gateway.base_url + "/v1/margin/spend?by=team", headers=MASTER, timeout=10).json()
        (ml,) = [row for row in served["rows"] if row["group"] == "ml"]
        assert ml["requests"] == 7
        assert Decimal(str(ml["effective_cost"])) > sum(costs)  # the stream's cost comes on top
        stream_cost = Decimal(str(ml["effective_cost"])) - sum(costs)

        cli = json.loads(gateway.margin("spend", "--json", "--by", "team").stdout)
        cli_ml = next(row for row in cli["rows"] if row["group"] == "ml")
        assert Decimal(str(cli_ml["effective_cost"])) == sum(costs) + stream_cost and cli_ml["requests"] == 7

        period = datetime.now(UTC).strftime("%Y-%m")
        overview = json.loads(gateway.margin("report", "overview", "--period", period, "--json").stdout)
        assert overview["total"]["requests"] == 7
        # The rollups keep nano-dollars (each event rounded once): equal to the exact sum within 1e-9 per event.
        assert abs(Decimal(str(overview["total"]["effective_cost"])) - (sum(costs) + stream_cost)) <= Decimal("7e-9")
        assert {row["group"] for row in overview["by_model"]} == {"gpt-4o-mini", "gpt-4o"}
    finally:
        assert gateway.stop() in (0, -signal.SIGTERM)  # uvicorn re-raises the signal after its graceful shutdown
    log = (tmp_path / "gateway.log").read_text()
    assert "Traceback" not in log and "write failed" not in log, log

    # A new gateway process on the same database: every event is still there, nothing reconciled twice.
    restarted = start_gateway(tmp_path, config)
    try:
        after = httpx2.get(restarted.base_url + "/v1/margin/spend", headers=MASTER, timeout=10).json()
        assert after["rows"][0]["requests"] == 7
    finally:
        restarted.stop()

"""A hard budget under load: 200 concurrent requests against a budget that allows about 20 of them.
The ledger's total spend never exceeds the budget, and every request either succeeded or got a budget error."""

from __future__ import annotations

import asyncio
import sqlite3
from decimal import Decimal

import openai

from margin.pricing import TokenUsage, load_catalog

from .conftest import start_gateway

MAX_TOKENS = 100
PROMPT = [{"role": "user", "content": "How much does this cost?"}]


def test_200_concurrent_requests_never_overspend(tmp_path):
    # Budget for ~20 worst-case requests: the prompt (~13 tokens, +2% margin) plus 100 output tokens.
    worst = load_catalog().price(TokenUsage(input_tokens=20, output_tokens=MAX_TOKENS), "gpt-4o-mini").effective_cost
    budget = (worst * 20).quantize(Decimal("0.000001"))
    config = f"""
gateway:
  retries: {{max_retries: 0}}
  budgets:
    - name: hard-cap
      scope: global
      period: day
      amount: {budget}
      block: 1.0
"""
    gw = start_gateway(tmp_path, config)
    try:
        key = gw.create_key("--team", "load")

        async def one(client: openai.AsyncOpenAI) -> str:
            try:
                await client.chat.completions.create(model="gpt-4o-mini", messages=PROMPT, max_tokens=MAX_TOKENS)
                return "ok"
            except openai.APIStatusError as exc:
                assert exc.status_code == 402, exc
                assert exc.body["code"] == "budget_exceeded"
                return "budget"

        async def run() -> list[str]:
            client = openai.AsyncOpenAI(base_url=gw.base_url + "/v1", api_key=key, max_retries=0, timeout=60)
            try:
                return await asyncio.gather(*(one(client) for _ in range(200)))
            finally:
                await client.close()

        outcomes = asyncio.run(run())
    finally:
        gw.stop()
    assert set(outcomes) <= {"ok", "budget"}
    assert outcomes.count("ok") >= 15, outcomes.count("ok")
    assert outcomes.count("budget") >= 100
    with sqlite3.connect(gw.home / "ledger.db") as db:
        spent = sum((Decimal(v) for (v,) in db.execute("select effective_cost from usage_events")), Decimal(0))
        ok_events = db.execute("select count(*) from usage_events where status = 'ok'").fetchone()[0]
        open_reservations = db.execute("select count(*) from reservations").fetchone()[0]
    assert spent <= budget
    assert ok_events == outcomes.count("ok")
    assert open_reservations == 0

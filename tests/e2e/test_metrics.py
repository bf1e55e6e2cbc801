"""GET /metrics through the real server: Prometheus text with requests, spend, tokens, cache decisions and
budget utilization; the master key is required unless gateway.metrics_open."""

from __future__ import annotations

import httpx2
import openai
import pytest

from .conftest import start_gateway

CONFIG = """
gateway:
  budgets:
    - {name: daily, scope: global, period: day, amount: 100}
  levers:
    - name: cached
      match: {models: [gpt-4o-mini]}
      cache: {}
"""


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    running = start_gateway(tmp_path_factory.mktemp("metrics"), CONFIG)
    yield running
    running.stop()


def _value(text: str, prefix: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix))


def test_metrics_count_requests_spend_cache_and_budgets(gw):
    key = gw.create_key("--team", "obs")
    client = openai.OpenAI(base_url=gw.base_url + "/v1", api_key=key, max_retries=0)
    for _ in range(3):
        client.chat.completions.create(
            model="gpt-4o-mini", temperature=0, max_tokens=2000, messages=[{"role": "user", "content": "count me"}]
        )
    assert httpx2.get(gw.base_url + "/metrics").status_code == 401
    text = httpx2.get(gw.base_url + "/metrics", headers={"authorization": "Bearer mk-master-test"}).text
    assert "# TYPE margin_requests_total counter" in text
    assert _value(text, 'margin_requests_total{model="gpt-4o-mini",status="ok"}') == 1
    assert _value(text, 'margin_requests_total{model="gpt-4o-mini",status="cached"}') == 2
    assert _value(text, 'margin_cache_decisions_total{decision="hit"}') == 2
    assert _value(text, 'margin_spend_usd_total{model="gpt-4o-mini",team="obs"}') > 0
    assert _value(text, 'margin_tokens_total{model="gpt-4o-mini",type="output"}') > 0
    assert 0 < _value(text, 'margin_budget_utilization_ratio{budget="daily",scope="*"}') < 1
    assert "margin_ledger_writes_in_flight" in text


def test_the_gateway_watches_for_spend_spikes_in_the_background(tmp_path):
    import asyncio
    import time
    from datetime import UTC, datetime, timedelta
    from decimal import Decimal

    from margin.store.sqlite import SQLiteLedger
    from margin.usage import UsageEvent

    home = tmp_path / "home"
    home.mkdir()
    now = datetime.now(UTC).replace(minute=30, second=0, microsecond=0)

    async def seed():
        ledger = SQLiteLedger(home / "ledger.db")
        for i, h in enumerate([*range(2, 40), 1, 1]):
            when = now - timedelta(hours=h, minutes=i % 3)
            cost = Decimal("5.00") if h == 1 else Decimal("1.00")
            await ledger.write_event(
                UsageEvent(
                    event_id=f"s{i}",
                    request_id=f"s{i}",
                    attempt=0,
                    started_at=when,
                    finished_at=when,
                    status="ok",
                    endpoint="chat.completions",
                    requested_model="m",
                    tags={"team": "ml"},
                    list_cost=cost,
                    effective_cost=cost,
                )
            )
        await ledger.aclose()

    asyncio.run(seed())
    gw = start_gateway(tmp_path, "insights:\n  alerts: {enabled: true, interval_seconds: 0.3}\n")
    try:
        deadline = time.monotonic() + 15
        kinds: list[str] = []
        while time.monotonic() < deadline and "spend_spike" not in kinds:
            time.sleep(0.3)
            found = httpx2.get(gw.base_url + "/v1/margin/alerts", headers={"authorization": "Bearer mk-master-test"})
            kinds = [a["kind"] for a in found.json()["alerts"]]
        assert "spend_spike" in kinds
    finally:
        gw.stop()

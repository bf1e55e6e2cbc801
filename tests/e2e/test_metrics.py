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

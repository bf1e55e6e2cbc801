"""OpenTelemetry spans with the GenAI conventions, one per usage event, through the real ASGI app in process
(httpx2's ASGI transport) with an in-memory exporter; off by default."""

from __future__ import annotations

import asyncio

import httpx2
import pytest

pytest.importorskip("opentelemetry.sdk")
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from margin.config import MarginConfig
from margin.gateway.app import create_app
from margin.gateway.config import GatewayConfig, OtelConfig
from margin.gateway.state import build_gateway
from margin.gateway.telemetry import build_emitter


def test_off_by_default(tmp_path):
    assert build_emitter(OtelConfig()) is None


def test_a_span_per_metered_call_with_genai_attributes(tmp_path, monkeypatch):
    monkeypatch.setenv("MARGIN_MASTER_KEY", "mk-master-otel")
    gw = build_gateway(MarginConfig(home=str(tmp_path), gateway=GatewayConfig()), database=tmp_path / "ledger.db")
    exporter = InMemorySpanExporter()
    gw.spans = build_emitter(OtelConfig(enabled=True), exporter=exporter)  # as gateway.otel.enabled builds it

    async def go():
        transport = httpx2.ASGITransport(app=create_app(gw))
        async with httpx2.AsyncClient(transport=transport, base_url="http://margin") as client:
            response = await client.post(
                "/v1/chat/completions",
                headers={"authorization": "Bearer mk-master-otel", "x-margin-tags": "team=ml"},
                json={"model": "gpt-4o-mini", "max_tokens": 20, "messages": [{"role": "user", "content": "trace"}]},
            )
            assert response.status_code == 200, response.text
            return response

    try:
        response = asyncio.run(go())
    finally:
        asyncio.run(gw.aclose())
    (span,) = exporter.get_finished_spans()
    a = span.attributes
    assert span.name == "chat gpt-4o-mini"
    assert a["gen_ai.operation.name"] == "chat" and a["gen_ai.request.model"] == "gpt-4o-mini"
    assert a["gen_ai.provider.name"] == "mock" and a["gen_ai.response.model"] == "gpt-4o-mini"
    assert a["gen_ai.usage.input_tokens"] > 0 and a["gen_ai.usage.output_tokens"] > 0
    assert a["margin.cost.usd"] == pytest.approx(float(response.headers["x-margin-cost"]))
    assert a["margin.request_id"] == response.headers["x-margin-request-id"] and a["margin.tag.team"] == "ml"
    assert span.end_time >= span.start_time

"""A lever route with a learned router: loaded with its report at start-up (refused without one), and
deciding simple vs. not from the complexity signals; the decision is recorded."""

from __future__ import annotations

import asyncio
import json
import random
from datetime import UTC, datetime

import pytest

from margin.config import MarginConfig
from margin.errors import MarginError
from margin.gateway import pipeline
from margin.gateway.config import GatewayConfig, ModelRouteConfig
from margin.gateway.levers_config import LeverRoute, RouteMatch, RoutingPolicy
from margin.gateway.state import build_gateway
from margin.levers import DEFAULT_WEIGHTS, train_router
from margin.levers._learned import Example


def _router_file(tmp_path):
    rng = random.Random(3)
    examples = []
    for i in range(600):
        signals = {name: rng.choice([0.0, 0.25, 0.5, 1.0]) for name in DEFAULT_WEIGHTS}
        examples.append(Example(f"r{i}", signals, signals["reasoning"] < 0.5 and signals["code"] == 0))
    path = tmp_path / "router.json"
    train_router(examples, now=datetime(2026, 11, 23, tzinfo=UTC)).save(path)
    return path


def _gateway(tmp_path, learned):
    models = [ModelRouteConfig(name=n, provider="mock") for n in ("gpt-4o-mini", "gpt-4o")]
    lever = LeverRoute(
        name="auto",
        match=RouteMatch(models=["auto"]),
        routing=RoutingPolicy(
            tiers={"simple": "gpt-4o-mini", "standard": "gpt-4o", "complex": "gpt-4o"}, learned=str(learned)
        ),
    )
    config = MarginConfig(home=str(tmp_path), gateway=GatewayConfig(models=models, levers=[lever]))
    return build_gateway(config, database=tmp_path / "ledger.db")


def _plan(gw, content):
    body = {"model": "auto", "messages": [{"role": "user", "content": content}], "max_tokens": 20}
    principal = pipeline.Principal(key=None, key_id="k", tags={})
    return pipeline.plan_request(
        gw,
        wire="openai",
        endpoint="chat.completions",
        body=body,
        body_size=len(json.dumps(body)),
        headers={},
        principal=principal,
    )


def test_the_learned_router_decides_simple_or_not_and_says_so(tmp_path):
    gw = _gateway(tmp_path, _router_file(tmp_path))
    try:
        easy = _plan(gw, "Translate 'good morning' to German.")
        hard = _plan(gw, "Analyze and prove step by step why this algorithm is correct, then design a better one.")
        assert easy.decisions["routing"] == "learned" and easy.route.name == "gpt-4o-mini"
        assert hard.decisions["tier"] != "simple" and hard.route.name == "gpt-4o"
        assert 0 <= hard.decisions["cheap_ok"] < easy.decisions["cheap_ok"] <= 1
        assert "heuristic_tier" in hard.decisions
    finally:
        asyncio.run(gw.aclose())


def test_a_router_file_without_its_report_is_refused_at_start_up(tmp_path):
    path = _router_file(tmp_path)
    data = json.loads(path.read_text())
    data.pop("report")
    path.write_text(json.dumps(data))
    with pytest.raises(MarginError, match="report"):
        _gateway(tmp_path, path)

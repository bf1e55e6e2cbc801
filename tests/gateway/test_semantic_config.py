"""A lever route's ``cache.semantic.verifier`` picks the semantic cache's verifier in the gateway: the
hand-written rules by default (threshold 0.94), the learned pair verifier on request (threshold: its floor)."""

from __future__ import annotations

import pytest

from margin.cache import LearnedVerifier, verify
from margin.config import MarginConfig
from margin.gateway.config import GatewayConfig, ModelRouteConfig
from margin.gateway.levers_config import CachePolicy, LeverRoute, RouteMatch, SemanticPolicy
from margin.gateway.state import build_gateway


def _caches(tmp_path, **semantic):
    lever = LeverRoute(
        name="faq",
        match=RouteMatch(models=["gpt-4o-mini"]),
        cache=CachePolicy(semantic=SemanticPolicy(**semantic)),
    )
    models = [ModelRouteConfig(name="gpt-4o-mini", provider="mock")]
    config = MarginConfig(home=str(tmp_path), gateway=GatewayConfig(models=models, levers=[lever]))
    return build_gateway(config, database=tmp_path / "ledger.db").semantic_caches


def test_rules_are_the_default_verifier(tmp_path):
    cache = _caches(tmp_path)["faq"]
    assert cache.verifier is verify
    assert not cache.learned
    assert cache.threshold == pytest.approx(0.94)


def test_learned_verifier_on_request_with_its_own_floor(tmp_path):
    cache = _caches(tmp_path, verifier="learned")["faq"]
    assert cache.learned
    assert isinstance(cache.verifier, LearnedVerifier)
    assert cache.threshold == pytest.approx(cache.verifier.min_similarity)
    assert cache.threshold < 0.94


def test_an_explicit_threshold_wins_over_the_verifier_floor(tmp_path):
    cache = _caches(tmp_path, verifier="learned", threshold=0.9)["faq"]
    assert cache.learned
    assert cache.threshold == pytest.approx(0.9)


def test_an_unknown_verifier_is_refused_with_the_choices(tmp_path):
    with pytest.raises(ValueError, match=r"rules.*learned"):
        SemanticPolicy(verifier="bert")

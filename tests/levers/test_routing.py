"""Route rules: tier map, decisions, cascades upward, budget downgrades downward (Decimal money)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from margin.errors import ConfigError
from margin.levers import (
    ComplexityScore,
    TierMap,
    cascade_order,
    choose_model,
    downgrade_order,
    downgrade_to_fit,
)

TIERS = TierMap(simple="small", standard="mid", complex="frontier")


def score(tier: str, value: float) -> ComplexityScore:
    return ComplexityScore(score=value, tier=tier, signals={})  # type: ignore[arg-type]


@pytest.mark.parametrize(("tier", "model"), [("simple", "small"), ("standard", "mid"), ("complex", "frontier")])
def test_choose_model_follows_the_tier(tier, model):
    decision = choose_model(score(tier, 0.3), TIERS)
    assert (decision.model, decision.tier, decision.pinned) == (model, tier, False)
    assert "0.3" in decision.reason and tier in decision.reason


def test_pinned_model_is_kept_and_reports_its_tier():
    decision = choose_model(score("complex", 0.9), TIERS, pinned="mid")
    assert (decision.model, decision.tier, decision.pinned) == ("mid", "standard", True)
    elsewhere = choose_model(score("simple", 0.0), TIERS, pinned="someone-else")
    assert (elsewhere.model, elsewhere.tier) == ("someone-else", "simple")
    assert "pinned" in elsewhere.reason


def test_cascade_goes_upward_without_duplicates():
    assert cascade_order("simple", TIERS) == ("small", "mid", "frontier")
    assert cascade_order("standard", TIERS) == ("mid", "frontier")
    assert cascade_order("complex", TIERS) == ("frontier",)
    shared = TierMap(simple="small", standard="big", complex="big")
    assert cascade_order("simple", shared) == ("small", "big")
    with pytest.raises(ValueError):
        cascade_order("huge", TIERS)  # type: ignore[arg-type]


def test_downgrade_order_goes_downward():
    assert downgrade_order("complex", TIERS) == ("frontier", "mid", "small")
    assert downgrade_order("simple", TIERS) == ("small",)


def test_tier_map_validation_and_lookup():
    with pytest.raises(ConfigError):
        TierMap(simple="", standard="mid", complex="frontier")
    assert TIERS.tier_of("frontier") == "complex"
    assert TIERS.tier_of("nope") is None
    assert TierMap(simple="a", standard="a", complex="b").tier_of("a") == "simple"


COSTS = {"frontier": Decimal("0.0450"), "mid": Decimal("0.0090"), "small": Decimal("0.0006")}


def test_downgrade_to_fit_picks_the_first_affordable_model():
    order = downgrade_order("complex", TIERS)
    assert downgrade_to_fit(order, COSTS, None) == ("frontier", False)  # no budget applies
    assert downgrade_to_fit(order, COSTS, Decimal("1")) == ("frontier", False)
    assert downgrade_to_fit(order, COSTS, Decimal("0.0450")) == ("frontier", False)  # equal fits
    assert downgrade_to_fit(order, COSTS, Decimal("0.0449")) == ("mid", True)
    assert downgrade_to_fit(order, COSTS, Decimal("0.0006")) == ("small", True)


def test_downgrade_to_fit_when_nothing_fits_keeps_the_first_model():
    order = downgrade_order("complex", TIERS)
    assert downgrade_to_fit(order, COSTS, Decimal("0.0005")) == ("frontier", False)
    assert downgrade_to_fit(order, COSTS, Decimal("0")) == ("frontier", False)


def test_downgrade_to_fit_refuses_floats_and_missing_costs():
    with pytest.raises(TypeError):
        downgrade_to_fit(("mid",), {"mid": 0.009}, Decimal("1"))  # type: ignore[dict-item]
    with pytest.raises(TypeError):
        downgrade_to_fit(("mid",), COSTS, 0.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        downgrade_to_fit(("other",), COSTS, Decimal("1"))
    with pytest.raises(ValueError):
        downgrade_to_fit((), COSTS, Decimal("1"))

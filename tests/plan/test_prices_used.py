"""Every priced planner result records which price was used: its source and check date."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from margin.plan import PlanContext, get_model, parse_scenario
from margin.pricing import ModelRate

CHECKED = date(2026, 10, 1)


def _ctx() -> PlanContext:
    rates = {
        "big": ModelRate(
            model="big",
            provider="acme",
            input_per_mtok=Decimal(5),
            output_per_mtok=Decimal(30),
            source="test catalog",
            prices_checked=CHECKED,
            discount=Decimal("0.1"),
        ),
        "small": ModelRate(
            model="small",
            provider="acme",
            input_per_mtok=Decimal(1),
            output_per_mtok=Decimal(5),
            source="test catalog",
            prices_checked=CHECKED,
        ),
    }
    return PlanContext(resolve_rate=rates.__getitem__)


def test_savings_records_both_prices():
    planner = get_model("savings")
    scenario = parse_scenario(
        planner.scenario_type,
        {
            "requests_per_day": 1000,
            "input_tokens": 2000,
            "output_tokens": 1000,
            "model": "big",
            "routing": {"share": "0.5", "target_model": "small"},
        },
    )
    result = planner.compute(scenario, _ctx())
    assert [(p.model, p.source, p.prices_checked) for p in result.prices_used] == [
        ("big", "test catalog", CHECKED),
        ("small", "test catalog", CHECKED),
    ]
    assert result.prices_used[0].discount == Decimal("0.1")
    assert any("Prices used" in note and "test catalog" in note for note in planner.report(result).notes)


def test_forecast_records_model_prices_but_not_given_unit_costs():
    planner = get_model("forecast")
    scenario = parse_scenario(
        planner.scenario_type,
        {
            "months": 3,
            "products": [
                {"name": "chat", "monthly_requests": 1000, "model": "big", "input_tokens": 100, "output_tokens": 10},
                {"name": "search", "monthly_requests": 1000, "unit_cost": "0.002"},
            ],
        },
    )
    result = planner.compute(scenario, _ctx())
    assert [(p.model, p.source) for p in result.prices_used] == [("big", "test catalog")]

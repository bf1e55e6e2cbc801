"""Tests for the `tco` planner model (the seed's TCOAnalysis)."""

from __future__ import annotations

from decimal import Decimal, localcontext

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from margin.errors import ScenarioError, UnknownModelError
from margin.money import MONEY_CONTEXT
from margin.plan import PlanContext, get_model, parse_scenario
from margin.plan.tco import MODEL, TCOResult, TCOScenario, compute, report
from margin.pricing.rates import ModelRate

D = Decimal
_RATES = {"fake-model": ModelRate(model="fake-model", input_per_mtok=D(1), output_per_mtok=D(2))}


def _resolve(name: str) -> ModelRate:
    try:
        return _RATES[name]
    except KeyError:
        raise UnknownModelError(name, []) from None


CTX = PlanContext(resolve_rate=_resolve)
TOLERANCE = D("1e-40")


@pytest.fixture(autouse=True)
def _money_context():
    """Expected values are computed with the same 50-digit context the model uses."""
    with localcontext(MONEY_CONTEXT):
        yield


def run(data: dict) -> TCOResult:
    return compute(parse_scenario(TCOScenario, data), CTX)


def item(result: TCOResult, key: str):
    return next(it for it in result.items if it.key == key)


# The seed's recommendation-system table, as scenario input.
SEED_TABLE = {
    "compute_inference": 28000,
    "compute_training": 8000,
    "storage": 3000,
    "external_apis": 5000,
    "data_processing": 4000,
    "engineering_development": 12500,
    "engineering_operations": 7500,
    "engineering_maintenance": 5000,
    "monitoring_observability": 3000,
    "compliance_security": 2500,
    "disaster_recovery": 1500,
}


def test_registered_under_cli_name():
    assert get_model("tco") is MODEL
    assert MODEL.name == "tco"


def test_seed_table_totals_and_shares():
    r = run(SEED_TABLE)
    direct = D(28000) + D(8000) + D(3000) + D(5000) + D(4000)
    indirect = D(12500) + D(7500) + D(5000)
    hidden = D(3000) + D(2500) + D(1500)
    total = direct + indirect + hidden
    assert r.monthly_direct == direct
    assert r.monthly_indirect == indirect
    assert r.monthly_hidden == hidden
    assert r.monthly_tco == total
    assert r.annual_tco == total * 12
    assert r.months_per_year == 12
    for key, amount in SEED_TABLE.items():
        it = item(r, key)
        assert it.monthly == D(amount)
        assert abs(it.share - D(amount) / total) <= D("1e-20")
    assert sum(it.share for it in r.items) == 1
    assert r.direct_share + r.indirect_share + r.hidden_share == 1
    assert r.direct_share == direct / total
    assert r.engineering_monthly == indirect
    assert r.engineering_share == indirect / total
    assert r.compute_monthly == D(28000) + D(8000)
    assert r.compute_share == (D(28000) + D(8000)) / total
    assert r.hidden_pct_of_direct == hidden / direct
    assert r.cost_per_unit is None
    assert r.scale == []


def test_example_scenario_parses_and_computes():
    data = yaml.safe_load(MODEL.example)
    scenario = parse_scenario(TCOScenario, data)
    r = compute(scenario, CTX)
    ftes = data["engineering_fte"]
    indirect = sum(D(str(f["fte"])) * D(f["annual_cost"]) / 12 for f in ftes)
    direct = sum(
        D(data[k]) for k in ("compute_inference", "compute_training", "storage", "external_apis", "data_processing")
    )
    hidden = sum(D(data[k]) for k in ("monitoring_observability", "compliance_security", "disaster_recovery"))
    assert r.monthly_indirect == indirect
    assert r.monthly_tco == direct + indirect + hidden
    assert r.cost_per_unit == r.monthly_tco / data["monthly_units"]
    assert len(r.scale) == 1
    assert r.model_dump(mode="json")["monthly_tco"] == str(r.monthly_tco)
    rep = report(r)
    assert rep.csv_table == 0
    assert len(rep.tables) == 3
    assert rep.notes


def test_engineering_fte_exercise_1():
    # Exercise 1: 4x L4 at $0.50/h around the clock, 50,000 API calls at $0.02, 0.5 + 0.2 FTE at $180k.
    inference = 4 * D("0.50") * 24 * 30
    apis = 50000 * D("0.02")
    r = run(
        {
            "compute_inference": str(inference),
            "external_apis": str(apis),
            "storage": "12.65",
            "engineering_fte": [
                {"role": "ML engineer", "fte": 0.5, "annual_cost": 180000},
                {"role": "DevOps", "fte": 0.2, "annual_cost": 180000},
            ],
            "hidden_pct_of_direct": 0.15,
            "monthly_units": 500000,
            "unit_name": "conversation",
            "scale_units": [2000000],
        }
    )
    direct = inference + apis + D("12.65")
    engineering = D("0.5") * 180000 / 12 + D("0.2") * 180000 / 12
    hidden = direct * D("0.15")
    total = direct + engineering + hidden
    assert item(r, "engineering_fte[0]").monthly == D("0.5") * 180000 / 12
    assert item(r, "engineering_fte[1]").monthly == D("0.2") * 180000 / 12
    assert item(r, "engineering_fte[0]").category == "indirect"
    assert r.monthly_indirect == engineering
    assert item(r, "hidden_pct_of_direct").monthly == hidden
    assert r.monthly_tco == total
    assert r.cost_per_unit == total / 500000
    # Task 5: only external_apis scale (x4); hidden costs follow the direct cost; engineering is fixed.
    point = r.scale[0]
    direct_2m = inference + D("12.65") + apis * 4
    total_2m = direct_2m + engineering + direct_2m * D("0.15")
    assert point.volume_factor == 4
    assert point.monthly_direct == direct_2m
    assert point.monthly_indirect == engineering
    assert point.monthly_hidden == direct_2m * D("0.15")
    assert point.monthly_tco == total_2m
    assert point.cost_per_unit == total_2m / 2000000
    assert point.change_in_cost_per_unit == (total_2m / 2000000) / (total / 500000) - 1
    assert point.change_in_cost_per_unit < 0


def test_scale_with_compute_inference_variable():
    r = run(
        {
            "compute_inference": 1000,
            "external_apis": 500,
            "storage": 100,
            "engineering_operations": 2000,
            "monitoring_observability": 50,
            "monthly_units": 1000,
            "scale_units": [3000, 500],
            "variable_items": ["external_apis", "compute_inference"],
        }
    )
    up, down = r.scale
    assert up.monthly_direct == D(100) + (D(1000) + D(500)) * 3
    assert up.monthly_tco == up.monthly_direct + D(2000) + D(50)
    assert down.monthly_direct == D(100) + (D(1000) + D(500)) / 2
    assert down.cost_per_unit == down.monthly_tco / 500
    assert down.change_in_cost_per_unit > 0
    assert r.variable_monthly == D(1500)


def test_scale_with_nothing_variable_is_pure_fixed_cost():
    r = run({"compute_inference": 900, "monthly_units": 100, "scale_units": [300], "variable_items": []})
    assert r.scale[0].monthly_tco == D(900)
    assert r.scale[0].cost_per_unit == D(900) / 300


def test_per_item_hidden_fractions_and_mixed_amount():
    r = run(
        {
            "compute_inference": 10000,
            "external_apis": 2000,
            "compliance_security_pct": 0.07,
            "monitoring_observability_pct": 0.04,
            "disaster_recovery": 300,
        }
    )
    direct = D(12000)
    assert item(r, "compliance_security").monthly == direct * D("0.07")
    assert item(r, "monitoring_observability").monthly == direct * D("0.04")
    assert item(r, "disaster_recovery").monthly == D(300)
    assert item(r, "compliance_security").basis == "7% of direct"
    assert r.monthly_hidden == direct * D("0.07") + direct * D("0.04") + D(300)


def test_hidden_pct_with_zero_direct_is_zero():
    r = run({"engineering_operations": 5000, "hidden_pct_of_direct": 0.15})
    assert r.monthly_hidden == 0
    assert r.hidden_pct_of_direct is None
    assert r.monthly_tco == D(5000)
    assert r.indirect_share == 1


@pytest.mark.parametrize("item_name", ["compliance_security", "monitoring_observability", "disaster_recovery"])
def test_amount_and_pct_for_same_item_is_an_error(item_name):
    with pytest.raises(ScenarioError) as exc:
        parse_scenario(TCOScenario, {"compute_inference": 100, item_name: 10, f"{item_name}_pct": 0.05})
    assert item_name in str(exc.value)
    assert f"{item_name}_pct" in str(exc.value)


@pytest.mark.parametrize("other", [{"monitoring_observability": 10}, {"disaster_recovery_pct": 0.03}])
def test_total_hidden_pct_with_per_item_field_is_an_error(other):
    with pytest.raises(ScenarioError) as exc:
        parse_scenario(TCOScenario, {"compute_inference": 100, "hidden_pct_of_direct": 0.15, **other})
    assert "hidden_pct_of_direct" in str(exc.value)
    assert next(iter(other)) in str(exc.value)


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({}, "compute_training"),
        ({"compute_inference": 0, "hidden_pct_of_direct": 0.2}, "compute_inference"),
        ({"compute_inference": -1}, "compute_inference"),
        ({"storage": "abc"}, "storage"),
        ({"compute_inference": 100, "hidden_pct_of_direct": 1.5}, "hidden_pct_of_direct"),
        ({"compute_inference": 100, "compliance_security_pct": -0.1}, "compliance_security_pct"),
        ({"compute_inference": 100, "scale_units": [10]}, "scale_units"),
        ({"compute_inference": 100, "monthly_units": 0}, "monthly_units"),
        ({"compute_inference": 100, "monthly_units": 10, "scale_units": [0]}, "scale_units"),
        ({"compute_inference": 100, "variable_items": ["engineering_operations"]}, "variable_items"),
        ({"compute_inference": 100, "variable_items": ["storage", "storage"]}, "variable_items"),
        (
            {"compute_inference": 100, "engineering_fte": [{"role": "ML", "fte": 0, "annual_cost": 1}]},
            "engineering_fte.0.fte",
        ),
        (
            {"compute_inference": 100, "engineering_fte": [{"role": "ML", "fte": 1}]},
            "engineering_fte.0.annual_cost",
        ),
        ({"compute_inference": 100, "typo_field": 1}, "typo_field"),
    ],
)
def test_bad_scenarios_name_the_field(data, field):
    with pytest.raises(ScenarioError) as exc:
        parse_scenario(TCOScenario, data)
    assert field in str(exc.value)


def test_warnings_for_missing_hidden_and_engineering():
    rep = report(run({"compute_inference": 1000}))
    text = " ".join(rep.warnings)
    assert "No hidden costs" in text
    assert "No engineering cost" in text


def test_warning_for_pct_outside_seed_range_and_low_hidden():
    r = run({"compute_inference": 1000, "engineering_operations": 10, "compliance_security_pct": 0.01})
    text = " ".join(report(r).warnings)
    assert "compliance_security_pct" in text
    assert "below the seed's 10-20%" in text


def test_no_hidden_warning_within_ranges():
    r = run(
        {
            "compute_inference": 1000,
            "engineering_operations": 10,
            "compliance_security_pct": 0.07,
            "monitoring_observability_pct": 0.04,
            "disaster_recovery_pct": 0.03,
        }
    )
    assert report(r).warnings == ()


def test_report_omits_zero_items_and_has_subtotals():
    r = run({"compute_inference": 1000, "engineering_operations": 500, "disaster_recovery": 100})
    rep = report(r)
    main = rep.tables[0]
    labels = [row[1] for row in main.rows]
    assert "Storage" not in labels
    assert "Inference compute" in labels
    assert "Direct subtotal" in labels and "Hidden subtotal" in labels
    assert main.rows[-2][3] == r.monthly_tco
    assert main.rows[-1][3] == r.annual_tco
    assert len(rep.tables) == 2  # no scale table without scale_units


def test_shares_split_thirds_exactly():
    r = run({"compute_inference": 1, "storage": 1, "external_apis": 1})
    shares = [it.share for it in r.items if it.monthly]
    assert sum(r.share for r in r.items) == 1
    assert max(shares) - min(shares) == D("1e-20")


_amount = st.decimals(min_value=0, max_value=10**7, places=2, allow_nan=False, allow_infinity=False)


@settings(max_examples=60, deadline=None)
@given(amounts=st.lists(_amount, min_size=11, max_size=11), pct=st.none() | st.decimals(0, 1, places=3))
def test_property_shares_sum_to_exactly_one_and_annual_is_12x(amounts, pct):
    keys = list(SEED_TABLE)
    data = dict(zip(keys, amounts, strict=True))
    if pct is not None:
        for k in ("monitoring_observability", "compliance_security", "disaster_recovery"):
            data.pop(k)
        data["hidden_pct_of_direct"] = pct
    if not any(data[k] for k in data if k != "hidden_pct_of_direct"):
        data["storage"] = D(1)
    r = run(data)
    assert sum((it.share for it in r.items), D(0)) == 1
    assert r.direct_share + r.indirect_share + r.hidden_share == 1
    assert r.annual_tco == 12 * r.monthly_tco
    assert r.monthly_tco == sum((it.monthly for it in r.items), D(0))
    for it in r.items:
        assert abs(it.share - it.monthly / r.monthly_tco) <= D("1e-20")


@settings(max_examples=40, deadline=None)
@given(
    fixed=_amount,
    variable=_amount.filter(lambda v: v > 0),
    units=st.integers(1, 10**6),
    scale=st.integers(1, 10**7),
)
def test_property_scaling_is_linear_in_variable_items(fixed, variable, units, scale):
    r = run(
        {
            "storage": fixed,
            "external_apis": variable,
            "hidden_pct_of_direct": 0.1,
            "monthly_units": units,
            "scale_units": [scale],
        }
    )
    point = r.scale[0]
    factor = D(scale) / D(units)
    direct = fixed + variable * factor
    assert abs(point.monthly_tco - (direct + direct * D("0.1"))) <= TOLERANCE
    # More volume with the same fixed costs never raises the cost per unit (equal when there are no fixed
    # costs, up to the last of the 50 digits a division keeps: hence the tolerance).
    if scale > units:
        assert point.cost_per_unit <= r.cost_per_unit + TOLERANCE

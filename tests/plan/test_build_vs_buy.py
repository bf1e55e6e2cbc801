"""Tests for the `build-vs-buy` planner model (the seed's BuildVsBuyAnalysis)."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, localcontext

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from margin.errors import ScenarioError, UnknownModelError
from margin.money import MONEY_CONTEXT
from margin.plan import PlanContext, get_model, parse_scenario
from margin.plan.build_vs_buy import (
    CONFIDENCE_AGREE,
    CONFIDENCE_DISAGREE,
    CONFIDENCE_NO_FACTORS,
    MODEL,
    BuildVsBuyResult,
    BuildVsBuyScenario,
    compute,
    find_breakeven,
    report,
)
from margin.pricing.rates import ModelRate

D = Decimal
_RATES = {"fake-model": ModelRate(model="fake-model", input_per_mtok=D(1), output_per_mtok=D(2))}


def _resolve(name: str) -> ModelRate:
    try:
        return _RATES[name]
    except KeyError:
        raise UnknownModelError(name, []) from None


CTX = PlanContext(resolve_rate=_resolve)


@pytest.fixture(autouse=True)
def _money_context():
    with localcontext(MONEY_CONTEXT):
        yield


def run(data: dict) -> BuildVsBuyResult:
    return compute(parse_scenario(BuildVsBuyScenario, data), CTX)


def scenario(**overrides) -> dict:
    base = {
        "development_months": 3,
        "developers_required": 2,
        "developer_monthly_cost": 15000,
        "infrastructure_monthly": 6000,
        "maintenance_fte": 0.25,
        "per_request_cost": "0.0001",
        "monthly_minimum": 0,
        "monthly_requests_year1": [10, 12, 15, 18, 22, 26, 30, 34, 38, 42, 46, 50],
        "monthly_requests_year2": [50] * 12,
        "factors": [
            ["data_privacy", 0.3, 5, 2],
            ["customization", 0.2, 4, 2],
            ["engineering_capacity", 0.2, 3, 5],
            ["time_to_market", 0.2, 2, 5],
            ["strategic_importance", 0.1, 3, 3],
        ],
    }
    base["monthly_requests_year1"] = [v * 10**6 for v in base["monthly_requests_year1"]]
    base["monthly_requests_year2"] = [v * 10**6 for v in base["monthly_requests_year2"]]
    base.update(overrides)
    return base


def expected_build(s: dict) -> Decimal:
    dev, devs, cost = s["development_months"], s["developers_required"], D(str(s["developer_monthly_cost"]))
    run_months = 24 - dev
    return (
        dev * devs * cost
        + run_months * D(str(s["infrastructure_monthly"]))
        + run_months * D(str(s["maintenance_fte"])) * cost
    )


def expected_buy(s: dict) -> Decimal:
    price, minimum = D(str(s["per_request_cost"])), D(str(s["monthly_minimum"]))
    return sum(max(minimum, D(str(v)) * price) for v in s["monthly_requests_year1"] + s["monthly_requests_year2"])


def test_registered_under_cli_name():
    assert get_model("build-vs-buy") is MODEL


def test_seed_embedding_example_recomputed():
    s = scenario()
    r = run(s)
    assert r.development_cost == 3 * 2 * D(15000)
    assert r.infrastructure_cost == 21 * D(6000)
    assert r.maintenance_cost == 21 * D("0.25") * D(15000)
    assert r.build_2yr_tco == expected_build(s)
    assert r.buy_2yr_tco == expected_buy(s)
    assert r.cost_difference == expected_buy(s) - expected_build(s)
    weights = [D(str(f[1])) for f in s["factors"]]
    assert r.build_score == sum(w * f[2] for w, f in zip(weights, s["factors"], strict=True))
    assert r.buy_score == sum(w * f[3] for w, f in zip(weights, s["factors"], strict=True))
    assert r.cost_recommendation == "buy"
    assert r.qualitative_recommendation == "build"
    assert r.overall_recommendation == "buy"
    assert r.confidence == CONFIDENCE_DISAGREE
    assert r.break_even_month is None
    assert "never breaks even" in r.break_even_explanation
    assert r.run_monthly_cost == D(6000) + D("0.25") * D(15000)
    assert r.crossover_requests == r.run_monthly_cost / D("0.0001")
    assert r.buy_cost_during_development == sum(D(v) * D("0.0001") for v in s["monthly_requests_year1"][:3])
    assert r.weight_sum == 1


def test_example_yaml_parses_and_matches_the_seed_inputs():
    data = yaml.safe_load(MODEL.example)
    r = compute(parse_scenario(BuildVsBuyScenario, data), CTX)
    assert r.build_2yr_tco == expected_build(data)
    assert r.buy_2yr_tco == expected_buy(data)
    assert r.model_dump(mode="json")["break_even_month"] is None
    rep = report(r)
    assert len(rep.tables) == 3
    assert rep.csv_table == 2
    assert len(rep.tables[2].rows) == 24
    assert any("Recommendation: buy" in n for n in rep.notes)


def test_month_by_month_cumulative_costs():
    s = scenario()
    r = run(s)
    assert len(r.months) == 24
    run_cost = D(6000) + D("0.25") * D(15000)
    for m in r.months:
        assert m.build_cost == (2 * D(15000) if m.month <= 3 else run_cost)
        assert m.phase == ("development" if m.month <= 3 else "running")
    assert r.months[-1].build_cumulative == r.build_2yr_tco
    assert r.months[-1].buy_cumulative == r.buy_2yr_tco
    assert r.months[4].build_cumulative == sum(m.build_cost for m in r.months[:5])


# Exercise 3: document extraction (the second example in docs/planner/build-vs-buy.md).
def exercise_3() -> dict:
    growth = [(100000 * D("1.2") ** k).quantize(D(1), rounding=ROUND_HALF_UP) for k in range(12)]
    return scenario(
        development_months=4,
        developers_required=2,
        developer_monthly_cost=15000,
        infrastructure_monthly=str(2 * D("2.50") * 720),
        maintenance_fte=0.3,
        per_request_cost="0.10",
        monthly_minimum=0,
        monthly_requests_year1=[int(v) for v in growth],
        monthly_requests_year2=[int(growth[-1])] * 12,
        factors=[
            {"name": "data_privacy", "weight": 0.3, "build_score": 4, "buy_score": 3},
            {"name": "accuracy_on_our_documents", "weight": 0.3, "build_score": 4, "buy_score": 3},
            {"name": "time_to_market", "weight": 0.2, "build_score": 2, "buy_score": 5},
            {"name": "engineering_capacity", "weight": 0.2, "build_score": 2, "buy_score": 4},
        ],
    )


def test_exercise_3_document_extraction():
    s = exercise_3()
    r = run(s)
    assert r.build_2yr_tco == expected_build(s)
    assert r.buy_2yr_tco == expected_buy(s)
    assert r.cost_recommendation == "build"
    # break-even: scan for the first month from which build's cumulative stays <= buy's
    build_cum = buy_cum = D(0)
    cums = []
    for m, volume in enumerate(s["monthly_requests_year1"] + s["monthly_requests_year2"], start=1):
        build_cum += 2 * D(15000) if m <= 4 else D(3600) + D("0.3") * D(15000)
        buy_cum += D(volume) * D("0.10")
        cums.append(build_cum <= buy_cum)
    expected_month = next(m for m in range(1, 25) if all(cums[m - 1 :]))
    assert r.break_even_month == expected_month
    assert not cums[expected_month - 2]  # build was still dearer the month before
    assert r.crossover_requests == (D(3600) + D("0.3") * D(15000)) / D("0.10")
    assert r.qualitative_recommendation == "buy"
    assert r.confidence == CONFIDENCE_DISAGREE


def test_factor_lists_and_mappings_are_equivalent():
    as_lists = run(scenario())
    as_maps = run(
        scenario(
            factors=[
                {"name": f[0], "weight": f[1], "build_score": f[2], "buy_score": f[3]} for f in scenario()["factors"]
            ]
        )
    )
    assert as_lists.factors == as_maps.factors
    assert as_lists.build_score == as_maps.build_score


def test_monthly_minimum_applies():
    s = scenario(monthly_minimum=3000)
    r = run(s)
    assert r.buy_2yr_tco == expected_buy(s)
    assert r.months[0].buy_cost == D(3000)  # 10M x $0.0001 = $1,000 < minimum
    assert r.months[-1].buy_cost == D(50 * 10**6) * D("0.0001")


def test_agreement_gives_high_confidence():
    r = run(scenario(per_request_cost="0.001"))  # buy becomes far dearer; qualitative favours build
    assert r.cost_recommendation == "build"
    assert r.qualitative_recommendation == "build"
    assert r.confidence == CONFIDENCE_AGREE
    assert r.break_even_month is not None


def test_cost_tie_counts_as_buy():
    # build: 0 dev months, run cost 1,000/month x 24; buy: 10 requests x $100 = 1,000/month.
    r = run(
        scenario(
            development_months=0,
            developers_required=0,
            developer_monthly_cost=1,
            infrastructure_monthly=1000,
            maintenance_fte=0,
            per_request_cost=100,
            monthly_requests_year1=[10] * 12,
            monthly_requests_year2=[10] * 12,
        )
    )
    assert r.build_2yr_tco == r.buy_2yr_tco == 24 * D(1000)
    assert r.cost_tie is True
    assert r.cost_recommendation == "buy"
    assert r.break_even_month == 1  # equal all along counts as "at or below"
    assert any("tie" in n for n in report(r).notes)


def test_score_tie_counts_as_buy():
    r = run(scenario(factors=[["a", 0.5, 4, 2], ["b", 0.5, 2, 4]]))
    assert r.build_score == r.buy_score
    assert r.score_tie is True
    assert r.qualitative_recommendation == "buy"
    assert r.confidence == CONFIDENCE_AGREE


def test_no_factors_is_cost_only():
    r = run(scenario(factors=[]))
    assert r.build_score is None and r.qualitative_recommendation is None
    assert r.confidence == CONFIDENCE_NO_FACTORS
    assert len(report(r).tables) == 2


def test_weights_not_summing_to_one_warn():
    r = run(scenario(factors=[["a", 0.5, 4, 2], ["b", 0.2, 2, 4]]))
    assert r.weight_sum == D("0.7")
    assert any("weights sum to 0.7" in w for w in report(r).warnings)


def test_development_of_24_months_never_runs():
    s = scenario(development_months=24)
    r = run(s)
    assert r.running_months == 0
    assert r.build_2yr_tco == 24 * 2 * D(15000)
    assert any("never in service" in w for w in report(r).warnings)


def test_fragile_when_doubling_development_flips_the_decision():
    # Build barely wins: doubling development cost makes buy cheaper.
    s = scenario(per_request_cost="0.0004")
    r = run(s)
    assert r.cost_recommendation == "build"
    assert r.build_2yr_tco_development_doubled == expected_build(s) + 3 * 2 * D(15000)
    assert r.build_2yr_tco_development_doubled > r.buy_2yr_tco
    assert any("Fragile" in w for w in report(r).warnings)


def test_crossover_undefined_cases():
    free = run(scenario(per_request_cost=0, monthly_minimum=500))
    assert free.crossover_requests is None
    assert "does not depend on volume" in free.crossover_explanation
    high_min = run(scenario(monthly_minimum=20000))
    assert high_min.crossover_requests is None
    assert "minimum" in high_min.crossover_explanation


@pytest.mark.parametrize(
    ("build", "buy", "month"),
    [
        ([5, 10, 15], [1, 2, 3], None),  # never
        ([1, 2, 3], [1, 2, 3], 1),  # equal all along
        ([5, 6, 7], [1, 6, 12], 2),  # crosses in month 2
        ([1, 5, 6], [2, 4, 8], 3),  # below, above, below again: the last crossing counts
        ([1, 2, 9], [2, 4, 8], None),  # below, then above at the end
    ],
)
def test_find_breakeven(build, buy, month):
    assert find_breakeven([D(x) for x in build], [D(x) for x in buy]) == month


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"monthly_requests_year1": [1] * 11}, "monthly_requests_year1"),
        ({"monthly_requests_year2": [1] * 13}, "monthly_requests_year2"),
        ({"monthly_requests_year1": [-1] + [1] * 11}, "monthly_requests_year1.0"),
        ({"development_months": 25}, "development_months"),
        ({"development_months": -1}, "development_months"),
        ({"developers_required": 0}, "developers_required"),
        ({"developer_monthly_cost": 0}, "developer_monthly_cost"),
        ({"per_request_cost": -0.01}, "per_request_cost"),
        ({"maintenance_fte": -1}, "maintenance_fte"),
        ({"factors": [["a", 0.5, 0, 3]]}, "factors.0.build_score"),
        ({"factors": [["a", 0.5, 3, 6]]}, "factors.0.buy_score"),
        ({"factors": [["a", 1.5, 3, 3]]}, "factors.0.weight"),
        ({"factors": [["a", 0.5, 3]]}, "factors.0"),
        ({"factors": [{"name": "a", "weight": 0.5, "build_score": 3}]}, "factors.0.buy_score"),
        ({"factors": [["a", 0.5, 3, 3], ["a", 0.5, 2, 2]]}, "factors"),
        ({"price": 1}, "price"),
    ],
)
def test_bad_scenarios_name_the_field(overrides, field):
    with pytest.raises(ScenarioError) as exc:
        parse_scenario(BuildVsBuyScenario, scenario(**overrides))
    assert field in str(exc.value)


def test_seed_style_float_strings_are_accepted():
    # YAML reads 10e6 (no dot) as a string; the seed writes its volumes that way.
    r = run(scenario(monthly_requests_year1=["10e6"] * 12, monthly_requests_year2=["10e6"] * 12))
    assert r.buy_2yr_tco == 24 * D(10**7) * D("0.0001")


def test_zero_development_months_allows_zero_developers():
    r = run(scenario(development_months=0, developers_required=0))
    assert r.development_cost == 0
    assert r.running_months == 24


_price = st.decimals(min_value=0, max_value=D("0.01"), places=6, allow_nan=False, allow_infinity=False)


@settings(max_examples=60, deadline=None)
@given(p1=_price, p2=_price, minimum=st.integers(0, 20000), dev_months=st.integers(0, 24))
def test_property_recommendation_flips_consistently_with_price(p1, p2, minimum, dev_months):
    low, high = sorted((p1, p2))
    base = {"monthly_minimum": minimum, "development_months": dev_months}
    r_low = run(scenario(per_request_cost=low, **base))
    r_high = run(scenario(per_request_cost=high, **base))
    assert r_low.build_2yr_tco == r_high.build_2yr_tco  # build does not depend on the API price
    assert r_low.buy_2yr_tco <= r_high.buy_2yr_tco
    # once build wins at some price it wins at every higher price; buy at a high price means buy at lower ones
    if r_low.overall_recommendation == "build":
        assert r_high.overall_recommendation == "build"
    if r_high.overall_recommendation == "buy":
        assert r_low.overall_recommendation == "buy"
    if r_low.break_even_month is not None:
        assert r_high.break_even_month is not None and r_high.break_even_month <= r_low.break_even_month


@settings(max_examples=40, deadline=None)
@given(volumes=st.lists(st.integers(0, 10**8), min_size=24, max_size=24), price=_price)
def test_property_totals_equal_last_cumulative(volumes, price):
    s = scenario(per_request_cost=price, monthly_requests_year1=volumes[:12], monthly_requests_year2=volumes[12:])
    r = run(s)
    assert r.months[-1].buy_cumulative == r.buy_2yr_tco == expected_buy(s)
    assert r.months[-1].build_cumulative == r.build_2yr_tco == expected_build(s)
    assert (r.break_even_month is None) == (r.build_2yr_tco > r.buy_2yr_tco)

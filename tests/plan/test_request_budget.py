"""Tests for the request-budget planner model (seed 003 budget per request, seed 002 CostAwareLLM).

Every expected figure is derived here from the formula and this file's own inputs.
"""

from __future__ import annotations

import math
from decimal import Decimal, localcontext

import pytest
import yaml
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from margin.errors import ScenarioError, UnknownModelError
from margin.money import MONEY_CONTEXT
from margin.plan import get_model
from margin.plan._base import PlanContext, Report, parse_scenario
from margin.plan.request_budget import MODEL, RequestBudgetScenario, compute, report, request_cost
from margin.pricing.rates import ModelRate

MTOK = Decimal(10**6)

FAKE_RATES = {
    "cat-model": ModelRate(
        model="cat-model-v1", input_per_mtok=Decimal("3"), output_per_mtok=Decimal("15"), source="fake"
    ),
    "cat-discounted": ModelRate(
        model="cat-discounted",
        input_per_mtok=Decimal("4"),
        output_per_mtok=Decimal("20"),
        source="fake",
        discount=Decimal("0.25"),
    ),
    # Names used by the example scenario; prices are this test's own.
    "claude-sonnet-4-5": ModelRate(
        model="claude-sonnet-4-5", input_per_mtok=Decimal("2"), output_per_mtok=Decimal("10")
    ),
    "gpt-4o-mini": ModelRate(model="gpt-4o-mini", input_per_mtok=Decimal("0.1"), output_per_mtok=Decimal("1")),
}


def fake_resolve(name: str) -> ModelRate:
    try:
        return FAKE_RATES[name]
    except KeyError:
        raise UnknownModelError(name, []) from None


CTX = PlanContext(resolve_rate=fake_resolve)


def price(inp: str, out: str, name: str = "p", **extra: str) -> dict[str, str]:
    return {"name": name, "input_per_mtok": inp, "output_per_mtok": out, **extra}


def feature(**overrides) -> dict:
    base = {
        "name": "f",
        "model": price("2", "8"),
        "typical_input_tokens": 1000,
        "typical_output_tokens": 200,
        "max_input_tokens": 4000,
        "max_tokens": 1000,
        "requests_per_month": 10_000,
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def run(data: dict):
    return compute(parse_scenario(RequestBudgetScenario, data), CTX)


def usd(tokens: int, per_mtok: str | Decimal) -> Decimal:
    return Decimal(tokens) * Decimal(per_mtok) / MTOK


# -- main computation -------------------------------------------------------------------------------


def test_typical_and_worst_case_per_request_and_month() -> None:
    result = run({"features": [feature()]})
    f = result.features[0]
    typical = usd(1000, "2") + usd(200, "8")
    worst = usd(4000, "2") + usd(1000, "8")
    assert f.typical_cost_per_request.list_usd == typical
    assert f.typical_cost_per_request.effective_usd == typical
    assert f.worst_case_cost_per_request.effective_usd == worst
    assert f.typical_cost_per_month.effective_usd == typical * 10_000
    assert f.worst_case_cost_per_month.effective_usd == worst * 10_000
    with localcontext(MONEY_CONTEXT):
        assert f.worst_to_typical == worst / typical
        assert f.worst_case_output_share == usd(1000, "8") / worst
    assert f.volume_basis == "requests_per_month"
    assert f.cost_ceiling_per_request is None
    assert f.max_tokens_for_ceiling is None and f.ceiling_message is None
    assert result.budget is None
    assert result.typical_total_per_month.effective_usd == typical * 10_000


def test_requests_per_day_is_thirty_days_and_max_input_defaults_to_typical() -> None:
    result = run({"features": [feature(requests_per_month=None, requests_per_day=250, max_input_tokens=None)]})
    f = result.features[0]
    assert f.requests_per_month == 250 * 30
    assert result.days_per_month == 30
    assert f.max_input_tokens == 1000
    assert f.worst_case_cost_per_month.list_usd == (usd(1000, "2") + usd(1000, "8")) * 250 * 30


def test_catalog_model_and_discount() -> None:
    result = run({"features": [feature(model="cat-discounted")]})
    f = result.features[0]
    list_typical = usd(1000, "4") + usd(200, "20")
    assert f.resolved_model == "cat-discounted"
    assert f.typical_cost_per_request.list_usd == list_typical
    assert f.typical_cost_per_request.effective_usd == list_typical * Decimal("0.75")


def test_unknown_model_propagates() -> None:
    with pytest.raises(UnknownModelError):
        run({"features": [feature(model="nope")]})


def test_totals_sum_features() -> None:
    result = run(
        {
            "features": [
                feature(name="a"),
                feature(name="b", model="cat-model", requests_per_month=None, requests_per_day=10),
            ]
        }
    )
    a, b = result.features
    assert result.typical_total_per_month.effective_usd == (
        a.typical_cost_per_month.effective_usd + b.typical_cost_per_month.effective_usd
    )
    assert result.worst_case_total_per_month.list_usd == (
        a.worst_case_cost_per_month.list_usd + b.worst_case_cost_per_month.list_usd
    )


def test_zero_volume_and_free_model() -> None:
    result = run({"features": [feature(requests_per_month=0, model=price("0", "0"))]})
    f = result.features[0]
    assert f.typical_cost_per_month.effective_usd == 0
    assert f.worst_to_typical is None
    assert f.worst_case_output_share is None
    _assert_report_ok(report(result))


# -- ceiling ----------------------------------------------------------------------------------------


def test_max_tokens_for_ceiling_and_lower_message() -> None:
    ceiling = Decimal("0.014")
    result = run({"features": [feature()], "cost_ceiling_per_request": str(ceiling)})
    f = result.features[0]
    input_cost = usd(4000, "2")
    expected = math.floor((ceiling - input_cost) / (Decimal(8) / MTOK))
    assert f.max_tokens_for_ceiling == expected
    assert f.max_input_cost == input_cost
    assert f.input_exceeds_ceiling is False
    assert f.ceiling_source == "scenario"
    # The computed cap fits; one more token does not.
    rate = ModelRate(model="p", input_per_mtok=Decimal(2), output_per_mtok=Decimal(8))
    assert request_cost(rate, 4000, expected).effective_usd <= ceiling
    assert request_cost(rate, 4000, expected + 1).effective_usd > ceiling
    assert f.worst_case_fits_ceiling is (usd(4000, "2") + usd(1000, "8") <= ceiling)
    assert f.typical_fits_ceiling is True
    assert f.max_input_tokens_for_ceiling == math.floor(ceiling / (Decimal(2) / MTOK))
    assert 200 <= expected < 1000
    assert f.worst_case_fits_ceiling is False
    assert f.ceiling_message is not None and f"to {expected:,}" in f.ceiling_message


def test_ceiling_exactly_met_is_a_fit() -> None:
    # Worst case = 4000 * 2 + 1000 * 8 = 16,000 micro-dollars: a ceiling of exactly that fits.
    ceiling = usd(4000, "2") + usd(1000, "8")
    f = run({"features": [feature(cost_ceiling_per_request=str(ceiling))]}).features[0]
    assert f.worst_case_fits_ceiling is True
    assert f.max_tokens_for_ceiling == 1000
    assert "fits the ceiling" in f.ceiling_message


def test_feature_ceiling_overrides_global() -> None:
    result = run(
        {
            "cost_ceiling_per_request": "1",
            "features": [feature(name="own", cost_ceiling_per_request="0.5"), feature(name="global")],
        }
    )
    own, glob = result.features
    assert (own.cost_ceiling_per_request, own.ceiling_source) == (Decimal("0.5"), "feature")
    assert (glob.cost_ceiling_per_request, glob.ceiling_source) == (Decimal(1), "scenario")


def test_input_alone_exceeds_ceiling() -> None:
    ceiling = Decimal("0.005")  # 4000 input tokens at $2/M cost $0.008
    f = run({"features": [feature(cost_ceiling_per_request=str(ceiling))]}).features[0]
    assert f.input_exceeds_ceiling is True
    assert f.max_tokens_for_ceiling is None
    assert f.max_input_tokens_for_ceiling == math.floor(ceiling / (Decimal(2) / MTOK))
    assert "input alone" in f.ceiling_message and "Truncate" in f.ceiling_message
    assert f.worst_case_fits_ceiling is False
    rep = report(run({"features": [feature(cost_ceiling_per_request=str(ceiling))]}))
    assert any("input alone" in w for w in rep.warnings)


def test_ceiling_below_typical_output() -> None:
    # Remaining after input: 0.0095 - 0.008 = 0.0015 -> 187 output tokens at $8/M, below the typical 200.
    f = run({"features": [feature(cost_ceiling_per_request="0.0095")]}).features[0]
    assert f.max_tokens_for_ceiling == math.floor((Decimal("0.0095") - usd(4000, "2")) / (Decimal(8) / MTOK))
    assert f.max_tokens_for_ceiling < 200
    assert "below the typical answer" in f.ceiling_message


def test_ceiling_leaves_no_output_token() -> None:
    ceiling = usd(4000, "2") + usd(1, "8") / 2  # half an output token of room
    f = run({"features": [feature(cost_ceiling_per_request=str(ceiling))]}).features[0]
    assert f.max_tokens_for_ceiling == 0
    assert f.input_exceeds_ceiling is False
    assert "not even one" in f.ceiling_message


def test_free_output_any_max_tokens_fits() -> None:
    f = run({"features": [feature(model=price("2", "0"), cost_ceiling_per_request="1")]}).features[0]
    assert f.max_tokens_for_ceiling is None
    assert "free" in f.ceiling_message


def test_free_input_has_no_input_limit() -> None:
    f = run({"features": [feature(model=price("0", "8"), cost_ceiling_per_request="0.01")]}).features[0]
    assert f.max_input_tokens_for_ceiling is None
    assert f.max_tokens_for_ceiling == math.floor(Decimal("0.01") / (Decimal(8) / MTOK))


def test_ceiling_uses_effective_prices() -> None:
    ceiling = Decimal("0.05")
    f = run({"features": [feature(model="cat-discounted", cost_ceiling_per_request=str(ceiling))]}).features[0]
    eff_in, eff_out = Decimal(4) * Decimal("0.75"), Decimal(20) * Decimal("0.75")
    expected = math.floor((ceiling - 4000 * eff_in / MTOK) / (eff_out / MTOK))
    assert f.max_tokens_for_ceiling == expected


def test_typical_over_ceiling_warns() -> None:
    # Typical: 1000 * 2 + 200 * 8 = $0.0036 per request > 0.003; input 4000 * 2 = $0.008 > 0.003 too.
    rep = report(run({"features": [feature(max_input_tokens=1000, cost_ceiling_per_request="0.003")]}))
    assert any("typical request exceeds" in w for w in rep.warnings)


# -- monthly budget ---------------------------------------------------------------------------------


def _totals(data: dict) -> tuple[Decimal, Decimal]:
    r = run(data)
    return r.typical_total_per_month.effective_usd, r.worst_case_total_per_month.effective_usd


def test_budget_fits_both() -> None:
    data = {"features": [feature()]}
    typical, worst = _totals(data)
    budget = worst  # boundary: exactly the worst case still fits
    r = run(data | {"monthly_budget": str(budget)})
    assert r.budget.typical_fits and r.budget.worst_case_fits
    assert r.budget.worst_case_headroom == 0
    assert r.budget.typical_headroom == budget - typical
    assert r.budget.worst_case_utilization == 1
    assert any("Even the worst case fits" in n for n in report(r).notes)


def test_budget_fits_typical_only() -> None:
    data = {"features": [feature()]}
    typical, worst = _totals(data)
    budget = (typical + worst) / 2
    r = run(data | {"monthly_budget": str(budget)})
    assert r.budget.typical_fits and not r.budget.worst_case_fits
    assert r.budget.worst_case_headroom == budget - worst < 0
    with localcontext(MONEY_CONTEXT):
        assert r.budget.typical_utilization == typical / budget
    assert any("worst case would overrun" in n for n in report(r).notes)


def test_budget_exceeded_by_typical() -> None:
    data = {"features": [feature()]}
    typical, _ = _totals(data)
    r = run(data | {"monthly_budget": str(typical / 2)})
    assert not r.budget.typical_fits and not r.budget.worst_case_fits
    assert any("over the monthly budget" in w for w in report(r).warnings)


# -- report and example -----------------------------------------------------------------------------


def _assert_report_ok(rep: Report) -> None:
    assert rep.tables
    assert 0 <= rep.csv_table < len(rep.tables)
    for table in rep.tables:
        for row in table.rows:
            assert len(row) == len(table.columns)


def test_report_tables() -> None:
    result = run(
        {
            "features": [feature(name="a"), feature(name="b", model="cat-model", max_tokens=5000)],
            "cost_ceiling_per_request": "0.05",
            "monthly_budget": "100",
        }
    )
    rep = report(result)
    _assert_report_ok(rep)
    assert [t.title.split()[0] for t in rep.tables] == ["Cost", "Budget", "Monthly"]
    main = rep.tables[rep.csv_table]
    assert [row[0] for row in main.rows] == ["a", "b", "Total"]
    assert main.rows[-1][7] == result.typical_total_per_month.effective_usd
    assert any("largest worst-case exposure" in n for n in rep.notes)
    assert any("scenario" in w for w in rep.warnings)


def test_report_without_ceiling_or_budget() -> None:
    rep = report(run({"features": [feature(model="cat-model", max_input_tokens=100_000)]}))
    _assert_report_ok(rep)
    assert len(rep.tables) == 1
    assert any("prompt (max_input_tokens) dominates" in n for n in rep.notes)
    assert rep.warnings == ()


def test_example_parses_and_computes() -> None:
    assert get_model("request-budget") is MODEL
    data = yaml.safe_load(MODEL.example)
    result = MODEL.compute(parse_scenario(MODEL.scenario_type, data), CTX)
    assert len(result.features) == len(data["features"])
    assert result.budget is not None
    _assert_report_ok(MODEL.report(result))


# -- bad scenarios ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"features": []}, "features"),
        ({"features": [feature(requests_per_day=5)]}, "features.0.requests_per_month"),
        ({"features": [feature(requests_per_month=None)]}, "features.0.requests_per_month"),
        ({"features": [feature(max_input_tokens=999)]}, "features.0.max_input_tokens"),
        ({"features": [feature(max_tokens=199)]}, "features.0.max_tokens"),
        ({"features": [feature(max_tokens=0, typical_output_tokens=0)]}, "features.0.max_tokens"),
        ({"features": [feature(), feature()]}, "features.1.name"),
        ({"features": [feature(typical_input_tokens=-1)]}, "features.0.typical_input_tokens"),
        ({"features": [feature(requests_per_month=-1)]}, "features.0.requests_per_month"),
        ({"features": [feature(cost_ceiling_per_request=0)]}, "features.0.cost_ceiling_per_request"),
        ({"features": [feature()], "cost_ceiling_per_request": -1}, "cost_ceiling_per_request"),
        ({"features": [feature()], "monthly_budget": 0}, "monthly_budget"),
        ({"features": [feature(max_tokenz=5)]}, "features.0.max_tokenz"),
        ({"features": [feature(model=price("1", "-2"))]}, "output_per_mtok"),
        ({"features": [feature()], "budget": 3}, "budget"),
    ],
)
def test_bad_scenarios_name_the_field(data: dict, field: str) -> None:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(RequestBudgetScenario, data)
    assert field in str(info.value)


# -- properties -------------------------------------------------------------------------------------

toks = st.integers(min_value=0, max_value=500_000)
prices = st.decimals(min_value="0.01", max_value=100, places=2)
ceilings = st.decimals(min_value="0.0001", max_value=50, places=4)
discounts = st.decimals(min_value=0, max_value="0.9", places=2)


@settings(max_examples=150, deadline=None)
@given(toks, prices, prices, ceilings, discounts)
def test_max_tokens_fits_ceiling_and_one_more_does_not(max_input, pin, pout, ceiling, discount) -> None:
    data = {
        "features": [
            feature(
                model=price(str(pin), str(pout), discount=str(discount)),
                typical_input_tokens=0,
                typical_output_tokens=0,
                max_input_tokens=max_input,
                max_tokens=1,
                cost_ceiling_per_request=str(ceiling),
            )
        ]
    }
    f = run(data).features[0]
    rate = ModelRate(model="p", input_per_mtok=pin, output_per_mtok=pout, discount=discount)
    if f.input_exceeds_ceiling:
        assert f.max_tokens_for_ceiling is None
        assert request_cost(rate, max_input, 0).effective_usd > ceiling
        fit_in = f.max_input_tokens_for_ceiling
        assert request_cost(rate, fit_in, 0).effective_usd <= ceiling
        assert request_cost(rate, fit_in + 1, 0).effective_usd > ceiling
    else:
        n = f.max_tokens_for_ceiling
        assert n is not None and n >= 0
        assert request_cost(rate, max_input, n).effective_usd <= ceiling
        assert request_cost(rate, max_input, n + 1).effective_usd > ceiling


@settings(max_examples=60, deadline=None)
@given(toks, toks, toks, toks, prices, prices, st.integers(min_value=0, max_value=10**6))
def test_worst_case_never_below_typical_and_linear_in_volume(ti, to, extra_in, extra_out, pin, pout, volume):
    assume(ti + extra_in > 0 or to + extra_out > 0)
    data = {
        "features": [
            feature(
                model=price(str(pin), str(pout)),
                typical_input_tokens=ti,
                typical_output_tokens=to,
                max_input_tokens=ti + extra_in,
                max_tokens=max(to + extra_out, 1),
                requests_per_month=volume,
            )
        ]
    }
    f = run(data).features[0]
    assert f.worst_case_cost_per_request.effective_usd >= f.typical_cost_per_request.effective_usd
    assert f.typical_cost_per_month.effective_usd == f.typical_cost_per_request.effective_usd * volume
    assert f.worst_case_cost_per_month.effective_usd == f.worst_case_cost_per_request.effective_usd * volume

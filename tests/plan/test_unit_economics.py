"""Tests for the `unit-economics` planner model (the seed's UnitEconomics and project_unit_economics)."""

from __future__ import annotations

import itertools
import math
from decimal import Decimal, localcontext

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from margin.errors import ScenarioError, UnknownModelError
from margin.money import MONEY_CONTEXT
from margin.plan import PlanContext, get_model, parse_scenario
from margin.plan.unit_economics import (
    MODEL,
    UnitEconomicsResult,
    UnitEconomicsScenario,
    compute,
    rate_ai_cost_ratio,
    rate_cost_per_request,
    rate_gross_margin,
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
TOLERANCE = D("1e-40")
TINY = D("1e-9")


@pytest.fixture(autouse=True)
def _money_context():
    with localcontext(MONEY_CONTEXT):
        yield


def run(data: dict) -> UnitEconomicsResult:
    return compute(parse_scenario(UnitEconomicsScenario, data), CTX)


BASE = {
    "total_monthly_cost": 42000,
    "monthly_requests": 1500000,
    "monthly_active_users": 25000,
    "monthly_revenue": 200000,
}


def close(a: Decimal, b: Decimal) -> bool:
    return abs(a - b) <= TOLERANCE * max(D(1), abs(b))


def test_registered_under_cli_name():
    assert get_model("unit-economics") is MODEL


def test_current_metrics_follow_the_seed_formulas():
    r = run(BASE)
    cost, requests, users, revenue = D(42000), 1500000, 25000, D(200000)
    assert r.cost_per_request == cost / requests
    assert r.cost_per_user == cost / users
    assert r.gross_margin == (revenue - cost) / revenue
    assert r.ai_cost_ratio == cost / revenue
    assert r.gross_margin_explanation is None and r.ai_cost_ratio_explanation is None
    assert r.cost_per_request_rating == rate_cost_per_request(cost / requests)
    assert r.projection == []
    assert r.unit_economics_worsen is None


# Band edges: the edges themselves are "acceptable" (the seed's closed ranges), just beyond them flips.
@pytest.mark.parametrize(
    ("value", "rating"),
    [
        (D("0.01") - TINY, "good"),
        (D("0.01"), "acceptable"),
        (D("0.05"), "acceptable"),
        (D("0.10"), "acceptable"),
        (D("0.10") + TINY, "concerning"),
        (D(0), "good"),
    ],
)
def test_cost_per_request_bands(value, rating):
    assert rate_cost_per_request(value) == rating


@pytest.mark.parametrize(
    ("value", "rating"),
    [
        (D("0.20") - TINY, "good"),
        (D("0.20"), "acceptable"),
        (D("0.50"), "acceptable"),
        (D("0.50") + TINY, "concerning"),
        (D(2), "concerning"),
        (None, "concerning"),
    ],
)
def test_ai_cost_ratio_bands(value, rating):
    assert rate_ai_cost_ratio(value) == rating


@pytest.mark.parametrize(
    ("value", "rating"),
    [
        (D("0.30") - TINY, "concerning"),
        (D("0.30"), "acceptable"),
        (D("0.60"), "acceptable"),
        (D("0.60") + TINY, "good"),
        (D(-1), "concerning"),
        (None, "concerning"),
    ],
)
def test_gross_margin_bands(value, rating):
    assert rate_gross_margin(value) == rating


@pytest.mark.parametrize(
    ("cost", "requests", "rating"),
    [
        (100, 10000, "acceptable"),
        (1000, 10000, "acceptable"),
        (99, 10000, "good"),
        (1001, 10000, "concerning"),
    ],
)
def test_cost_per_request_edges_through_compute(cost, requests, rating):
    r = run(
        {
            "total_monthly_cost": cost,
            "monthly_requests": requests,
            "monthly_active_users": 1,
            "monthly_revenue": 10**6,
        }
    )
    assert r.cost_per_request == D(cost) / requests
    assert r.cost_per_request_rating == rating


@pytest.mark.parametrize(
    ("cost", "ratio_rating", "margin_rating"),
    [
        (200, "acceptable", "good"),  # ratio exactly 20%, margin 80%
        (500, "acceptable", "acceptable"),  # ratio exactly 50%, margin exactly 50%
        (400, "acceptable", "acceptable"),  # margin exactly 60%
        (700, "concerning", "acceptable"),  # margin exactly 30%
        (701, "concerning", "concerning"),
        (199, "good", "good"),
        (1500, "concerning", "concerning"),  # negative margin
    ],
)
def test_ratio_and_margin_edges_through_compute(cost, ratio_rating, margin_rating):
    r = run(
        {
            "total_monthly_cost": cost,
            "monthly_requests": 10**6,
            "monthly_active_users": 10,
            "monthly_revenue": 1000,
        }
    )
    assert r.ai_cost_ratio == D(cost) / 1000
    assert r.gross_margin == (D(1000) - cost) / 1000
    assert r.ai_cost_ratio_rating == ratio_rating
    assert r.gross_margin_rating == margin_rating


def test_zero_revenue_is_undefined_not_infinite():
    r = run({**BASE, "monthly_revenue": 0})
    assert r.gross_margin is None and r.ai_cost_ratio is None
    assert "undefined" in r.gross_margin_explanation
    assert "undefined" in r.ai_cost_ratio_explanation
    assert r.gross_margin_rating == "concerning"
    assert r.ai_cost_ratio_rating == "concerning"
    rep = report(r)
    assert rep.tables[0].rows[2][2] is None
    assert any("monthly_revenue is 0" in w for w in rep.warnings)


def seed_projection(cost, requests, users, revenue, growth, months, efficiency, multiplier):
    """The seed's recurrence, with floor for whole users/requests."""
    rows = [(users, requests, D(cost), D(revenue))]
    for _ in range(months):
        u0, r0, c0, v0 = rows[-1]
        u1 = math.floor(D(u0) * (1 + growth))
        r1 = math.floor(D(r0) * (1 + growth * multiplier))
        c1 = c0 * (D(r1) / r0) * (1 - efficiency)
        v1 = v0 * (D(u1) / u0)
        rows.append((u1, r1, c1, v1))
    return rows


def test_projection_matches_the_seed_recurrence():
    growth, efficiency, multiplier = D("0.15"), D("0.02"), D("1.2")
    r = run({**BASE, "growth_rate": "0.15", "months": 12})
    expected = seed_projection(42000, 1500000, 25000, 200000, growth, 12, efficiency, multiplier)
    assert [p.month for p in r.projection] == list(range(13))
    for p, (users, requests, cost, revenue) in zip(r.projection, expected, strict=True):
        assert p.monthly_active_users == users
        assert p.monthly_requests == requests
        assert close(p.total_monthly_cost, cost)
        assert close(p.monthly_revenue, revenue)
        assert close(p.cost_per_request, cost / requests)
        assert close(p.cost_per_user, cost / users)
        assert close(p.ai_cost_ratio, cost / revenue)
        assert close(p.gross_margin, (revenue - cost) / revenue)
    assert r.request_growth_rate == growth * multiplier
    # requests grow faster than users and 2% efficiency is not enough: the trap
    hold = 1 - (1 + growth) / (1 + growth * multiplier)
    assert r.efficiency_gain_to_hold_cost_per_user == hold
    assert hold > efficiency
    assert r.unit_economics_worsen is True
    assert "Unit economics trap" in r.trap_explanation
    assert any("Unit economics trap" in w for w in report(r).warnings)


def test_enough_efficiency_avoids_the_trap():
    r = run({**BASE, "growth_rate": "0.15", "cost_efficiency_gain": "0.05"})
    assert len(r.projection) == 13  # months default to 12
    assert r.unit_economics_worsen is False
    assert r.trap_explanation is None
    assert r.projection[-1].cost_per_user < r.projection[0].cost_per_user
    assert any("do not worsen" in n for n in report(r).notes)


def test_multiplier_one_or_less_needs_no_efficiency():
    r = run({**BASE, "growth_rate": "0.1", "request_growth_multiplier": "0.5", "cost_efficiency_gain": 0})
    assert r.efficiency_gain_to_hold_cost_per_user == 0


def test_floor_keeps_whole_users_and_requests():
    # 5 users x 1.1 = 5.5 -> 5 every month; 7 requests x 1.12 = 7.84 -> 7.
    r = run(
        {
            "total_monthly_cost": 10,
            "monthly_requests": 7,
            "monthly_active_users": 5,
            "monthly_revenue": 50,
            "growth_rate": "0.1",
            "months": 3,
            "cost_efficiency_gain": 0,
        }
    )
    assert [p.monthly_active_users for p in r.projection] == [5, 5, 5, 5]
    assert [p.monthly_requests for p in r.projection] == [7, 7, 7, 7]
    assert all(p.total_monthly_cost == D(10) for p in r.projection)
    assert r.unit_economics_worsen is False


def test_rating_changes_are_listed_with_direction():
    # AI cost ratio 19% (good), margin 81% (good); requests double each month, users +50%, no efficiency.
    r = run(
        {
            "total_monthly_cost": 190,
            "monthly_requests": 1000,
            "monthly_active_users": 1000,
            "monthly_revenue": 1000,
            "growth_rate": "0.5",
            "request_growth_multiplier": 2,
            "cost_efficiency_gain": 0,
            "months": 4,
        }
    )
    expected = seed_projection(190, 1000, 1000, 1000, D("0.5"), 4, D(0), D(2))
    ratios = [c / v for _, _, c, v in expected]
    first_acceptable = next(i for i, x in enumerate(ratios) if x >= D("0.2"))
    month = r.projection[first_acceptable]
    assert "AI cost ratio: good -> acceptable (worse)" in month.rating_changes
    assert month.rating_worsened
    assert r.first_rating_downgrade_month == first_acceptable
    assert r.projection[0].rating_changes == []
    assert any(f"month {first_acceptable}" in w for w in report(r).warnings)


def test_rating_improvement_is_not_a_downgrade():
    # cost per request $0.0102 (acceptable) falls 5% a month below $0.01 (good).
    r = run(
        {
            "total_monthly_cost": 102,
            "monthly_requests": 10000,
            "monthly_active_users": 10,
            "monthly_revenue": 10**6,
            "growth_rate": 0,
            "cost_efficiency_gain": "0.05",
            "months": 2,
        }
    )
    assert "cost per request: acceptable -> good (better)" in r.projection[1].rating_changes
    assert r.first_rating_downgrade_month is None


def test_zero_revenue_projection_uses_cost_per_user_for_the_trap():
    r = run({**BASE, "monthly_revenue": 0, "growth_rate": "0.2", "months": 3})
    assert all(p.gross_margin is None and p.ai_cost_ratio is None for p in r.projection)
    assert r.unit_economics_worsen is True
    assert "AI cost ratio goes" not in r.trap_explanation


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({**BASE, "months": 6}, "growth_rate"),
        ({**BASE, "growth_rate": -0.1}, "growth_rate"),
        ({**BASE, "growth_rate": 0.1, "months": 0}, "months"),
        ({**BASE, "growth_rate": 0.1, "months": 121}, "months"),
        ({**BASE, "growth_rate": 0.1, "cost_efficiency_gain": 1}, "cost_efficiency_gain"),
        ({**BASE, "request_growth_multiplier": -1}, "request_growth_multiplier"),
        ({**BASE, "monthly_requests": 0}, "monthly_requests"),
        ({**BASE, "monthly_active_users": -5}, "monthly_active_users"),
        ({**BASE, "total_monthly_cost": -1}, "total_monthly_cost"),
        ({**BASE, "monthly_revenue": "lots"}, "monthly_revenue"),
        ({k: v for k, v in BASE.items() if k != "monthly_revenue"}, "monthly_revenue"),
        ({**BASE, "revenue": 5}, "revenue"),
    ],
)
def test_bad_scenarios_name_the_field(data, field):
    with pytest.raises(ScenarioError) as exc:
        parse_scenario(UnitEconomicsScenario, data)
    assert field in str(exc.value)


def test_example_parses_computes_and_reports():
    r = compute(parse_scenario(UnitEconomicsScenario, yaml.safe_load(MODEL.example)), CTX)
    assert len(r.projection) == 13
    assert len(r.model_dump(mode="json")["projection"]) == 13
    rep = report(r)
    assert rep.csv_table == 1
    assert len(rep.tables[1].rows) == 13
    assert rep.notes


def test_report_without_projection_uses_metrics_table_for_csv():
    rep = report(run(BASE))
    assert rep.csv_table == 0
    assert len(rep.tables) == 1


_cost = st.decimals(min_value=0, max_value=10**7, places=4, allow_nan=False, allow_infinity=False)


@settings(max_examples=60, deadline=None)
@given(a=_cost, b=_cost, requests=st.integers(1, 10**9), users=st.integers(1, 10**7), revenue=_cost)
def test_property_cost_per_request_monotone_in_cost(a, b, requests, users, revenue):
    low, high = sorted((a, b))
    base = {"monthly_requests": requests, "monthly_active_users": users, "monthly_revenue": revenue}
    r_low = run({**base, "total_monthly_cost": low})
    r_high = run({**base, "total_monthly_cost": high})
    assert r_low.cost_per_request <= r_high.cost_per_request
    assert (low < high) == (r_low.cost_per_request < r_high.cost_per_request)
    order = {"good": 0, "acceptable": 1, "concerning": 2}
    assert order[r_low.cost_per_request_rating] <= order[r_high.cost_per_request_rating]
    assert order[r_low.ai_cost_ratio_rating] <= order[r_high.ai_cost_ratio_rating]
    if revenue > 0:
        assert abs(r_low.gross_margin + r_low.ai_cost_ratio - 1) <= TOLERANCE


@settings(max_examples=30, deadline=None)
@given(
    growth=st.decimals(0, 1, places=3),
    efficiency=st.decimals(0, D("0.5"), places=3),
    months=st.integers(1, 24),
    requests=st.integers(1, 10**8),
    users=st.integers(1, 10**6),
)
def test_property_projection_cost_per_request_never_rises(growth, efficiency, months, requests, users):
    r = run(
        {
            "total_monthly_cost": 5000,
            "monthly_requests": requests,
            "monthly_active_users": users,
            "monthly_revenue": 9000,
            "growth_rate": growth,
            "months": months,
            "cost_efficiency_gain": efficiency,
        }
    )
    per_request = [p.cost_per_request for p in r.projection]
    assert all(b <= a + TOLERANCE for a, b in itertools.pairwise(per_request))
    users_seq = [p.monthly_active_users for p in r.projection]
    assert users_seq == sorted(users_seq)

"""Self-hosting vs API break-even: expected values derived here from the formulas and the test's inputs."""

from __future__ import annotations

import math
from decimal import Decimal, localcontext

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from margin.errors import ScenarioError, UnknownModelError
from margin.plan import PlanContext, parse_scenario
from margin.plan.breakeven import (
    MODEL,
    SECONDS_PER_MONTH,
    BreakevenResult,
    BreakevenScenario,
    SelfHostingEconomics,
    solve_breakeven,
)
from margin.pricing.rates import ModelRate

D = Decimal
RATES = {
    "open-70b": ModelRate(model="open-70b", input_per_mtok=D("0.2"), output_per_mtok=D("0.85")),
    "frontier": ModelRate(
        model="frontier", input_per_mtok=D(5), output_per_mtok=D(25), discount=D("0.2"), source="test"
    ),
}


def _resolve(name: str) -> ModelRate:
    try:
        return RATES[name]
    except KeyError:
        raise UnknownModelError(name, []) from None


CTX = PlanContext(resolve_rate=_resolve)


@pytest.fixture(autouse=True)
def _same_precision_as_the_model():
    """The model computes at 60 significant digits; derive expected values at the same precision."""
    with localcontext() as c:
        c.prec = 60
        yield


# The seed's long-reply regime (2x A100 80GB, 70B model, 500 output tokens).
BASE = {
    "api_cost_per_request": "0.000425",
    "gpu_hourly_cost": "2.50",
    "num_gpus": 2,
    "gpu_utilization": "0.5",
    "engineering_monthly": 1500,
    "infrastructure_monthly": 500,
    "output_tokens_per_sec_per_system": 2000,
    "avg_output_tokens_per_request": 500,
}


def run(**overrides) -> BreakevenResult:
    data = {**BASE, **overrides}
    data = {k: v for k, v in data.items() if v is not None}
    return MODEL.compute(parse_scenario(BreakevenScenario, data), CTX)


def econ(f, g, m, tokens, length) -> SelfHostingEconomics:
    return SelfHostingEconomics(
        overhead_monthly=D(f),
        set_monthly_cost=D(g),
        marginal_cost_per_request=D(m),
        output_tokens_per_month=D(tokens),
        avg_output_tokens=D(length),
    )


# -- main computation -------------------------------------------------------------------------------


def test_costs_and_capacity_follow_the_formulas():
    r = run()
    gpu_set = D("2.50") * 24 * 30 * 2
    assert r.gpu_set_monthly_cost == gpu_set
    assert r.overhead_monthly == D(2000)
    assert r.monthly_fixed_cost == gpu_set + 2000
    assert r.seconds_per_month == 3600 * 24 * 30
    tokens = D(2000) * D("0.5") * 3600 * 24 * 30
    assert r.output_tokens_per_gpu_month == tokens
    assert r.requests_per_gpu_month == tokens / 500
    assert r.gpu_cost_per_request_at_capacity == gpu_set / (tokens / 500)
    assert r.api_price_floor == gpu_set / (tokens / 500) + D("0.0001")
    assert r.marginal_cost_per_request == D("0.0001")  # the seed's default
    assert r.gpu_cost_per_million_output_tokens == gpu_set / tokens * 10**6
    assert r.api_cost_per_million_output_tokens == D("0.000425") / 500 * 10**6


def test_seed_long_regime_never_breaks_even_because_a_set_costs_more_than_the_api():
    r = run()
    margin = D("0.000425") - D("0.0001")
    capacity = D(2000) * D("0.5") * SECONDS_PER_MONTH / 500
    assert margin * capacity < D(3600)  # the condition that fails
    assert not r.breaks_even
    assert r.breakeven_requests is None and r.breakeven_gpus is None and r.sustained_breakeven_requests is None
    assert "GPU set" in r.never_reason and "$3,600.00/month" in r.never_reason and "$0.000425" in r.never_reason
    # The seed's own formula, capacity ignored, lands above one set's capacity.
    assert r.naive_breakeven_requests == (D(3600) + 2000) / margin
    assert r.naive_breakeven_within_capacity is False
    # Utilization needed for (a - m) * C > G.
    assert r.min_utilization_to_break_even == D(3600) * 500 / (margin * 2000 * SECONDS_PER_MONTH)
    assert r.min_utilization_to_break_even > 1


def test_seed_short_regime_never_breaks_even_because_api_is_below_marginal():
    r = run(api_cost_per_request="0.000085", avg_output_tokens_per_request=100)
    assert not r.breaks_even
    assert "marginal" in r.never_reason and "below" in r.never_reason
    assert "$0.000085" in r.never_reason and "$0.000100" in r.never_reason
    assert r.naive_breakeven_requests is None
    assert r.naive_breakeven_within_capacity is None
    assert r.min_utilization_to_break_even is None


def test_short_regime_without_marginal_still_never_breaks_even_on_capacity():
    r = run(api_cost_per_request="0.000085", avg_output_tokens_per_request=100, marginal_cost_per_request=0)
    capacity = D(2000) * D("0.5") * SECONDS_PER_MONTH / 100
    assert D("0.000085") * capacity < D(3600)
    assert not r.breaks_even and "GPU set" in r.never_reason
    assert r.naive_breakeven_requests == D(5600) / D("0.000085")


def test_premium_api_breaks_even_within_one_set():
    a = D("0.0125")  # $25 per 1M output tokens x 500 tokens
    r = run(api_cost_per_request=a)
    fixed, g, m = D(2000), D(3600), D("0.0001")
    expected = (fixed + g) / (a - m)
    assert r.breaks_even
    assert r.breakeven_requests == expected
    assert r.breakeven_gpu_sets == 1 and r.breakeven_gpus == 2
    assert r.sustained_breakeven_requests == expected and r.sustained_breakeven_gpus == 2
    assert r.breakeven_monthly_cost == fixed + g + m * expected
    assert r.breakeven_monthly_cost == a * expected  # the two options cost the same there
    assert r.naive_breakeven_requests == expected
    assert r.naive_breakeven_within_capacity is True
    assert r.never_reason is None


def test_multi_set_breakeven_and_the_sawtooth_after_it():
    # C = 1000 * 1 * 2,592,000 / 2592 = 1,000,000 requests per set; G = $2/h * 720 h.
    f, g, m, a = D(56280), D(1440), D("0.0001"), D("0.0021")
    r = run(
        api_cost_per_request=a,
        gpu_hourly_cost=g / 720,
        num_gpus=1,
        gpu_utilization=1,
        engineering_monthly=f,
        infrastructure_monthly=0,
        output_tokens_per_sec_per_system=1000,
        avg_output_tokens_per_request=2592,
        marginal_cost_per_request=m,
    )
    c = D(1000) * SECONDS_PER_MONTH / 2592
    assert r.requests_per_gpu_month == c
    d = (a - m) * c - g
    k = math.ceil(f / d)
    j = math.ceil((f + g) / d)
    assert (k, j) == (101, 104)
    assert r.breakeven_gpu_sets == k and r.breakeven_gpus == k
    assert r.breakeven_requests == (f + k * g) / (a - m)
    assert (k - 1) * c < r.breakeven_requests <= k * c
    assert r.sustained_breakeven_requests == (f + j * g) / (a - m)
    assert r.sustained_breakeven_gpus == j
    # Just after the 102nd set is added, the API is cheaper again.
    e = SelfHostingEconomics.build(
        gpu_hourly_cost=g / 720,
        num_gpus=1,
        gpu_utilization=D(1),
        engineering_monthly=f,
        infrastructure_monthly=D(0),
        output_tokens_per_sec_per_system=D(1000),
        avg_output_tokens_per_request=D(2592),
        marginal_cost_per_request=m,
    )
    v = k * c + 1
    assert e.sets_needed(v) == k + 1
    assert e.self_hosted_cost(v) == f + (k + 1) * g + m * v
    assert e.self_hosted_cost(v) > a * v
    # Extra sets add only the GPU cost, not engineering and infrastructure again (the seed's total_cost did).
    assert e.self_hosted_cost(3 * c) == f + 3 * g + m * 3 * c
    report = MODEL.report(r)
    assert any("jump" in w for w in report.warnings)


def test_zero_margin_set_with_no_overhead_ties_at_full_sets_only():
    # d = (a - m) C - G = 0 and F = 0: self-hosting equals the API exactly at C, 2C, ...
    e = econ(0, 1000, 0, 1_000_000, 1)
    sol = solve_breakeven(e, D("0.001"))
    assert sol.breakeven_requests == D(1_000_000) and sol.breakeven_sets == 1
    assert sol.sustained_requests is None and sol.never is None
    assert e.self_hosted_cost(D(1_000_000)) == D("0.001") * 1_000_000
    assert e.self_hosted_cost(D(999_999)) > D("0.001") * 999_999


def test_zero_margin_set_with_overhead_never_breaks_even():
    sol = solve_breakeven(econ(1, 1000, 0, 1_000_000, 1), D("0.001"))
    assert sol.never == "set_dearer_than_api" and sol.breakeven_requests is None


def test_api_equal_to_marginal_never_breaks_even():
    r = run(api_cost_per_request="0.0001")
    assert not r.breaks_even and "equal to" in r.never_reason


def test_free_api_never_breaks_even():
    r = run(api_cost_per_request=0, marginal_cost_per_request=0)
    assert not r.breaks_even and r.naive_breakeven_requests is None


def test_free_self_hosting_breaks_even_at_zero():
    sol = solve_breakeven(econ(0, 0, 0, 1000, 1), D("0.001"))
    assert sol.breakeven_requests == 0 and sol.sustained_requests == 0


def test_gpus_needed_at_monthly_requests():
    c = D(2000) * D("0.5") * SECONDS_PER_MONTH / 500
    volume = D(12_000_000)
    r = run(monthly_requests=volume)
    p = r.at_monthly_requests
    sets = math.ceil(volume / c)
    assert p.gpu_sets == sets == 3 and p.gpus == sets * 2
    assert p.self_hosted_cost == D(2000) + sets * D(3600) + D("0.0001") * volume
    assert p.api_cost == D("0.000425") * volume
    assert p.cheaper == "api"
    assert p.self_hosted_minus_api == p.self_hosted_cost - p.api_cost
    assert p.load_of_provisioned_capacity == volume / (sets * c)


def test_exactly_full_set_needs_no_extra_set_and_zero_volume_still_needs_one():
    c = D(2000) * D("0.5") * SECONDS_PER_MONTH / 500
    assert run(monthly_requests=c).at_monthly_requests.gpu_sets == 1
    assert run(monthly_requests=c + 1).at_monthly_requests.gpu_sets == 2
    zero = run(monthly_requests=0).at_monthly_requests
    assert zero.gpu_sets == 1 and zero.gpus == 2 and zero.self_hosted_cost_per_request is None


def test_tie_is_reported_as_tie():
    a = D("0.0141")
    v = D(5600) / (a - D("0.0001"))
    assert v == 400_000
    p = run(api_cost_per_request=a, monthly_requests=v).at_monthly_requests
    assert p.cheaper == "tie" and p.self_hosted_minus_api == 0


def test_sweep_defaults_to_break_even_then_monthly_requests_then_capacity():
    a = D("0.0125")
    r = run(api_cost_per_request=a)
    be = r.breakeven_requests
    assert [p.monthly_requests for p in r.sweep] == [be * f for f in (D("0.1"), D("0.2"), D("0.5"), 1, 2, 5, 10)]
    assert "break-even" in r.sweep_basis
    assert [p.cheaper for p in r.sweep][:3] == ["api"] * 3 and r.sweep[3].cheaper == "tie"
    assert r.sweep[4].cheaper == "self-host"
    r2 = run(monthly_requests=3_000_000)
    assert r2.sweep[3].monthly_requests == 3_000_000 and "monthly_requests" in r2.sweep_basis
    r3 = run()
    assert r3.sweep[3].monthly_requests == r3.requests_per_gpu_month and "capacity" in r3.sweep_basis
    r4 = run(sweep_volumes=[10, 20_000_000])
    assert [p.monthly_requests for p in r4.sweep] == [10, 20_000_000]
    assert r4.sweep[1].gpu_sets == math.ceil(D(20_000_000) / r4.requests_per_gpu_month)


def test_output_length_sensitivity_with_flat_price_scales_price_and_capacity():
    a = D("0.0125")
    r = run(api_cost_per_request=a)
    rows = r.output_length_sensitivity
    assert [row.avg_output_tokens_per_request for row in rows] == [250, 500, 1000]
    base_tokens = D(2000) * D("0.5") * SECONDS_PER_MONTH
    for row, factor in zip(rows, (D("0.5"), D(1), D(2)), strict=True):
        assert row.requests_per_gpu_month == base_tokens / (500 * factor)
        assert row.api_cost_per_request == a * factor
        margin = a * factor - D("0.0001")
        assert row.breakeven_requests == (D(2000) + D(3600)) / margin  # one set suffices in every case
    assert [row.is_scenario for row in rows] == [False, True, False]
    assert "proportion" in r.api_price_scales_with_output


def test_output_length_sensitivity_reprices_api_model():
    r = run(api_cost_per_request=None, api_model="frontier", avg_input_tokens=1000)
    rate = RATES["frontier"]
    for row, out in zip(r.output_length_sensitivity, (250, 500, 1000), strict=True):
        expected = (D(1000) * rate.input_per_mtok + D(out) * rate.output_per_mtok) / 10**6 * (1 - rate.discount)
        assert row.api_cost_per_request == expected
    assert "repriced" in r.api_price_scales_with_output


def test_utilization_sensitivity_adds_the_scenario_level():
    r = run(gpu_utilization="0.4", api_cost_per_request="0.0125")
    levels = [row.gpu_utilization for row in r.utilization_sensitivity]
    assert levels == [D("0.25"), D("0.4"), D("0.5"), D("0.75"), D(1)]
    for row in r.utilization_sensitivity:
        assert row.requests_per_gpu_month == D(2000) * row.gpu_utilization * SECONDS_PER_MONTH / 500
        assert row.is_scenario == (row.gpu_utilization == D("0.4"))
    assert len(run().utilization_sensitivity) == 4


def test_api_model_from_catalog_and_explicit_prices():
    rate = RATES["open-70b"]
    r = run(api_cost_per_request=None, api_model="open-70b", avg_input_tokens=400)
    assert r.api_cost_per_request == (D(400) * rate.input_per_mtok + D(500) * rate.output_per_mtok) / 10**6
    assert "open-70b" in r.api_price_source
    explicit = {"name": "maverick", "input_per_mtok": 0, "output_per_mtok": "0.85", "discount": "0.1"}
    r2 = run(api_cost_per_request=None, api_model=explicit, avg_input_tokens=0)
    assert r2.api_cost_per_request == D(500) * D("0.85") / 10**6 * D("0.9")
    assert "maverick" in r2.api_price_source and "10% discount" in r2.api_price_source


def test_unknown_api_model_propagates():
    with pytest.raises(UnknownModelError):
        run(api_cost_per_request=None, api_model="nope", avg_input_tokens=0)


# -- bad scenarios ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"gpu_utilization": 0}, "gpu_utilization"),
        ({"gpu_utilization": "1.2"}, "gpu_utilization"),
        ({"monthly_requests": -1}, "monthly_requests"),
        ({"num_gpus": 0}, "num_gpus"),
        ({"avg_output_tokens_per_request": 0}, "avg_output_tokens_per_request"),
        ({"output_tokens_per_sec_per_system": 0}, "output_tokens_per_sec_per_system"),
        ({"api_cost_per_request": "-0.1"}, "api_cost_per_request"),
        ({"engineering_monthly": -5}, "engineering_monthly"),
        ({"api_model": "open-70b", "avg_input_tokens": 10}, "api_cost_per_request"),
        ({"api_cost_per_request": None}, "api_model"),
        ({"api_cost_per_request": None, "api_model": "open-70b"}, "avg_input_tokens"),
        ({"avg_input_tokens": 100}, "avg_input_tokens"),
        ({"gpu_utilisation": "0.5"}, "gpu_utilisation"),
        ({"sweep_volumes": []}, "sweep_volumes"),
    ],
)
def test_bad_scenarios_name_the_field(overrides, field):
    data = {k: v for k, v in {**BASE, **overrides}.items() if v is not None}
    with pytest.raises(ScenarioError) as info:
        parse_scenario(BreakevenScenario, data)
    assert field in str(info.value)
    assert info.value.field is not None and field in info.value.field


def test_missing_seed_field_is_named():
    data = dict(BASE)
    del data["engineering_monthly"]
    with pytest.raises(ScenarioError, match="engineering_monthly"):
        parse_scenario(BreakevenScenario, data)


# -- example and report -----------------------------------------------------------------------------


def test_example_parses_computes_and_reports():
    scenario = parse_scenario(MODEL.scenario_type, yaml.safe_load(MODEL.example))
    result = MODEL.compute(scenario, CTX)
    assert result.at_monthly_requests is not None
    report = MODEL.report(result)
    assert report.tables[report.csv_table].title.startswith("Monthly cost by volume")
    assert any("never breaks even" in w for w in report.warnings)
    result.model_dump(mode="json")


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"api_cost_per_request": "0.0125", "monthly_requests": 1_000_000},
        {"api_cost_per_request": "0.000085", "avg_output_tokens_per_request": 100},
        {
            "api_cost_per_request": None,
            "api_model": "frontier",
            "avg_input_tokens": 800,
            "gpu_utilization": "0.3",
        },
    ],
)
def test_report_builds(overrides):
    report = MODEL.report(run(**overrides))
    assert report.tables and report.notes
    for table in report.tables:
        assert all(len(row) == len(table.columns) for row in table.rows)


# -- properties -------------------------------------------------------------------------------------

money = st.integers(min_value=0, max_value=200_000).map(D)
tiny_price = st.integers(min_value=0, max_value=50_000).map(lambda i: D(i) / 10**6)  # $0 - $0.05/request
tokens_month = st.integers(min_value=1, max_value=10**10).map(D)
length = st.integers(min_value=1, max_value=4000).map(D)
economics = st.builds(econ, money, st.integers(1, 50_000).map(D), tiny_price, tokens_month, length)


def _as_key(value: Decimal | None) -> Decimal:
    return D("Infinity") if value is None else value


@settings(max_examples=150, deadline=None)
@given(economics, tiny_price, tiny_price)
def test_breakeven_falls_or_stays_as_api_price_rises(e, p1, p2):
    low, high = sorted((p1, p2))
    assert _as_key(solve_breakeven(e, high).breakeven_requests) <= _as_key(solve_breakeven(e, low).breakeven_requests)


@settings(max_examples=150, deadline=None)
@given(economics, tiny_price, st.integers(0, 10**6))
def test_breakeven_is_the_smallest_volume_where_self_hosting_is_no_dearer(e, a, permille):
    sol = solve_breakeven(e, a)
    tol = D("1e-30")
    with localcontext() as c:
        c.prec = 60
        if sol.breakeven_requests is None:
            # Never: self-hosting is dearer at any volume, e.g. at a sampled one.
            v = D(permille) * 1000
            assert e.self_hosted_cost(v) > a * v
            return
        v_be = sol.breakeven_requests
        assert e.self_hosted_cost(v_be) <= a * v_be + tol
        below = v_be * D(permille) / D(10**6 + 1)  # strictly below break-even
        if v_be - below > tol:
            assert e.self_hosted_cost(below) > a * below
        if sol.sustained_requests is not None:
            above = sol.sustained_requests + D(permille)
            assert e.self_hosted_cost(above) <= a * above + tol


@settings(max_examples=100, deadline=None)
@given(
    st.integers(1, 10**6).map(D),
    st.integers(1, 100).map(lambda i: D(i) / 100),
    st.integers(1, 100).map(lambda i: D(i) / 100),
    length,
    length,
)
def test_capacity_is_linear_in_utilization_and_inverse_in_output_length(tps, u1, u2, l1, l2):
    def capacity(u, out):
        return SelfHostingEconomics.build(
            gpu_hourly_cost=D(1),
            num_gpus=1,
            gpu_utilization=u,
            engineering_monthly=D(0),
            infrastructure_monthly=D(0),
            output_tokens_per_sec_per_system=tps,
            avg_output_tokens_per_request=out,
            marginal_cost_per_request=D(0),
        ).capacity

    def close(x, y):
        return abs(x - y) <= D("1e-40") * max(abs(x), abs(y), D(1))

    assert close(capacity(u1, l1) * u2, capacity(u2, l1) * u1)
    assert close(capacity(u1, l1) * l1, capacity(u1, l2) * l2)
    assert close(capacity(u1, l1), tps * u1 * SECONDS_PER_MONTH / l1)


@settings(max_examples=150, deadline=None)
@given(economics, st.integers(0, 10**9), st.integers(0, 10**9))
def test_self_hosted_cost_is_non_decreasing_in_volume(e, v1, v2):
    low, high = sorted((D(v1), D(v2)))
    assert e.self_hosted_cost(low) <= e.self_hosted_cost(high)
    assert e.sets_needed(low) <= e.sets_needed(high)


@settings(max_examples=150, deadline=None)
@given(economics, tiny_price)
def test_never_exactly_when_api_is_not_above_marginal_or_a_full_set_is_not_cheaper(e, a):
    margin = a - e.marginal_cost_per_request
    # d * L, with d = (a - m) * C - G: what one fully used set saves over the API, times the output length.
    d_scaled = margin * e.output_tokens_per_month - e.set_monthly_cost * e.avg_output_tokens
    breaks_even = margin > 0 and (d_scaled > 0 or (d_scaled == 0 and e.overhead_monthly == 0))
    sol = solve_breakeven(e, a)
    assert (sol.breakeven_requests is not None) == breaks_even
    if margin <= 0:
        assert sol.never == "api_not_above_marginal"
    elif not breaks_even:
        assert sol.never == "set_dearer_than_api"
    else:
        k = max(1, math.ceil(e.overhead_monthly * e.avg_output_tokens / d_scaled))
        assert sol.breakeven_sets == k
        assert e.sets_needed(sol.breakeven_requests) == k

"""Tests for the incident planner model (seed 002's uncapped-output batch job).

Every expected figure is derived here from the formula and this file's own inputs.
"""

from __future__ import annotations

import math
from decimal import Decimal, localcontext

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from margin.errors import ScenarioError, UnknownModelError
from margin.money import MONEY_CONTEXT
from margin.plan import get_model
from margin.plan._base import PlanContext, Report, parse_scenario
from margin.plan.incident import MODEL, IncidentScenario, compute, report
from margin.pricing.rates import ModelRate

MTOK = Decimal(10**6)

FAKE_RATES = {
    "cat-model": ModelRate(
        model="cat-model-v2",
        input_per_mtok=Decimal("3"),
        output_per_mtok=Decimal("12"),
        source="fake",
        discount=Decimal("0.1"),
    ),
}


def fake_resolve(name: str) -> ModelRate:
    try:
        return FAKE_RATES[name]
    except KeyError:
        raise UnknownModelError(name, []) from None


CTX = PlanContext(resolve_rate=fake_resolve)


def price(inp: str, out: str, name: str = "p", **extra: str) -> dict[str, str]:
    return {"name": name, "input_per_mtok": inp, "output_per_mtok": out, **extra}


def scenario(**overrides) -> dict:
    base = {
        "model": price("2", "10"),
        "requests": 20_000,
        "input_tokens": 800,
        "typical_output_tokens": 300,
        "uncapped_output_tokens": 9000,
        "max_tokens": 1200,
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def run(data: dict):
    return compute(parse_scenario(IncidentScenario, data), CTX)


def job(requests: int, tin: int, tout: int, pin: str, pout: str) -> Decimal:
    return requests * (tin * Decimal(pin) + tout * Decimal(pout)) / MTOK


# -- main computation -------------------------------------------------------------------------------


def test_typical_capped_uncapped_job_costs() -> None:
    r = run(scenario())
    typical = job(20_000, 800, 300, "2", "10")
    capped = job(20_000, 800, 1200, "2", "10")
    uncapped = job(20_000, 800, 9000, "2", "10")
    assert r.typical.cost_per_job.effective_usd == typical
    assert r.capped.cost_per_job.effective_usd == capped
    assert r.uncapped.cost_per_job.effective_usd == uncapped
    assert r.typical.input_cost_per_job.list_usd == 20_000 * 800 * Decimal(2) / MTOK
    assert r.uncapped.output_cost_per_job.list_usd == 20_000 * 9000 * Decimal(10) / MTOK
    assert r.uncapped.output_tokens_per_job == 20_000 * 9000
    assert r.capped.output_tokens_per_request == 1200
    assert r.input_tokens_per_job == 20_000 * 800
    assert r.typical.cost_per_request.effective_usd == typical / 20_000
    with localcontext(MONEY_CONTEXT):
        assert r.uncapped_multiplier == uncapped / typical
        assert r.capped.multiple_of_typical == capped / typical
    assert r.typical.multiple_of_typical == 1
    assert r.cap_saves_per_job == uncapped - capped
    assert r.cap_binds is True and r.cap_truncates_typical is False
    assert r.cost_ceiling is None and r.max_tokens_for_ceiling is None and r.ceiling_message is None
    assert r.typical.fits_ceiling is None
    assert r.typical.cost_per_month is None


def test_seed_002_story_recomputed() -> None:
    """50,000 requests, 15,000 output tokens each at $15/M: the uncapped output is 750M tokens."""
    requests, tin, typical_out, uncapped_out = 50_000, 1000, 500, 15_000
    r = run(
        scenario(
            model=price("2.50", "15"),
            requests=requests,
            input_tokens=tin,
            typical_output_tokens=typical_out,
            uncapped_output_tokens=uncapped_out,
            max_tokens=typical_out,
        )
    )
    assert r.uncapped.output_tokens_per_job == requests * uncapped_out
    assert r.uncapped.output_cost_per_job.effective_usd == requests * uncapped_out * Decimal(15) / MTOK
    assert r.uncapped.cost_per_job.effective_usd == job(requests, tin, uncapped_out, "2.50", "15")
    assert r.typical.cost_per_job.effective_usd == job(requests, tin, typical_out, "2.50", "15")
    # The story's headline bill is three orders of magnitude beyond what its own numbers produce.
    assert r.uncapped.cost_per_job.effective_usd * 100 < Decimal(2_100_000)


def test_catalog_model_and_discount() -> None:
    r = run(scenario(model="cat-model"))
    list_job = job(20_000, 800, 300, "3", "12")
    assert r.resolved_model == "cat-model-v2"
    assert r.typical.cost_per_job.list_usd == list_job
    assert r.typical.cost_per_job.effective_usd == list_job * Decimal("0.9")


def test_unknown_model_propagates() -> None:
    with pytest.raises(UnknownModelError):
        run(scenario(model="nope"))


def test_cap_above_uncapped_does_not_bind() -> None:
    r = run(scenario(max_tokens=20_000))
    assert r.cap_binds is False
    assert r.capped.output_tokens_per_request == 9000
    assert r.capped.cost_per_job == r.uncapped.cost_per_job
    assert r.cap_saves_per_job == 0
    assert any("does not limit" in w for w in report(r).warnings)


def test_cap_below_typical_truncates() -> None:
    r = run(scenario(max_tokens=100))
    assert r.cap_truncates_typical is True
    assert r.capped.cost_per_job.effective_usd < r.typical.cost_per_job.effective_usd
    assert any("cut off" in w for w in report(r).warnings)


def test_runs_per_month() -> None:
    r = run(scenario(runs_per_month=30))
    assert r.typical.cost_per_month.effective_usd == job(20_000, 800, 300, "2", "10") * 30
    assert r.uncapped.cost_per_month.list_usd == job(20_000, 800, 9000, "2", "10") * 30
    rep = report(r)
    assert rep.tables[0].columns[-1].header.startswith("Per month")
    assert any("for a month" in n for n in rep.notes)


def test_free_model_has_no_multiplier() -> None:
    r = run(scenario(model=price("0", "0")))
    assert r.uncapped_multiplier is None
    assert r.multiplier_note is not None
    assert r.typical.multiple_of_typical is None
    assert any("undefined" in n for n in report(r).notes)


def test_zero_typical_output_with_paid_input() -> None:
    r = run(scenario(typical_output_tokens=0))
    with localcontext(MONEY_CONTEXT):
        assert r.uncapped_multiplier == job(20_000, 800, 9000, "2", "10") / job(20_000, 800, 0, "2", "10")


# -- ceiling ----------------------------------------------------------------------------------------


def _fit(ceiling: Decimal, requests=20_000, tin=800, pin="2", pout="10") -> int:
    return math.floor((ceiling - requests * tin * Decimal(pin) / MTOK) / (requests * Decimal(pout) / MTOK))


def test_ceiling_gives_largest_max_tokens() -> None:
    ceiling = Decimal("250")
    r = run(scenario(cost_ceiling=str(ceiling)))
    expected = _fit(ceiling)
    assert r.max_tokens_for_ceiling == expected
    assert 300 <= expected < 1200
    assert job(20_000, 800, expected, "2", "10") <= ceiling
    assert job(20_000, 800, expected + 1, "2", "10") > ceiling
    assert r.job_input_cost == 20_000 * 800 * Decimal(2) / MTOK
    assert r.input_exceeds_ceiling is False
    assert r.typical.fits_ceiling is True
    assert r.capped.fits_ceiling is False and r.uncapped.fits_ceiling is False
    assert r.max_input_tokens_for_ceiling == math.floor(ceiling / (20_000 * Decimal(2) / MTOK))
    assert f"<= {expected:,}" in r.ceiling_message and "too high" in r.ceiling_message
    rep = report(r)
    assert len(rep.tables) == 2
    assert rep.tables[1].rows[0][4] == expected


def test_ceiling_exactly_met_fits() -> None:
    ceiling = job(20_000, 800, 1200, "2", "10")
    r = run(scenario(cost_ceiling=str(ceiling)))
    assert r.capped.fits_ceiling is True
    assert r.max_tokens_for_ceiling == 1200
    assert "fits" in r.ceiling_message


def test_input_alone_exceeds_ceiling() -> None:
    ceiling = Decimal("20")  # input alone: 20,000 x 800 x $2/M = $32
    r = run(scenario(cost_ceiling=str(ceiling)))
    assert r.input_exceeds_ceiling is True
    assert r.max_tokens_for_ceiling is None
    assert r.max_input_tokens_for_ceiling == math.floor(ceiling / (20_000 * Decimal(2) / MTOK))
    assert "input alone" in r.ceiling_message
    assert any("input alone" in w for w in report(r).warnings)


def test_ceiling_below_typical_output() -> None:
    ceiling = job(20_000, 800, 100, "2", "10")
    r = run(scenario(cost_ceiling=str(ceiling)))
    assert r.max_tokens_for_ceiling == 100
    assert "too tight" in r.ceiling_message


def test_ceiling_leaves_nothing_for_output() -> None:
    ceiling = job(20_000, 800, 0, "2", "10") + Decimal("0.1")  # $0.1 buys 0.5 output tokens per request
    r = run(scenario(cost_ceiling=str(ceiling)))
    assert r.max_tokens_for_ceiling == 0
    assert "not one output token" in r.ceiling_message


def test_even_uncapped_fits_ceiling() -> None:
    ceiling = Decimal(10_000)
    r = run(scenario(cost_ceiling=str(ceiling)))
    assert r.max_tokens_for_ceiling == _fit(ceiling)
    assert r.uncapped.fits_ceiling is True
    assert "Even the uncapped" in r.ceiling_message


def test_free_output_any_cap_fits() -> None:
    r = run(scenario(model=price("2", "0"), cost_ceiling="100"))
    assert r.max_tokens_for_ceiling is None
    assert "free" in r.ceiling_message


def test_ceiling_uses_effective_prices() -> None:
    ceiling = Decimal("300")
    r = run(scenario(model="cat-model", cost_ceiling=str(ceiling)))
    eff_in, eff_out = Decimal(3) * Decimal("0.9"), Decimal(12) * Decimal("0.9")
    expected = math.floor((ceiling - 20_000 * 800 * eff_in / MTOK) / (20_000 * eff_out / MTOK))
    assert r.max_tokens_for_ceiling == expected


# -- report and example -----------------------------------------------------------------------------


def _assert_report_ok(rep: Report) -> None:
    assert rep.tables
    assert 0 <= rep.csv_table < len(rep.tables)
    for table in rep.tables:
        for row in table.rows:
            assert len(row) == len(table.columns)


def test_report_builds() -> None:
    rep = report(run(scenario()))
    _assert_report_ok(rep)
    assert len(rep.tables) == 1
    assert [row[0].split()[0] for row in rep.tables[0].rows] == ["typical", "capped", "uncapped"]
    assert any("Without max_tokens" in n for n in rep.notes)
    assert any("bounds the worst case" in n for n in rep.notes)
    assert any("scenario" in w for w in rep.warnings)


def test_example_parses_and_computes() -> None:
    assert get_model("incident") is MODEL
    data = yaml.safe_load(MODEL.example)
    r = MODEL.compute(parse_scenario(MODEL.scenario_type, data), CTX)
    assert r.max_tokens_for_ceiling is not None
    _assert_report_ok(MODEL.report(r))


# -- bad scenarios ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"uncapped_output_tokens": 299}, "uncapped_output_tokens"),
        ({"requests": 0}, "requests"),
        ({"requests": -5}, "requests"),
        ({"input_tokens": -1}, "input_tokens"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"cost_ceiling": 0}, "cost_ceiling"),
        ({"runs_per_month": -1}, "runs_per_month"),
        ({"model": None}, "model"),
        ({"model": price("1", "1", discount="2")}, "discount"),
        ({"max_token": 5}, "max_token"),
        ({"requests": "many"}, "requests"),
    ],
)
def test_bad_scenarios_name_the_field(changes: dict, field: str) -> None:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(IncidentScenario, scenario(**changes))
    assert field in str(info.value)


# -- properties -------------------------------------------------------------------------------------

reqs = st.integers(min_value=1, max_value=10**6)
toks = st.integers(min_value=0, max_value=100_000)
prices = st.decimals(min_value="0.01", max_value=100, places=2)
discounts = st.decimals(min_value=0, max_value="0.9", places=2)


@settings(max_examples=80, deadline=None)
@given(reqs, toks, toks, toks, st.integers(min_value=1, max_value=200_000), prices, prices)
def test_capped_cost_never_exceeds_uncapped(n, tin, typical, extra, cap, pin, pout) -> None:
    r = run(
        scenario(
            model=price(str(pin), str(pout)),
            requests=n,
            input_tokens=tin,
            typical_output_tokens=typical,
            uncapped_output_tokens=typical + extra + 1,
            max_tokens=cap,
        )
    )
    assert r.capped.cost_per_job.effective_usd <= r.uncapped.cost_per_job.effective_usd
    assert r.typical.cost_per_job.effective_usd <= r.uncapped.cost_per_job.effective_usd
    assert r.cap_saves_per_job >= 0


@settings(max_examples=150, deadline=None)
@given(reqs, toks, prices, prices, discounts, st.decimals(min_value="0.01", max_value=100_000, places=2))
def test_max_tokens_fits_ceiling_and_one_more_does_not(n, tin, pin, pout, discount, ceiling) -> None:
    r = run(
        scenario(
            model=price(str(pin), str(pout), discount=str(discount)),
            requests=n,
            input_tokens=tin,
            typical_output_tokens=0,
            uncapped_output_tokens=1,
            max_tokens=1,
            cost_ceiling=str(ceiling),
        )
    )
    rate = ModelRate(model="p", input_per_mtok=pin, output_per_mtok=pout, discount=discount)

    def job_cost(in_tokens: int, out_tokens: int) -> Decimal:
        with localcontext(MONEY_CONTEXT):
            return rate.effective(n * (in_tokens * pin + out_tokens * pout) / MTOK)

    if r.input_exceeds_ceiling:
        assert r.max_tokens_for_ceiling is None
        assert job_cost(tin, 0) > ceiling
        fit_in = r.max_input_tokens_for_ceiling
        assert job_cost(fit_in, 0) <= ceiling < job_cost(fit_in + 1, 0)
    else:
        m = r.max_tokens_for_ceiling
        assert m is not None and m >= 0
        assert job_cost(tin, m) <= ceiling < job_cost(tin, m + 1)


@settings(max_examples=60, deadline=None)
@given(reqs, st.integers(min_value=1, max_value=100), toks, toks, prices, prices)
def test_job_cost_linear_in_requests(n, k, tin, tout, pin, pout) -> None:
    def one(requests: int):
        return run(
            scenario(
                model=price(str(pin), str(pout)),
                requests=requests,
                input_tokens=tin,
                typical_output_tokens=tout,
                uncapped_output_tokens=tout + 1,
                max_tokens=tout + 1,
            )
        )

    a, b = one(n), one(n * k)
    assert b.typical.cost_per_job.effective_usd == a.typical.cost_per_job.effective_usd * k
    assert b.uncapped.cost_per_job.list_usd == a.uncapped.cost_per_job.list_usd * k

"""Tests for the envelope planner model (seed 000 five-step estimate, seed 001 model comparison).

Every expected figure is derived here from the formula and this file's own inputs.
"""

from __future__ import annotations

import math
from datetime import date
from decimal import Decimal, localcontext

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from margin.errors import ScenarioError, UnknownModelError
from margin.money import MONEY_CONTEXT
from margin.plan import get_model
from margin.plan._base import PlanContext, Report, parse_scenario
from margin.plan.envelope import MODEL, EnvelopeScenario, compute, report
from margin.pricing.rates import ModelRate

MTOK = Decimal(10**6)

FAKE_RATES = {
    "cat-big": ModelRate(
        model="cat-big-2025-01",
        provider="acme",
        input_per_mtok=Decimal("2.5"),
        output_per_mtok=Decimal("10"),
        source="fake catalog 1.0",
        prices_checked=date(2025, 1, 2),
    ),
    "cat-small": ModelRate(
        model="cat-small",
        provider="acme",
        input_per_mtok=Decimal("0.15"),
        output_per_mtok=Decimal("0.6"),
        source="fake catalog 1.0",
    ),
    "cat-discounted": ModelRate(
        model="cat-discounted",
        input_per_mtok=Decimal("3"),
        output_per_mtok=Decimal("15"),
        source="fake catalog 1.0",
        discount=Decimal("0.2"),
    ),
    # Names used by the example scenario; prices are this test's own.
    "gpt-4o": ModelRate(model="gpt-4o", input_per_mtok=Decimal("2"), output_per_mtok=Decimal("8")),
    "gpt-4o-mini": ModelRate(model="gpt-4o-mini", input_per_mtok=Decimal("0.2"), output_per_mtok=Decimal("0.8")),
    "claude-3-5-haiku": ModelRate(
        model="claude-3-5-haiku-latest", input_per_mtok=Decimal("1"), output_per_mtok=Decimal("4")
    ),
}


def fake_resolve(name: str) -> ModelRate:
    try:
        return FAKE_RATES[name]
    except KeyError:
        raise UnknownModelError(name, []) from None


CTX = PlanContext(resolve_rate=fake_resolve)


def price(name: str, inp: str, out: str, **extra: str) -> dict[str, str]:
    return {"name": name, "input_per_mtok": inp, "output_per_mtok": out, **extra}


def run(data: dict, ctx: PlanContext = CTX):
    return compute(parse_scenario(EnvelopeScenario, data), ctx)


def by_name(result, name: str):
    return next(m for m in result.models if m.name == name)


# -- main computation -------------------------------------------------------------------------------


def test_requests_per_day_and_tokens_explicit_prices() -> None:
    rpd, tin, tout, pin, pout = 10_000, 2000, 500, Decimal("3"), Decimal("15")
    result = run(
        {
            "requests_per_day": rpd,
            "input_tokens": tin,
            "output_tokens": tout,
            "models": [price("m", str(pin), str(pout))],
        }
    )
    m = result.models[0]
    per_request = (tin * pin + tout * pout) / MTOK
    in_day = tin * rpd * pin / MTOK
    out_day = tout * rpd * pout / MTOK
    assert result.requests_per_day == rpd
    assert result.volume_basis == "requests_per_day"
    assert (m.input_tokens_per_request, m.output_tokens_per_request) == (tin, tout)
    assert m.input_tokens_per_day == tin * rpd
    assert m.output_tokens_per_day == tout * rpd
    assert m.cost_per_request.list_usd == per_request
    assert m.cost_per_request.effective_usd == per_request
    assert m.input_cost_per_day.list_usd == in_day
    assert m.output_cost_per_day.list_usd == out_day
    assert m.cost_per_day.list_usd == in_day + out_day
    assert m.cost_per_month.list_usd == (in_day + out_day) * 30
    assert m.cost_per_year.list_usd == (in_day + out_day) * 365
    assert m.price_source == "scenario"
    assert m.rank == 1
    assert m.ratio_to_cheapest == 1
    with localcontext(MONEY_CONTEXT):
        assert m.output_share_of_cost == (tout * pout) / (tin * pin + tout * pout)
    assert (result.days_per_month, result.days_per_year) == (30, 365)


def test_seed_000_writing_assistant_five_steps() -> None:
    """Seed 000's scenario with margin's word conversion (ceil(words / 0.75)), recomputed step by step."""
    dau, qpu, words_in, words_out = 100_000, 10, 250, 200
    result = run(
        {
            "daily_active_users": dau,
            "queries_per_user": qpu,
            "input_words": words_in,
            "output_words": words_out,
            "models": [price("seed", "5", "15")],
        }
    )
    # Step 1: volume.
    requests = dau * qpu
    assert result.requests_per_day == requests
    assert result.volume_basis == "daily_active_users x queries_per_user"
    # Step 2: payload, rounded up.
    tin = math.ceil(Decimal(words_in) / Decimal("0.75"))
    tout = math.ceil(Decimal(words_out) / Decimal("0.75"))
    assert (result.input_tokens_per_request, result.output_tokens_per_request) == (tin, tout)
    # Step 3: daily tokens.
    assert result.input_tokens_per_day == requests * tin
    assert result.output_tokens_per_day == requests * tout
    # Step 4: unit costs.
    m = result.models[0]
    in_day = requests * tin * Decimal(5) / MTOK
    out_day = requests * tout * Decimal(15) / MTOK
    assert m.input_cost_per_day.effective_usd == in_day
    assert m.output_cost_per_day.effective_usd == out_day
    # Step 5: annualize.
    assert m.cost_per_month.effective_usd == (in_day + out_day) * 30
    assert m.cost_per_year.effective_usd == (in_day + out_day) * 365
    # The rounding up makes margin's figure higher than a 330/260-token estimate would be.
    assert tin > 330 and tout > 260


def test_words_per_token_comes_from_context() -> None:
    ctx = PlanContext(resolve_rate=fake_resolve, words_per_token=Decimal("0.5"))
    result = run({"requests_per_day": 1, "input_words": 101, "output_tokens": 3, "models": [price("m", "1", "1")]}, ctx)
    assert result.input_tokens_per_request == math.ceil(Decimal(101) / Decimal("0.5"))
    assert result.words_per_token == Decimal("0.5")


def test_fractional_queries_per_user() -> None:
    result = run(
        {
            "daily_active_users": 3,
            "queries_per_user": "2.5",
            "input_tokens": 100,
            "output_tokens": 0,
            "models": [price("m", "1", "1")],
        }
    )
    assert result.requests_per_day == Decimal(3) * Decimal("2.5")
    assert result.models[0].cost_per_day.list_usd == Decimal(3) * Decimal("2.5") * 100 / MTOK
    assert result.models[0].output_share_of_cost == 0


def test_catalog_models_through_resolver_and_discount() -> None:
    rpd, tin, tout = 1000, 1200, 300
    result = run(
        {
            "requests_per_day": rpd,
            "input_tokens": tin,
            "output_tokens": tout,
            "models": ["cat-big", "cat-discounted", price("own", "1", "2", discount="0.5")],
        }
    )
    big = by_name(result, "cat-big")
    assert big.resolved_model == "cat-big-2025-01"
    assert big.provider == "acme"
    assert big.price_source == "fake catalog 1.0"
    assert big.prices_checked == "2025-01-02"
    disc = by_name(result, "cat-discounted")
    list_day = rpd * (tin * Decimal(3) + tout * Decimal(15)) / MTOK
    assert disc.cost_per_day.list_usd == list_day
    assert disc.cost_per_day.effective_usd == list_day * (1 - Decimal("0.2"))
    assert disc.cost_per_year.effective_usd == list_day * 365 * (1 - Decimal("0.2"))
    own = by_name(result, "own")
    assert own.discount == Decimal("0.5")
    assert own.cost_per_request.effective_usd == (tin * 1 + tout * 2) / MTOK * Decimal("0.5")


def test_unknown_catalog_model_propagates() -> None:
    with pytest.raises(UnknownModelError):
        run({"requests_per_day": 1, "input_tokens": 1, "output_tokens": 1, "models": ["nope"]})


# -- ranking ----------------------------------------------------------------------------------------


def test_ranked_cheapest_first_with_ratio() -> None:
    tin, tout = 1000, 1000
    result = run(
        {
            "requests_per_day": 100,
            "input_tokens": tin,
            "output_tokens": tout,
            "models": [price("dear", "10", "30"), price("cheap", "1", "3"), price("mid", "2", "6")],
        }
    )
    assert [m.name for m in result.models] == ["cheap", "mid", "dear"]
    assert [m.rank for m in result.models] == [1, 2, 3]
    cheap = (tin * 1 + tout * 3) / MTOK
    assert by_name(result, "dear").ratio_to_cheapest == ((tin * 10 + tout * 30) / MTOK) / cheap
    assert by_name(result, "mid").ratio_to_cheapest == 2
    assert result.cheapest == "cheap"
    assert result.most_expensive == "dear"
    expected_spread = 100 * ((tin * 10 + tout * 30) - (tin * 1 + tout * 3)) / MTOK * 365
    assert result.yearly_spread == expected_spread


def test_ranking_uses_effective_cost() -> None:
    # "b" lists higher but a 60% discount makes it cheaper: 10 * 0.4 = 4 < 5.
    result = run(
        {
            "requests_per_day": 1,
            "input_tokens": 1000,
            "output_tokens": 0,
            "models": [price("a", "5", "5"), price("b", "10", "10", discount="0.6")],
        }
    )
    assert [m.name for m in result.models] == ["b", "a"]


def test_ties_keep_scenario_order() -> None:
    result = run(
        {
            "requests_per_day": 1,
            "input_tokens": 10,
            "output_tokens": 10,
            "models": [price("first", "1", "2"), price("second", "1", "2")],
        }
    )
    assert [m.name for m in result.models] == ["first", "second"]
    assert all(m.ratio_to_cheapest == 1 for m in result.models)


def test_free_cheapest_model_makes_ratio_undefined() -> None:
    result = run(
        {
            "requests_per_day": 1,
            "input_tokens": 10,
            "output_tokens": 10,
            "models": [price("paid", "1", "2"), price("free", "0", "0"), price("free2", "0", "0")],
        }
    )
    free, free2, paid = result.models
    assert (free.name, free2.name, paid.name) == ("free", "free2", "paid")
    assert free.ratio_to_cheapest == 1 and free2.ratio_to_cheapest == 1
    assert free.output_share_of_cost is None
    assert paid.ratio_to_cheapest is None
    assert paid.ratio_note is not None and "free" in paid.ratio_note
    rep = report(result)
    assert any("undefined" in n for n in rep.notes)


# -- report -----------------------------------------------------------------------------------------


def _assert_report_ok(rep: Report) -> None:
    assert rep.tables
    assert 0 <= rep.csv_table < len(rep.tables)
    for table in rep.tables:
        for row in table.rows:
            assert len(row) == len(table.columns)


def test_report_output_dominant_note() -> None:
    result = run({"requests_per_day": 5, "input_words": 30, "output_tokens": 1000, "models": [price("m", "1", "4")]})
    rep = report(result)
    _assert_report_ok(rep)
    assert rep.tables[rep.csv_table].rows[0][1] == "m"
    assert any("Output tokens are" in n and "max_tokens" in n for n in rep.notes)
    assert any("30 input words" in n for n in rep.notes)
    assert any("scenario" in w for w in rep.warnings)


def test_report_input_dominant_and_mixed_notes() -> None:
    input_heavy = run(
        {"requests_per_day": 5, "input_tokens": 10_000, "output_tokens": 10, "models": [price("m", "1", "4")]}
    )
    assert any(n.startswith("Input tokens are") for n in report(input_heavy).notes)
    mixed = run(
        {
            "requests_per_day": 5,
            "input_tokens": 1000,
            "output_tokens": 1000,
            "models": [price("in-heavy", "10", "1"), price("out-heavy", "1", "10")],
        }
    )
    rep = report(mixed)
    _assert_report_ok(rep)
    assert any("depending on the model" in n for n in rep.notes)
    assert any("x in-heavy" in n or "x out-heavy" in n for n in rep.notes)


def test_report_catalog_model_without_warning() -> None:
    result = run({"requests_per_day": 5, "input_tokens": 100, "output_tokens": 100, "models": ["cat-big"]})
    rep = report(result)
    _assert_report_ok(rep)
    assert rep.warnings == ()
    prices_table = next(t for t in rep.tables if t.title == "Prices used")
    assert "checked 2025-01-02" in prices_table.rows[0][-1]


# -- example ----------------------------------------------------------------------------------------


def test_example_parses_and_computes() -> None:
    assert get_model("envelope") is MODEL
    data = yaml.safe_load(MODEL.example)
    scenario = parse_scenario(MODEL.scenario_type, data)
    result = MODEL.compute(scenario, CTX)
    assert len(result.models) == len(data["models"])
    costs = [m.cost_per_request.effective_usd for m in result.models]
    assert costs == sorted(costs)
    _assert_report_ok(MODEL.report(result))
    assert result.model_dump(mode="json")["models"][0]["rank"] == 1


# -- bad scenarios ----------------------------------------------------------------------------------

BASE = {"requests_per_day": 10, "input_tokens": 10, "output_tokens": 10, "models": [price("m", "1", "1")]}


@pytest.mark.parametrize(
    ("changes", "removed", "field"),
    [
        ({"daily_active_users": 5, "queries_per_user": 2}, [], "requests_per_day"),
        ({"daily_active_users": 5}, ["requests_per_day"], "queries_per_user"),
        ({"queries_per_user": 5}, ["requests_per_day"], "daily_active_users"),
        ({}, ["requests_per_day"], "daily_active_users"),
        ({"input_words": 20}, [], "input_tokens"),
        ({}, ["output_tokens"], "output_tokens"),
        ({"requests_per_day": -1}, [], "requests_per_day"),
        ({"requests_per_day": 0}, [], "requests_per_day"),
        ({"input_tokens": -5}, [], "input_tokens"),
        ({"output_words": -1}, ["output_tokens"], "output_words"),
        ({"models": []}, [], "models"),
        ({"models": ["a", price("a", "1", "1")]}, [], "models"),
        ({"models": [price("m", "-1", "1")]}, [], "models.0"),
        ({"models": [{"name": "m", "input_per_mtok": 1}]}, [], "output_per_mtok"),
        ({"models": [price("m", "1", "1", discount="1.5")]}, [], "discount"),
        ({"models": [""]}, [], "models.0"),
        ({"requests_per_dya": 3}, [], "requests_per_dya"),
    ],
)
def test_bad_scenarios_name_the_field(changes: dict, removed: list[str], field: str) -> None:
    data = {k: v for k, v in BASE.items() if k not in removed} | changes
    with pytest.raises(ScenarioError) as info:
        parse_scenario(EnvelopeScenario, data)
    assert field in str(info.value)


@pytest.mark.parametrize(
    "payload",
    [{"input_tokens": 0, "output_tokens": 0}, {"input_words": 0, "output_tokens": 0}],
)
def test_zero_payload_is_rejected(payload: dict) -> None:
    data = {k: v for k, v in BASE.items() if k not in ("input_tokens", "output_tokens")} | payload
    with pytest.raises(ScenarioError) as info:
        parse_scenario(EnvelopeScenario, data)
    assert info.value.field == "input_tokens"


def test_not_a_mapping() -> None:
    with pytest.raises(ScenarioError):
        parse_scenario(EnvelopeScenario, ["requests_per_day", 1])


# -- properties -------------------------------------------------------------------------------------

volumes = st.integers(min_value=1, max_value=10**7)
tokens = st.integers(min_value=0, max_value=200_000)
prices = st.decimals(min_value=0, max_value=100, places=3, allow_nan=False, allow_infinity=False)
factors = st.integers(min_value=1, max_value=1000)


def _one(rpd, tin, tout, pin, pout, discount="0"):
    return run(
        {
            "requests_per_day": rpd,
            "input_tokens": tin,
            "output_tokens": tout + (1 if tin == 0 and tout == 0 else 0),
            "models": [price("m", str(pin), str(pout), discount=discount)],
        }
    ).models[0]


@settings(max_examples=60, deadline=None)
@given(volumes, factors, tokens, tokens, prices, prices)
def test_cost_is_linear_in_requests_per_day(rpd, k, tin, tout, pin, pout) -> None:
    one = _one(rpd, tin, tout, pin, pout)
    scaled = _one(rpd * k, tin, tout, pin, pout)
    assert scaled.cost_per_day.effective_usd == one.cost_per_day.effective_usd * k
    assert scaled.cost_per_month.effective_usd == one.cost_per_month.effective_usd * k
    assert scaled.cost_per_year.effective_usd == one.cost_per_year.effective_usd * k
    assert scaled.cost_per_request == one.cost_per_request


@settings(max_examples=60, deadline=None)
@given(volumes, factors, tokens, tokens, prices, prices)
def test_cost_is_linear_in_price(rpd, k, tin, tout, pin, pout) -> None:
    one = _one(rpd, tin, tout, pin, pout)
    scaled = _one(rpd, tin, tout, pin * k, pout * k)
    assert scaled.cost_per_day.list_usd == one.cost_per_day.list_usd * k
    assert scaled.cost_per_year.list_usd == one.cost_per_year.list_usd * k


@settings(max_examples=60, deadline=None)
@given(
    volumes,
    tokens,
    tokens,
    prices,
    prices,
    st.decimals(min_value=0, max_value=10, places=2),
    st.decimals(min_value=0, max_value=1, places=2),
)
def test_cost_monotone_in_price_discount_never_raises(rpd, tin, tout, pin, pout, bump, discount) -> None:
    base = _one(rpd, tin, tout, pin, pout, str(discount))
    dearer = _one(rpd, tin, tout, pin + bump, pout, str(discount))
    assert dearer.cost_per_day.effective_usd >= base.cost_per_day.effective_usd
    assert base.cost_per_day.effective_usd <= base.cost_per_day.list_usd
    assert base.cost_per_day.list_usd == base.input_cost_per_day.list_usd + base.output_cost_per_day.list_usd

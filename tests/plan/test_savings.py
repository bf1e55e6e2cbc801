"""The savings planner: levers alone, combined in sequence, ranked; the naive sum of percentages."""

from __future__ import annotations

from decimal import Decimal, localcontext
from itertools import pairwise, permutations
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from margin.errors import ScenarioError, UnknownModelError
from margin.money import MONEY_CONTEXT
from margin.plan import PlanContext, Report, parse_scenario
from margin.plan.savings import MODEL, SavingsResult, SavingsScenario
from margin.pricing.rates import ModelRate

D = Decimal
M = D(1_000_000)

RATES = {
    "big": ModelRate(model="big", input_per_mtok=D(5), output_per_mtok=D(30)),
    "small": ModelRate(model="small", input_per_mtok=D(1), output_per_mtok=D(5)),
    "big-discounted": ModelRate(model="big-discounted", input_per_mtok=D(5), output_per_mtok=D(30), discount=D("0.2")),
    "pricey": ModelRate(model="pricey", input_per_mtok=D(10), output_per_mtok=D(60)),
    "free": ModelRate(model="free", input_per_mtok=D(0), output_per_mtok=D(0)),
}


def resolve(name: str) -> ModelRate:
    try:
        return RATES[name]
    except KeyError:
        raise UnknownModelError(name, []) from None


CTX = PlanContext(resolve_rate=resolve)


def run(data: dict[str, Any]) -> SavingsResult:
    scenario = parse_scenario(SavingsScenario, data)
    return MODEL.compute(scenario, CTX)


def base(**extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "requests_per_day": 2_000_000,
        "input_tokens": 2000,
        "output_tokens": 1000,
        "model": "big",
        "caching": {"hit_rate": "0.25"},
        "routing": {"share": "0.6", "target_model": "small"},
        "compression": {"input_reduction": "0.2"},
    }
    data.update(extra)
    return {k: v for k, v in data.items() if v is not None}


def by_lever(result: SavingsResult) -> dict[str, Any]:
    return {lever.lever: lever for lever in result.levers}


# ------------------------------------------------------------------------------------------- main math


def test_each_lever_alone_and_combined_follow_the_formulas() -> None:
    r, i, o = D(2_000_000), D(2000), D(1000)
    a, b, a2, b2 = D(5), D(30), D(1), D(5)
    h, s, k = D("0.25"), D("0.6"), D("0.2")
    u = (i * a + o * b) / M
    t = (i * a2 + o * b2) / M
    baseline = r * u
    result = run(base())

    assert result.baseline_per_day == baseline
    assert result.baseline_per_month == baseline * 30
    assert result.baseline_input_cost_per_request == i * a / M
    assert result.input_share == (i * a / M) / u
    assert result.output_share == (o * b / M) / u

    alone = by_lever(result)
    assert alone["caching"].saving_per_day == r * h * u
    assert alone["routing"].saving_per_day == r * s * (u - t)
    assert alone["compression"].saving_per_day == r * k * i * a / M
    for lever in alone.values():
        assert lever.saving_per_month == lever.saving_per_day * 30
        assert lever.saving_pct == lever.saving_per_day / baseline

    combined_cost = r * (1 - h) * ((1 - s) * (i * (1 - k) * a + o * b) + s * (i * (1 - k) * a2 + o * b2)) / M
    assert result.combined_cost_per_day == combined_cost
    assert result.combined_saving_per_day == baseline - combined_cost
    assert result.combined_saving_per_month == (baseline - combined_cost) * 30
    assert result.combined_saving_pct == (baseline - combined_cost) / baseline

    naive = r * h * u + r * s * (u - t) + r * k * i * a / M
    assert result.naive_sum_saving_per_day == naive
    assert result.naive_sum_pct == naive / baseline
    # The overstatement has a closed form: R*h*s*(u-t) + R*k*i*(a - (1-h)*((1-s)*a + s*a'))/1e6.
    overstatement = r * h * s * (u - t) + r * k * i * (a - (1 - h) * ((1 - s) * a + s * a2)) / M
    assert result.naive_sum_saving_per_day - result.combined_saving_per_day == overstatement
    assert result.overstatement_per_month == overstatement * 30
    assert result.naive_sum_pct > result.combined_saving_pct

    assert result.cache_hits_per_day == r * h
    assert result.requests_to_model_per_day == r * (1 - h) * (1 - s)
    assert result.requests_to_target_per_day == r * (1 - h) * s


def test_steps_credit_each_lever_with_what_is_left_and_sum_to_the_combined_saving() -> None:
    result = run(base())
    alone = by_lever(result)
    steps = result.steps
    assert [s.lever for s in steps] == ["caching", "routing", "compression"]
    # The first step acts on the baseline, so it is credited exactly its lone saving.
    assert steps[0].saving_per_day == alone["caching"].saving_per_day
    assert steps[0].cost_before_per_day == result.baseline_per_day
    for before, after in pairwise(steps):
        assert after.cost_before_per_day == before.cost_after_per_day
    assert steps[-1].cost_after_per_day == result.combined_cost_per_day
    assert sum(s.saving_per_day for s in steps) == result.combined_saving_per_day
    # Routing after caching only reaches the cache misses.
    assert steps[1].saving_per_day == alone["routing"].saving_per_day * (1 - D("0.25"))
    with localcontext(MONEY_CONTEXT):
        for step in steps:
            assert step.saving_pct_of_remaining == step.saving_per_day / step.cost_before_per_day
            assert step.saving_per_month == step.saving_per_day * 30


def test_order_changes_the_credit_but_not_the_combined_cost() -> None:
    default = run(base())
    reordered = run(base(order=["compression", "routing", "caching"]))
    assert reordered.order == ("compression", "routing", "caching")
    assert reordered.combined_cost_per_day == default.combined_cost_per_day
    assert reordered.steps[0].saving_per_day == by_lever(default)["compression"].saving_per_day
    assert reordered.steps[0].saving_per_day != default.steps[2].saving_per_day


def test_cost_per_hit_is_charged_per_hit() -> None:
    c = D("0.001")
    result = run(base(caching={"hit_rate": "0.25", "cost_per_hit": str(c)}, routing=None, compression=None))
    u = (D(2000) * 5 + D(1000) * 30) / M
    assert by_lever(result)["caching"].saving_per_day == D(2_000_000) * D("0.25") * (u - c)
    assert result.combined_saving_per_day == D(2_000_000) * D("0.25") * (u - c)


def test_a_late_cache_with_a_hit_cost_above_the_routed_request_cost_is_a_loss_step() -> None:
    # Everything routed to "small" first (t = 0.007/request); a hit costs 0.03 > t, but <= u = 0.04.
    data = base(
        caching={"hit_rate": "0.5", "cost_per_hit": "0.03"},
        routing={"share": 1, "target_model": "small"},
        compression=None,
    )
    late = run({**data, "order": ["routing", "caching"]})
    early = run({**data, "order": ["caching", "routing"]})
    r, h, c, t = D(2_000_000), D("0.5"), D("0.03"), (D(2000) * 1 + D(1000) * 5) / M
    assert late.steps[1].saving_per_day == r * h * (t - c)
    assert late.steps[1].saving_per_day < 0
    assert late.combined_cost_per_day == early.combined_cost_per_day
    assert early.steps[0].saving_per_day > 0
    warnings = MODEL.report(late).warnings
    assert any("Step 2 (caching) adds" in w for w in warnings)
    assert not any("adds" in w for w in MODEL.report(early).warnings)


def test_rankings_by_saving_and_by_saving_per_effort() -> None:
    result = run(base(implementation_effort={"caching": 2, "routing": 10, "compression": 1}))
    assert result.ranking_by_saving == ("routing", "caching", "compression")
    alone = by_lever(result)
    for lever in alone.values():
        assert lever.saving_per_month_per_effort == lever.saving_per_month / lever.effort
    roi = sorted(alone.values(), key=lambda lever: -lever.saving_per_month_per_effort)
    assert result.ranking_by_roi == tuple(lever.lever for lever in roi)
    assert [lever.rank_by_roi for lever in roi] == [1, 2, 3]
    assert [lever.lever for lever in result.levers] == list(result.ranking_by_saving)
    assert [lever.rank_by_saving for lever in result.levers] == [1, 2, 3]


def test_without_effort_there_is_no_roi_ranking() -> None:
    result = run(base())
    assert result.ranking_by_roi is None
    assert all(lever.rank_by_roi is None and lever.effort is None for lever in result.levers)
    header = [c.header for c in MODEL.report(result).tables[0].columns]
    assert "effort" not in header


def test_ties_keep_the_canonical_lever_order() -> None:
    # Caching half of the requests for free and routing half of them to a free model save the same.
    result = run(
        base(
            caching={"hit_rate": "0.5"},
            routing={"share": "0.5", "target_model": "free"},
            compression=None,
            order=["routing", "caching"],
            implementation_effort={"routing": 3, "caching": 3},
        )
    )
    alone = by_lever(result)
    assert alone["caching"].saving_per_day == alone["routing"].saving_per_day
    assert result.ranking_by_saving == ("caching", "routing")
    assert result.ranking_by_roi == ("caching", "routing")


def test_negotiated_discount_and_explicit_prices() -> None:
    discounted = run(base(model="big-discounted", routing=None, compression=None))
    plain = run(base(routing=None, compression=None))
    assert discounted.input_per_mtok == D(5) * D("0.8")
    assert discounted.baseline_per_day == plain.baseline_per_day * D("0.8")
    explicit = run(
        base(
            model={"name": "seed-model", "input_per_mtok": 5, "output_per_mtok": 30, "discount": "0.2"},
            routing=None,
            compression=None,
        )
    )
    assert explicit.model == "seed-model"
    assert explicit.baseline_per_day == discounted.baseline_per_day
    routed = run(
        base(routing={"share": "0.5", "target_model": {"name": "x", "input_per_mtok": 1, "output_per_mtok": 5}})
    )
    assert routed.target_model == "x"
    assert routed.target_output_per_mtok == D(5)


def test_unknown_model_is_not_swallowed() -> None:
    with pytest.raises(UnknownModelError):
        run(base(model="nope"))
    with pytest.raises(UnknownModelError):
        run(base(routing={"share": "0.5", "target_model": "nope"}))


# ------------------------------------------------------------------------------------------- edges


def test_zero_baseline_has_no_percentages() -> None:
    result = run(base(requests_per_day=0))
    assert result.baseline_per_day == 0
    assert result.combined_saving_pct is None and result.naive_sum_pct is None
    assert all(lever.saving_pct is None for lever in result.levers)
    assert result.percentages_note
    report = MODEL.report(result)
    assert any("undefined" in note for note in report.notes)


def test_full_hit_rate_for_free_saves_the_whole_bill() -> None:
    result = run(base(caching={"hit_rate": 1}))
    assert result.combined_cost_per_day == 0
    assert result.combined_saving_pct == 1
    assert by_lever(result)["caching"].saving_pct == 1


def test_hit_cost_equal_to_a_request_is_allowed_and_saves_nothing() -> None:
    u = (D(2000) * 5 + D(1000) * 30) / M
    result = run(base(caching={"hit_rate": "0.5", "cost_per_hit": str(u)}, routing=None, compression=None))
    assert result.combined_saving_per_day == 0
    assert any("caching saves nothing" in w for w in MODEL.report(result).warnings)


def test_zero_lever_settings_warn() -> None:
    result = run(base(routing={"share": 0, "target_model": "small"}))
    assert by_lever(result)["routing"].saving_per_day == 0
    assert any("routing saves nothing" in w for w in MODEL.report(result).warnings)


def test_routing_to_an_equal_priced_model_is_allowed() -> None:
    result = run(base(routing={"share": 1, "target_model": "big"}, caching=None, compression=None))
    assert result.combined_saving_per_day == 0


def test_single_lever_report_has_no_naive_sum_note() -> None:
    result = run(base(caching=None, routing=None))
    report = MODEL.report(result)
    assert not any("Adding the separate savings" in note for note in report.notes)
    assert result.naive_sum_saving_per_day == result.combined_saving_per_day


def test_report_builds_with_notes_on_input_share_and_naive_sum() -> None:
    result = run(base(implementation_effort={"caching": 10, "routing": 5, "compression": 15}))
    report = MODEL.report(result)
    assert isinstance(report, Report)
    assert report.csv_table == 0
    assert len(report.tables[0].rows) == 3
    assert len(report.tables[1].rows) == 4  # three steps + the total
    text = " ".join(report.notes)
    assert "Compression only touches input tokens" in text
    assert "Adding the separate savings" in text
    assert "Best return per effort: routing" in text


def test_input_heavy_workload_note() -> None:
    result = run(base(input_tokens=50_000, output_tokens=100))
    assert "Input tokens dominate" in " ".join(MODEL.report(result).notes)


def test_example_parses_and_computes() -> None:
    scenario = parse_scenario(SavingsScenario, yaml.safe_load(MODEL.example))
    result = MODEL.compute(scenario, CTX)
    r, u = D(2_000_000), (D(2000) * 5 + D(1000) * 30) / M
    assert result.baseline_per_day == r * u
    assert result.ranking_by_roi is not None
    MODEL.report(result)


# ------------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"requests_per_day": -1}, "requests_per_day"),
        ({"input_tokens": -5}, "input_tokens"),
        ({"caching": {"hit_rate": "1.2"}}, "caching.hit_rate"),
        ({"caching": {"hit_rate": "0.2", "cost_per_hit": -1}}, "caching.cost_per_hit"),
        ({"routing": {"share": -0.1, "target_model": "small"}}, "routing.share"),
        ({"compression": {"input_reduction": 2}}, "compression.input_reduction"),
        ({"model": {"name": "x", "input_per_mtok": -1, "output_per_mtok": 1}}, "model"),
        ({"order": ["caching", "caching", "routing", "compression"]}, "order"),
        ({"order": ["caching", "routing"]}, "order"),
        ({"order": ["bogus"]}, "order"),
        ({"implementation_effort": {"caching": 1, "routing": 1}}, "implementation_effort"),
        ({"implementation_effort": {"caching": 0, "routing": 1, "compression": 1}}, "implementation_effort"),
        ({"hit_rate": 0.3}, "hit_rate"),
    ],
)
def test_bad_scenarios_name_the_field(change: dict[str, Any], field: str) -> None:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(SavingsScenario, base(**change))
    assert field in str(info.value)


def test_order_or_effort_naming_an_unconfigured_lever() -> None:
    with pytest.raises(ScenarioError, match="order: names routing"):
        parse_scenario(SavingsScenario, base(routing=None, order=["caching", "routing", "compression"]))
    with pytest.raises(ScenarioError, match="implementation_effort: gives effort for routing"):
        parse_scenario(
            SavingsScenario,
            base(routing=None, implementation_effort={"caching": 1, "routing": 1, "compression": 1}),
        )


def test_no_lever_is_an_error() -> None:
    with pytest.raises(ScenarioError, match="caching: no lever configured"):
        parse_scenario(SavingsScenario, base(caching=None, routing=None, compression=None))


def test_routing_to_a_pricier_model_is_refused() -> None:
    with pytest.raises(ScenarioError) as info:
        run(base(routing={"share": "0.5", "target_model": "pricey"}))
    assert info.value.field == "routing.target_model"
    assert "routing.target_model" in str(info.value)


def test_a_cache_hit_dearer_than_a_request_is_refused() -> None:
    with pytest.raises(ScenarioError) as info:
        run(base(caching={"hit_rate": "0.5", "cost_per_hit": "0.05"}))
    assert info.value.field == "caching.cost_per_hit"


# ------------------------------------------------------------------------------------------- properties

fraction = st.decimals(min_value=0, max_value=1, places=3)
price = st.decimals(min_value=0, max_value=100, places=3)
tokens = st.integers(min_value=0, max_value=200_000)


@st.composite
def scenarios(draw: Any, cost_per_hit: bool = True) -> dict[str, Any]:
    p_in, p_out = draw(price), draw(price)
    t_in = draw(st.decimals(min_value=0, max_value=p_in, places=3))
    t_out = draw(st.decimals(min_value=0, max_value=p_out, places=3))
    i, o = draw(tokens), draw(tokens)
    u = (i * p_in + o * p_out) / M
    hit_cost = draw(st.decimals(min_value=0, max_value=u, places=6)) if cost_per_hit and u > 0 else D(0)
    hit_cost = min(hit_cost, u)
    return {
        "requests_per_day": draw(st.integers(min_value=0, max_value=50_000_000)),
        "input_tokens": i,
        "output_tokens": o,
        "model": {"name": "m", "input_per_mtok": str(p_in), "output_per_mtok": str(p_out)},
        "caching": {"hit_rate": str(draw(fraction)), "cost_per_hit": str(hit_cost)},
        "routing": {
            "share": str(draw(fraction)),
            "target_model": {"name": "t", "input_per_mtok": str(t_in), "output_per_mtok": str(t_out)},
        },
        "compression": {"input_reduction": str(draw(fraction))},
    }


@settings(max_examples=60, deadline=None)
@given(scenarios())
def test_combined_never_exceeds_the_sum_and_every_saving_is_within_the_baseline(data: dict[str, Any]) -> None:
    result = run(data)
    baseline = result.baseline_per_day
    assert result.combined_saving_per_day <= result.naive_sum_saving_per_day
    assert 0 <= result.combined_saving_per_day <= baseline
    for lever in result.levers:
        assert 0 <= lever.saving_per_day <= baseline


@settings(max_examples=40, deadline=None)
@given(scenarios())
def test_combined_cost_is_the_same_in_every_order(data: dict[str, Any]) -> None:
    costs = {run({**data, "order": list(order)}).combined_cost_per_day for order in permutations(LEVERS)}
    assert len(costs) == 1


@settings(max_examples=40, deadline=None)
@given(scenarios(cost_per_hit=False))
def test_with_free_hits_combined_saves_at_least_each_lever_alone(data: dict[str, Any]) -> None:
    result = run(data)
    for lever in result.levers:
        assert result.combined_saving_per_day >= lever.saving_per_day
    for step in result.steps:
        assert step.saving_per_day >= 0


@settings(max_examples=30, deadline=None)
@given(scenarios(), st.integers(min_value=2, max_value=9))
def test_savings_are_linear_in_volume(data: dict[str, Any], factor: int) -> None:
    one = run(data)
    many = run({**data, "requests_per_day": data["requests_per_day"] * factor})
    with localcontext(MONEY_CONTEXT):
        assert many.combined_saving_per_day == one.combined_saving_per_day * factor
        assert many.baseline_per_day == one.baseline_per_day * factor


LEVERS = ("caching", "routing", "compression")

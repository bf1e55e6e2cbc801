"""Attribution and shared-cost allocation: worked examples per rule (arithmetic in the comments), the
unattributed bucket, tag coverage, fallbacks, errors, and property tests that every split adds up exactly."""

from __future__ import annotations

import json
import random
from decimal import Decimal as D
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from margin.errors import MarginError
from margin.insights.attribution import (
    DEFAULT_QUANTUM,
    UNATTRIBUTED,
    AllocationRule,
    AttributionError,
    SharedCost,
    UsageSlice,
    allocate,
    default_rule,
    direct_attribution,
    showback,
    tag_coverage,
)
from margin.money import MONEY_CONTEXT

CENT = D("0.01")


def s(team: str | None, cost="0", tokens: int = 0, requests: int = 0, gpu="0", activity=None, **tags) -> UsageSlice:
    if team is not None:
        tags["team"] = team
    return UsageSlice(tags, D(cost), tokens, 0, requests, D(gpu), activity)


# ------------------------------------------------------------------------------------------------ direct


def test_direct_attribution_sums_by_tag_with_an_explicit_unattributed_bucket():
    slices = [
        s("search", "1.25"),
        s("search", "0.75"),
        s("support", "0.000123"),
        s(None, "2"),
        s("   ", "0.5"),  # a blank tag counts as missing
    ]
    # search 1.25 + 0.75 = 2.00; support 0.000123; unattributed 2 + 0.5 = 2.5
    assert direct_attribution(slices, "team") == {"search": D("2.00"), "support": D("0.000123"), UNATTRIBUTED: D("2.5")}
    # the bucket is there even when every slice is tagged
    assert direct_attribution([s("a", "1")], "team") == {"a": D(1), UNATTRIBUTED: D(0)}
    # any tag works as the dimension
    assert direct_attribution([s("a", "1", feature="chat"), s("b", "2")], "feature") == {
        "chat": D(1),
        UNATTRIBUTED: D(2),
    }


def test_the_unattributed_value_is_reserved():
    with pytest.raises(AttributionError, match="reserved"):
        direct_attribution([s(UNATTRIBUTED, "1")], "team")


def test_tag_coverage_is_the_share_of_spend_carrying_each_tag():
    slices = [
        UsageSlice({"team": "a", "project": "x"}, D("6"), 0, 0, 1),
        UsageSlice({"team": "b"}, D("3"), 0, 0, 1),
        UsageSlice({"project": ""}, D("1"), 0, 0, 1),
    ]
    # total 10: team on 6 + 3 = 9 -> 0.9; project on 6 (blank does not count) -> 0.6; environment on 0 -> 0
    assert tag_coverage(slices, ["team", "project", "environment"]) == {
        "team": D("0.9"),
        "project": D("0.6"),
        "environment": D(0),
    }
    # no spend: nothing is missing a tag
    assert tag_coverage([], ["team"]) == {"team": D(1)}
    assert tag_coverage([s(None, "0")], ["team"]) == {"team": D(1)}


# ------------------------------------------------------------------------------------------------ rules


def test_proportional_by_tokens_gpu_hours():
    gpu = SharedCost.gpu("h100", "4.00", 720)  # 4.00 x 720 h = 2880.00
    assert gpu.amount == D("2880") and gpu.category == "gpu"
    slices = [s("a", tokens=600_000), s("b", tokens=300_000), s(None, tokens=100_000)]
    item = allocate([gpu], [], slices, "team").item("h100")
    # 1,000,000 tokens: a 0.6 x 2880 = 1728, b 0.3 x 2880 = 864, unattributed 0.1 x 2880 = 288
    assert item.shares == {"a": D(1728), "b": D(864), UNATTRIBUTED: D(288)}
    assert item.method == "proportional" and item.basis == "tokens" and item.fallback is None


def test_default_rule_is_proportional_by_tokens():
    rule = default_rule("anything")
    assert (rule.method, rule.basis, rule.among) == ("proportional", "tokens", None)


def test_largest_remainder_at_cents():
    fee = SharedCost.fee("vector-db", "100.00")
    slices = [s("a", requests=1), s("b", requests=2), s("c", requests=4)]
    rule = AllocationRule("platform_fee", "proportional", "requests")
    shares = allocate([fee], [rule], slices, "team", quantum=CENT).item("vector-db").shares
    # 10,000 cents x 1/7 = 1428.571, x 2/7 = 2857.142, x 4/7 = 5714.285 -> floors 1428 + 2857 + 5714 = 9999;
    # the missing cent goes to the largest remainder (.571, a): 14.29 / 28.57 / 57.14, sum 100.00
    assert shares == {"a": D("14.29"), "b": D("28.57"), "c": D("57.14")}
    assert sum(shares.values()) == D("100.00")


def test_ties_are_broken_by_group_name():
    fee = SharedCost.fee("fee", "10")
    slices = [s("c", tokens=1), s("a", tokens=1), s("b", tokens=1)]
    shares = allocate([fee], [], slices, "team", quantum=CENT).item("fee").shares
    # 1000 cents / 3 = 333 r 1/3 each; one cent left, equal remainders -> "a" first by name
    assert shares == {"a": D("3.34"), "b": D("3.33"), "c": D("3.33")}
    micro = allocate([fee], [], slices, "team").item("fee").shares
    # 10,000,000 micro-dollars / 3 = 3,333,333 r 1/3 each -> a gets the extra micro-dollar
    assert micro == {"a": D("3.333334"), "b": D("3.333333"), "c": D("3.333333")}


def test_proportional_by_requests_engineering_time():
    eng = SharedCost.engineering("oncall", 150, "12.5")  # 150 x 12.5 h = 1875
    assert eng.amount == D("1875") and eng.category == "engineering"
    rule = AllocationRule("engineering", "proportional", "requests")
    shares = allocate([eng], [rule], [s("a", requests=30), s("b", requests=10)], "team").item("oncall").shares
    # 40 requests: a 30/40 x 1875 = 1406.25, b 10/40 x 1875 = 468.75
    assert shares == {"a": D("1406.25"), "b": D("468.75")}


def test_proportional_by_cost_and_by_gpu_seconds():
    fee = SharedCost.fee("support-plan", "90")
    slices = [s("a", "0.002"), s("b", "0.001"), s("a", "0.003", gpu="60"), s("b", gpu="30")]
    by_cost = allocate([fee], [AllocationRule("platform_fee", basis="cost")], slices, "team").item("support-plan")
    # spend a 0.002 + 0.003 = 0.005, b 0.001: a 5/6 x 90 = 75, b 1/6 x 90 = 15
    assert by_cost.shares == {"a": D(75), "b": D(15)}
    by_gpu = allocate([fee], [AllocationRule("platform_fee", basis="gpu_seconds")], slices, "team").item("support-plan")
    # GPU-seconds a 60, b 30: a 2/3 x 90 = 60, b 30
    assert by_gpu.shares == {"a": D(60), "b": D(30)}


def test_activity_based_rates_weigh_activity_counts():
    rule = AllocationRule("gpu", "activity", activity_rates={"embedding": D("0.001"), "batch_job": D("2")})
    slices = [
        s("a", requests=5000, activity="embedding"),  # 5000 x 0.001 = 5
        s("b", requests=10, activity="batch_job"),  # 10 x 2 = 20
        s("c", requests=3, activity="chat"),  # no rate -> 0
        s("c", requests=7),  # no activity -> 0
    ]
    item = allocate([SharedCost.gpu("batch-pool", "2.5", 200)], [rule], slices, "team").item("batch-pool")
    # amount 2.5 x 200 = 500; weights 5 : 20 : 0 (total 25) -> a 500 x 5/25 = 100, b 400, c 0
    assert item.shares == {"a": D(100), "b": D(400), "c": D(0)}
    assert item.method == "activity" and item.basis is None


def test_even_split_excludes_unattributed_and_honours_among():
    fee = SharedCost.fee("platform", "300")
    slices = [s("a", tokens=10), s("b", tokens=0), s(None, tokens=99)]
    even = allocate([fee], [AllocationRule("platform_fee", "even")], slices, "team").item("platform")
    # named groups a, b: 300 / 2 = 150 each; unattributed is no tenant
    assert even.shares == {"a": D(150), "b": D(150)}
    among = AllocationRule("platform_fee", "even", among=["a", "b", "newcomer"])
    shares = allocate([SharedCost.fee("p", "100")], [among], slices, "team").item("p").shares
    # 100,000,000 micro-dollars / 3 = 33,333,333 r 1/3 each; the extra micro-dollar goes to "a" by name
    assert shares == {"a": D("33.333334"), "b": D("33.333333"), "newcomer": D("33.333333")}


def test_even_split_with_no_named_group_goes_to_unattributed():
    item = allocate([SharedCost.fee("p", "5")], [AllocationRule("platform_fee", "even")], [s(None)], "team").item("p")
    assert item.shares == {UNATTRIBUTED: D(5)}
    assert item.fallback and "unattributed" in item.fallback


def test_proportional_with_among_restricts_the_groups():
    rule = AllocationRule("gpu", "proportional", "tokens", among=["a", "b"])
    slices = [s("a", tokens=1), s("b", tokens=3), s("c", tokens=1000), s(None, tokens=1000)]
    # only a and b take part: 1 : 3 of 8 -> 2 and 6
    assert allocate([SharedCost.fee("g", "8", category="gpu")], [rule], slices, "team").item("g").shares == {
        "a": D(2),
        "b": D(6),
    }


def test_zero_basis_gets_zero_and_all_zero_falls_back_to_even():
    gpu = SharedCost.gpu("a100", "3", 10)  # 30
    rule = AllocationRule("gpu", basis="gpu_seconds")
    partial = allocate([gpu], [rule], [s("a", gpu="0"), s("b", gpu="12.5")], "team").item("a100")
    # only b used the GPU: b 30, a 0
    assert partial.shares == {"a": D(0), "b": D(30)} and partial.fallback is None
    idle = allocate([gpu], [rule], [s("a"), s("b"), s(None)], "team").item("a100")
    # nobody used it: an even split over the named groups, 30 / 2 = 15
    assert idle.shares == {"a": D(15), "b": D(15)}
    assert idle.fallback and "zero" in idle.fallback
    among = AllocationRule("gpu", basis="gpu_seconds", among=["x", "y", "z"])
    # zero basis among x, y, z -> 10 each
    assert allocate([gpu], [among], [s("a", gpu="5")], "team").item("a100").shares == {
        "x": D(10),
        "y": D(10),
        "z": D(10),
    }
    empty = allocate([gpu], [rule], [], "team").item("a100")
    # no usage at all in the period: the whole amount is unattributed
    assert empty.shares == {UNATTRIBUTED: D(30)} and "unattributed" in (empty.fallback or "")


# ------------------------------------------------------------------------------------------------ showback


def _example():
    slices = [
        UsageSlice({"team": "search", "project": "rag"}, D("120.00"), 3_000_000, 1_000_000, 8000, D(5400)),
        UsageSlice({"team": "support"}, D("60.00"), 1_500_000, 500_000, 4000, D(1800)),
        UsageSlice({}, D("20.00"), 1_000_000, 1_000_000, 1000),
    ]
    shared = [
        SharedCost.gpu("l4-pool", "0.80", 720),  # 576.00
        SharedCost.fee("gateway-platform", "300"),
        SharedCost.engineering("platform-oncall", "95", "10"),  # 950
    ]
    rules = [AllocationRule("gpu", basis="gpu_seconds"), AllocationRule("platform_fee", "even")]
    return slices, shared, rules


def test_showback_worked_example():
    slices, shared, rules = _example()
    report = showback(slices, shared, rules, "team", required_tags=["team", "project"], period="2025-06")
    # gpu 576 by GPU-seconds 5400 : 1800 : 0 -> search 432, support 144, unattributed 0
    # platform fee 300 even over search, support -> 150 each
    # engineering 950, no rule -> tokens 4M : 2M : 2M -> 475, 237.50, 237.50
    # search 120 + 432 + 150 + 475 = 1177; support 60 + 144 + 150 + 237.5 = 591.5; unattributed 20 + 237.5 = 257.5
    assert [r.group for r in report.groups] == ["search", "support", UNATTRIBUTED]
    search, support, unattributed = report.groups
    assert search.allocated == {"engineering": D(475), "gpu": D(432), "platform_fee": D(150)}
    assert (search.direct, search.shared, search.total) == (D(120), D(1057), D(1177))
    assert (support.shared, support.total) == (D("531.5"), D("591.5"))
    assert unattributed.allocated == {"engineering": D("237.5"), "gpu": D(0)}
    assert unattributed.total == D("257.5")
    # direct 200 + shared 576 + 300 + 950 = 1826 -> 2026 = 1177 + 591.5 + 257.5
    assert (report.direct_total, report.shared_total, report.grand_total) == (D(200), D(1826), D(2026))
    assert sum(r.total for r in report.groups) == report.grand_total
    # coverage: team on 180 of 200 = 0.9, project on 120 of 200 = 0.6
    assert report.coverage == {"team": D("0.9"), "project": D("0.6")}
    assert report.categories == ("engineering", "gpu", "platform_fee")

    data = report.as_dict()
    assert json.loads(json.dumps(data)) == data  # JSON-ready, amounts as strings
    assert data["grand_total"] == "2026.00" and data["period"] == "2025-06"
    assert data["groups"][0]["total"] == "1177.000000"
    assert data["coverage_display"] == {"team": "0.9000", "project": "0.6000"}

    rows = report.rows()
    assert list(rows[0]) == [
        "team",
        "direct",
        "shared:engineering",
        "shared:gpu",
        "shared:platform_fee",
        "shared",
        "total",
    ]
    assert rows[-1]["team"] == "TOTAL" and rows[-1]["total"] == D(2026)
    assert rows[2]["shared:platform_fee"] == D(0)
    assert len(report.rows(include_total=False)) == 3


def test_showback_always_shows_unattributed_and_groups_that_only_receive_shares():
    rule = AllocationRule("platform_fee", "even", among=["a", "ops"])
    report = showback([s("a", "1", tokens=1)], [SharedCost.fee("fee", "2")], [rule], "team")
    # a: direct 1 + fee 1 = 2; ops: fee 1; unattributed: 0
    assert {r.group: r.total for r in report.groups} == {"a": D(2), "ops": D(1), UNATTRIBUTED: D(0)}
    assert report.groups[-1].group == UNATTRIBUTED
    assert report.grand_total == D(3)


def test_coverage_display_rounds_only_for_people():
    report = showback([s("a", "2"), s(None, "1")], [], [], "team", required_tags=["team"])
    assert report.coverage["team"] == MONEY_CONTEXT.divide(D(2), D(3))  # 50 significant digits
    assert report.coverage_display() == {"team": D("0.6667")}


# ------------------------------------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: UsageSlice({"team": "a"}, D("-1"), 0, 0, 0), "must not be negative"),
        (lambda: UsageSlice({"team": "a"}, 0.1, 0, 0, 0), "Decimal, int or str"),
        (lambda: UsageSlice({"team": "a"}, D(1), -5, 0, 0), "input_tokens"),
        (lambda: UsageSlice({"team": "a"}, D(1), 0, 0, 0, D("-2")), "gpu_seconds"),
        (lambda: SharedCost("x", "gpu", D("-3")), "must not be negative"),
        (lambda: SharedCost.gpu("x", "-1", 3), "hourly price"),
        (lambda: SharedCost.engineering("x", "100", "-1"), "hours"),
        (lambda: SharedCost("", "gpu", D(1)), "name"),
        (lambda: AllocationRule("gpu", "weighted"), "unknown method 'weighted'"),
        (lambda: AllocationRule("gpu", "proportional", "watts"), "unknown basis 'watts'"),
        (lambda: AllocationRule("gpu", "activity"), "needs activity_rates"),
        (lambda: AllocationRule("gpu", "activity", activity_rates={"x": D("-1")}), "must not be negative"),
        (lambda: AllocationRule("gpu", "even", among=[]), "among is empty"),
        (lambda: AllocationRule("gpu", "even", among="ab"), "list of group names"),
        (lambda: AllocationRule("gpu", "even", among=["a", "a"]), "twice"),
    ],
)
def test_bad_input_is_a_clear_error(build, message):
    with pytest.raises(AttributionError, match=message):
        build()


def test_allocation_errors():
    fee = SharedCost.fee("fee", "1")
    with pytest.raises(AttributionError, match="unique name"):
        allocate([fee, SharedCost.fee("fee", "2")], [], [s("a")], "team")
    with pytest.raises(AttributionError, match="two allocation rules"):
        allocate([fee], [AllocationRule("x"), AllocationRule("x", "even")], [s("a")], "team")
    with pytest.raises(AttributionError, match="quantum"):
        allocate([SharedCost.fee("tiny", "0.0000001")], [], [s("a")], "team")
    with pytest.raises(AttributionError, match="quantum must be positive"):
        allocate([fee], [], [s("a")], "team", quantum=D(0))
    with pytest.raises(AttributionError, match="`by`"):
        allocate([fee], [], [s("a")], "")
    assert issubclass(AttributionError, MarginError) and AttributionError.exit_code == 2
    # a finer quantum accepts the same amount
    assert allocate([SharedCost.fee("tiny", "0.0000001")], [], [s("a")], "team", quantum=D("1e-9")).total == D(
        "0.0000001"
    )


# ------------------------------------------------------------------------------------------------ properties

TEAMS = ["a", "b", "c", "d", None]
CATEGORIES = ["gpu", "platform_fee", "engineering", "other"]

slice_st = st.builds(
    lambda team, micros, inp, out, req, gpu, act: UsageSlice(
        {"team": team} if team else {}, D(micros).scaleb(-6), inp, out, req, D(gpu), act
    ),
    st.sampled_from(TEAMS),
    st.integers(0, 10**9),
    st.integers(0, 10**6),
    st.integers(0, 10**6),
    st.integers(0, 1000),
    st.integers(0, 10**5),
    st.sampled_from([None, "embedding", "batch_job", "chat"]),
)
rule_st = st.builds(
    lambda method, basis, rates, among: AllocationRule(
        "_", method, basis, rates if method == "activity" else {}, among
    ),
    st.sampled_from(["proportional", "activity", "even"]),
    st.sampled_from(["tokens", "requests", "gpu_seconds", "cost"]),
    st.dictionaries(
        st.sampled_from(["embedding", "batch_job"]),
        st.integers(0, 10**6).map(lambda n: D(n).scaleb(-3)),
        min_size=1,
    ),
    st.one_of(st.none(), st.lists(st.sampled_from(["a", "b", "x", UNATTRIBUTED]), min_size=1, max_size=3, unique=True)),
)


@st.composite
def scenarios(draw):
    quantum = draw(st.sampled_from([CENT, DEFAULT_QUANTUM]))
    slices = draw(st.lists(slice_st, max_size=8))
    names = draw(st.lists(st.text("abcdefgh", min_size=1, max_size=4), max_size=5, unique=True))
    shared = [SharedCost(n, draw(st.sampled_from(CATEGORIES)), quantum * draw(st.integers(0, 10**10))) for n in names]
    rules = []
    for category in draw(st.lists(st.sampled_from(CATEGORIES), unique=True)):
        r = draw(rule_st)
        rules.append(AllocationRule(category, r.method, r.basis, r.activity_rates, r.among))
    return quantum, slices, shared, rules


@settings(max_examples=150, deadline=None)
@given(scenarios())
def test_every_allocation_adds_up_exactly_and_is_fair(scenario):
    quantum, slices, shared, rules = scenario
    allocation = allocate(shared, rules, slices, "team", quantum=quantum)
    assert [i.name for i in allocation.items] == [c.name for c in shared]
    by_cat = {r.category: r for r in rules}
    for cost, item in zip(shared, allocation.items, strict=True):
        assert sum(item.shares.values()) == cost.amount
        for share in item.shares.values():
            assert share >= 0
            assert (share / quantum) == (share / quantum).to_integral_value()
        rule = by_cat.get(cost.category, default_rule(cost.category))
        if rule.method != "even" and item.fallback is None:
            # each share is within one quantum of its exact proportional quota
            weights = {g: Fraction(0) for g in item.shares}
            for sl in slices:
                group = sl.tag("team") or UNATTRIBUTED
                if group in weights:
                    if rule.method == "activity":
                        rate = rule.activity_rates.get(sl.activity or "", D(0))
                        weights[group] += sl.requests * Fraction(rate)
                    else:
                        weights[group] += Fraction(
                            {
                                "tokens": sl.tokens,
                                "requests": sl.requests,
                                "gpu_seconds": sl.gpu_seconds,
                                "cost": sl.cost,
                            }[rule.basis]
                        )
            total = sum(weights.values())
            for group, share in item.shares.items():
                quota = Fraction(cost.amount) * weights[group] / total
                assert abs(Fraction(share) - quota) < Fraction(quantum)
                if weights[group] == 0:
                    assert share == 0


@settings(max_examples=100, deadline=None)
@given(scenarios(), st.randoms(use_true_random=False))
def test_showback_grand_total_is_direct_plus_shared_exactly_and_deterministic(scenario, rnd: random.Random):
    quantum, slices, shared, rules = scenario
    report = showback(slices, shared, rules, "team", required_tags=["team"], quantum=quantum)
    direct = sum((sl.cost for sl in slices), D(0))
    shared_total = sum((c.amount for c in shared), D(0))
    assert report.grand_total == direct + shared_total
    assert report.direct_total == direct and report.shared_total == shared_total
    assert sum((r.total for r in report.groups), D(0)) == report.grand_total
    assert all(r.direct >= 0 and r.shared >= 0 for r in report.groups)
    assert UNATTRIBUTED in {r.group for r in report.groups}
    assert 0 <= report.coverage["team"] <= 1
    # same input, any slice order -> the same report
    shuffled = list(slices)
    rnd.shuffle(shuffled)
    again = showback(shuffled, shared, rules, "team", required_tags=["team"], quantum=quantum)
    assert again.as_dict() == report.as_dict()

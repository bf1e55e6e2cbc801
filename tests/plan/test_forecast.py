"""The forecast planner: bottom-up budget month by month, efficiency, contingency, naive comparison."""

from __future__ import annotations

from decimal import Decimal, localcontext
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from margin.errors import ScenarioError, UnknownModelError
from margin.money import MONEY_CONTEXT
from margin.plan import PlanContext, Report, parse_scenario
from margin.plan.forecast import MODEL, ForecastResult, ForecastScenario, efficiency_factor
from margin.pricing.rates import ModelRate

D = Decimal
M = D(1_000_000)

RATES = {
    "big": ModelRate(model="big", input_per_mtok=D(5), output_per_mtok=D(30)),
    "big-discounted": ModelRate(model="big-discounted", input_per_mtok=D(5), output_per_mtok=D(30), discount=D("0.1")),
}


def resolve(name: str) -> ModelRate:
    try:
        return RATES[name]
    except KeyError:
        raise UnknownModelError(name, []) from None


CTX = PlanContext(resolve_rate=resolve)


def close(a: Decimal, b: Decimal) -> bool:
    """Equal up to the last digits of 50-digit arithmetic (fractional powers and summation order)."""
    return abs(a - b) <= D("1e-40") * max(D(1), abs(b))


def run(data: dict[str, Any]) -> ForecastResult:
    return MODEL.compute(parse_scenario(ForecastScenario, data), CTX)


def flat(**extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "months": 12,
        "products": [{"name": "chat", "monthly_requests": 1000, "unit_cost": "0.02"}],
        "contingency": 0,
    }
    data.update(extra)
    return data


# ------------------------------------------------------------------------------------------- main math


def test_month_by_month_follows_the_definitions() -> None:
    n, k, e = 12, D("0.12"), D("0.2")
    chat_requests, chat_growth = D(3000), D("0.06")
    chat_unit = (D(2000) * 5 + D(400) * 30) / M
    docs_requests, docs_growth, docs_unit = D(6000), D("0.03"), D("0.004")
    project_start, project_cost = 4, D(500)
    result = run(
        {
            "months": n,
            "products": [
                {
                    "name": "chat",
                    "monthly_requests": 3000,
                    "model": "big",
                    "input_tokens": 2000,
                    "output_tokens": 400,
                    "monthly_growth": "0.06",
                },
                {"name": "docs", "monthly_requests": 6000, "unit_cost": "0.004", "monthly_growth": "0.03"},
            ],
            "new_projects": [{"name": "voice", "start_month_index": project_start, "monthly_cost": 500}],
            "contingency": "0.12",
            "efficiency_target": "0.2",
        }
    )
    assert len(result.rows) == n
    total = D(0)
    with localcontext(MONEY_CONTEXT):
        for row in result.rows:
            m = row.month
            factor = (1 - e) ** (D(m - 1) / D(n - 1)) if m > 1 else D(1)
            chat = chat_requests * (1 + chat_growth) ** (m - 1)
            docs = docs_requests * (1 + docs_growth) ** (m - 1)
            gross = chat * chat_unit + docs * docs_unit
            projects = project_cost if m >= project_start else D(0)
            net = gross * factor
            contingency = k * (net + projects)
            assert row.products[0].requests == chat
            assert row.products[1].requests == docs
            assert row.efficiency_factor == factor
            assert row.gross_product_cost == gross
            assert close(row.efficiency_gain, net - gross)
            assert row.efficiency_gain <= 0
            assert row.new_projects_cost == projects
            assert close(row.contingency, contingency)
            assert close(row.total, net + projects + contingency)
            total += row.total
            assert row.cumulative_total == total
        assert close(result.total, total)
        assert result.current_monthly_cost == chat_requests * chat_unit + docs_requests * docs_unit
        assert result.lines[0].current_unit_cost == chat_unit
        assert result.lines[0].final_unit_cost == chat_unit * (1 - e)
        assert result.monthly_efficiency_rate == 1 - (1 - e) ** (D(1) / D(n - 1))


def test_efficiency_factor_definition() -> None:
    e = D("0.3")
    assert efficiency_factor(1, 12, e) == 1
    assert efficiency_factor(12, 12, e) == 1 - e
    assert efficiency_factor(5, 12, D(0)) == 1
    with localcontext(MONEY_CONTEXT):
        rate = efficiency_factor(2, 12, e)
        for m in range(2, 12):
            step = efficiency_factor(m + 1, 12, e) / efficiency_factor(m, 12, e)
            assert abs(step - rate) < D("1e-40")
    factors = [efficiency_factor(m, 12, e) for m in range(1, 13)]
    assert factors == sorted(factors, reverse=True)


def test_contingency_applies_after_efficiency_and_on_projects() -> None:
    result = run(
        flat(
            contingency="0.1",
            efficiency_target="0.5",
            months=2,
            new_projects=[{"name": "p", "monthly_cost": 100}],
        )
    )
    last = result.rows[1]
    gross = D(1000) * D("0.02")
    assert last.net_product_cost == gross * D("0.5")
    assert last.contingency == D("0.1") * (gross * D("0.5") + 100)
    assert result.contingency == sum(r.contingency for r in result.rows)
    with localcontext(MONEY_CONTEXT):
        assert result.total == (result.net_product_cost + result.new_projects_cost) * D("1.1")


def test_new_projects_start_in_their_month_and_the_last_month_is_allowed() -> None:
    result = run(flat(months=6, new_projects=[{"name": "late", "start_month_index": 6, "monthly_cost": 700}]))
    assert [r.new_projects_cost for r in result.rows] == [0, 0, 0, 0, 0, 700]
    assert result.new_projects_cost == 700
    project = result.lines[-1]
    assert project.kind == "new project" and project.net_cost == 700


def test_labels_follow_the_start_month_and_wrap_the_year() -> None:
    result = run(flat(months=3, start_month="2026-11"))
    assert [r.label for r in result.rows] == ["2026-11", "2026-12", "2027-01"]
    assert [r.label for r in run(flat(months=2)).rows] == ["M1", "M2"]


def test_year_totals_split_a_longer_horizon() -> None:
    result = run(
        flat(
            months=18,
            products=[{"name": "a", "monthly_requests": 10, "unit_cost": 1, "monthly_growth": "0.1"}],
        )
    )
    assert [y.months for y in result.years] == [12, 6]
    assert sum(y.total for y in result.years) == result.total
    assert result.years[0].total == sum(r.total for r in result.rows[:12])
    assert result.years[1].requests == sum(r.products[0].requests for r in result.rows[12:])


def test_shares_include_contingency_and_sum_to_one() -> None:
    result = run(
        flat(
            contingency="0.15",
            products=[
                {"name": "a", "monthly_requests": 100, "unit_cost": 1},
                {"name": "b", "monthly_requests": 300, "unit_cost": 1},
            ],
            new_projects=[{"name": "p", "monthly_cost": 100}],
        )
    )
    shares = {line.name: line.share_of_total for line in result.lines}
    assert shares["a"] == D(100) / D(500)
    assert shares["b"] == D(300) / D(500)
    assert sum(shares.values()) == 1
    with localcontext(MONEY_CONTEXT):
        assert result.lines[0].with_contingency == D(100) * 12 * D("1.15")


def test_unit_cost_from_a_discounted_catalog_model() -> None:
    product = {
        "name": "c",
        "monthly_requests": 10,
        "model": "big-discounted",
        "input_tokens": 1000,
        "output_tokens": 100,
    }
    result = run(flat(products=[product]))
    assert result.lines[0].current_unit_cost == (D(1000) * 5 + D(100) * 30) / M * D("0.9")
    explicit = {
        **product,
        "model": {"name": "x", "input_per_mtok": 5, "output_per_mtok": 30, "discount": "0.1"},
    }
    assert run(flat(products=[explicit])).total == result.total


def test_unknown_model_is_not_swallowed() -> None:
    product = {"name": "c", "monthly_requests": 10, "model": "nope", "input_tokens": 1, "output_tokens": 1}
    with pytest.raises(UnknownModelError):
        run(flat(products=[product]))


# ------------------------------------------------------------------------------------------- naive budget


def test_naive_budget_comparison_and_exhaustion_month() -> None:
    last_year = D(200)
    result = run(flat(last_year_spend=200))
    naive = last_year * D("1.25")  # default buffer 0.25
    assert result.naive_growth_buffer == D("0.25")
    assert result.naive_budget_annual == naive
    assert result.naive_budget_for_horizon == naive
    assert result.total == 12 * D(1000) * D("0.02")
    assert result.difference_vs_naive == result.total - naive
    assert result.difference_vs_naive_pct == (result.total - naive) / naive
    # 20 a month: 240 over the year stays under the naive 250, so the naive budget never runs out.
    assert result.naive_budget_exhausted_month is None
    short = run(flat(last_year_spend=100, naive_growth_buffer="0.1"))
    # Naive 110; cumulative 20, 40, ..., passes 110 in month 6 (120).
    assert short.naive_budget_exhausted_month == 6
    report = MODEL.report(short)
    assert any("runs out in month 6" in w for w in report.warnings)
    assert any("short of the bottom-up forecast" in n for n in report.notes)
    assert len(report.tables) == 4


def test_naive_budget_is_prorated_for_other_horizons() -> None:
    result = run(flat(months=6, last_year_spend=1200, naive_growth_buffer="0.25"))
    assert result.naive_budget_for_horizon == D(1500) * 6 / 12
    assert result.naive_note
    assert any("exceeds the bottom-up forecast" in n for n in MODEL.report(result).notes)


def test_no_naive_fields_without_last_year_spend() -> None:
    result = run(flat())
    assert result.naive_budget_for_horizon is None and result.difference_vs_naive is None
    assert len(MODEL.report(result).tables) == 3


def test_zero_forecast_has_no_shares() -> None:
    result = run(flat(products=[{"name": "idle", "monthly_requests": 0, "unit_cost": 1}], last_year_spend=0))
    assert result.total == 0
    assert result.lines[0].share_of_total is None
    assert result.difference_vs_naive_pct is None
    MODEL.report(result)


def test_low_contingency_warns() -> None:
    assert any("below the 10-15%" in w for w in MODEL.report(run(flat(contingency="0.05"))).warnings)
    assert not any("below" in w for w in MODEL.report(run(flat(contingency="0.10"))).warnings)


def test_shrinking_usage_is_allowed_down_to_zero() -> None:
    result = run(flat(products=[{"name": "old", "monthly_requests": 100, "unit_cost": 1, "monthly_growth": -1}]))
    assert [r.products[0].requests for r in result.rows[:2]] == [100, 0]


def test_example_parses_and_computes() -> None:
    scenario = parse_scenario(ForecastScenario, yaml.safe_load(MODEL.example))
    result = MODEL.compute(scenario, CTX)
    assert result.months == 12 and result.rows[0].label == "2026-01"
    report = MODEL.report(result)
    assert isinstance(report, Report)
    assert report.csv_table == 0
    assert len(report.tables[0].rows) == 12


# ------------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (flat(months=0), "months"),
        (flat(months=121), "months"),
        (flat(contingency="1.5"), "contingency"),
        (flat(efficiency_target=1), "efficiency_target"),
        (flat(efficiency_target="0.1", months=1), "efficiency_target"),
        (flat(start_month="2026-13"), "start_month"),
        (flat(start_month="Jan 2026"), "start_month"),
        (flat(naive_growth_buffer="0.25"), "naive_growth_buffer"),
        (flat(last_year_spend=-1), "last_year_spend"),
        (flat(products=[]), "products"),
        (flat(products=[{"name": "a", "monthly_requests": -1, "unit_cost": 1}]), "monthly_requests"),
        (
            flat(products=[{"name": "a", "monthly_requests": 1, "unit_cost": 1, "monthly_growth": "-1.5"}]),
            "monthly_growth",
        ),
        (flat(products=[{"name": "a", "monthly_requests": 1}]), "unit_cost"),
        (
            flat(
                products=[
                    {
                        "name": "a",
                        "monthly_requests": 1,
                        "unit_cost": 1,
                        "model": "big",
                        "input_tokens": 1,
                        "output_tokens": 1,
                    }
                ]
            ),
            "unit_cost",
        ),
        (
            flat(products=[{"name": "a", "monthly_requests": 1, "model": "big", "input_tokens": 1}]),
            "output_tokens",
        ),
        (
            flat(products=[{"name": "a", "monthly_requests": 1, "unit_cost": 1, "input_tokens": 5}]),
            "input_tokens",
        ),
        (
            flat(
                products=[
                    {"name": "a", "monthly_requests": 1, "unit_cost": 1},
                    {"name": "a", "monthly_requests": 1, "unit_cost": 1},
                ]
            ),
            "products",
        ),
        (flat(new_projects=[{"name": "chat", "monthly_cost": 1}]), "new_projects"),
        (flat(new_projects=[{"name": "p", "monthly_cost": 1, "start_month_index": 13}]), "new_projects"),
        (flat(new_projects=[{"name": "p", "monthly_cost": 1, "start_month_index": 0}]), "start_month_index"),
        (flat(budget=5), "budget"),
    ],
)
def test_bad_scenarios_name_the_field(data: dict[str, Any], field: str) -> None:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(ForecastScenario, data)
    assert field in str(info.value)


def test_projects_alone_are_a_valid_forecast() -> None:
    result = run({"products": [], "new_projects": [{"name": "p", "monthly_cost": 10}], "contingency": 0})
    assert result.total == 120


# ------------------------------------------------------------------------------------------- properties

money = st.decimals(min_value=0, max_value=10, places=4)
volume = st.integers(min_value=0, max_value=10_000_000)
growth = st.decimals(min_value=-1, max_value=1, places=3)


@st.composite
def scenarios(draw: Any) -> dict[str, Any]:
    count = draw(st.integers(min_value=1, max_value=3))
    products = [
        {
            "name": f"p{i}",
            "monthly_requests": draw(volume),
            "unit_cost": str(draw(money)),
            "monthly_growth": str(draw(growth)),
        }
        for i in range(count)
    ]
    months = draw(st.integers(min_value=2, max_value=24))
    return {
        "months": months,
        "products": products,
        "new_projects": [
            {
                "name": "np",
                "start_month_index": draw(st.integers(1, months)),
                "monthly_cost": str(draw(money)),
            }
        ],
        "contingency": str(draw(st.decimals(min_value=0, max_value=1, places=2))),
        "efficiency_target": str(draw(st.decimals(min_value=0, max_value="0.9", places=2))),
    }


def _bump(data: dict[str, Any], field: str, amount: Decimal) -> dict[str, Any]:
    products = [dict(p) for p in data["products"]]
    products[0][field] = str(D(products[0][field]) + amount)
    return {**data, "products": products}


@settings(max_examples=40, deadline=None)
@given(scenarios(), st.decimals(min_value=0, max_value=1, places=3))
def test_total_is_monotone_in_growth(data: dict[str, Any], more: Decimal) -> None:
    assert run(_bump(data, "monthly_growth", more)).total >= run(data).total


@settings(max_examples=40, deadline=None)
@given(scenarios(), st.decimals(min_value=0, max_value=5, places=4))
def test_total_is_monotone_in_unit_cost(data: dict[str, Any], more: Decimal) -> None:
    assert run(_bump(data, "unit_cost", more)).total >= run(data).total


@settings(max_examples=40, deadline=None)
@given(scenarios())
def test_flat_forecast_is_months_times_current_cost(data: dict[str, Any]) -> None:
    products = [{**p, "monthly_growth": 0} for p in data["products"]]
    flat_data = {
        "months": data["months"],
        "products": products,
        "contingency": 0,
        "efficiency_target": 0,
    }
    result = run(flat_data)
    current = sum(D(p["monthly_requests"]) * D(p["unit_cost"]) for p in products)
    assert result.total == data["months"] * current
    assert result.total == result.flat_total


@settings(max_examples=30, deadline=None)
@given(scenarios())
def test_totals_add_up(data: dict[str, Any]) -> None:
    result = run(data)
    with localcontext(MONEY_CONTEXT):
        assert sum(r.total for r in result.rows) == result.total
        assert close(sum(y.total for y in result.years), result.total)
        assert close(result.gross_product_cost + result.efficiency_gain, result.net_product_cost)
        for row in result.rows:
            assert close(row.total, (row.net_product_cost + row.new_projects_cost) * (1 + result.contingency_rate))
            assert row.efficiency_gain <= 0

"""The planner's bottom-up forecast against the ledger's trend: planned values from the plan's month, statuses
from the actual forecast's interval, unplanned groups listed, months outside the plan refused."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from margin.insights.forecast import month_end_forecast
from margin.insights.plan_vs_actual import compare_plan, plan_month_index
from margin.plan._base import PlanContext
from margin.plan.forecast import ForecastScenario, compute

NOW = datetime(2026, 11, 15, 12, tzinfo=UTC)


def _plan(start_month="2026-10"):
    scenario = ForecastScenario.model_validate(
        {
            "months": 6,
            "start_month": start_month,
            "contingency": "0.10",
            "products": [
                {"name": "search", "monthly_requests": 100000, "unit_cost": "0.001", "monthly_growth": "0.10"},
                {"name": "chat", "monthly_requests": 50000, "unit_cost": "0.002"},
            ],
        }
    )
    return compute(scenario, PlanContext(resolve_rate=None, words_per_token=Decimal("0.75")))


def _daily(per_day: str, days: int = 45) -> dict[date, Decimal]:
    return {NOW.date() - timedelta(days=i): Decimal(per_day) for i in range(days)}


def test_products_against_their_feature_trend():
    plan = _plan()
    actual = {
        "search": month_end_forecast(_daily("6"), NOW),  # ~$180 a month against $110 planned
        "chat": month_end_forecast(_daily("2"), NOW),  # ~$60 against $100
        "agent": month_end_forecast(_daily("1"), NOW),  # not in the plan
    }
    total = month_end_forecast(_daily("9"), NOW)
    result = compare_plan(plan, "2026-11", actual, total)
    assert result.plan_month == 2
    rows = {r.name: r for r in result.rows}
    # Month 2: search grew 10% (110,000 requests x $0.001), chat flat (50,000 x $0.002).
    assert rows["search"].planned == Decimal("110") and rows["chat"].planned == Decimal("100")
    assert rows["search"].status == "over_plan" and rows["search"].low > Decimal("110")
    assert rows["chat"].status == "under_plan" and rows["chat"].high < Decimal("100")
    assert rows["agent"].status == "unplanned" and rows["agent"].planned is None
    assert rows["search"].difference == rows["search"].projected - Decimal("110")
    assert result.total.planned == Decimal("231")  # (110 + 100) x 1.10 contingency
    assert result.total.projected == total.projected_total
    assert any("contingency" in n for n in result.notes)


def test_a_planned_product_without_spend_and_a_month_outside_the_plan():
    plan = _plan()
    result = compare_plan(plan, "2026-10", {}, month_end_forecast({}, NOW))
    assert {r.status for r in result.rows} == {"no_spend"}
    with pytest.raises(ValueError, match="outside its 6 months"):
        compare_plan(plan, "2027-06", {}, month_end_forecast({}, NOW))
    assert plan_month_index("2026-10", "2027-01") == 4
    unanchored = compare_plan(_plan(start_month=None), "2026-11", {}, month_end_forecast({}, NOW))
    assert unanchored.plan_month == 1 and "no start_month" in unanchored.notes[0]


def test_report_forecast_plan_cli(capsys, tmp_path):
    import asyncio
    import json
    import os
    from pathlib import Path

    from margin.store.sqlite import SQLiteLedger
    from margin.usage import UsageEvent

    from ..cli.test_cli_prices_cost import run

    home = Path(os.environ["MARGIN_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)

    async def seed():
        ledger = SQLiteLedger(home / "ledger.db")
        for d in range(40):  # 40 days of $3/day on search and $1/day on chat, up to now
            when = now - timedelta(days=d, minutes=1)
            for feature, cost in (("search", "3"), ("chat", "1")):
                await ledger.write_event(
                    UsageEvent(
                        event_id=f"{feature}-{d}",
                        request_id=f"{feature}-{d}",
                        attempt=0,
                        started_at=when,
                        finished_at=when,
                        status="ok",
                        endpoint="chat.completions",
                        requested_model="gpt-4o-mini",
                        tags={"feature": feature},
                        effective_cost=Decimal(cost),
                        list_cost=Decimal(cost),
                    )
                )
        await ledger.aclose()

    asyncio.run(seed())
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        f"months: 3\nstart_month: '{now:%Y-%m}'\ncontingency: 0.10\nproducts:\n"
        "  - {name: search, monthly_requests: 1000, unit_cost: 0.01}\n"  # $10 planned: ~$90 actual
        "  - {name: chat, monthly_requests: 1000, unit_cost: 0.5}\n"  # $500 planned: ~$30 actual
    )
    code, out, err = run(capsys, "report", "forecast", "--plan", str(plan), "--json")
    assert code == 0, err
    doc = json.loads(out)
    rows = {r["name"]: r for r in doc["rows"]}
    assert doc["plan_month"] == 1 and doc["by"] == "feature"
    assert Decimal(rows["search"]["planned"]) == Decimal("10") and rows["search"]["status"] == "over_plan"
    assert Decimal(rows["chat"]["planned"]) == Decimal("500") and rows["chat"]["status"] == "under_plan"
    assert Decimal(doc["total"]["planned"]) == Decimal("561")  # (10 + 500) x 1.10
    code, out, _ = run(capsys, "report", "forecast", "--plan", str(plan))
    assert "over plan" in out and "under plan" in out
    plan.write_text("months: 1\nstart_month: '2020-01'\nproducts: [{name: x, monthly_requests: 1, unit_cost: 1}]\n")
    code, _, err = run(capsys, "report", "forecast", "--plan", str(plan))
    assert code == 2 and "outside its 1 months" in err

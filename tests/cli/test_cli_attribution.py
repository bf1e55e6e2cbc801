"""``margin costs`` and ``margin report attribution`` on a real ledger: direct spend by tag with an
unattributed row, shared costs split by the configured rules, everything adding up exactly."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from margin.store.sqlite import SQLiteLedger
from margin.usage import UsageEvent

from ..dashboard.offline import network_references, script_sources
from .test_cli_prices_cost import run


def _seed(home, events, **fields):
    """Write (tags, cost, input tokens, finished at) events; ``fields`` set more UsageEvent fields on all."""

    async def go():
        ledger = SQLiteLedger(home / "ledger.db")
        for i, (tags, cost, tokens, when) in enumerate(events):
            values = {
                "requested_model": "gpt-4o-mini",
                "output_tokens": 0,
                **fields,
            }
            await ledger.write_event(
                UsageEvent(
                    event_id=f"e{i}",
                    request_id=f"r{i}",
                    attempt=0,
                    started_at=when,
                    finished_at=when,
                    status="ok",
                    endpoint="chat.completions",
                    tags=tags,
                    input_tokens=tokens,
                    list_cost=Decimal(cost),
                    effective_cost=Decimal(cost),
                    **values,
                )
            )
        await ledger.aclose()

    asyncio.run(go())


NOV = datetime(2026, 11, 10, tzinfo=UTC)
DEC = datetime(2026, 12, 2, tzinfo=UTC)


def test_showback_adds_up_exactly(capsys, tmp_path):
    home = Path(os.environ["MARGIN_HOME"])  # a fresh directory per test (tests/conftest.py)
    home.mkdir(parents=True, exist_ok=True)
    _seed(
        home,
        [
            ({"team": "ml", "project": "p"}, "0.30", 3000, NOV),
            ({"team": "web"}, "0.10", 1000, NOV),
            ({}, "0.05", 1000, NOV),  # untagged: unattributed
            ({"team": "ml"}, "9.99", 9000, DEC),  # another month: not in November's report
        ],
    )
    code, _, err = run(
        capsys,
        "costs",
        "add",
        "gpu-node",
        "--period",
        "2026-11",
        "--category",
        "gpu",
        "--hourly",
        "2.50",
        "--hours",
        "10",
    )
    assert code == 0, err
    code, _, _ = run(capsys, "costs", "add", "platform", "--period", "2026-11", "--category", "fee", "--amount", "1")
    assert code == 0
    code, out, _ = run(capsys, "costs", "list", "--period", "2026-11", "--json")
    assert {item["name"]: Decimal(item["amount"]) for item in json.loads(out)} == {
        "gpu-node": Decimal("25.00"),
        "platform": Decimal("1"),
    }
    code, out, err = run(capsys, "report", "attribution", "--period", "2026-11", "--by", "team", "--json")
    assert code == 0, err
    doc = json.loads(out)
    text = json.dumps(doc)
    assert "unattributed" in text
    # Direct: ml 0.30, web 0.10, unattributed 0.05 (December's 9.99 excluded); shared 26.00 split by tokens
    # (the default rule) 3000 : 1000 : 1000 -> ml 15.60, web 5.20, unattributed 5.20.
    code, out, _ = run(capsys, "report", "attribution", "--period", "2026-11", "--by", "team", "--csv")
    rows = {r["team"]: r for r in csv.DictReader(io.StringIO(out))}
    assert Decimal(rows["ml"]["direct"]) == Decimal("0.30")
    assert Decimal(rows["ml"]["total"]) == Decimal("0.30") + Decimal("15.60")
    assert Decimal(rows["web"]["total"]) == Decimal("0.10") + Decimal("5.20")
    assert Decimal(rows["unattributed"]["total"]) == Decimal("0.05") + Decimal("5.20")
    assert Decimal(rows["TOTAL"]["total"]) == Decimal("26.45")
    page = tmp_path / "showback.html"
    code, _, _ = run(capsys, "report", "attribution", "--period", "2026-11", "--html", str(page))
    text = page.read_text()
    assert code == 0 and 'data-group="unattributed"' in text
    # One file with its chart: plotly.js inlined, nothing loaded from a network.
    assert 'data-chart="chart-showback"' in text and "Plotly" in text
    assert script_sources(text) == [] and network_references(text) == []
    total_row = re.search(r'<tr data-group="TOTAL">(.*?)</tr>', text).group(1)
    assert Decimal(re.findall(r'data-exact="([^"]+)"', total_row)[-1]) == Decimal("26.45")
    assert "$26.45" in total_row
    code, _, err = run(capsys, "report", "attribution", "--period", "2026-13")
    assert code == 2 and "2026-11" in err


def test_forecast_per_team_with_budget_status(capsys, tmp_path):
    from datetime import timedelta

    home = Path(os.environ["MARGIN_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)
    events = []
    for days_ago in range(1, 30):
        when = now - timedelta(days=days_ago)
        events.append(({"team": "ml"}, "2.00", 100, when))
        events.append(({"team": "web"}, "0.50", 100, when))
    _seed(home, events)
    config = tmp_path / "margin.yaml"
    config.write_text(
        "gateway:\n  budgets:\n    - {name: ml-month, scope: team, value: ml, period: month, amount: 10}\n"
    )
    code, out, err = run(capsys, "--config", str(config), "report", "forecast", "--by", "team", "--json")
    assert code == 0, err
    groups = {g["group"]: g for g in json.loads(out)["groups"]}
    month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    ml_days = sum(1 for d in range(1, 30) if now - timedelta(days=d) >= month_start)
    assert Decimal(groups["ml"]["spent"]) == Decimal("2.00") * ml_days  # exact, this month only
    assert Decimal(groups["ml"]["projected"]) >= Decimal(groups["ml"]["spent"])
    assert Decimal(groups["ml"]["low"]) <= Decimal(groups["ml"]["projected"]) <= Decimal(groups["ml"]["high"])
    (budget,) = groups["ml"]["budgets"]
    expected = "over_hard_limit" if ml_days * 2 >= 11 else ("over" if ml_days * 2 >= 10 else None)
    if expected:
        assert budget["status"] == expected
    assert budget["status"] in ("on_track", "approaching", "over", "over_hard_limit")
    assert groups["web"]["budgets"] == []  # the budget is ml's only


def test_recommendations_find_simple_requests_on_an_expensive_model(capsys, tmp_path):
    from datetime import timedelta

    home = Path(os.environ["MARGIN_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)
    _seed(
        home,
        [({"team": "ml"}, "0.00125", 300, now - timedelta(hours=i)) for i in range(200)],
        requested_model="gpt-4o",
        served_model="gpt-4o",
        provider="openai",
        output_tokens=50,
        max_tokens=4096,
    )
    code, out, err = run(
        capsys,
        "report",
        "recommendations",
        "--since",
        "10d",
        "--cheap-model",
        "gpt-4o-mini",
        "--expensive",
        "gpt-4o",
        "--json",
    )
    assert code == 0, err
    found = json.loads(out)
    kinds = {r["kind"] for r in found}
    assert "cheaper_model" in kinds
    cheaper = next(r for r in found if r["kind"] == "cheaper_model")
    assert Decimal(cheaper["estimated_monthly_saving"]) > 0
    code, out, _ = run(capsys, "report", "recommendations", "--since", "10d")
    assert code == 0


def test_overview_from_rollups(capsys, tmp_path):
    home = Path(os.environ["MARGIN_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    _seed(
        home,
        [
            ({"team": "ml"}, "0.30", 3000, NOV),
            ({"team": "web"}, "0.10", 1000, NOV),
            ({"team": "ml"}, "9.99", 9000, DEC),
        ],
    )
    code, out, err = run(capsys, "report", "overview", "--period", "2026-11", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert Decimal(doc["total"]["effective_cost"]) == Decimal("0.40") and doc["total"]["requests"] == 2
    assert {r["group"]: Decimal(r["effective_cost"]) for r in doc["by_team"]} == {
        "ml": Decimal("0.30"),
        "web": Decimal("0.10"),
    }
    code, out, _ = run(capsys, "report", "overview", "--period", "2026-11")
    assert code == 0 and "by team" in out


def test_alerts_check_finds_a_spike_once(capsys, tmp_path):
    from datetime import timedelta

    home = Path(os.environ["MARGIN_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC).replace(minute=30, second=0, microsecond=0)
    events = [({"team": "ml"}, "1.00", 100, now - timedelta(hours=h)) for h in range(2, 40)]
    events += [({"team": "ml"}, "5.00", 100, now - timedelta(hours=1, minutes=m)) for m in (1, 2)]  # $10 in one hour
    _seed(home, events)
    code, out, err = run(capsys, "alerts", "check")
    assert code == 0, err
    assert "spend_spike" in out and "team=ml" in out
    code, out, _ = run(capsys, "alerts", "check")
    assert "no new anomalies" in out  # deduplicated by its key
    code, out, _ = run(capsys, "alerts", "list", "--json")
    stored = [a for a in json.loads(out) if a["kind"] == "spend_spike"]
    assert len(stored) >= 1 and all(a["data"]["dedup_key"] for a in stored)


def test_simulate_rerouting_and_budgets(capsys, tmp_path):
    from margin.config import PricesConfig
    from margin.pricing import Catalog, TokenUsage, load_price_data

    home = Path(os.environ["MARGIN_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    catalog = Catalog.from_data(load_price_data(home), PricesConfig())
    usage = TokenUsage(input_tokens=1000, output_tokens=200)
    when = datetime(2026, 11, 5, 12, tzinfo=UTC)
    big = catalog.price(usage, "gpt-4o", at=when).effective_cost
    small = catalog.price(usage, "gpt-4o-mini", at=when).effective_cost

    _seed(
        home,
        [({"team": "ml"}, big, 1000, when.replace(minute=i)) for i in range(10)],
        requested_model="gpt-4o",
        served_model="gpt-4o",
        provider="openai",
        output_tokens=200,
    )
    policy = tmp_path / "policy.yaml"
    policy.write_text("models: {gpt-4o: gpt-4o-mini}\n")
    code, out, err = run(capsys, "simulate", "--period", "2026-11", "--policy", str(policy), "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert Decimal(doc["recorded_cost"]) == 10 * big
    assert Decimal(doc["simulated_cost"]) == 10 * small
    assert Decimal(doc["difference"]) == 10 * (small - big) and doc["assumptions"]
    # A daily budget that fits 4 of the re-routed requests (block threshold 110% of the amount).
    amount = (4 * small / Decimal("1.1")).quantize(Decimal("1e-12"))
    policy.write_text(
        f"models: {{gpt-4o: gpt-4o-mini}}\nbudgets:\n  - {{name: d, scope: global, period: day, amount: {amount}}}\n"
    )
    code, out, err = run(capsys, "simulate", "--period", "2026-11", "--policy", str(policy), "--json")
    doc = json.loads(out)
    assert doc["refused_by_budgets"] == 10 - int(amount * Decimal("1.1") / small)
    assert Decimal(doc["simulated_cost"]) <= amount * Decimal("1.1")
    policy.write_text("nonsense: 1\n")
    code, _, err = run(capsys, "simulate", "--period", "2026-11", "--policy", str(policy))
    assert code == 2 and "prices, models, budgets and cache" in err


def test_breakdown_reports(capsys, tmp_path):
    home = Path(os.environ["MARGIN_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    _seed(
        home,
        [
            ({"team": "ml", "feature": "search"}, "0.30", 3000, NOV),
            ({"team": "ml", "feature": "chat"}, "0.20", 3000, NOV + timedelta(days=7)),
            ({"team": "web", "feature": "search"}, "0.10", 1000, NOV),
        ],
    )
    code, out, err = run(capsys, "report", "features", "--period", "2026-11", "--json")
    assert code == 0, err
    assert {r["group"]: Decimal(r["effective_cost"]) for r in json.loads(out)["rows"]} == {
        "search": Decimal("0.40"),
        "chat": Decimal("0.20"),
    }
    code, out, _ = run(capsys, "report", "teams", "--period", "2026-11", "--json")
    assert [r["group"] for r in json.loads(out)["rows"]] == ["ml", "web"]  # most expensive first
    code, out, _ = run(capsys, "report", "weekly", "--period", "2026-11", "--json")
    weeks = json.loads(out)["rows"]
    assert len(weeks) == 2 and sum(Decimal(w["effective_cost"]) for w in weeks) == Decimal("0.60")
    code, out, _ = run(capsys, "report", "models")  # --period is required
    assert code == 2

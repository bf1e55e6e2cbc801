"""``margin report overview|models|teams|features|weekly|tasks`` as CSV and as self-contained HTML with charts:
the same numbers as ``--json``."""

from __future__ import annotations

import csv
import io
import json
import os
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from ..dashboard.offline import network_references, script_sources
from .test_cli_attribution import _seed
from .test_cli_prices_cost import run

NOV = datetime(2026, 11, 10, 9, tzinfo=UTC)


@pytest.fixture
def ledger_home():
    home = Path(os.environ["MARGIN_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    _seed(
        home,
        [
            ({"team": "ml", "feature": "search"}, "0.30", 3000, NOV),
            ({"team": "ml", "feature": "chat"}, "0.20", 3000, NOV + timedelta(days=7)),
            ({"team": "web", "feature": "search"}, "0.000000001", 1000, NOV),
            ({"team": "<b>x</b>"}, "0.125", 10, NOV + timedelta(days=1)),
            ({"team": "ml"}, "9.99", 9000, datetime(2026, 12, 2, tzinfo=UTC)),
        ],
        task_id="t-1",
    )
    return home


def _json(capsys, *args):
    code, out, err = run(capsys, "report", *args, "--period", "2026-11", "--json")
    assert code == 0, err
    return json.loads(out)


def _csv(capsys, *args):
    code, out, err = run(capsys, "report", *args, "--period", "2026-11", "--csv")
    assert code == 0, err
    return list(csv.DictReader(io.StringIO(out)))


@pytest.mark.parametrize(
    ("report", "by"), [("teams", "team"), ("features", "feature"), ("models", "model"), ("weekly", "week")]
)
def test_breakdown_csv_has_the_json_rows_exactly(capsys, ledger_home, report, by):
    rows = _csv(capsys, report)
    expected = _json(capsys, report)["rows"]
    assert [r[by] for r in rows] == ["" if r["group"] is None else r["group"] for r in expected]
    for got, want in zip(rows, expected, strict=True):
        assert Decimal(got["effective_cost"]) == Decimal(want["effective_cost"])
        assert int(got["requests"]) == want["requests"] and int(got["input_tokens"]) == want["input_tokens"]


def test_overview_and_tasks_csv(capsys, ledger_home):
    rows = _csv(capsys, "overview")
    total = next(r for r in rows if r["breakdown"] == "total")
    assert Decimal(total["effective_cost"]) == Decimal("0.625000001")
    by_team = {r["group"]: Decimal(r["effective_cost"]) for r in rows if r["breakdown"] == "by_team"}
    assert by_team == {"ml": Decimal("0.50"), "<b>x</b>": Decimal("0.125"), "web": Decimal("0.000000001")}
    assert {r["breakdown"] for r in rows} == {"total", "by_model", "by_team", "by_status", "by_day"}
    (task,) = _csv(capsys, "tasks")
    assert task == {"task_id": "t-1", "requests": "4", "cost": "0.625000001", "outcome": ""}


@pytest.mark.parametrize("report", ["overview", "models", "teams", "features", "weekly", "tasks"])
def test_html_reports_are_self_contained_with_charts_and_the_ledgers_numbers(capsys, ledger_home, tmp_path, report):
    target = tmp_path / f"{report}.html"
    code, out, err = run(capsys, "report", report, "--period", "2026-11", "--html", str(target))
    assert code == 0, err
    assert "self-contained" in out
    page = target.read_text(encoding="utf-8")
    assert script_sources(page) == [] and network_references(page) == []
    assert "plotly.js v" in page and page.count('type="application/json" data-chart=') >= 1
    assert "<b>x</b>" not in page  # the team's name is text, not markup
    if report == "tasks":
        assert re.search(r'data-stat="task-cost">.*?data-exact="0.625000001"', page)
    elif report == "overview":
        assert re.search(r'data-stat="mtd-effective">.*?data-exact="0.625000001"', page)
    else:
        total = re.search(r'<tr data-group="TOTAL">(.*?)</tr>', page).group(1)
        assert "0.625000001" in re.findall(r'data-exact="([^"]+)"', total)


def test_html_report_of_a_bad_period_is_a_usage_error(capsys, ledger_home, tmp_path):
    code, _, err = run(capsys, "report", "teams", "--period", "2026-13", "--html", str(tmp_path / "x.html"))
    assert code == 2 and "2026-11" in err and not (tmp_path / "x.html").exists()

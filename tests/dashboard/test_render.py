"""HTML rendering (margin.dashboard._render): every ledger value escaped, reports self-contained."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal
from html.parser import HTMLParser

import orjson
import pytest

from margin.dashboard import _assets
from margin.dashboard._assets import AssetError, plotly_js
from margin.dashboard._data import breakdown_page, period_of, tasks_page
from margin.dashboard._render import dashboard_html, json_block, login_html, report_html
from margin.money import format_usd

from .offline import network_references, script_sources

NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)
EVIL = "<script>alert(1)</script>"


def _row(group, cost):
    return {
        "group": group,
        "requests": 1,
        "input_tokens": 1,
        "cache_read_tokens": 0,
        "cache_write_tokens": 0,
        "output_tokens": 1,
        "list_cost": Decimal(cost),
        "effective_cost": Decimal(cost),
        "avoided_cost": Decimal(0),
    }


def _teams_page():
    rows = [_row(EVIL, "0.25"), _row('" onmouseover="alert(2)', "0.125"), _row(None, "0.000123456")]
    daily = [("2026-11-02", EVIL, Decimal("0.25"))]
    return breakdown_page("teams", "Spend by team", "team", period_of(None, NOW), rows, daily)


class _Scripts(HTMLParser):
    """Each <script> element's attributes and text."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[tuple[dict[str, str | None], str]] = []
        self._open: dict[str, str | None] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "script":
            self._open = dict(attrs)
            self.scripts.append((self._open, ""))

    def handle_data(self, data):
        if self._open is not None:
            attrs, text = self.scripts[-1]
            self.scripts[-1] = (attrs, text + data)

    def handle_endtag(self, tag):
        if tag == "script":
            self._open = None


def _scripts(page: str):
    parser = _Scripts()
    parser.feed(page)
    return parser.scripts


def test_a_team_named_like_a_script_is_shown_as_text_everywhere():
    page = dashboard_html(_teams_page(), nav_page="teams", signed_in_as="read-only key")
    assert EVIL not in page and 'onmouseover="' not in page  # no tag, no attribute broken out of its quotes
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page  # the table cell and the row's data-group
    # Executable scripts are the two static files; every other <script> is a JSON data block.
    executable = [a for a, _ in _scripts(page) if a.get("type") != "application/json"]
    assert [a["src"].split("?")[0] for a in executable] == [
        "/dashboard/static/plotly.min.js",
        "/dashboard/static/dashboard.js",
    ]
    for attrs, text in _scripts(page):
        if attrs.get("type") == "application/json":
            assert "<" not in text and "</script" not in text.lower()
            figure = orjson.loads(text)  # the escapes are JSON: the label is intact once parsed
            labels = [y for trace in figure["data"] for y in trace.get("y", []) if isinstance(y, str)]
            names = [trace.get("name") for trace in figure["data"]]
            assert "&lt;script&gt;alert(1)&lt;/script&gt;" in labels + names


def test_json_block_survives_any_string():
    value = {"a": "</script><script>alert(1)</script>", "b": "<!-- & -->", "c": "\u2028"}
    text = json_block(value)
    assert "<" not in text and ">" not in text and "&" not in text
    assert orjson.loads(text) == value


def test_money_cells_show_formatted_text_and_carry_the_exact_value():
    page = dashboard_html(_teams_page(), nav_page="teams", signed_in_as="x")
    cell = re.search(r'data-exact="0.000123456">([^<]*)<', page)
    assert cell and cell.group(1) == format_usd(Decimal("0.000123456")) == "$0.000123"
    total = re.search(r'<tr data-group="TOTAL">(.*?)</tr>', page).group(1)
    assert 'data-exact="0.375123456"' in total  # the exact sum of the rows


def test_dashboard_page_navigation_and_no_network_references():
    page = dashboard_html(_teams_page(), nav_page="teams", signed_in_as="read-only key")
    assert '<a href="/dashboard/teams?period=2026-11" aria-current="page">Teams</a>' in page
    assert f"plotly.min.js?v={plotly_js().version}" in page
    assert network_references(page) == []


def test_report_is_one_self_contained_file():
    page = report_html(
        tasks_page(period_of("2026-10", NOW), [("t<1>", 2, Decimal("0.5"), "success")]), generated_at=NOW
    )
    assert script_sources(page) == [] and network_references(page) == []
    assert "plotly.js v" in page and 'data-chart="chart-outcomes"' in page  # the library and the chart
    assert "t&lt;1&gt;" in page and "t<1>" not in page
    assert "Generated 2026-11-20 12:00 UTC" in page


def test_login_page_escapes_where_to_go_next():
    page = login_html(next_path='/dashboard"><script>alert(1)</script>', error="<b>no</b>")
    assert "<script>alert" not in page and "&lt;b&gt;no&lt;/b&gt;" in page
    disabled = login_html(next_path="/dashboard", disabled="set MARGIN_DASHBOARD_KEY")
    assert "MARGIN_DASHBOARD_KEY" in disabled and "<form" not in disabled


def test_inline_scripts_cannot_close_their_element():
    asset = _assets.Asset("x.js", 'var s = "</script><script>alert(1)</SCRIPT>";', "v")
    assert "</script" not in asset.inline().lower() and asset.inline().count("<\\/") == 2


def test_a_missing_plotly_package_is_a_clear_error(monkeypatch):
    def missing(name):
        raise ModuleNotFoundError(f"No module named {name!r}")

    monkeypatch.setattr(_assets.resources, "files", missing)
    _assets.plotly_js.cache_clear()
    try:
        with pytest.raises(AssetError, match="pip install plotly"):
            plotly_js()
    finally:
        monkeypatch.undo()
        _assets.plotly_js.cache_clear()
    assert plotly_js().text.startswith("/**")

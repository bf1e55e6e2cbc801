"""Plotly figures as dicts (margin.dashboard._charts): floats only to draw, exact text to read, escaped labels."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import orjson

from margin.dashboard._charts import MAX_BARS, MAX_STACKED, daily_trend, group_bars, page_charts, stacked_daily
from margin.dashboard._data import DaySpend, alerts_page, breakdown_page, period_of, tasks_page
from margin.money import format_usd

NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)


def _walk(value):
    if isinstance(value, dict):
        for v in value.values():
            yield from _walk(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _walk(v)
    else:
        yield value


def test_group_bars_escape_labels_and_sum_the_rest_into_other_exactly():
    items = [("<b>x</b>", Decimal("9"))] + [(f"team-{i:02}", Decimal("0.000000001") * (i + 1)) for i in range(25)]
    (trace,) = group_bars(items)["data"]
    assert trace["y"][0] == "&lt;b&gt;x&lt;/b&gt;"  # plotly shows the entities as text, never as markup
    assert len(trace["y"]) == MAX_BARS + 1 and trace["y"][-1] == f"other ({26 - MAX_BARS})"
    rest = sorted((c for _, c in items), reverse=True)[MAX_BARS:]
    assert trace["text"][-1] == format_usd(sum(rest, Decimal(0)))  # the exact sum, formatted
    assert trace["x"][0] == 9.0 and all(isinstance(x, float) for x in trace["x"])
    assert group_bars([(None, Decimal(1))])["data"][0]["y"] == ["(none)"]


def test_daily_trend_cumulates_exactly_and_joins_the_projection():
    days = [DaySpend(day=date(2026, 11, d), effective_cost=Decimal("0.1")) for d in range(1, 4)]
    days += [DaySpend(day=date(2026, 11, d), effective_cost=Decimal("0.2"), projected=True) for d in range(3, 6)]
    figure = daily_trend(days)
    spent, forecast, to_date, projected = figure["data"]
    assert spent["customdata"] == ["$0.100"] * 3 and forecast["x"][0] == "2026-11-03"
    assert to_date["customdata"][-1] == "$0.300"  # 0.1 + 0.1 + 0.1, not 0.30000000000000004
    assert projected["x"][0] == to_date["x"][-1] and projected["customdata"][-1] == "$0.900"
    assert figure["layout"]["yaxis2"]["overlaying"] == "y" and figure["config"]["displaylogo"] is False


def test_stacked_daily_keeps_every_dollar_of_every_day():
    days = [date(2026, 11, 1) + timedelta(days=i) for i in range(3)]
    rows = [(d, f"g{g}", Decimal(g + 1) / 7) for d in days for g in range(MAX_STACKED + 3)]
    figure = stacked_daily(days, rows)
    assert len(figure["data"]) == MAX_STACKED + 1 and figure["data"][-1]["name"] == "other"
    for i, d in enumerate(days):
        drawn = sum(trace["y"][i] for trace in figure["data"])
        exact = sum((c for day, _, c in rows if day == d), Decimal(0))
        assert abs(drawn - float(exact)) < 1e-9


def test_page_figures_are_plain_json_with_no_decimal():
    period = period_of(None, NOW)
    pages = [
        breakdown_page("teams", "t", "team", period, [], []),
        breakdown_page("weekly", "w", "week", period, []),
        tasks_page(period, [("t1", 2, Decimal("0.5"), "success")]),
        alerts_page(period, [], [], [("2026-11-02T03", None, Decimal("0.25"), 1, 0)], settings={}),
    ]
    for page in pages:
        for chart in page_charts(page):
            assert not any(isinstance(v, Decimal) for v in _walk(chart.figure))
            orjson.dumps(chart.figure)  # no default needed: plain JSON
    (outcomes,) = page_charts(pages[2])
    assert outcomes.figure["data"][0]["text"][0] == "$0.500"

"""Plotly figures as plain JSON-ready dicts (``{"data": [...], "layout": {...}, "config": {...}}``), drawn in
the browser by plotly.js (see _assets.py). Pure.

Money becomes a float here and only here, to place a bar or a point; what a person reads in a hover label is
the exact Decimal formatted by :func:`margin.money.format_usd` and passed as text. Plotly reads a small set of
HTML tags inside labels (``<b>``, ``<a href>``, ...), so every label that comes from the ledger (team names,
models, tags) is HTML-escaped: plotly shows the entities as the literal characters, and a team called
``<b>x</b>`` stays that text instead of becoming markup.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from ..money import ZERO, format_usd
from ._data import (
    AlertsPage,
    AttributionPage,
    BreakdownPage,
    DaySpend,
    OverviewPage,
    Page,
    RecommendationsPage,
    TasksPage,
)

__all__ = [
    "Chart",
    "daily_trend",
    "group_bars",
    "hourly_spend",
    "outcome_bars",
    "page_charts",
    "savings_bars",
    "showback_bars",
    "stacked_daily",
]

FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif"
PALETTE = ("#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#eeca3b", "#b279a2", "#ff9da6", "#9d755d")
OTHER_COLOR = "#bab0ac"
FORECAST_COLOR = "#c6d4e6"
MAX_BARS = 20  # groups drawn one by one; the rest become one "other" bar
MAX_STACKED = 8  # groups in a stacked trend before "other"
LABEL_CHARS = 48
CONFIG = {
    "displaylogo": False,  # the logo links to plotly's website: no network references
    "responsive": True,
    "modeBarButtonsToRemove": ["select2d", "lasso2d", "autoScale2d"],
}


@dataclass(frozen=True)
class Chart:
    """One figure on a page: ``key`` names it (element ids, tests), ``title`` is shown above it."""

    key: str
    title: str
    figure: dict[str, Any]


def _draw(amount: Decimal) -> float:
    """A money amount as a float, for placing marks only (never shown: hover text comes from the Decimal)."""
    return float(amount)


def _label(value: str | None, *, full: bool = False) -> str:
    """A ledger value as a plotly label: "(none)" for a missing tag, HTML-escaped, shortened on axes."""
    text = "(none)" if value in (None, "") else str(value)
    if not full and len(text) > LABEL_CHARS:
        text = text[: LABEL_CHARS - 1] + "…"
    return html.escape(text, quote=False)


def _layout(*, height: int = 320, **extra: Any) -> dict[str, Any]:
    layout: dict[str, Any] = {
        "height": height,
        "margin": {"l": 60, "r": 24, "t": 16, "b": 48},
        "font": {"family": FONT, "size": 12, "color": "#1f2933"},
        "paper_bgcolor": "rgba(0,0,0,0)",
        "plot_bgcolor": "rgba(0,0,0,0)",
        "hoverlabel": {"font": {"family": FONT}},
        "legend": {"orientation": "h", "x": 0, "y": 1.12},
        "bargap": 0.25,
    }
    layout.update(extra)
    return layout


def _figure(data: list[dict[str, Any]], layout: dict[str, Any]) -> dict[str, Any]:
    return {"data": data, "layout": layout, "config": CONFIG}


def _money_axis(**extra: Any) -> dict[str, Any]:
    return {"tickprefix": "$", "rangemode": "tozero", "gridcolor": "#e4e7eb", "zeroline": False, **extra}


def _top(items: Sequence[tuple[str | None, Decimal]], limit: int) -> list[tuple[str | None, Decimal, bool]]:
    """The ``limit`` largest items in order, then one "other" item summing the rest (flag True)."""
    ranked = sorted(items, key=lambda item: -item[1])
    head = [(label, cost, False) for label, cost in ranked[:limit]]
    rest = ranked[limit:]
    if rest:
        head.append((f"other ({len(rest)})", sum((cost for _, cost in rest), ZERO), True))
    return head


# -- figures ---------------------------------------------------------------------------------------------------------


def daily_trend(days: Sequence[DaySpend]) -> dict[str, Any]:
    """Spend per day (bars), forecast days in a lighter colour, and the cumulative month on a second axis."""
    actual = [d for d in days if not d.projected]
    ahead = [d for d in days if d.projected]
    data: list[dict[str, Any]] = [
        {
            "type": "bar",
            "name": "spent",
            "x": [d.day.isoformat() for d in actual],
            "y": [_draw(d.effective_cost) for d in actual],
            "customdata": [format_usd(d.effective_cost) for d in actual],
            "hovertemplate": "%{x|%a %d %b}: %{customdata}<extra>spent</extra>",
            "marker": {"color": PALETTE[0]},
        }
    ]
    if ahead:
        data.append(
            {
                "type": "bar",
                "name": "forecast",
                "x": [d.day.isoformat() for d in ahead],
                "y": [_draw(d.effective_cost) for d in ahead],
                "customdata": [format_usd(d.effective_cost) for d in ahead],
                "hovertemplate": "%{x|%a %d %b}: %{customdata}<extra>forecast</extra>",
                "marker": {"color": FORECAST_COLOR},
            }
        )
    running = ZERO
    cumulative: list[tuple[DaySpend, Decimal]] = []
    for d in days:
        running += d.effective_cost
        cumulative.append((d, running))
    seen = [(d, c) for d, c in cumulative if not d.projected]
    data.append(
        {
            "type": "scatter",
            "mode": "lines",
            "name": "month to date",
            "yaxis": "y2",
            "x": [d.day.isoformat() for d, _ in seen],
            "y": [_draw(c) for _, c in seen],
            "customdata": [format_usd(c) for _, c in seen],
            "hovertemplate": "%{x|%d %b}: %{customdata}<extra>month to date</extra>",
            "line": {"color": PALETTE[1], "width": 2},
        }
    )
    if ahead:
        # The projection starts from the last actual point so the two lines join.
        joined = seen[-1:] + [(d, c) for d, c in cumulative if d.projected]
        data.append(
            {
                "type": "scatter",
                "mode": "lines",
                "name": "projected",
                "yaxis": "y2",
                "x": [d.day.isoformat() for d, _ in joined],
                "y": [_draw(c) for _, c in joined],
                "customdata": [format_usd(c) for _, c in joined],
                "hovertemplate": "%{x|%d %b}: %{customdata}<extra>projected</extra>",
                "line": {"color": PALETTE[1], "width": 2, "dash": "dot"},
            }
        )
    layout = _layout(
        barmode="overlay",
        xaxis={"type": "date", "tickformat": "%d %b", "gridcolor": "#f0f2f4"},
        yaxis=_money_axis(title={"text": "per day"}),
        yaxis2=_money_axis(
            title={"text": "cumulative"}, overlaying="y", side="right", showgrid=False, tickmode="auto", nticks=6
        ),
        margin={"l": 64, "r": 64, "t": 16, "b": 40},
    )
    return _figure(data, layout)


def group_bars(items: Sequence[tuple[str | None, Decimal]], *, name: str = "effective cost") -> dict[str, Any]:
    """Horizontal bars, largest on top, at most MAX_BARS groups plus "other"."""
    shown = _top(items, MAX_BARS)
    labels = [label if other else _label(label) for label, _, other in shown]
    data = [
        {
            "type": "bar",
            "orientation": "h",
            "name": name,
            "y": labels,
            "x": [_draw(cost) for _, cost, _ in shown],
            "text": [format_usd(cost) for _, cost, _ in shown],
            "textposition": "auto",
            "customdata": [(label if other else _label(label, full=True)) for label, _, other in shown],
            "hovertemplate": "%{customdata}: %{text}<extra></extra>",
            "marker": {"color": [OTHER_COLOR if other else PALETTE[0] for _, _, other in shown]},
        }
    ]
    layout = _layout(
        height=max(200, 30 * len(shown) + 70),
        yaxis={"type": "category", "autorange": "reversed", "automargin": True},
        xaxis=_money_axis(),
        margin={"l": 12, "r": 24, "t": 8, "b": 40},
        showlegend=False,
    )
    return _figure(data, layout)


def stacked_daily(days: Sequence[date], rows: Sequence[tuple[date, str | None, Decimal]]) -> dict[str, Any]:
    """Daily spend stacked by group: the MAX_STACKED largest groups of the period, the rest as "other"."""
    totals: dict[str | None, Decimal] = {}
    for _, group, cost in rows:
        totals[group] = totals.get(group, ZERO) + cost
    ranked = sorted(totals, key=lambda g: (-totals[g], str(g)))
    kept = ranked[:MAX_STACKED]
    series: dict[str | None, dict[date, Decimal]] = {g: {} for g in kept}
    other: dict[date, Decimal] = {}
    for day, group, cost in rows:
        target = series[group] if group in series else other
        target[day] = target.get(day, ZERO) + cost
    x = [d.isoformat() for d in days]
    data = []
    named = [(g, series[g], False) for g in kept]
    if other:
        named.append(("other", other, True))
    for index, (group, values, is_other) in enumerate(named):
        amounts = [values.get(d, ZERO) for d in days]
        data.append(
            {
                "type": "bar",
                "name": "other" if is_other else _label(group),
                "x": x,
                "y": [_draw(a) for a in amounts],
                "customdata": [format_usd(a) for a in amounts],
                "hovertemplate": "%{x|%d %b}: %{customdata}<extra>%{fullData.name}</extra>",
                "marker": {"color": OTHER_COLOR if is_other else PALETTE[index % len(PALETTE)]},
            }
        )
    layout = _layout(
        barmode="stack",
        legend={"orientation": "h", "x": 0, "y": 1.12, "traceorder": "normal"},
        xaxis={"type": "date", "tickformat": "%d %b"},
        yaxis=_money_axis(),
    )
    return _figure(data, layout)


def hourly_spend(series: Sequence[tuple[datetime, Decimal]], spikes: Sequence[Any]) -> dict[str, Any]:
    """The whole ledger's spend per hour, and each spend spike as a marker at its hour (its own scope's cost)."""
    data: list[dict[str, Any]] = [
        {
            "type": "scatter",
            "mode": "lines",
            "name": "spend per hour",
            "x": [h.isoformat() for h, _ in series],
            "y": [_draw(c) for _, c in series],
            "customdata": [format_usd(c) for _, c in series],
            "hovertemplate": "%{x|%d %b %H:00}: %{customdata}<extra>all spend</extra>",
            "line": {"color": PALETTE[0], "width": 1.5, "shape": "hv"},
            "fill": "tozeroy",
            "fillcolor": "rgba(76,120,168,0.15)",
        }
    ]
    spikes = [s for s in spikes if s.spend is not None]  # spend spikes: the rules measured in dollars per hour
    if spikes:
        data.append(
            {
                "type": "scatter",
                "mode": "markers",
                "name": "spend spike",
                "x": [s.window_start.isoformat() for s in spikes],
                "y": [_draw(s.spend) for s in spikes],
                "customdata": [f"{_label(s.scope, full=True)}: {format_usd(s.spend)}" for s in spikes],
                "hovertemplate": "%{x|%d %b %H:00} %{customdata}<extra>spike</extra>",
                "marker": {"color": PALETTE[3], "size": 10, "symbol": "diamond"},
            }
        )
    layout = _layout(xaxis={"type": "date"}, yaxis=_money_axis(title={"text": "per hour"}))
    return _figure(data, layout)


def savings_bars(items: Sequence[Any]) -> dict[str, Any]:
    """Estimated monthly saving of each recommendation (horizontal bars, largest on top)."""
    shown = list(items)[:MAX_BARS]
    labels = [f"{i + 1}. {_label(r.title)}" for i, r in enumerate(shown)]
    data = [
        {
            "type": "bar",
            "orientation": "h",
            "y": labels,
            "x": [_draw(r.estimated_monthly_saving) for r in shown],
            "text": [format_usd(r.estimated_monthly_saving) for r in shown],
            "textposition": "auto",
            "hovertemplate": "%{y}: %{text} a month<extra></extra>",
            "marker": {"color": PALETTE[2]},
        }
    ]
    layout = _layout(
        height=max(180, 30 * len(shown) + 70),
        yaxis={"type": "category", "autorange": "reversed", "automargin": True},
        xaxis=_money_axis(title={"text": "per month"}),
        margin={"l": 12, "r": 24, "t": 8, "b": 48},
        showlegend=False,
    )
    return _figure(data, layout)


_OUTCOME_COLORS = {"success": PALETTE[2], "failure": PALETTE[3], "unknown": OTHER_COLOR}


def outcome_bars(by_outcome: Sequence[tuple[str, int, Decimal]]) -> dict[str, Any]:
    """Cost of the period's tasks by how they ended, with the number of tasks in the hover label."""
    data = [
        {
            "type": "bar",
            "x": [outcome for outcome, _, _ in by_outcome],
            "y": [_draw(cost) for _, _, cost in by_outcome],
            "text": [format_usd(cost) for _, _, cost in by_outcome],
            "textposition": "auto",
            "customdata": [f"{count:,} task{'s' if count != 1 else ''}" for _, count, _ in by_outcome],
            "hovertemplate": "%{x}: %{text} (%{customdata})<extra></extra>",
            "marker": {"color": [_OUTCOME_COLORS.get(o, OTHER_COLOR) for o, _, _ in by_outcome]},
        }
    ]
    layout = _layout(height=260, xaxis={"type": "category"}, yaxis=_money_axis(), showlegend=False)
    return _figure(data, layout)


def showback_bars(rows: Sequence[Mapping[str, Any]], by: str, categories: Sequence[str]) -> dict[str, Any]:
    """Each group's direct spend and allocated shared costs, stacked (the TOTAL row left out)."""
    groups = [r for r in rows if r[by] != "TOTAL"]
    labels = [_label(str(r[by])) for r in groups]
    data = []
    for index, (key, name) in enumerate([("direct", "direct"), *((f"shared:{c}", c) for c in categories)]):
        amounts = [r.get(key, ZERO) for r in groups]
        data.append(
            {
                "type": "bar",
                "orientation": "h",
                "name": _label(name),
                "y": labels,
                "x": [_draw(a) for a in amounts],
                "customdata": [format_usd(a) for a in amounts],
                "hovertemplate": "%{y}: %{customdata}<extra>%{fullData.name}</extra>",
                "marker": {"color": PALETTE[index % len(PALETTE)]},
            }
        )
    layout = _layout(
        barmode="stack",
        legend={"orientation": "h", "x": 0, "y": 1.12, "traceorder": "normal"},
        height=max(220, 30 * len(groups) + 90),
        yaxis={"type": "category", "autorange": "reversed", "automargin": True},
        xaxis=_money_axis(),
        margin={"l": 12, "r": 24, "t": 8, "b": 40},
    )
    return _figure(data, layout)


# -- per page ---------------------------------------------------------------------------------------------------------


def page_charts(page: Page) -> list[Chart]:
    """The charts a page shows, in order."""
    if isinstance(page, OverviewPage):
        return [Chart("daily-trend", "Daily spend and month to date", daily_trend(page.daily))]
    if isinstance(page, BreakdownPage):
        charts = [
            Chart(
                "by-group",
                f"Effective spend by {page.dimension}",
                group_bars([(r["group"], r["effective_cost"]) for r in page.rows])
                if page.dimension != "week"
                else _weekly_bars(page.rows),
            )
        ]
        if page.daily:
            charts.append(
                Chart("daily-by-group", f"Daily spend by {page.dimension}", stacked_daily(page.period.days, page.daily))
            )
        return charts
    if isinstance(page, AlertsPage):
        return [Chart("hourly", "Spend per hour, with spend spikes", hourly_spend(page.hourly, page.anomalies))]
    if isinstance(page, RecommendationsPage):
        return [Chart("savings", "Estimated saving per month", savings_bars(page.items))] if page.items else []
    if isinstance(page, TasksPage):
        return [Chart("outcomes", "Task spend by outcome", outcome_bars(page.by_outcome))]
    if isinstance(page, AttributionPage):
        figure = showback_bars(page.rows, page.by, page.categories)
        return [Chart("showback", f"Direct and shared cost by {page.by}", figure)]
    raise TypeError(f"no charts for {type(page).__name__}")


def _weekly_bars(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Spend per week in time order (vertical bars)."""
    data = [
        {
            "type": "bar",
            "x": [_label(r["group"]) for r in rows],
            "y": [_draw(r["effective_cost"]) for r in rows],
            "text": [format_usd(r["effective_cost"]) for r in rows],
            "textposition": "auto",
            "hovertemplate": "%{x}: %{text}<extra></extra>",
            "marker": {"color": PALETTE[0]},
        }
    ]
    return _figure(data, _layout(height=280, xaxis={"type": "category"}, yaxis=_money_axis(), showlegend=False))

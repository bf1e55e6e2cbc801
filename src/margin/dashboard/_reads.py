"""What each page reads from the ledger, and the page model it becomes. Synchronous, like the ledger's reads:
the gateway runs :func:`read_page` in a thread (after flushing the ledger's write queue), the CLI calls it
directly for ``margin report ... --html``. Everything after the reads is pure (_data.py, insights/)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import Any

from ..config import AlertsConfig
from ..insights.recommend import catalog_pricer, recommend
from ..insights.reports import budget_rows, closed_budget_rows, observed_days, scope_forecasts
from ..insights.watch import find_anomalies, hourly_rows
from ._data import (
    Page,
    Period,
    alerts_page,
    breakdown_page,
    overview_page,
    recommendations_page,
    tasks_page,
)

__all__ = ["BREAKDOWNS", "PAGES", "Sources", "read_page"]

# Breakdown pages: page name -> (title, dimension shown, rollup grouping, daily_spend grouping or None).
BREAKDOWNS: dict[str, tuple[str, str, str, str | None]] = {
    "teams": ("Spend by team", "team", "team", "team"),
    "projects": ("Spend by project", "project", "tag:project", "project"),
    "features": ("Spend by feature", "feature", "feature", "feature"),
    "models": ("Spend by model", "model", "model", "model"),
    "weekly": ("Spend by week", "week", "week", None),
}
PAGES = ("overview", "teams", "projects", "features", "models", "alerts", "recommendations", "tasks")
# The forecast fits on up to 28 full days before today; a month's 1st needs the month before.
FORECAST_HISTORY = timedelta(days=35)
# Recommendations read events one by one; a bound keeps a page view from reading a huge month whole.
MAX_RECOMMENDATION_EVENTS = 100_000


@dataclass(frozen=True)
class Sources:
    """What the pages need besides the ledger: the configured budgets (``gateway.budgets``), the anomaly rules'
    settings (``insights.alerts``, an AlertsConfig), the price catalog (recommendations reprice usage) and the gateway's
    default max_tokens (the max_tokens rule)."""

    budgets: Sequence[Any] = ()
    alerts: Any = field(default_factory=AlertsConfig)
    catalog: Any = None
    default_max_tokens: int | None = None

    @property
    def month_budgets(self) -> list[Any]:
        return [b for b in self.budgets if b.period == "month"]


def read_page(ledger: Any, name: str, period: Period, sources: Sources) -> Page:
    """Read what page ``name`` shows for ``period`` and build its model. ``name``: one of :data:`PAGES` or
    ``weekly``."""
    start, end = period.start, period.end
    if name == "overview":
        return _overview(ledger, period, sources)
    if name in BREAKDOWNS:
        title, dimension, rollup_by, daily_by = BREAKDOWNS[name]
        rows = ledger.rollup_breakdown(start, end, rollup_by)
        daily = _daily(ledger, start, end, daily_by) if daily_by else []
        return breakdown_page(name, title, dimension, period, rows, daily)
    if name == "alerts":
        hourly = ledger.hourly_spend(start, end, None)
        rows = hourly + ledger.hourly_spend(start, end, "team")
        # The watch's hourly and daily rules over the whole period instead of its last days (its dominance and
        # budget rules need more reads: budgets are on the overview).
        found = find_anomalies(hourly_rows(rows), sources.alerts, now=min(period.now, end))
        # The thresholds only: the sinks (their variable names) are no business of a read-only page.
        settings = {k: v for k, v in sources.alerts.model_dump().items() if k != "sinks"}
        return alerts_page(period, ledger.alerts(limit=1000), found, hourly, settings=settings)
    if name == "recommendations":
        return _recommendations(ledger, period, sources)
    if name == "tasks":
        return tasks_page(period, ledger.task_costs(start, end))
    raise ValueError(f"no page {name!r}: one of {', '.join(PAGES)}")


def _overview(ledger: Any, period: Period, sources: Sources) -> Page:
    start, end = period.start, period.end
    overview = ledger.overview(start, end)
    # One scan of the month's rollups for both tag breakdowns (json_extract on each row is what costs).
    tagged = ledger.rollup_breakdowns(start, end, ["tag:project", "feature"])
    dimensions = {
        "model": overview["by_model"],
        "team": overview["by_team"],
        "project": tagged["tag:project"],
        "feature": tagged["feature"],
    }
    budgets = sources.month_budgets
    scopes = {None if b.scope == "global" else b.scope for b in budgets}
    forecast = None
    rows: list[Any] = []
    if period.is_current:
        since = start - FORECAST_HISTORY
        daily = {scope: _daily(ledger, since, end, scope) for scope in scopes if scope is not None}
        # The daily total is the sum of any rollup grouping's days (every event is in exactly one group, None
        # included): one scan of the rollups fewer (about a fifth of this page's time).
        grouped = next((rows for scope, rows in daily.items() if scope != "key"), None)
        daily[None] = day_totals(grouped) if grouped is not None else _daily(ledger, since, end, None)
        forecast = scope_forecasts(daily[None], period.now, None)[None]
        rows = budget_rows(daily, budgets, period.now)
    elif period.is_closed and budgets:
        spent: dict[str | None, dict[str | None, Decimal]] = {}
        for scope in scopes:
            if scope is None:
                spent[None] = {None: overview["total"]["effective_cost"]}
            elif (by := _ROLLUP_SCOPES.get(scope, scope if scope.startswith("tag:") else None)) is not None:
                spent[scope] = {r["group"]: r["effective_cost"] for r in ledger.rollup_breakdown(start, end, by)}
            else:  # keys are not in the rollups
                spent[scope] = {r.group: r.effective_cost for r in ledger.spend(start, end, scope)}
        rows = closed_budget_rows(spent, budgets)
    return overview_page(period, overview, forecast=forecast, budgets=rows, dimensions=dimensions)


# Budget scopes the hourly rollups can group by (their rollup_breakdown name); key budgets read the events.
_ROLLUP_SCOPES = {"team": "team", "model": "model", "feature": "feature", "project": "tag:project", "user": "tag:user"}


def day_totals(rows: list[tuple[str, str | None, Decimal]]) -> list[tuple[str, str | None, Decimal]]:
    """``(day, None, total)`` per day from grouped ``(day, group, cost)`` rows, in day order."""
    totals: dict[str, Decimal] = {}
    for day, _group, cost in rows:
        totals[day] = totals.get(day, Decimal(0)) + cost
    return [(day, None, totals[day]) for day in sorted(totals)]


def _daily(ledger: Any, since: Any, until: Any, by: str | None) -> list[tuple[str, str | None, Decimal]]:
    """``(day, group, effective cost)`` rows from the hourly rollups (a month of ten million events reads in a
    fraction of a second); by key the ledger sums the events themselves."""
    return ledger.daily_rollup(since, until, by)


def _recommendations(ledger: Any, period: Period, sources: Sources) -> Page:
    until = min(period.end, period.now)
    events = ledger.events_between(period.start, until, limit=MAX_RECOMMENDATION_EVENTS + 1)
    truncated = len(events) > MAX_RECOMMENDATION_EVENTS
    events = events[:MAX_RECOMMENDATION_EVENTS]
    days = observed_days(period.start, period.end, period.now)
    found = []
    notes = [
        "The cheaper-model rule needs a cheap model and the expensive ones to look at: run "
        "`margin report recommendations --cheap-model gpt-4o-mini --expensive gpt-4o` for it."
    ]
    if events and sources.catalog is not None:
        found = recommend(
            events,
            price=catalog_pricer(sources.catalog, period.now),
            period_days=days,
            default_max_tokens=sources.default_max_tokens,
        )
    return recommendations_page(period, found, observed_days=days, events=len(events), truncated=truncated, notes=notes)

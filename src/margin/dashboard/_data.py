"""Page models: what each dashboard page (and each HTML report) shows, built from what the edge read from the
ledger. Pure: no I/O, time passed in (:class:`Period` carries ``now``).

Money stays :class:`~decimal.Decimal` here; the charts turn copies into floats for drawing only, and every
figure printed on a page is formatted from these Decimals. Each page model is a frozen dataclass whose fields
are also the page's JSON document (``/dashboard/api/<page>.json``, see :func:`document`).
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from typing import Any

from ..insights.forecast import Forecast
from ..insights.recommend import Recommendation
from ..insights.reports import BudgetRow, current_period, month_bounds, projected_days, task_summary
from ..money import MONEY_CONTEXT, ZERO

__all__ = [
    "AlertRow",
    "AlertsPage",
    "AnomalyRow",
    "AttributionPage",
    "BreakdownPage",
    "Driver",
    "OverviewPage",
    "Page",
    "Period",
    "RecommendationsPage",
    "TaskRow",
    "TasksPage",
    "alerts_page",
    "attribution_page",
    "breakdown_page",
    "document",
    "overview_page",
    "period_of",
    "recommendations_page",
    "share",
    "tasks_page",
]

SHARE_QUANTUM = Decimal("0.0001")
TOP_DRIVERS_PER_DIMENSION = 3
TASK_ROWS = 100  # the most expensive tasks listed; the summary counts all of them


@dataclass(frozen=True, kw_only=True)
class Period:
    """The month a page shows and the moment it was read. ``is_current``: the month ``now`` is in (forecasts
    and run-out days make sense only then); a past month is closed, a future one has no data yet."""

    period: str
    start: datetime
    end: datetime
    now: datetime

    @property
    def is_current(self) -> bool:
        return self.start <= self.now < self.end

    @property
    def is_closed(self) -> bool:
        return self.now >= self.end

    @property
    def last_day(self) -> date:
        return (self.end - timedelta(days=1)).date()

    @property
    def days(self) -> list[date]:
        first = self.start.date()
        return [first + timedelta(days=i) for i in range(calendar.monthrange(first.year, first.month)[1])]


def period_of(period: str | None, now: datetime) -> Period:
    """The page's period: ``period`` (``YYYY-MM``, PeriodError when malformed), else the month of ``now``."""
    name = period or current_period(now)
    start, end = month_bounds(name)
    return Period(period=name, start=start, end=end, now=now.astimezone(UTC))


def share(part: Decimal, whole: Decimal) -> Decimal:
    """``part / whole`` rounded half-even to 4 decimals (0 when ``whole`` is 0), for people."""
    if not whole:
        return ZERO.quantize(SHARE_QUANTUM)
    with localcontext(MONEY_CONTEXT):
        return (part / whole).quantize(SHARE_QUANTUM, rounding=ROUND_HALF_EVEN)


# -- overview -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Driver:
    """One of the largest groups of a dimension: a top cost driver."""

    dimension: str  # model, team, project, feature
    group: str | None  # None: the events without this tag (or without a served model)
    effective_cost: Decimal
    share: Decimal  # of the month's effective spend


@dataclass(frozen=True, kw_only=True)
class ForecastView:
    """The month-end forecast of the whole ledger (the current month only)."""

    spent: Decimal
    projected: Decimal
    low: Decimal  # 10% bound
    high: Decimal  # 90% bound
    burn_rate_per_day: Decimal  # an average day's spend at the current rate
    method: str
    history_days: int


@dataclass(frozen=True, kw_only=True)
class DaySpend:
    day: date
    effective_cost: Decimal
    projected: bool = False  # a forecast of a day still to come (or of the rest of today)


@dataclass(frozen=True, kw_only=True)
class OverviewPage:
    page = "overview"
    title = "Overview"
    period: Period
    total: Mapping[str, Any]  # the rollups' totals: requests, tokens, list/effective/avoided cost
    forecast: ForecastView | None
    budgets: Sequence[BudgetRow]
    daily: Sequence[DaySpend]
    drivers: Sequence[Driver]
    notes: Sequence[str] = ()


def _drivers(total: Decimal, by_dimension: Mapping[str, Sequence[Mapping[str, Any]]]) -> list[Driver]:
    found = []
    for dimension, rows in by_dimension.items():
        ranked = sorted((r for r in rows if r["effective_cost"] > 0), key=lambda r: -r["effective_cost"])
        for row in ranked[:TOP_DRIVERS_PER_DIMENSION]:
            group = row["group"] if row["group"] not in (None, "") else None
            cost = row["effective_cost"]
            found.append(Driver(dimension=dimension, group=group, effective_cost=cost, share=share(cost, total)))
    return found


def overview_page(
    period: Period,
    overview: Mapping[str, Any],
    *,
    forecast: Forecast | None,
    budgets: Sequence[BudgetRow],
    dimensions: Mapping[str, Sequence[Mapping[str, Any]]],
) -> OverviewPage:
    """``overview``: the ledger's ``overview(start, end)`` document (rollups); ``forecast``: the whole ledger's
    month-end forecast (current month only); ``budgets``: the month budgets' rows; ``dimensions``: breakdown
    rows per dimension (model, team, project, feature) for the top cost drivers."""
    spent_by_day = {date.fromisoformat(r["group"]): r["effective_cost"] for r in overview["by_day"]}
    today = period.now.date()
    daily = [
        DaySpend(day=d, effective_cost=spent_by_day.get(d, ZERO)) for d in period.days if period.is_closed or d <= today
    ]
    view = None
    notes: list[str] = []
    if forecast is not None and period.is_current:
        view = ForecastView(
            spent=forecast.spent_to_date,
            projected=forecast.projected_total,
            low=forecast.low,
            high=forecast.high,
            burn_rate_per_day=forecast.base_rate,
            method=forecast.method,
            history_days=forecast.history_days,
        )
        daily += [
            DaySpend(day=d, effective_cost=cost, projected=True)
            for d, cost in projected_days(forecast, period.last_day)
        ]
        if forecast.method == "no_history":
            notes.append("No full day of history yet: the forecast is the spend so far.")
    elif period.is_closed:
        notes.append(f"{period.period} is over: figures are the month's final spend, with no forecast.")
    else:
        notes.append(f"{period.period} has not started yet.")
    total = overview["total"]
    return OverviewPage(
        period=period,
        total=total,
        forecast=view,
        budgets=budgets,
        daily=daily,
        drivers=_drivers(total["effective_cost"], dimensions),
        notes=notes,
    )


# -- breakdowns ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class BreakdownPage:
    """Spend by one dimension. ``rows`` are the rollups' rows (most expensive first, weeks in order) with a
    ``share`` of the effective total; ``daily`` is ``(day, group, cost)`` for the stacked trend (empty for
    weeks)."""

    page: str  # teams, projects, features, models, weekly
    title: str
    dimension: str  # team, project, feature, model, week
    period: Period
    rows: Sequence[Mapping[str, Any]]
    total: Mapping[str, Any]
    daily: Sequence[tuple[date, str | None, Decimal]] = ()


_SUMMED = (
    "requests",
    "input_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "output_tokens",
    "list_cost",
    "effective_cost",
    "avoided_cost",
)


def breakdown_page(
    page: str,
    title: str,
    dimension: str,
    period: Period,
    rows: Sequence[Mapping[str, Any]],
    daily: Iterable[tuple[str, str | None, Decimal]] = (),
) -> BreakdownPage:
    """``rows``: the ledger's ``rollup_breakdown`` rows; ``daily``: its ``daily_spend`` rows by the same
    dimension (for the trend chart)."""
    total: dict[str, Any] = {"group": "TOTAL"}
    for name in _SUMMED:
        total[name] = sum((r[name] for r in rows), ZERO if name.endswith("cost") else 0)
    with_share = [{**r, "share": share(r["effective_cost"], total["effective_cost"])} for r in rows]
    return BreakdownPage(
        page=page,
        title=title,
        dimension=dimension,
        period=period,
        rows=with_share,
        total=total,
        daily=[(date.fromisoformat(day), group, cost) for day, group, cost in daily],
    )


# -- alerts and anomalies -------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class AlertRow:
    """A stored alert: a spend breaker that tripped, an anomaly the watch sent (with its delivery state)."""

    created_at: datetime
    kind: str
    scope: str | None
    message: str
    delivered: bool | None  # None: not a delivered kind of alert (e.g. a breaker trip)


@dataclass(frozen=True, kw_only=True)
class AnomalyRow:
    """An anomaly the watch's rules find in the period (spend spike, cost per request jump, fallback rate rise),
    and whether the watch has alerted on it."""

    rule: str
    scope: str
    window_start: datetime
    window_end: datetime
    message: str
    alerted: bool
    spend: Decimal | None  # the hour's spend, for spend spikes (drawn on the hourly chart); None for other rules


@dataclass(frozen=True, kw_only=True)
class AlertsPage:
    page = "alerts"
    title = "Alerts and anomalies"
    period: Period
    alerts: Sequence[AlertRow]
    anomalies: Sequence[AnomalyRow]
    hourly: Sequence[tuple[datetime, Decimal]]  # the whole ledger's spend per hour of the period
    settings: Mapping[str, Any]  # the rules' thresholds (insights.alerts), shown with the table


SPEND_SPIKE = "spend_spike"


def alerts_page(
    period: Period,
    stored: Iterable[Any],
    anomalies: Iterable[Any],
    hourly: Iterable[Sequence[Any]],
    *,
    settings: Mapping[str, Any],
) -> AlertsPage:
    """``stored``: the ledger's alerts (kept when created in the period); ``anomalies``: what the watch's rules
    find in the period (``insights.anomaly`` records); ``hourly``: ``hourly_spend`` rows ``(hour, team or None,
    cost, ...)``, of which the whole ledger's (team None) are drawn."""
    stored = list(stored)
    alerts = [
        AlertRow(
            created_at=a.created_at,
            kind=a.kind,
            scope=a.scope,
            message=a.message,
            delivered=a.data.get("delivered") if isinstance(a.data.get("delivered"), bool) else None,
        )
        for a in stored
        if period.start <= a.created_at < period.end
    ]
    seen = {a.data.get("dedup_key") for a in stored if isinstance(a.data, Mapping)}
    found = [
        AnomalyRow(
            rule=a.rule,
            scope=a.scope,
            window_start=a.window_start,
            window_end=a.window_end,
            message=a.message,
            alerted=a.dedup_key in seen,
            spend=a.value if a.rule == SPEND_SPIKE else None,
        )
        for a in anomalies
    ]
    found.sort(key=lambda a: (a.window_start, a.rule, a.scope), reverse=True)
    # Every hour of the period so far, zero where nothing was spent, so the chart's time axis is the period's.
    spent = {row[0]: row[2] for row in hourly if row[1] is None}
    series = []
    moment = period.start
    while moment < min(period.end, period.now + timedelta(hours=1)):
        series.append((moment, spent.get(f"{moment:%Y-%m-%dT%H}", ZERO)))
        moment += timedelta(hours=1)
    return AlertsPage(period=period, alerts=alerts, anomalies=found, hourly=series, settings=dict(settings))


# -- recommendations ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class RecommendationsPage:
    page = "recommendations"
    title = "Recommendations"
    period: Period
    observed_days: Decimal  # the days of the period the savings are scaled from
    events: int
    truncated: bool  # the period had more events than were read
    items: Sequence[Recommendation]
    total_monthly_saving: Decimal
    notes: Sequence[str] = ()


def recommendations_page(
    period: Period,
    items: Sequence[Recommendation],
    *,
    observed_days: Decimal,
    events: int,
    truncated: bool,
    notes: Sequence[str] = (),
) -> RecommendationsPage:
    with localcontext(MONEY_CONTEXT):
        total = sum((r.estimated_monthly_saving for r in items), ZERO)
    return RecommendationsPage(
        period=period,
        observed_days=observed_days,
        events=events,
        truncated=truncated,
        items=list(items),
        total_monthly_saving=total,
        notes=notes,
    )


# -- tasks --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class TaskRow:
    task_id: str
    requests: int
    cost: Decimal
    outcome: str | None


@dataclass(frozen=True, kw_only=True)
class TasksPage:
    page = "tasks"
    title = "Tasks"
    period: Period
    summary: Mapping[str, Any]  # insights.reports.task_summary
    by_outcome: Sequence[tuple[str, int, Decimal]]  # (success|failure|unknown, tasks, cost)
    tasks: Sequence[TaskRow]  # the most expensive first, at most TASK_ROWS


def tasks_page(period: Period, tasks: Sequence[tuple[str, int, Decimal, str | None]]) -> TasksPage:
    """``tasks``: the ledger's ``task_costs`` rows for the period."""
    by_outcome = []
    for outcome in ("success", "failure", None):
        mine = [cost for _, _, cost, o in tasks if o == outcome]
        by_outcome.append((outcome or "unknown", len(mine), sum(mine, ZERO)))
    ranked = sorted(tasks, key=lambda t: (-t[2], t[0]))[:TASK_ROWS]
    return TasksPage(
        period=period,
        summary=task_summary(tasks, period.period),
        by_outcome=by_outcome,
        tasks=[TaskRow(task_id=t, requests=n, cost=c, outcome=o) for t, n, c, o in ranked],
    )


# -- showback (reports) ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class AttributionPage:
    """Showback: direct spend plus allocated shared costs per group (``margin report attribution --html``)."""

    page = "attribution"
    period: Period
    by: str
    categories: Sequence[str]
    rows: Sequence[Mapping[str, Any]]  # ShowbackReport.rows(): group, direct, shared:<category>..., shared, total
    coverage: Mapping[str, Decimal]  # share of spend carrying each required tag (4 decimals)

    @property
    def title(self) -> str:
        return f"Showback by {self.by}"


def attribution_page(period: Period, report: Any) -> AttributionPage:
    """``report``: an :class:`~margin.insights.attribution.ShowbackReport` of the period."""
    return AttributionPage(
        period=period,
        by=report.by,
        categories=list(report.categories),
        rows=report.rows(),
        coverage=report.coverage_display(),
    )


Page = OverviewPage | BreakdownPage | AlertsPage | RecommendationsPage | TasksPage | AttributionPage


def document(page: Page) -> dict[str, Any]:
    """The page's JSON document: every field, the period flattened, Decimals left for the encoder (as text)."""
    out: dict[str, Any] = {"page": page.page, "title": page.title}
    for item in fields(page):  # type: ignore[arg-type]
        value = getattr(page, item.name)
        if item.name == "period":
            out.update(
                period=value.period, start=value.start, end=value.end, as_of=value.now, is_current=value.is_current
            )
        elif isinstance(value, Sequence) and not isinstance(value, str):
            out[item.name] = [asdict(v) if hasattr(v, "__dataclass_fields__") else v for v in value]
        elif hasattr(value, "__dataclass_fields__"):
            out[item.name] = asdict(value)
        else:
            out[item.name] = value
    return out

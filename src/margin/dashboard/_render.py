"""HTML for dashboard pages, HTML reports, the login page and error pages. Pure string building.

No template engine: the pages are a few tables, figures and forms, and plain functions keep the one rule that
matters easy to check: every value interpolated into HTML goes through :func:`esc` (text and attribute
values) or, for chart figures, through :func:`json_block` (JSON with ``<``, ``>`` and ``&`` escaped, inside a
non-executed ``<script type="application/json">``). Amounts are formatted from Decimals with
:func:`margin.money.format_usd`; each money cell also carries its exact value in ``data-exact``.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

import orjson

from ..money import format_usd
from ._assets import loader_js, plotly_js
from ._charts import Chart, page_charts
from ._data import (
    AlertsPage,
    AttributionPage,
    BreakdownPage,
    OverviewPage,
    Page,
    RecommendationsPage,
    TasksPage,
)

__all__ = [
    "NAV",
    "dashboard_html",
    "error_html",
    "esc",
    "json_block",
    "login_html",
    "report_html",
]

# (page name, path under /dashboard, label) in navigation order.
NAV: tuple[tuple[str, str, str], ...] = (
    ("overview", "", "Overview"),
    ("teams", "/teams", "Teams"),
    ("projects", "/projects", "Projects"),
    ("features", "/features", "Features"),
    ("models", "/models", "Models"),
    ("alerts", "/alerts", "Alerts"),
    ("recommendations", "/recommendations", "Recommendations"),
    ("tasks", "/tasks", "Tasks"),
)

STATUS_LABELS = {
    "on_track": "on track",
    "approaching": "approaching",
    "over": "over budget",
    "over_hard_limit": "over hard limit",
}


def esc(value: Any) -> str:
    """Text for HTML content and quoted attribute values."""
    return html.escape("" if value is None else str(value), quote=True)


def json_block(value: Any) -> str:
    """JSON for a ``<script type="application/json">`` element: ``<``, ``>`` and ``&`` become ``\\u003c``,
    ``\\u003e`` and ``\\u0026`` (the same string to JSON.parse), so no value can close the element."""
    text = orjson.dumps(value, default=_json_default).decode("utf-8")
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value, "f")
    raise TypeError(type(value).__name__)


# -- cells and tables -----------------------------------------------------------------------------------------------


def _plain(amount: Decimal) -> str:
    return format(amount, "f")


def usd(amount: Decimal | None, *, key: str | None = None) -> str:
    """A money figure: formatted for people, exact in ``data-exact``."""
    if amount is None:
        return '<span class="muted">-</span>'
    attr = f' data-key="{esc(key)}"' if key else ""
    return f'<span class="money" data-exact="{esc(_plain(amount))}"{attr}>{esc(format_usd(amount))}</span>'


def _count(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def _pct(value: Decimal) -> str:
    return f"{value * 100:.1f}%"


def _when(moment: datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M} UTC"


def _window(start: datetime, end: datetime) -> str:
    if end - start == timedelta(hours=1):
        return f"{start:%Y-%m-%d %H:00} UTC"
    return f"{start:%Y-%m-%d %H:%M} - {end:%Y-%m-%d %H:%M} UTC"


def _group(value: Any, none: str = "(none)") -> str:
    if value in (None, ""):
        return f'<span class="muted">{esc(none)}</span>'
    return esc(value)


def _status(status: str) -> str:
    return f'<span class="status status-{esc(status)}">{esc(STATUS_LABELS.get(status, status))}</span>'


@dataclass(frozen=True)
class Column:
    """A table column: its header and whether it holds numbers (right-aligned)."""

    header: str
    numeric: bool = False


def _table(
    key: str,
    columns: Sequence[Column],
    rows: Iterable[tuple[str | None, Sequence[str]]],
    *,
    footer: Sequence[str] | None = None,
    empty: str = "Nothing in this period.",
) -> str:
    """``rows``: (the row's group for ``data-group``, or None; pre-rendered cell HTML per column)."""
    head = "".join(f'<th class="{"num" if c.numeric else ""}">{esc(c.header)}</th>' for c in columns)
    body = []
    for group, cells in rows:
        attr = f' data-group="{esc(group)}"' if group is not None else ""
        tds = "".join(
            f'<td class="{"num" if c.numeric else ""}">{cell}</td>' for c, cell in zip(columns, cells, strict=True)
        )
        body.append(f"<tr{attr}>{tds}</tr>")
    if not body:
        body.append(f'<tr class="empty"><td colspan="{len(columns)}">{esc(empty)}</td></tr>')
    foot = ""
    if footer is not None:
        tds = "".join(
            f'<td class="{"num" if c.numeric else ""}">{cell}</td>' for c, cell in zip(columns, footer, strict=True)
        )
        foot = f'<tfoot><tr data-group="TOTAL">{tds}</tr></tfoot>'
    return (
        f'<div class="table-wrap"><table data-table="{esc(key)}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody>{foot}</table></div>"
    )


def _stat(key: str, label: str, value_html: str, detail: str = "") -> str:
    extra = f'<div class="detail">{detail}</div>' if detail else ""
    return (
        f'<div class="stat" data-stat="{esc(key)}"><div class="label">{esc(label)}</div>'
        f'<div class="value">{value_html}</div>{extra}</div>'
    )


def _card(title: str, inner: str, *, key: str | None = None) -> str:
    attr = f' data-section="{esc(key)}"' if key else ""
    return f'<section class="card"{attr}><h2>{esc(title)}</h2>{inner}</section>'


def _chart(chart: Chart) -> str:
    element = f"chart-{chart.key}"
    return (
        f'<section class="card chart-card" data-section="chart-{esc(chart.key)}"><h2>{esc(chart.title)}</h2>'
        f'<div class="chart" id="{esc(element)}"></div>'
        f'<script type="application/json" data-chart="{esc(element)}">{json_block(chart.figure)}</script></section>'
    )


def _notes(notes: Sequence[str]) -> str:
    return "".join(f'<p class="note">{esc(n)}</p>' for n in notes)


# -- pages ----------------------------------------------------------------------------------------------------------


def _overview(page: OverviewPage, charts: list[Chart]) -> str:
    total = page.total
    stats = [
        _stat(
            "mtd-effective",
            "Month to date" if page.period.is_current else "Month total",
            usd(total["effective_cost"]),
            "effective: after negotiated discounts",
        ),
        _stat("mtd-list", "At list prices", usd(total["list_cost"]), "before discounts"),
        _stat(
            "events",
            "Events",
            esc(_count(total["requests"])),
            esc(f"{total['input_tokens']:,} input / {total['output_tokens']:,} output tokens"),
        ),
        _stat("avoided", "Avoided by caches", usd(total["avoided_cost"])),
    ]
    forecast = page.forecast
    if forecast is not None:
        stats.append(
            _stat(
                "burn-rate",
                "Burn rate",
                usd(forecast.burn_rate_per_day) + " / day",
                esc(f"from {forecast.history_days} full days ({forecast.method})"),
            )
        )
        stats.append(
            _stat(
                "forecast",
                "Month-end forecast",
                usd(forecast.projected),
                f"10-90%: {usd(forecast.low)} - {usd(forecast.high)}",
            )
        )
    budget_rows = [
        (
            f"{b.name}:{b.group}",
            [
                esc(b.name),
                esc(b.scope),
                _group(b.group),
                usd(b.cap),
                usd(b.spent),
                esc(_pct(b.spent / b.cap)) if b.cap else "-",
                usd(b.projected),
                _status(b.status),
                esc(b.runs_out.isoformat()) if b.runs_out else '<span class="muted">-</span>',
            ],
        )
        for b in page.budgets
    ]
    budgets = _table(
        "budgets",
        [
            Column("budget"),
            Column("scope"),
            Column("group"),
            Column("cap", True),
            Column("spent", True),
            Column("used", True),
            Column("projected", True),
            Column("status"),
            Column("runs out"),
        ],
        budget_rows,
        empty="No month budgets configured (gateway.budgets with period: month).",
    )
    drivers = _table(
        "drivers",
        [Column("dimension"), Column("group"), Column("effective cost", True), Column("share", True)],
        [
            (
                f"{d.dimension}:{d.group}",
                [esc(d.dimension), _group(d.group, "(untagged)"), usd(d.effective_cost), esc(_pct(d.share))],
            )
            for d in page.drivers
        ],
        empty="No spend in this period.",
    )
    return (
        f'<div class="stats">{"".join(stats)}</div>{_notes(page.notes)}'
        + "".join(_chart(c) for c in charts)
        + _card("Budgets this month", budgets, key="budgets")
        + _card("Top cost drivers", drivers, key="drivers")
    )


def _breakdown(page: BreakdownPage, charts: list[Chart]) -> str:
    columns = [
        Column(page.dimension),
        Column("events", True),
        Column("input tokens", True),
        Column("output tokens", True),
        Column("list cost", True),
        Column("effective cost", True),
        Column("share", True),
        Column("avoided by caches", True),
    ]

    def cells(row: Mapping[str, Any], group_html: str, share: str) -> list[str]:
        return [
            group_html,
            esc(_count(row["requests"])),
            esc(_count(row["input_tokens"])),
            esc(_count(row["output_tokens"])),
            usd(row["list_cost"]),
            usd(row["effective_cost"]),
            share,
            usd(row["avoided_cost"]),
        ]

    rows = [
        ("" if r["group"] is None else str(r["group"]), cells(r, _group(r["group"]), esc(_pct(r["share"]))))
        for r in page.rows
    ]
    table = _table(
        "groups",
        columns,
        rows,
        footer=cells(page.total, "<strong>TOTAL</strong>", "100.0%" if page.rows else "-"),
        empty=f"No spend in {page.period.period}.",
    )
    stats = (
        '<div class="stats">'
        + _stat("total", "Effective spend", usd(page.total["effective_cost"]))
        + _stat("groups", "Groups" if page.dimension != "week" else "Weeks", esc(_count(len(page.rows))))
        + "</div>"
    )
    note = ""
    if page.dimension not in ("model", "week"):
        note = _notes([f"(none): events without a {page.dimension} tag. Tag requests with X-Margin-Tags or key tags."])
    return stats + "".join(_chart(c) for c in charts) + _card(f"Spend by {page.dimension}", table + note, key="table")


def _alerts(page: AlertsPage, charts: list[Chart]) -> str:
    anomalies = _table(
        "anomalies",
        [Column("window"), Column("rule"), Column("scope"), Column("message"), Column("alerted")],
        [
            (
                a.scope,
                [
                    esc(_window(a.window_start, a.window_end)),
                    esc(a.rule.replace("_", " ")),
                    esc(a.scope),
                    esc(a.message),
                    "yes" if a.alerted else '<span class="muted">not yet</span>',
                ],
            )
            for a in page.anomalies
        ],
        empty="No anomalies in this period.",
    )
    stored = _table(
        "alerts",
        [Column("created"), Column("kind"), Column("scope"), Column("message"), Column("delivered")],
        [
            (
                a.scope,
                [
                    esc(_when(a.created_at)),
                    esc(a.kind),
                    _group(a.scope, "-"),
                    esc(a.message),
                    {True: "yes", False: '<span class="status status-over">failed</span>', None: "-"}[a.delivered],
                ],
            )
            for a in page.alerts
        ],
        empty="No alerts stored in this period.",
    )
    settings = page.settings
    rule = _notes(
        [
            "The anomaly watch's rules over the month, overall and per team (insights.alerts): an hour costing more "
            f"than {settings.get('spike_multiple')} x the trailing day's hourly average (and at least "
            f"{format_usd(Decimal(str(settings.get('min_hourly_cost', 0))))}), an hour's cost per request above "
            f"{settings.get('cost_per_request_multiple')} x the trailing day's, and the last complete day's "
            f"fallback rate above {settings.get('fallback_multiple')} x the week before."
        ]
    )
    return (
        "".join(_chart(c) for c in charts)
        + _card("Anomalies", rule + anomalies, key="anomalies")
        + _card("Stored alerts", stored, key="alerts")
    )


def _recommendations(page: RecommendationsPage, charts: list[Chart]) -> str:
    stats = (
        '<div class="stats">'
        + _stat("saving", "Estimated saving per month", usd(page.total_monthly_saving), "30-day month")
        + _stat("observed", "Observed", esc(f"{page.observed_days:.1f} days"), esc(f"{page.events:,} events"))
        + "</div>"
    )
    notes = list(page.notes)
    if page.truncated:
        notes.append(f"Only the first {page.events:,} events of the period were read.")
    items = []
    for index, r in enumerate(page.items, start=1):
        evidence = "".join(
            f"<tr><th>{esc(k)}</th><td>{esc(_evidence(v))}</td></tr>" for k, v in sorted(r.evidence.items())
        )
        items.append(
            f'<li class="recommendation" data-kind="{esc(r.kind)}"><div class="rec-head">'
            f'<span class="rec-title">{index}. {esc(r.title)}</span>'
            f'<span class="rec-saving">{usd(r.estimated_monthly_saving)} / month</span></div>'
            f'<div class="rec-meta">confidence: {esc(r.confidence)}</div>'
            f'<p class="rec-action">{esc(r.action)}</p>'
            f'<details><summary>evidence</summary><table class="evidence">{evidence}</table></details></li>'
        )
    listing = (
        f'<ol class="recommendations">{"".join(items)}</ol>'
        if items
        else ('<p class="empty">Nothing in the ledger looks worth changing in this period.</p>')
    )
    return stats + _notes(notes) + "".join(_chart(c) for c in charts) + _card("What to change", listing, key="list")


def _evidence(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ", ".join(_evidence(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}={_evidence(v)}" for k, v in value.items())
    return format(value, "f") if isinstance(value, Decimal) else str(value)


def _tasks(page: TasksPage, charts: list[Chart]) -> str:
    s = page.summary
    stats = (
        '<div class="stats">'
        + _stat("tasks", "Tasks", esc(_count(s["tasks"])), esc(f"{s['requests']:,} requests"))
        + _stat(
            "succeeded",
            "Succeeded",
            esc(_count(s["succeeded"])),
            esc(f"{s['failed']:,} failed, {s['unknown']:,} unknown"),
        )
        + _stat("task-cost", "Task spend", usd(s["total_cost"]))
        + _stat("cost-per-task", "Cost per task", usd(s["cost_per_task"]))
        + _stat(
            "cost-per-success",
            "Cost per successful task",
            usd(s["cost_per_successful_task"]),
            "all tasks' spend / the successful ones",
        )
        + "</div>"
    )
    table = _table(
        "tasks",
        [Column("task"), Column("requests", True), Column("cost", True), Column("outcome")],
        [
            (
                t.task_id,
                [
                    esc(t.task_id),
                    esc(_count(t.requests)),
                    usd(t.cost),
                    esc(t.outcome) if t.outcome else '<span class="muted">unknown</span>',
                ],
            )
            for t in page.tasks
        ],
        empty="No tasks in this period: send requests with X-Margin-Task-Id.",
    )
    note = _notes([f"The {len(page.tasks)} most expensive tasks."]) if s["tasks"] > len(page.tasks) else ""
    return stats + "".join(_chart(c) for c in charts) + _card("Tasks", table + note, key="tasks")


def _attribution(page: AttributionPage, charts: list[Chart]) -> str:
    keys = list(page.rows[0].keys()) if page.rows else [page.by, "direct", "shared", "total"]
    columns = [Column(k.replace("shared:", "shared: "), k != page.by) for k in keys]
    body = [r for r in page.rows if r[page.by] != "TOTAL"]
    total = next((r for r in page.rows if r[page.by] == "TOTAL"), None)
    table = _table(
        "showback",
        columns,
        [(str(r[page.by]), [_group(r[k]) if k == page.by else usd(r[k]) for k in keys]) for r in body],
        footer=[("<strong>TOTAL</strong>" if k == page.by else usd(total[k])) for k in keys] if total else None,
    )
    coverage = ", ".join(f"{tag} {_pct(value)}" for tag, value in page.coverage.items())
    note = _notes(
        ["Direct spend plus each group's share of the shared costs; the columns add up exactly to the total."]
        + ([f"Tag coverage (share of spend carrying the tag): {coverage}."] if coverage else [])
    )
    return "".join(_chart(c) for c in charts) + _card(f"Showback by {page.by}", table + note, key="table")


_BODIES = {
    OverviewPage: _overview,
    BreakdownPage: _breakdown,
    AlertsPage: _alerts,
    RecommendationsPage: _recommendations,
    TasksPage: _tasks,
    AttributionPage: _attribution,
}


def _body(page: Page) -> str:
    return _BODIES[type(page)](page, page_charts(page))  # type: ignore[operator]


# -- documents ------------------------------------------------------------------------------------------------------


def _document(title: str, header: str, main: str, scripts: str) -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        # No favicon request (it would be a 404 in every browser console).
        '<link rel="icon" href="data:,">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head>"
        f"<body>{header}<main>{main}</main>{scripts}</body></html>"
    )


def _heading(page: Page) -> str:
    period = page.period
    return (
        f'<h1>{esc(page.title)} <span class="period">{esc(period.period)}</span></h1>'
        f'<p class="as-of">as of {esc(_when(period.now))}</p>'
    )


def page_path(name: str, period: str | None = None) -> str:
    """The dashboard URL of a page, with its period."""
    path = "/dashboard" + dict((n, p) for n, p, _ in NAV)[name]
    return path + ("?" + urlencode({"period": period}) if period else "")


def dashboard_html(page: Page, *, nav_page: str, signed_in_as: str) -> str:
    """A dashboard page: navigation, period picker, sign-out, and the scripts by URL (cached for a year)."""
    links = "".join(
        f'<a href="{esc(page_path(name, page.period.period))}"'
        + (' aria-current="page"' if name == nav_page else "")
        + f">{esc(label)}</a>"
        for name, _, label in NAV
    )
    header = (
        '<header><a class="brand" href="/dashboard">margin</a>'
        f'<nav aria-label="pages">{links}</nav>'
        f'<form class="period-form" method="get" action="{esc(page_path(nav_page))}">'
        f'<input type="month" name="period" aria-label="period" value="{esc(page.period.period)}" required>'
        '<button type="submit">show</button></form>'
        f'<form class="logout" method="post" action="/dashboard/logout"><span class="who">{esc(signed_in_as)}</span>'
        '<button type="submit">sign out</button></form></header>'
    )
    plotly, loader = plotly_js(), loader_js()
    scripts = (
        f'<script src="/dashboard/static/plotly.min.js?v={esc(plotly.version)}"></script>'
        f'<script src="/dashboard/static/dashboard.js?v={esc(loader.version)}"></script>'
    )
    return _document(f"margin: {page.title} {page.period.period}", header, _heading(page) + _body(page), scripts)


def report_html(page: Page, *, generated_at: datetime) -> str:
    """A self-contained report file: the page with plotly.js and the chart loader inlined, so it opens offline
    and refers to nothing on any network."""
    header = '<header><span class="brand">margin</span><span class="report-tag">report</span></header>'
    footer = (
        f"<footer>Generated {esc(_when(generated_at))} by margin. Self-contained: the charts are drawn by "
        "plotly.js embedded in this file; nothing is loaded from a network.</footer>"
    )
    scripts = f"<script>{plotly_js().inline()}</script><script>{loader_js().inline()}</script>"
    return _document(
        f"margin report: {page.title} {page.period.period}", header, _heading(page) + _body(page) + footer, scripts
    )


def login_html(*, next_path: str, error: str | None = None, disabled: str | None = None) -> str:
    """The sign-in form (or, with ``disabled``, why the dashboard cannot be opened)."""
    header = '<header><span class="brand">margin</span></header>'
    if disabled is not None:
        main = f'<section class="card login"><h1>Dashboard disabled</h1><p class="error">{esc(disabled)}</p></section>'
        return _document("margin: dashboard disabled", header, main, "")
    message = f'<p class="error" role="alert">{esc(error)}</p>' if error else ""
    main = (
        '<section class="card login"><h1>Sign in to the dashboard</h1>'
        "<p>Use the dashboard key (read-only) or the gateway's master key.</p>"
        f"{message}"
        '<form method="post" action="/dashboard/login">'
        f'<input type="hidden" name="next" value="{esc(next_path)}">'
        '<label>key <input type="password" name="key" autocomplete="current-password" required autofocus></label>'
        '<button type="submit">sign in</button></form></section>'
    )
    return _document("margin: sign in", header, main, "")


def error_html(title: str, message: str) -> str:
    header = '<header><a class="brand" href="/dashboard">margin</a></header>'
    main = f'<section class="card"><h1>{esc(title)}</h1><p class="error">{esc(message)}</p></section>'
    return _document(f"margin: {title}", header, main, "")


CSS = """
:root{--ink:#1f2933;--muted:#6b7785;--line:#e4e7eb;--bg:#f5f7fa;--card:#fff;--accent:#4c78a8}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:var(--ink);background:var(--bg)}
header{display:flex;flex-wrap:wrap;align-items:center;gap:10px 16px;padding:10px 24px;background:#1f2933;color:#fff}
header a,header .brand{color:#fff;text-decoration:none}
.brand{font-weight:700;font-size:17px;letter-spacing:.5px}
.report-tag{font-size:12px;padding:2px 8px;border:1px solid #52606d;border-radius:10px;color:#cbd2d9}
nav{display:flex;flex-wrap:wrap;gap:4px}
nav a{padding:5px 9px;border-radius:6px;color:#cbd2d9}
nav a:hover{background:#323f4b;color:#fff}
nav a[aria-current=page]{background:var(--accent);color:#fff}
header form{display:flex;align-items:center;gap:6px;margin:0}
.period-form{margin-left:auto}
header input{font:inherit;padding:3px 6px;border-radius:4px;border:1px solid #52606d}
button{font:inherit;padding:4px 12px;border-radius:6px;border:1px solid #9aa5b1;background:#fff;cursor:pointer}
header button{background:#323f4b;color:#fff;border-color:#52606d}
.who{color:#9aa5b1;font-size:12px}
main{max-width:1240px;margin:0 auto;padding:18px 24px 40px}
h1{font-size:22px;margin:6px 0 2px}
h1 .period{color:var(--muted);font-weight:400}
h2{font-size:15px;margin:0 0 10px}
.as-of{color:var(--muted);margin:0 0 16px;font-size:12px}
.stats{display:grid;grid-template-columns:repeat(auto-fill,minmax(180px,1fr));gap:12px;margin-bottom:16px}
.stat{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:12px 14px}
.stat .label{color:var(--muted);font-size:12px;text-transform:uppercase;letter-spacing:.4px}
.stat .value{font-size:21px;font-weight:600;margin-top:2px}
.stat .detail{color:var(--muted);font-size:12px;margin-top:2px}
.stat .detail .money{color:var(--ink)}
.card{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:14px 16px;margin-bottom:16px}
.chart{min-height:180px}
.chart-error{color:#b42318;padding:20px}
.table-wrap{overflow-x:auto}
table{border-collapse:collapse;width:100%;font-variant-numeric:tabular-nums}
th,td{padding:6px 10px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
th{font-size:12px;color:var(--muted);font-weight:600;white-space:nowrap}
td.num,th.num{text-align:right;white-space:nowrap}
tfoot td{font-weight:600;border-top:2px solid var(--line)}
tr.empty td{color:var(--muted);text-align:center;padding:18px}
.muted{color:var(--muted)}
.note{color:var(--muted);font-size:12px;margin:4px 0 12px}
.status{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600}
.status-on_track{background:#e3f9e5;color:#1f7a35}
.status-approaching{background:#fff3c4;color:#8d5b00}
.status-over{background:#ffe3e3;color:#b42318}
.status-over_hard_limit{background:#b42318;color:#fff}
.recommendations{list-style:none;padding:0;margin:0}
.recommendation{border-bottom:1px solid var(--line);padding:10px 0}
.rec-head{display:flex;justify-content:space-between;gap:12px;font-weight:600}
.rec-saving{white-space:nowrap;color:#1f7a35}
.rec-meta{color:var(--muted);font-size:12px}
.rec-action{margin:6px 0}
details summary{cursor:pointer;color:var(--accent);font-size:12px}
table.evidence th{text-transform:none}
.login{max-width:420px;margin:60px auto}
.login form{display:flex;flex-direction:column;gap:10px}
.login input{font:inherit;padding:6px 8px;width:100%;border:1px solid #9aa5b1;border-radius:6px}
.error{color:#b42318}
.empty{color:var(--muted)}
footer{color:var(--muted);font-size:12px;margin-top:24px}
"""

"""``margin costs`` (shared costs that are not per request) and ``margin report attribution`` (showback:
direct spend by tag plus allocated shared costs, adding up exactly to the total)."""

from __future__ import annotations

import csv
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table as RichTable

from ..config import MarginConfig, margin_home
from ..insights import reports
from ..money import format_usd
from ._common import err_console, out_console, plain_decimal, print_json, state
from .gateway import open_ledger

report_app = typer.Typer(help="Reports on the ledger.", no_args_is_help=True)


def month_bounds(period: str) -> tuple[datetime, datetime]:
    """``2026-11`` -> (2026-11-01 00:00 UTC, 2026-12-01 00:00 UTC); a usage error for anything else."""
    try:
        return reports.month_bounds(period)
    except reports.PeriodError:
        raise typer.BadParameter(f"a month like 2026-11, got {period!r}", param_hint="--period") from None


_HTML_HELP = "Write a self-contained HTML report with charts (works offline) to this file."


def _write_html(path: Path, page: Any, now: datetime) -> None:
    from ..dashboard.report import write_report

    size = write_report(path, page, generated_at=now)
    out_console.print(f"wrote {path} ({size / 1_000_000:.1f} MB, self-contained)")


def _page_sources(config: MarginConfig) -> Any:
    """What the report pages need from the config (the same settings the gateway's dashboard uses)."""
    from ..dashboard.report import Sources

    return Sources(
        budgets=config.gateway.budgets,
        alerts=config.insights.alerts,
        default_max_tokens=config.gateway.default_max_tokens,
    )


def _read_report_page(config: MarginConfig, name: str, period: str, now: datetime) -> Any:
    """A dashboard page model for an HTML report, read from the ledger as the gateway's dashboard reads it."""
    from ..dashboard.report import period_of, read_page

    ledger = open_ledger(config)
    try:
        return read_page(ledger, name, period_of(period, now), _page_sources(config))
    finally:
        ledger.close()


@report_app.command("attribution")
def report_attribution(
    ctx: typer.Context,
    period: Annotated[str, typer.Option("--period", help="The month, e.g. 2026-11.")],
    by: Annotated[str, typer.Option("--by", help="A tag: team, project, feature, cost_center, user, ...")] = "team",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="Print CSV.")] = False,
    html_file: Annotated[Path | None, typer.Option("--html", help=_HTML_HELP)] = None,
) -> None:
    """Showback for a month: each group's direct spend (by a tag, with an explicit 'unattributed' row), its
    share of the month's shared costs by the configured allocation rules, and tag coverage. Direct and
    allocated shares add up exactly to the total."""
    from .costs import shared_items

    config = state(ctx).config
    start, end = month_bounds(period)
    ledger = open_ledger(config)
    try:
        usage = ledger.usage_by_tags(start, end)
    finally:
        ledger.close()
    report = reports.showback_from_ledger(
        usage,
        [(n, c, a) for n, _, c, a, _ in shared_items(config, period)],
        config.insights.allocation_rules,
        by,
        required_tags=config.insights.required_tags,
        period=period,
    )
    rows = report.rows()
    if as_json:
        print_json(report.as_dict())
        return
    if as_csv:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(list(rows[0].keys()) if rows else [])
        for row in rows:
            writer.writerow([plain_decimal(v) if isinstance(v, Decimal) else v for v in row.values()])
        return
    if html_file is not None:
        from ..dashboard.report import attribution_page, period_of

        now = datetime.now(UTC)
        _write_html(html_file, attribution_page(period_of(period, now), report), now)
        return
    table = RichTable(title=f"Showback {period} by {by}", title_justify="left")
    for header in rows[0].keys() if rows else ():
        table.add_column(str(header), justify="left" if header == by else "right")
    for row in rows:
        table.add_row(*[format_usd(v) if isinstance(v, Decimal) else str(v) for v in row.values()])
    out_console.print(table)
    coverage = report.coverage_display()
    if coverage:
        out_console.print(
            "tag coverage (share of spend carrying the tag): "
            + ", ".join(f"{tag} {value * 100:.1f}%" for tag, value in coverage.items())
        )


@report_app.command("forecast")
def report_forecast(
    ctx: typer.Context,
    by: Annotated[str | None, typer.Option("--by", help="team, project, feature, model, key or tag:NAME.")] = None,
    plan: Annotated[
        str | None,
        typer.Option(
            "--plan",
            help="A `margin plan forecast` scenario (YAML/JSON, - for stdin): compare its month with the actual "
            "trend, product by product (grouped --by, default feature).",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """This month's spend so far and its projected total per group (burn rate of the last full days with
    day-of-week seasonality, and a 10-90% interval), with the status of the month budgets that apply and the
    day each would run out at the current rate. With --plan: the planner's bottom-up forecast for this month
    against the same trend (docs/insights.md#plan-against-actual)."""

    config = state(ctx).config
    now = datetime.now(UTC)
    since = datetime(now.year, now.month, 1, tzinfo=UTC) - timedelta(days=35)
    if plan is not None:
        _plan_against_actual(ctx, plan, by or "feature", now, since, as_json)
        return
    ledger = open_ledger(config)
    try:
        rows = ledger.daily_rollup(since, now + timedelta(hours=1), by)
    finally:
        ledger.close()
    budgets = [b for b in config.gateway.budgets if b.period == "month"]
    out = reports.forecast_groups(rows, now, by, budgets)
    if as_json:
        print_json({"as_of": now, "by": by, "groups": out})
        return
    table = RichTable(title=f"Month-end forecast{' by ' + by if by else ''} (as of {now:%Y-%m-%d %H:%M} UTC)")
    for header in (by or "scope", "spent", "projected", "10-90%", "budgets"):
        table.add_column(header, justify="left" if header in (by or "scope", "budgets") else "right")
    for e in out:
        table.add_row(
            str(e["group"]),
            format_usd(e["spent"]),
            format_usd(e["projected"]),
            f"{format_usd(e['low'])} - {format_usd(e['high'])}",
            "; ".join(
                f"{b['name']}: {b['status']}" + (f", runs out {b['runs_out']}" if b["runs_out"] else "")
                for b in e["budgets"]
            )
            or "-",
        )
    out_console.print(table)


def _plan_against_actual(
    ctx: typer.Context, source: str, by: str, now: datetime, since: datetime, as_json: bool
) -> None:
    from ..insights.plan_vs_actual import compare_plan
    from ..plan import PlanContext, get_model, parse_scenario
    from ..plan.forecast import compute
    from .plan import read_scenario

    st = state(ctx)
    scenario = parse_scenario(get_model("forecast").scenario_type, read_scenario(source))
    result = compute(
        scenario, PlanContext(resolve_rate=st.catalog.rate, words_per_token=st.config.tokens.words_per_token)
    )
    ledger = open_ledger(st.config)
    try:
        by_group = reports.scope_forecasts(ledger.daily_rollup(since, now + timedelta(hours=1), by), now, by)
        total = reports.scope_forecasts(ledger.daily_rollup(since, now + timedelta(hours=1), None), now, None)[None]
    finally:
        ledger.close()
    month = reports.current_period(now)
    try:
        comparison = compare_plan(result, month, by_group, total)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--plan") from None
    if as_json:
        print_json({"as_of": now, "by": by, **comparison.as_dict()})
        return
    table = RichTable(title=f"Plan against actual, {month} (month {comparison.plan_month} of the plan; by {by})")
    for header in (by, "planned", "spent", "projected", "10-90%", "difference", "status"):
        table.add_column(header, justify="left" if header in (by, "status") else "right")
    for row in [*comparison.rows, *([comparison.total] if comparison.total else [])]:
        table.add_row(
            row.name,
            "-" if row.planned is None else format_usd(row.planned),
            format_usd(row.spent),
            format_usd(row.projected),
            f"{format_usd(row.low)} - {format_usd(row.high)}",
            "-"
            if row.difference is None
            else format_usd(row.difference)
            + ("" if row.difference_pct is None else f" ({row.difference_pct * 100:+.0f}%)"),
            row.status.replace("_", " "),
        )
    out_console.print(table)
    for note in comparison.notes:
        out_console.print(f"note: {note}")


tasks_app = typer.Typer(help="Tasks: requests grouped by X-Margin-Task-Id, and how they ended.", no_args_is_help=True)


@tasks_app.command("outcome")
def tasks_outcome(
    ctx: typer.Context,
    task_id: Annotated[str, typer.Argument(help="The X-Margin-Task-Id the task's requests carried.")],
    outcome: Annotated[str, typer.Argument(help="success or failure")],
    note: Annotated[str | None, typer.Option("--note")] = None,
) -> None:
    """Record how a task ended (also POST /v1/margin/tasks/{id}/outcome on the gateway)."""
    if outcome not in ("success", "failure"):
        raise typer.BadParameter("success or failure", param_hint="OUTCOME")
    ledger = open_ledger(state(ctx).config)
    try:
        ledger.set_task_outcome(task_id, outcome, note=note)
    finally:
        ledger.close()
    out_console.print(f"task {task_id}: {outcome}")


@report_app.command("tasks")
def report_tasks(
    ctx: typer.Context,
    period: Annotated[str, typer.Option("--period", help="The month, e.g. 2026-11.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="Print every task as CSV.")] = False,
    html_file: Annotated[Path | None, typer.Option("--html", help=_HTML_HELP)] = None,
) -> None:
    """Cost per task and per SUCCESSFUL task: what all tasks cost (failed and unknown ones included, since
    their spend was needed to get the successes) divided by the tasks that succeeded."""
    config = state(ctx).config
    start, end = month_bounds(period)
    if html_file is not None:
        now = datetime.now(UTC)
        _write_html(html_file, _read_report_page(config, "tasks", period, now), now)
        return
    ledger = open_ledger(config)
    try:
        tasks = ledger.task_costs(start, end)
    finally:
        ledger.close()
    if as_csv:
        _csv(["task_id", "requests", "cost", "outcome"], [[t, n, c, o or ""] for t, n, c, o in tasks])
        return
    doc = reports.task_summary(tasks, period)
    if as_json:
        print_json(doc)
        return
    table = RichTable(title=f"Tasks {period}", title_justify="left")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for name, value in doc.items():
        if name == "period":
            continue
        shown = format_usd(value) if isinstance(value, Decimal) else ("-" if value is None else f"{value:,}")
        table.add_row(name.replace("_", " "), shown)
    out_console.print(table)


def ledger_prompts(config: Any, since: datetime | None) -> list[dict[str, Any]]:
    """The retained prompts since ``since`` (empty when retention is off or nothing was kept)."""
    ledger = open_ledger(config)
    try:
        return ledger.retained_prompts(since, None, limit=1_000_000)
    finally:
        ledger.close()


def self_hosted_capacity(config: Any, since: datetime, now: datetime) -> dict[str, Any]:
    """``insights.self_hosted`` as the idle-capacity rule's inputs: every pool together (GPU-hours paid since
    ``since``, their mean hourly price and mean capacity, weighted by GPU-hours), or nothing when none is set."""
    from ..insights.operations import gpu_pools, paid_hours

    pools = gpu_pools(config.insights.self_hosted, paid_hours(since, now, now))
    gpu_hours = sum((p.gpus * p.hours for p in pools), Decimal(0))
    if gpu_hours <= 0:
        return {}
    cost = sum((p.gpus * p.hours * p.gpu_hourly for p in pools), Decimal(0))
    capacity = sum((p.gpus * p.hours * p.tokens_per_gpu_hour for p in pools), Decimal(0))
    return {
        "gpu_hourly": cost / gpu_hours,
        "gpu_hours": gpu_hours,
        "tokens_per_gpu_hour": int(capacity / gpu_hours),
        "self_hosted_providers": [p.provider for p in pools],
    }


def _csv(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """CSV on stdout with raw values: Decimals with every digit, so a spreadsheet gets exact numbers."""
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([plain_decimal(v) if isinstance(v, Decimal) else ("" if v is None else v) for v in row])


_ROLLUP_FIELDS = (
    "requests",
    "input_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "output_tokens",
    "list_cost",
    "effective_cost",
    "avoided_cost",
)


def _rollup_csv_rows(rows: Sequence[Mapping[str, Any]], *prefix: str) -> list[list[Any]]:
    return [[*prefix, r["group"], *(r[name] for name in _ROLLUP_FIELDS)] for r in rows]


@report_app.command("recommendations")
def report_recommendations(
    ctx: typer.Context,
    since: Annotated[str, typer.Option("--since", help="Look-back: 30d, 7d, 24h or a date (UTC).")] = "30d",
    cheap_model: Annotated[str | None, typer.Option("--cheap-model", help="The cheap tier, e.g. gpt-4o-mini.")] = None,
    expensive: Annotated[
        str | None, typer.Option("--expensive", help="Comma-separated models to look for simple requests on.")
    ] = None,
    near_duplicates: Annotated[
        bool,
        typer.Option(
            "--near-duplicates",
            help="Also group retained prompts (gateway.prompt_retention) with the semantic cache's own matching.",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """What to change, from the ledger itself, each with its evidence and an estimated monthly saving: simple
    requests on expensive models, cacheable repeats, context bloat, max_tokens issues (docs/insights-recommend.md)."""
    from ..insights.recommend import catalog_pricer, recommend
    from .gateway import parse_since

    st = state(ctx)
    start = parse_since(since)
    now = datetime.now(UTC)
    ledger = open_ledger(st.config)
    try:
        events = ledger.events_between(start, None)
    finally:
        ledger.close()
    if not events:
        out_console.print("no usage in the period: nothing to recommend yet")
        return
    first = start or events[0].finished_at
    period_days = max(Decimal(1), Decimal(str(round((now - first).total_seconds() / 86400, 6))))
    prompts = ledger_prompts(st.config, start) if near_duplicates else []
    found = recommend(
        events,
        price=catalog_pricer(st.catalog, now),
        period_days=period_days,
        cheap_model=cheap_model,
        expensive_models=[m.strip() for m in expensive.split(",")] if expensive else (),
        default_max_tokens=st.config.gateway.default_max_tokens,
        # Repeats measured by the requests' hashes when the ledger has them (events before m011 have none).
        prompt_hashes={e.event_id: e.prompt_hash for e in events if e.prompt_hash} or None,
        **self_hosted_capacity(st.config, first, now),
    )
    if near_duplicates:
        if not prompts:
            err_console.print(
                "no retained prompts in the period: turn on gateway.prompt_retention to find near duplicates"
            )
        else:
            from ..cache import MiniLMEmbedder, SemanticCache
            from ..insights.near_duplicates import semantic_cache_candidates

            cache = SemanticCache(MiniLMEmbedder(), max_entries=max(1000, len(prompts)))
            found += semantic_cache_candidates(events, prompts, cache, period_days=period_days)
            found.sort(key=lambda r: (-r.estimated_monthly_saving, r.kind, r.title))
    if as_json:
        from dataclasses import asdict

        print_json([asdict(r) for r in found])
        return
    if not found:
        out_console.print("no recommendations: nothing in the ledger looks worth changing")
        return
    table = RichTable(title=f"Recommendations (last {period_days.normalize()} days)", title_justify="left")
    for header in ("saving / month", "confidence", "recommendation", "action"):
        table.add_column(header, justify="right" if header.startswith("saving") else "left")
    for r in found:
        table.add_row(format_usd(r.estimated_monthly_saving), r.confidence, r.title, r.action)
    out_console.print(table)


@report_app.command("overview")
def report_overview(
    ctx: typer.Context,
    period: Annotated[str, typer.Option("--period", help="The month, e.g. 2026-11.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="Print every breakdown's rows as CSV.")] = False,
    html_file: Annotated[Path | None, typer.Option("--html", help=_HTML_HELP)] = None,
) -> None:
    """A month at a glance, from the hourly rollups (fast at any ledger size): spend, requests, tokens and
    avoided spend, by model, team, status and day. The HTML report is the dashboard's overview page: with the
    month-end forecast, the month budgets and the top cost drivers."""
    config = state(ctx).config
    start, end = month_bounds(period)
    if html_file is not None:
        now = datetime.now(UTC)
        _write_html(html_file, _read_report_page(config, "overview", period, now), now)
        return
    ledger = open_ledger(config)
    try:
        doc = ledger.overview(start, end)
    finally:
        ledger.close()
    if as_json:
        print_json({"period": period, **doc})
        return
    breakdowns = (("by model", "by_model"), ("by team", "by_team"), ("by status", "by_status"), ("by day", "by_day"))
    if as_csv:
        rows = _rollup_csv_rows([doc["total"]], "total")
        for _, key in breakdowns:
            rows += _rollup_csv_rows(doc[key], key)
        _csv(["breakdown", "group", *_ROLLUP_FIELDS], rows)
        return
    total = doc["total"]
    out_console.print(
        f"[bold]{period}[/bold]: {format_usd(total['effective_cost'])} effective "
        f"({format_usd(total['list_cost'])} list), {total['requests']:,} events, "
        f"{total['input_tokens']:,} input / {total['output_tokens']:,} output tokens, "
        f"{format_usd(total['avoided_cost'])} avoided by caches"
    )
    for title, key in breakdowns:
        table = RichTable(title=title, title_justify="left")
        for header in ("group", "events", "input tokens", "output tokens", "effective cost"):
            table.add_column(header, justify="left" if header == "group" else "right")
        for r in doc[key]:
            table.add_row(
                str(r["group"]) if r["group"] not in (None, "") else "(none)",
                f"{r['requests']:,}",
                f"{r['input_tokens']:,}",
                f"{r['output_tokens']:,}",
                format_usd(r["effective_cost"]),
            )
        out_console.print(table)


alerts_app = typer.Typer(
    help="Anomaly alerts: spend spikes, cost jumps, fallback rises, dominance shifts, budget thresholds.",
    no_args_is_help=True,
)


@alerts_app.command("check")
def alerts_check(ctx: typer.Context) -> None:
    """Run the anomaly watch once (what the gateway does every insights.alerts.interval_seconds when enabled):
    spend spikes and cost-per-request jumps in the last two days, fallback-rate rises and models or keys
    suddenly dominant in the last complete UTC day, budget thresholds crossed in each budget's period. Fresh
    alerts go to the sinks and into the ledger; what was sent before is not sent again."""
    import asyncio

    from ..gateway.state import key_budget_rules
    from ..insights.watch import build_dispatcher, check_once

    config = state(ctx).config
    settings = config.insights.alerts
    dispatcher = build_dispatcher(settings)

    async def go() -> list[Any]:
        ledger = open_ledger(config)
        try:
            keys = ledger.list_keys(include_revoked=False)
            rules = [*config.gateway.budgets, *(rule for key in keys for rule in key_budget_rules(key))]
            return await check_once(ledger, dispatcher, settings, budget_rules=rules)
        finally:
            await ledger.aclose()

    outcomes = asyncio.run(go())
    if not outcomes:
        out_console.print("no new anomalies")
        return
    for o in outcomes:
        state_text = "delivered" if o.ok else "NOT delivered to every sink (see the alert's data)"
        out_console.print(f"{o.anomaly.rule} {o.anomaly.scope}: {o.anomaly.message} [{state_text}]")


@alerts_app.command("list")
def alerts_list(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option("--limit")] = 50,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Stored alerts, newest first (breaker trips, anomalies with their delivery state)."""
    from dataclasses import asdict

    ledger = open_ledger(state(ctx).config)
    try:
        found = ledger.alerts(limit=limit)
    finally:
        ledger.close()
    if as_json:
        print_json([asdict(a) for a in found])
        return
    table = RichTable(title="Alerts", title_justify="left")
    for header in ("created", "kind", "scope", "message"):
        table.add_column(header)
    for a in found:
        table.add_row(f"{a.created_at:%Y-%m-%d %H:%M}", a.kind, a.scope or "-", a.message)
    out_console.print(table)


def simulate_command(
    ctx: typer.Context,
    period: Annotated[str, typer.Option("--period", help="The month to replay, e.g. 2026-11.")],
    policy_file: Annotated[Path, typer.Option("--policy", help="YAML: prices, models (re-routing), budgets.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """What-if replay: the month's logged traffic re-priced under other prices, model routing and budgets,
    with the gateway's own pricing and budget code; prints the cost difference and the assumptions.

    The policy file: ``prices:`` (as in margin.yaml: custom_models, discounts), ``models:`` (served model ->
    model to use instead), ``budgets:`` (as gateway.budgets) and ``cache:`` (``{ttl_seconds: 3600, scope:
    team}``: the exact cache replayed from the requests' hashes)."""
    import yaml
    from pydantic import TypeAdapter, ValidationError

    from ..config import PricesConfig
    from ..gateway.config import BudgetConfig
    from ..insights.simulate import CacheReplay, Policy, simulate
    from ..pricing import Catalog, load_price_data

    st = state(ctx)
    start, end = month_bounds(period)
    try:
        raw = yaml.safe_load(policy_file.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise typer.BadParameter(f"cannot read the policy: {exc}", param_hint="--policy") from None
    if not isinstance(raw, dict) or not set(raw) <= {"prices", "models", "budgets", "cache"}:
        raise typer.BadParameter("the policy may only have prices, models, budgets and cache", param_hint="--policy")
    try:
        policy_prices = PricesConfig.model_validate(raw.get("prices") or {})
        budgets = TypeAdapter(list[BudgetConfig]).validate_python(raw.get("budgets") or [])
        models = TypeAdapter(dict[str, str]).validate_python(raw.get("models") or {})
        cache = TypeAdapter(CacheReplay | None).validate_python(raw.get("cache"))
    except ValidationError as exc:
        raise typer.BadParameter(f"invalid policy: {exc}", param_hint="--policy") from None
    base = st.config.prices
    prices = base.model_copy(
        update={
            "custom_models": [*base.custom_models, *policy_prices.custom_models],
            "discounts": [*base.discounts, *policy_prices.discounts],
        }
    )
    catalog = Catalog.from_data(load_price_data(margin_home(st.config)), prices)
    policy = Policy(
        models=models,
        budgets=budgets,
        repriced_models=frozenset(
            [m.id for m in policy_prices.custom_models] + [d.model for d in policy_prices.discounts if d.model]
        ),
        repriced_providers=frozenset(d.provider for d in policy_prices.discounts if d.provider and not d.model),
        cache=cache,
    )
    ledger = open_ledger(st.config)
    try:
        events = ledger.events_between(start, end)
    finally:
        ledger.close()
    result = simulate(events, catalog, policy)
    if as_json:
        print_json({"period": period, **result.as_dict()})
        return
    change = result.difference
    pct = f" ({change / result.recorded_cost * 100:+.1f}%)" if result.recorded_cost else ""
    out_console.print(
        f"[bold]{period}[/bold]: recorded {format_usd(result.recorded_cost)} -> simulated "
        f"{format_usd(result.simulated_cost)}, difference {format_usd(change)}{pct} over {result.events:,} events"
    )
    if policy.cache is not None:
        out_console.print(
            f"the replayed cache (ttl {policy.cache.ttl_seconds} s, per {policy.cache.scope}) would have served "
            f"{result.cache_hits:,} requests, avoiding {format_usd(result.cache_avoided)}"
        )
    if result.refused_by_budgets:
        out_console.print(
            f"the policy's budgets would have refused {result.refused_by_budgets:,} requests "
            f"({format_usd(result.refused_cost)})"
        )
    table = RichTable(title="by model", title_justify="left")
    for header in ("model", "recorded", "simulated"):
        table.add_column(header, justify="left" if header == "model" else "right")
    for model, row in sorted(result.by_model.items()):
        table.add_row(model, format_usd(row["recorded"]), format_usd(row["simulated"]))
    out_console.print(table)
    for model, n in result.unpriced.items():
        out_console.print(f"[yellow]note:[/yellow] {n} events on {model!r} kept their recorded cost: no price known")
    out_console.print("assumptions: " + "; ".join(result.assumptions))


def _breakdown(
    ctx: typer.Context, page: str, period: str, by: str, title: str, as_json: bool, as_csv: bool, html: Path | None
) -> None:
    config = state(ctx).config
    start, end = month_bounds(period)
    if html is not None:
        now = datetime.now(UTC)
        _write_html(html, _read_report_page(config, page, period, now), now)
        return
    ledger = open_ledger(config)
    try:
        rows = ledger.rollup_breakdown(start, end, by)
    finally:
        ledger.close()
    if as_json:
        print_json({"period": period, "by": by, "rows": rows})
        return
    if as_csv:
        _csv([by, *_ROLLUP_FIELDS], _rollup_csv_rows(rows))
        return
    table = RichTable(title=f"{title} {period}", title_justify="left")
    for header in (by, "events", "input tokens", "output tokens", "effective cost", "avoided by caches"):
        table.add_column(header, justify="left" if header == by else "right")
    for r in rows:
        table.add_row(
            str(r["group"]) if r["group"] not in (None, "") else "(none)",
            f"{r['requests']:,}",
            f"{r['input_tokens']:,}",
            f"{r['output_tokens']:,}",
            format_usd(r["effective_cost"]),
            format_usd(r["avoided_cost"]),
        )
    out_console.print(table)


_PERIOD = Annotated[str, typer.Option("--period", help="The month, e.g. 2026-11.")]
_JSON = Annotated[bool, typer.Option("--json", help="Print JSON.")]
_CSV = Annotated[bool, typer.Option("--csv", help="Print CSV (exact values).")]
_HTML = Annotated[Path | None, typer.Option("--html", help=_HTML_HELP)]


@report_app.command("models")
def report_models(
    ctx: typer.Context, period: _PERIOD, as_json: _JSON = False, as_csv: _CSV = False, html: _HTML = None
) -> None:
    """Spend by served model for a month (from the hourly rollups)."""
    _breakdown(ctx, "models", period, "model", "Spend by model", as_json, as_csv, html)


@report_app.command("teams")
def report_teams(
    ctx: typer.Context, period: _PERIOD, as_json: _JSON = False, as_csv: _CSV = False, html: _HTML = None
) -> None:
    """Spend by team for a month (from the hourly rollups); `report attribution` adds shared costs."""
    _breakdown(ctx, "teams", period, "team", "Spend by team", as_json, as_csv, html)


@report_app.command("features")
def report_features(
    ctx: typer.Context, period: _PERIOD, as_json: _JSON = False, as_csv: _CSV = False, html: _HTML = None
) -> None:
    """Spend by the feature tag for a month (from the hourly rollups)."""
    _breakdown(ctx, "features", period, "feature", "Spend by feature", as_json, as_csv, html)


@report_app.command("weekly")
def report_weekly(
    ctx: typer.Context, period: _PERIOD, as_json: _JSON = False, as_csv: _CSV = False, html: _HTML = None
) -> None:
    """Spend per week of a month (weeks start on Monday, `%Y-W%W`), to see the trend at a glance."""
    _breakdown(ctx, "weekly", period, "week", "Spend by week", as_json, as_csv, html)

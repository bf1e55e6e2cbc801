"""``margin report operations``: the operating figures of a month (margin.insights.operations) as Rich tables,
JSON or CSV."""

from __future__ import annotations

import csv
import sys
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table as RichTable

from ..insights.operations import OperationsReport, gpu_pools, operations, paid_hours
from ..money import format_usd
from ._common import out_console, plain_decimal, print_json, state
from .gateway import open_ledger
from .insights import month_bounds


def _pct(value: Decimal | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def _usd(value: Decimal | None) -> str:
    return "-" if value is None else format_usd(value)


def _figures(report: OperationsReport) -> list[tuple[str, str, Any]]:
    """(section, figure, value) rows: the flat view for the table and the CSV."""
    rows: list[tuple[str, str, Any]] = [
        ("requests", "answered requests", report.answered_requests),
        ("requests", "events (attempts)", report.events),
        ("cost", "total cost", report.total_cost),
        ("cost", "cost per answered request", report.cost_per_request),
        ("fallbacks", "fallback requests", report.fallback_requests),
        ("fallbacks", "fallback rate", report.fallback_rate),
        ("fallbacks", "fallback cost", report.fallback_cost),
        ("cache", "lookups", report.cache_lookups),
        ("cache", "hits", report.cache_hits),
        ("cache", "hit rate", report.cache_hit_rate),
        ("cache", "realized savings", report.realized_savings),
        ("retries", "retried requests", report.retried_requests),
        ("retries", "retries", report.retries),
    ]
    rows += [("upstream errors", kind, n) for kind, n in report.upstream_errors.items()]
    rows += [("rejections", reason, n) for reason, n in report.rejections.items()]
    return rows


def _write_csv(report: OperationsReport, out: Any) -> None:
    writer = csv.writer(out)
    writer.writerow(["section", "name", "figure", "value"])
    for section, figure, value in _figures(report):
        writer.writerow([section, "", figure, plain_decimal(value) if isinstance(value, Decimal) else value])
    for u in report.users:
        for figure in ("answered_requests", "cost", "cost_per_request"):
            value = u[figure]
            writer.writerow(["user", u["user"], figure, plain_decimal(value) if isinstance(value, Decimal) else value])
    for r in report.prompt_tokens_by_route:
        for figure in ("requests", "p50", "p95", "max"):
            writer.writerow(["prompt tokens", r["route"], figure, r[figure]])
    for g in report.self_hosted:
        for figure, value in g.items():
            if figure != "provider":
                shown = plain_decimal(value) if isinstance(value, Decimal) else ("" if value is None else value)
                writer.writerow(["self-hosted", g["provider"], figure, shown])


def report_operations(
    ctx: typer.Context,
    period: Annotated[str, typer.Option("--period", help="The month, e.g. 2026-11.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    csv_file: Annotated[Path | None, typer.Option("--csv", help="Write CSV to this file ('-' for stdout).")] = None,
    top: Annotated[int, typer.Option("--top", help="Users shown in the table.")] = 10,
) -> None:
    """Operating figures of a month: cost per answered request and per user, prompt tokens by route (p50, p95,
    max), fallback rate and fallback cost, cache hit rate and realized savings, retries, upstream errors,
    rejections by reason, and self-hosted GPU utilization (insights.self_hosted). Definitions:
    docs/insights.md#operations. Reads the month's events (not the rollups): seconds per million events."""
    st = state(ctx)
    start, end = month_bounds(period)
    ledger = open_ledger(st.config)
    try:
        events = ledger.events_between(start, end, limit=100_000_000)
    finally:
        ledger.close()
    hours = paid_hours(start, end, datetime.now(UTC))
    report = operations(events, gpu_pools=gpu_pools(st.config.insights.self_hosted, hours))
    if as_json:
        print_json({"period": period, **report.as_dict()})
        return
    if csv_file is not None:
        if str(csv_file) == "-":
            _write_csv(report, sys.stdout)
        else:
            with csv_file.open("w", newline="", encoding="utf-8") as out:
                _write_csv(report, out)
            out_console.print(f"wrote {csv_file}")
        return
    table = RichTable(title=f"Operations {period}", title_justify="left")
    for header in ("section", "figure", "value"):
        table.add_column(header, justify="right" if header == "value" else "left")
    for section, figure, value in _figures(report):
        if isinstance(value, Decimal) and ("rate" in figure):
            shown = _pct(value)
        elif isinstance(value, Decimal) or (value is None and "cost" in figure):
            shown = _usd(value)
        else:
            shown = "-" if value is None else f"{value:,}"
        table.add_row(section, figure, shown)
    out_console.print(table)
    if report.users:
        users = RichTable(title="by user", title_justify="left")
        for header in ("user", "answered requests", "cost", "cost per request"):
            users.add_column(header, justify="left" if header == "user" else "right")
        for u in report.users[:top]:
            users.add_row(u["user"], f"{u['answered_requests']:,}", _usd(u["cost"]), _usd(u["cost_per_request"]))
        out_console.print(users)
    if report.prompt_tokens_by_route:
        prompts = RichTable(title="prompt tokens by route", title_justify="left")
        for header in ("route", "requests", "p50", "p95", "max"):
            prompts.add_column(header, justify="left" if header == "route" else "right")
        for r in report.prompt_tokens_by_route:
            prompts.add_row(r["route"], *(f"{r[k]:,}" for k in ("requests", "p50", "p95", "max")))
        out_console.print(prompts)
    for g in report.self_hosted:
        out_console.print(
            f"self-hosted {g['provider']}: {g['gpu_hours']:.1f} GPU-hours, {_usd(g['gpu_cost'])}, "
            f"{g['tokens_served']:,} tokens, utilization {_pct(g['utilization'])}, "
            f"{_usd(g['effective_cost_per_used_gpu_hour'])} per used GPU-hour "
            f"({_usd(g['cost_per_gpu_hour'])} paid per GPU-hour)"
        )

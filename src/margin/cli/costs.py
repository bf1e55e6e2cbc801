"""``margin costs``: shared costs that are not per request (GPU instances, platform fees, engineering time),
recorded per month in the ledger or the config, or imported from a FOCUS bill; allocated by
``margin report attribution``."""

from __future__ import annotations

import csv
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table as RichTable

from ..money import format_usd
from ._common import err_console, out_console, print_json, state
from .gateway import open_ledger
from .insights import month_bounds

__all__ = ["costs_app", "shared_items"]


costs_app = typer.Typer(
    help="Shared costs that are not per request (GPU instances, platform fees, engineering time), per month.",
    no_args_is_help=True,
)


def _amount(text: str, option: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise typer.BadParameter(f"a number like 123.45, got {text!r}", param_hint=option) from None
    if not value.is_finite() or value < 0:
        raise typer.BadParameter(f"a non-negative number, got {text!r}", param_hint=option)
    return value


@costs_app.command("add")
def costs_add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="A name for the item, unique per month, e.g. gpu-node-1.")],
    period: Annotated[str, typer.Option("--period", help="The month, e.g. 2026-11.")],
    category: Annotated[str, typer.Option("--category", help="gpu, platform_fee, engineering, ...")] = "other",
    amount: Annotated[str | None, typer.Option("--amount", help="USD for the month.")] = None,
    hourly: Annotated[str | None, typer.Option("--hourly", help="USD per hour (with --hours).")] = None,
    hours: Annotated[str | None, typer.Option("--hours", help="Hours in the month (with --hourly).")] = None,
    note: Annotated[str | None, typer.Option("--note")] = None,
) -> None:
    """Record a shared cost for a month: a fixed --amount, or --hourly x --hours (a GPU instance, an
    engineer's time). Replaces an item of the same name and month."""
    month_bounds(period)
    if (amount is None) == (hourly is None or hours is None):
        raise typer.BadParameter("give either --amount, or --hourly and --hours", param_hint="--amount")
    value = (
        _amount(amount, "--amount") if amount is not None else _amount(hourly, "--hourly") * _amount(hours, "--hours")
    )  # type: ignore[arg-type]
    ledger = open_ledger(state(ctx).config)
    try:
        ledger.add_shared_cost(name, period, category, value, note)
    finally:
        ledger.close()
    out_console.print(f"{name} ({category}) for {period}: {format_usd(value)}")


@costs_app.command("list")
def costs_list(
    ctx: typer.Context,
    period: Annotated[str | None, typer.Option("--period", help="Only this month.")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Shared costs recorded with `margin costs add`, and those in the config (insights.shared_costs)."""
    items = shared_items(state(ctx).config, period)
    if as_json:
        print_json([{"name": n, "period": p, "category": c, "amount": a, "source": s} for n, p, c, a, s in items])
        return
    table = RichTable(title="Shared costs" + (f" for {period}" if period else ""), title_justify="left")
    for header in ("name", "period", "category", "amount", "source"):
        table.add_column(header, justify="right" if header == "amount" else "left")
    for n, p, c, a, s in items:
        table.add_row(n, p, c, format_usd(a), s)
    out_console.print(table)


@costs_app.command("remove")
def costs_remove(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument()],
    period: Annotated[str, typer.Option("--period")],
) -> None:
    """Remove a shared cost recorded with `margin costs add`."""
    ledger = open_ledger(state(ctx).config)
    try:
        removed = ledger.remove_shared_cost(name, period)
    finally:
        ledger.close()
    if not removed:
        err_console.print(f"[red]error:[/red] no shared cost {name!r} for {period}")
        raise typer.Exit(2)
    out_console.print(f"removed {name} for {period}")


@costs_app.command("import")
def costs_import(
    ctx: typer.Context,
    focus_file: Annotated[Path, typer.Argument(help="A FOCUS cost and usage CSV (a cloud bill export).")],
    where: Annotated[
        list[str] | None,
        typer.Option("--where", help="Keep rows where COLUMN=VALUE, e.g. ServiceCategory=Compute (repeatable)."),
    ] = None,
    category: Annotated[
        str | None, typer.Option("--category", help="Category of every item (default: the row's service category).")
    ] = None,
    cost_column: Annotated[str, typer.Option("--cost-column", help="EffectiveCost, BilledCost, ListCost.")] = (
        "EffectiveCost"
    ),
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the items; record nothing.")] = False,
) -> None:
    """Shared costs from a FOCUS file: each resource's cost per month becomes an item (same name and month
    replaced), to be allocated like `margin costs add` items. Tax and credit rows are skipped."""
    from ..insights.focus_import import shared_costs_from_focus

    filters: dict[str, str] = {}
    for clause in where or []:
        column, sep, value = clause.partition("=")
        if not sep or not column:
            raise typer.BadParameter(f"COLUMN=VALUE, got {clause!r}", param_hint="--where")
        filters[column] = value
    try:
        with focus_file.open(newline="", encoding="utf-8-sig") as handle:
            items = shared_costs_from_focus(
                csv.DictReader(handle), cost_column=cost_column, category=category, filters=filters
            )
    except OSError as exc:
        raise typer.BadParameter(f"cannot read {focus_file}: {exc.strerror}", param_hint="FOCUS_FILE") from None
    table = RichTable(title=f"Shared costs from {focus_file.name}", title_justify="left")
    for header in ("name", "period", "category", "amount", "rows"):
        table.add_column(header, justify="right" if header in ("amount", "rows") else "left")
    for item in items:
        table.add_row(item.name, item.period, item.category, format_usd(item.amount), str(item.rows))
    out_console.print(table)
    if dry_run or not items:
        out_console.print("nothing recorded (dry run)" if dry_run else "no rows matched: nothing recorded")
        return
    ledger = open_ledger(state(ctx).config)
    try:
        for item in items:
            ledger.add_shared_cost(
                item.name, item.period, item.category, item.amount, f"FOCUS import: {focus_file.name}"
            )
    finally:
        ledger.close()
    out_console.print(f"recorded {len(items)} shared costs")


def shared_items(config: Any, period: str | None) -> list[tuple[str, str, str, Decimal, str]]:
    ledger = open_ledger(config)
    try:
        stored = [(n, p, c, a, "ledger") for n, p, c, a, _ in ledger.shared_costs(period)]
    finally:
        ledger.close()
    configured = [
        (item.name, item.period, item.category, item.amount, "config")
        for item in config.insights.shared_costs
        if period is None or item.period == period
    ]
    return configured + stored

"""What every command shares: the consoles, config and catalog loading, and rendering of results."""

from __future__ import annotations

import csv
import json
import sys
from dataclasses import dataclass
from decimal import Decimal
from functools import cached_property
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table as RichTable

from ..config import MarginConfig, load_config
from ..money import format_usd
from ..plan._base import Column, Report, Table
from ..pricing import Catalog, load_catalog

__all__ = ["State", "err_console", "format_cell", "out_console", "print_json", "render_report", "state", "write_csv"]

out_console = Console(highlight=False, soft_wrap=False)
err_console = Console(stderr=True, highlight=False)


@dataclass
class State:
    """Per-invocation state built from the global options; config and catalog load lazily, once."""

    config_path: Path | None = None

    @cached_property
    def config(self) -> MarginConfig:
        return load_config(self.config_path)

    @cached_property
    def catalog(self) -> Catalog:
        return load_catalog(self.config)

    def warn_if_stale(self) -> None:
        if warning := self.catalog.staleness_warning():
            err_console.print(f"[yellow]warning:[/] {warning}")


def state(ctx: typer.Context) -> State:
    obj = ctx.find_root().obj
    if not isinstance(obj, State):
        obj = State()
        ctx.find_root().obj = obj
    return obj


def plain_decimal(value: Decimal) -> str:
    """A Decimal as positional digits ("64000000", not "6.400E+7"); every digit kept."""
    return format(value, "f") if value.is_finite() else str(value)


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return plain_decimal(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot serialize {type(value).__name__}")


def print_json(document: Any) -> None:
    """One JSON document on stdout. Decimals are strings so no digit is lost to a float."""
    sys.stdout.write(json.dumps(document, indent=2, default=_json_default, ensure_ascii=False) + "\n")


def format_cell(value: Any, column: Column) -> str:
    if value is None:
        return "-"
    kind = column.kind
    if kind == "usd" and isinstance(value, Decimal | int):
        return format_usd(Decimal(value))
    if kind == "pct" and isinstance(value, Decimal | int):
        return f"{Decimal(value) * 100:.1f}%"
    if kind == "int" and isinstance(value, Decimal | int):
        return f"{Decimal(value):,.0f}"
    if kind == "num" and isinstance(value, Decimal | int):
        number = Decimal(value)
        if number == number.to_integral_value():
            return f"{number:,.0f}"
        return f"{number:,.4f}".rstrip("0").rstrip(".")
    if kind == "bool":
        return "yes" if value else "no"
    return str(value)


def _header(column: Column) -> str:
    return f"{column.header} ({column.unit})" if column.unit else column.header


def render_table(table: Table) -> RichTable:
    rich_table = RichTable(title=table.title, title_justify="left", title_style="bold")
    for column in table.columns:
        numeric = column.kind in {"usd", "pct", "int", "num"}
        rich_table.add_column(_header(column), justify="right" if numeric else "left", overflow="fold")
    for row in table.rows:
        rich_table.add_row(*(format_cell(value, column) for value, column in zip(row, table.columns, strict=True)))
    return rich_table


def render_report(report: Report, console: Console = out_console) -> None:
    console.print(f"[bold]{report.title}[/]")
    for table in report.tables:
        console.print(render_table(table))
    for note in report.notes:
        console.print(f"[dim]•[/] {note}")
    for warning in report.warnings:
        console.print(f"[yellow]warning:[/] {warning}")


def write_csv(table: Table, stream: Any = None) -> None:
    """Raw values (no currency signs, no rounding) so a spreadsheet gets exact numbers."""
    writer = csv.writer(stream or sys.stdout, lineterminator="\n")
    writer.writerow([_header(c) for c in table.columns])
    for row in table.rows:
        writer.writerow(["" if v is None else plain_decimal(v) if isinstance(v, Decimal) else str(v) for v in row])

"""``margin export focus``: the ledger's spend as a FinOps FOCUS 1.2 dataset (CSV or Parquet).

The ledger is opened read-only (``mode=ro``): exporting never writes to it and works beside a running gateway.
See :mod:`margin.insights.focus` and docs/insights-focus.md for the column mapping.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import typer

from ..errors import ConfigError, MarginError
from ..insights.focus import FOCUS_VERSION, focus_rows, row_totals, write_csv, write_parquet
from ..money import format_usd
from ..store.sqlite import default_ledger_path
from ._common import err_console, out_console, plain_decimal, state
from .gateway import parse_since
from .insights import month_bounds

__all__ = ["export_app", "read_events", "read_sub_account_names"]

export_app = typer.Typer(help="Export the ledger's spend in standard formats (FinOps FOCUS).", no_args_is_help=True)

_EVENT_COLUMNS = (
    "event_id, request_id, finished_at, status, provider, served_model, requested_model, key_id, tags, "
    "input_tokens, cache_read_tokens, cache_write_tokens, output_tokens, reasoning_tokens, list_cost, "
    "effective_cost, avoided_cost, route, cache, price_source"
)


def _connect(path: Path) -> sqlite3.Connection:
    if not path.exists():
        raise ConfigError(f"no ledger at {path}: run the gateway first (or set gateway.database in margin.yaml)")
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    return conn


def _ledger_time(value: datetime) -> str:
    """The ledger's fixed-width UTC text (see margin.store.migrations), so range filters compare as text."""
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def read_events(path: Path, since: datetime | None = None, until: datetime | None = None) -> list[dict[str, Any]]:
    """Ledger events finished in [since, until), oldest first, as plain dicts (costs as exact text)."""
    clauses, params = [], []
    if since is not None:
        clauses.append("finished_at >= ?")
        params.append(_ledger_time(since))
    if until is not None:
        clauses.append("finished_at < ?")
        params.append(_ledger_time(until))
    where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    conn = _connect(path)
    try:
        cursor = conn.execute(
            f"SELECT {_EVENT_COLUMNS} FROM usage_events{where} ORDER BY finished_at, event_id", params
        )
        return [dict(row) for row in cursor]
    except sqlite3.Error as exc:
        raise ConfigError(f"cannot read the ledger at {path}: {exc}") from None
    finally:
        conn.close()


def read_sub_account_names(path: Path) -> dict[str, str]:
    """Virtual key id -> a display name (``user``, else ``team``/``project``, else the key prefix)."""
    conn = _connect(path)
    try:
        rows = conn.execute("SELECT key_id, prefix, user, team, project FROM keys").fetchall()
    except sqlite3.Error:
        return {}
    finally:
        conn.close()
    names = {}
    for row in rows:
        owner = row["user"] or "/".join(p for p in (row["team"], row["project"]) if p)
        names[row["key_id"]] = f"{row['prefix']}… ({owner})" if owner else f"{row['prefix']}…"
    return names


def _window(period: str | None, since: str | None, until: str | None) -> tuple[datetime | None, datetime | None]:
    start = end = None
    if period is not None:
        start, end = month_bounds(period)
    if since is not None:
        start = parse_since(since)
    if until is not None:
        try:
            end = parse_since(until)
        except typer.BadParameter:
            raise typer.BadParameter(f"{until!r}: use a date like 2026-12-01", param_hint="--until") from None
    if start is not None and end is not None and end <= start:
        raise typer.BadParameter("the end of the window must be after its start", param_hint="--until")
    return start, end


@export_app.command("focus")
def export_focus(
    ctx: typer.Context,
    period: Annotated[str | None, typer.Option("--period", help="The month, e.g. 2026-11.")] = None,
    since: Annotated[str | None, typer.Option("--since", help="Start (inclusive): a date, or 7d/24h ago.")] = None,
    until: Annotated[str | None, typer.Option("--until", help="End (exclusive): a date like 2026-12-01.")] = None,
    fmt: Annotated[str, typer.Option("--format", help="csv or parquet.")] = "csv",
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Output file. Default: focus-PERIOD.EXT.")] = None,
    aggregate: Annotated[str, typer.Option("--aggregate", help="none (row per event, token type) or day.")] = "none",
) -> None:
    """Write a FOCUS 1.2 dataset of the ledger's spend: one row per request and token type (or per day)."""
    if fmt not in ("csv", "parquet"):
        raise typer.BadParameter("choose csv or parquet", param_hint="--format")
    if aggregate not in ("none", "day"):
        raise typer.BadParameter("choose none or day", param_hint="--aggregate")
    start, end = _window(period, since, until)
    st = state(ctx)
    path = default_ledger_path(st.config)
    try:
        events = read_events(path, start, end)
        names = read_sub_account_names(path)
        rows = focus_rows(events, catalog=st.catalog, aggregate=aggregate, sub_account_names=names)  # type: ignore[arg-type]
        expected = sum((Decimal(e["effective_cost"]) for e in events), Decimal(0))
        totals = row_totals(rows)
        if totals["EffectiveCost"] != expected:  # never expected: the split is exact by construction
            raise MarginError(f"FOCUS rows sum to {totals['EffectiveCost']}, the ledger to {expected}; not written")
        target = out or Path(f"focus-{period or 'all'}.{fmt}")
        (write_parquet if fmt == "parquet" else write_csv)(rows, target)
    except MarginError as exc:
        err_console.print(f"[red]error:[/red] {exc.message}")
        raise typer.Exit(exc.exit_code) from None
    out_console.print(
        f"FOCUS {FOCUS_VERSION}: {len(rows)} rows from {len(events)} events -> {target}; effective cost "
        f"{format_usd(totals['EffectiveCost'])} (exact {plain_decimal(totals['EffectiveCost'])}), list "
        f"{plain_decimal(totals['ListCost'])}"
    )

"""``margin prompts``: the request bodies retained under ``gateway.prompt_retention`` (opt-in, redacted)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer
from rich.table import Table as RichTable

from ._common import out_console, print_json, state
from .gateway import open_ledger, parse_since

prompts_app = typer.Typer(
    help="Retained request bodies (gateway.prompt_retention: opt-in, redacted, purged after its days).",
    no_args_is_help=True,
)


@prompts_app.command("list")
def prompts_list(
    ctx: typer.Context,
    since: Annotated[str, typer.Option("--since", help="Look-back: 30d, 7d, 24h or a date (UTC).")] = "7d",
    limit: Annotated[int, typer.Option("--limit")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (with the redacted bodies).")] = False,
) -> None:
    """Retained bodies, oldest first: request id, hash, model and the start of the redacted text."""
    ledger = open_ledger(state(ctx).config)
    try:
        rows = ledger.retained_prompts(parse_since(since), None, limit=limit)
    finally:
        ledger.close()
    if as_json:
        print_json(rows)
        return
    if not rows:
        out_console.print("no retained prompts (is gateway.prompt_retention.enabled on?)")
        return
    table = RichTable(title="Retained prompts", title_justify="left")
    for header in ("created", "request", "model", "hash", "body"):
        table.add_column(header)
    for r in rows:
        text = str(r["body"].get("messages", r["body"]))
        table.add_row(
            f"{r['created_at']:%Y-%m-%d %H:%M}", r["request_id"], r["model"], r["prompt_hash"][:12], text[:80]
        )
    out_console.print(table)


@prompts_app.command("purge")
def prompts_purge(
    ctx: typer.Context,
    older_than: Annotated[
        int | None,
        typer.Option("--older-than", help="Days to keep (default gateway.prompt_retention.days; 0 deletes all)."),
    ] = None,
) -> None:
    """Delete retained bodies older than the retention days now (the gateway also does it every hour)."""
    config = state(ctx).config
    days = config.gateway.prompt_retention.days if older_than is None else older_than
    if days < 0:
        raise typer.BadParameter("days must be 0 or more", param_hint="--older-than")
    ledger = open_ledger(config)
    try:
        # 0 days: everything, including rows written this second.
        cutoff = datetime.now(UTC) - timedelta(days=days) if days else datetime.now(UTC) + timedelta(seconds=1)
        removed = ledger.purge_retained_prompts(cutoff)
    finally:
        ledger.close()
    out_console.print(f"purged {removed} retained prompts older than {days} days")

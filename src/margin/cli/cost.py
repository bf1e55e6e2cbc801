"""``margin cost``: the exact cost of a usage per request, day, 30-day month and 365-day year."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

import typer
from rich.table import Table as RichTable

from ..money import format_usd
from ..pricing import Cost, TokenUsage
from ._common import out_console, print_json, state
from .prices import parse_date_option

DAYS_PER_MONTH = 30
DAYS_PER_YEAR = 365


def cost_command(
    ctx: typer.Context,
    model: Annotated[str, typer.Option("--model", "-m", help="Model id (or provider/model).")],
    input_tokens: Annotated[
        int, typer.Option("--input-tokens", "-i", min=0, help="Prompt tokens per request, cached part included.")
    ],
    output_tokens: Annotated[int, typer.Option("--output-tokens", "-o", min=0, help="Output tokens per request.")],
    cached_tokens: Annotated[
        int, typer.Option("--cached-tokens", min=0, help="Of the input, tokens read from the provider's prompt cache.")
    ] = 0,
    cache_write_tokens: Annotated[
        int, typer.Option("--cache-write-tokens", min=0, help="Of the input, tokens written to the prompt cache.")
    ] = 0,
    requests_per_day: Annotated[int, typer.Option("--requests-per-day", "-r", min=0, help="Requests per day.")] = 1,
    provider: Annotated[str | None, typer.Option("--provider", "-p", help="Provider id when ambiguous.")] = None,
    at: Annotated[str | None, typer.Option("--at", help="Price at this date (YYYY-MM-DD). Default: now.")] = None,
    batch: Annotated[bool, typer.Option("--batch", help="Price with the provider's batch API.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Cost of one usage per request, per day, per 30-day month and per 365-day year, list and effective.

    Example: margin cost --model gpt-4o --input-tokens 2000 --output-tokens 500 --requests-per-day 10000
    """
    st = state(ctx)
    usage = TokenUsage(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cache_read_tokens=cached_tokens,
        cache_write_tokens=cache_write_tokens,
    )
    priced = st.catalog.price(usage, model, provider, at=parse_date_option(at, "--at"), batch=batch)
    periods = _periods(priced, requests_per_day)
    if as_json:
        print_json(
            {
                "model": priced.model,
                "provider": priced.provider,
                "usage": vars(usage),
                "requests_per_day": requests_per_day,
                "per_request": {
                    "input": priced.input_cost,
                    "output": priced.output_cost,
                    "list": priced.list_cost,
                    "effective": priced.effective_cost,
                },
                **{name: {"list": lst, "effective": eff} for name, lst, eff in periods[1:]},
                "discount": priced.discount,
                "batch": priced.batch,
                "tier": priced.tier,
                "price_source": priced.source.name,
                "prices_checked": priced.source.prices_checked,
                "priced_at": priced.priced_at,
            }
        )
        return
    title = f"{priced.provider}/{priced.model}: {input_tokens:,} in"
    if cached_tokens or cache_write_tokens:
        title += f" ({cached_tokens:,} cached read, {cache_write_tokens:,} cache write)"
    title += f", {output_tokens:,} out, {requests_per_day:,} requests/day"
    table = RichTable(title=title, title_justify="left")
    table.add_column("period")
    table.add_column("list cost", justify="right")
    table.add_column("effective cost", justify="right")
    for name, lst, eff in periods:
        table.add_row(name.replace("_", " "), format_usd(lst), format_usd(eff))
    out_console.print(table)
    total = priced.input_cost + priced.output_cost
    if total:
        share = priced.output_cost / total * 100
        out_console.print(
            f"input {format_usd(priced.input_cost)} + output {format_usd(priced.output_cost)} per request "
            f"(output is {share:.0f}% of the list cost)"
        )
    if priced.discount:
        out_console.print(f"negotiated discount: {priced.discount * 100:g}% off list")
    if priced.tier:
        out_console.print(
            f"[yellow]tier price applies:[/] {priced.tier} (the whole request is priced at the tier rate)"
        )
    if batch:
        out_console.print("priced at the batch API rate")
    out_console.print(f"[dim]price source: {priced.source.describe()}; a month is 30 days, a year 365[/]")
    st.warn_if_stale()


def _periods(priced: Cost, requests_per_day: int) -> list[tuple[str, Decimal, Decimal]]:
    day_list, day_eff = priced.times(requests_per_day)
    return [
        ("per_request", priced.list_cost, priced.effective_cost),
        ("per_day", day_list, day_eff),
        ("per_month", day_list * DAYS_PER_MONTH, day_eff * DAYS_PER_MONTH),
        ("per_year", day_list * DAYS_PER_YEAR, day_eff * DAYS_PER_YEAR),
    ]

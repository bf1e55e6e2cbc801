"""``margin prices``: browse the dated price catalog and install newer price data."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import typer
from genai_prices import types as gp
from rich.table import Table as RichTable

from ..config import margin_home
from ..money import format_usd
from ..pricing import Catalog, CatalogEntry, install_data_file, remove_data_file
from ._common import err_console, out_console, print_json, state

app = typer.Typer(help="Browse the price catalog (genai-prices data plus your overrides).", no_args_is_help=False)

_PRICE_KEYS = (
    ("input", "input_mtok"),
    ("cached input", "cache_read_mtok"),
    ("cache write", "cache_write_mtok"),
    ("output", "output_mtok"),
)


@app.callback(invoke_without_command=True)
def summary(ctx: typer.Context) -> None:
    """Where the prices come from, how old they are, and how many models they cover."""
    st = state(ctx)
    if ctx.invoked_subcommand is not None:
        return
    catalog = st.catalog
    entries = list(catalog.entries())
    out_console.print(f"price data: {catalog.source.describe()}")
    age = catalog.age_days()
    out_console.print(f"age: {age} days" if age is not None else "age: unknown")
    out_console.print(f"providers: {len(catalog.provider_ids())}, models: {len(entries)}")
    out_console.print("commands: margin prices list | show MODEL | update --from FILE")
    st.warn_if_stale()


def _price(prices: gp.ModelPrice, key: str) -> Decimal | gp.TieredPrices | None:
    return getattr(prices, key, None)


def _fmt_price(value: Decimal | gp.TieredPrices | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, gp.TieredPrices):
        tiers = ", ".join(f"{format_usd(t.price)} above {t.start:,}" for t in value.tiers)
        return f"{format_usd(value.base)} ({tiers})"
    return format_usd(value)


def _entry_json(entry: CatalogEntry, prices: gp.ModelPrice) -> dict[str, Any]:
    def plain(value: Decimal | gp.TieredPrices | None) -> Any:
        if isinstance(value, gp.TieredPrices):
            return {
                "base": value.base,
                "tiers": [{"above_input_tokens": t.start, "price": t.price} for t in value.tiers],
            }
        return value

    return {
        "provider": entry.provider.id,
        "model": entry.model.id,
        "name": entry.model.name,
        "context_window": entry.model.context_window,
        "per_million_tokens": {label: plain(_price(prices, key)) for label, key in _PRICE_KEYS},
        "custom": entry.custom,
        "source": entry.source.name,
        "prices_checked": entry.source.prices_checked,
    }


@app.command("list")
def list_models(
    ctx: typer.Context,
    provider: Annotated[str | None, typer.Option("--provider", "-p", help="Only this provider id.")] = None,
    search: Annotated[
        str | None, typer.Option("--search", "-s", help="Only models whose id or name contains this.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List models with their prices in USD per 1M tokens."""
    st = state(ctx)
    catalog = st.catalog
    if (
        provider is not None
        and provider.lower() not in catalog.provider_ids()
        and not any(e.provider.id == provider.lower() for e in catalog.entries())
    ):
        raise typer.BadParameter(
            f"unknown provider {provider!r}; known: {', '.join(catalog.provider_ids())}", param_hint="--provider"
        )
    now = datetime.now(UTC)
    entries = list(catalog.entries(provider=provider, search=search))
    if as_json:
        print_json(
            {
                "source": catalog.source.name,
                "prices_checked": catalog.source.prices_checked,
                "models": [_entry_json(e, e.prices_at(now)) for e in entries],
            }
        )
        return
    table = RichTable(title=f"Prices per 1M tokens ({catalog.source.describe()})", title_justify="left")
    for header in ("provider", "model", "input", "cached input", "cache write", "output", "context"):
        table.add_column(header, justify="left" if header in {"provider", "model"} else "right")
    for entry in entries:
        prices = entry.prices_at(now)
        table.add_row(
            entry.provider.id,
            entry.model.id + (" (custom)" if entry.custom else ""),
            *(_fmt_price(_price(prices, key)) for _, key in _PRICE_KEYS),
            f"{entry.model.context_window:,}" if entry.model.context_window else "-",
        )
    out_console.print(table)
    out_console.print(f"{len(entries)} models")
    st.warn_if_stale()


@app.command("show")
def show(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="Model id, optionally provider/model.")],
    provider: Annotated[
        str | None, typer.Option("--provider", "-p", help="Provider id when the name is ambiguous.")
    ] = None,
    at: Annotated[
        str | None, typer.Option("--at", help="Prices in force on this date (YYYY-MM-DD). Default: now.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show one model's prices: per-1M input, cached input, cache write, output, tiers, context window."""
    st = state(ctx)
    when = parse_date_option(at, "--at")
    entry = st.catalog.find(model, provider)
    prices = entry.prices_at(when)
    discount = st.catalog.discount_for(entry)
    if as_json:
        doc = _entry_json(entry, prices)
        doc["at"] = when
        doc["negotiated_discount"] = discount
        doc["batch_price_in_catalog"] = entry.has_batch_price()
        if isinstance(entry.model.prices, list):
            doc["price_history"] = [_history_row(c) for c in entry.model.prices]
        print_json(doc)
        return
    out_console.print(f"[bold]{entry.provider.id}/{entry.model.id}[/] {entry.model.name or ''}")
    table = RichTable(show_header=True, title=f"Per 1M tokens, in force {when.date()}", title_justify="left")
    table.add_column("token type")
    table.add_column("list price", justify="right")
    if discount:
        table.add_column(f"effective (-{discount * 100:g}%)", justify="right")
    for label, key in _PRICE_KEYS:
        value = _price(prices, key)
        row = [label, _fmt_price(value)]
        if discount:
            base = value.base if isinstance(value, gp.TieredPrices) else value
            row.append(format_usd(base * (1 - discount)) if base is not None else "-")
        table.add_row(*row)
    out_console.print(table)
    window = entry.model.context_window
    out_console.print(f"context window: {window:,} tokens" if window else "context window: unknown")
    out_console.print("tiers: a tier price applies to ALL tokens of a request whose prompt exceeds its threshold")
    if isinstance(entry.model.prices, list):
        out_console.print("price history: " + "; ".join(str(_history_row(c)["from"]) for c in entry.model.prices))
    out_console.print(f"batch price in catalog: {'yes' if entry.has_batch_price() else 'no'}")
    out_console.print(f"source: {entry.source.describe()}")
    if entry.model.price_comments:
        out_console.print(f"[dim]{entry.model.price_comments}[/]")
    st.warn_if_stale()


def _history_row(conditional: gp.ConditionalPrice) -> dict[str, Any]:
    constraint = conditional.constraint
    start = constraint.start_date if isinstance(constraint, gp.StartDateConstraint) else "always"
    return {"from": start, "prices": str(conditional.prices)}


@app.command("update")
def update(
    ctx: typer.Context,
    from_file: Annotated[
        Path | None,
        typer.Option("--from", help="A genai-prices data.json file (JSON array of providers) to install."),
    ] = None,
    reset: Annotated[bool, typer.Option("--reset", help="Remove an installed file and use the bundled data.")] = False,
) -> None:
    """Install newer price data from a file. margin never downloads prices by itself."""
    st = state(ctx)
    home = margin_home(st.config)
    if reset == (from_file is not None):
        raise typer.BadParameter("give exactly one of --from FILE or --reset")
    if reset:
        removed = remove_data_file(home)
        out_console.print("back to the bundled price data" if removed else "no installed price file; nothing to do")
        return
    assert from_file is not None
    data = install_data_file(from_file, home)
    models = sum(len(p.models) for p in data.providers)
    out_console.print(f"installed {from_file} into {home}: {len(data.providers)} providers, {models} models")
    out_console.print(f"price data: {data.source.describe()}")
    if warning := Catalog.from_data(data, st.config.prices).staleness_warning():
        err_console.print(f"[yellow]warning:[/] {warning}")


def parse_date_option(value: str | None, option: str) -> datetime:
    """A YYYY-MM-DD (or ISO datetime) option as an aware UTC datetime; now when absent."""
    if value is None:
        return datetime.now(UTC)
    try:
        if "T" in value or " " in value:
            parsed = datetime.fromisoformat(value)
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        return datetime.combine(date.fromisoformat(value), time(12, 0), tzinfo=UTC)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a date; use YYYY-MM-DD", param_hint=option) from None

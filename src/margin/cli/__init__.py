"""The ``margin`` command line. Each command group is its own module; this one wires them together and
turns margin's errors into a one-line message and an exit code (2 for bad input), never a traceback."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer

from ..errors import MarginError
from . import cost, costs, demo, export, gateway, insights, operations, plan, prices, prompts, router, tokens
from ._common import State, err_console

__all__ = ["app", "main"]

app = typer.Typer(
    name="margin",
    help="Cost engineering for LLM applications: exact prices, token counts, and a planner for every cost model.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _root(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="Config file (YAML). Default: $MARGIN_CONFIG, else ./margin.yaml if present, else defaults.",
            show_default=False,
        ),
    ] = None,
) -> None:
    ctx.obj = State(config_path=config)


app.add_typer(prices.app, name="prices")
app.add_typer(tokens.app, name="tokens")
app.command("cost")(cost.cost_command)
app.command("plan")(plan.plan_command)
app.command("demo")(demo.demo_command)
app.command("serve")(gateway.serve_command)
app.add_typer(gateway.keys_app, name="keys")
app.command("spend")(gateway.spend_command)
app.add_typer(gateway.cache_app, name="cache")
app.add_typer(router.router_app, name="router")
app.add_typer(costs.costs_app, name="costs")
insights.report_app.command("operations")(operations.report_operations)
app.add_typer(insights.report_app, name="report")
app.add_typer(insights.tasks_app, name="tasks")
app.add_typer(insights.alerts_app, name="alerts")
app.add_typer(prompts.prompts_app, name="prompts")
app.command("simulate")(insights.simulate_command)
app.add_typer(export.export_app, name="export")


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``margin`` console script."""
    try:
        app(args=list(argv) if argv is not None else None, prog_name="margin")
    except MarginError as exc:
        err_console.print(f"[bold red]error:[/] {exc.message}", soft_wrap=True)
        sys.exit(exc.exit_code)

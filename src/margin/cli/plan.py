"""``margin plan MODEL --scenario FILE``: run a planner model over a YAML or JSON scenario."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.table import Table as RichTable

from ..errors import ScenarioError
from ..plan import MODEL_NAMES, PlanContext, get_model, parse_scenario
from ._common import out_console, print_json, render_report, state, write_csv


def plan_command(
    ctx: typer.Context,
    model: Annotated[str | None, typer.Argument(help=f"One of: {', '.join(MODEL_NAMES)}.", show_default=False)] = None,
    scenario: Annotated[
        str | None, typer.Option("--scenario", "-s", help="Scenario file (YAML or JSON), or - for stdin.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print every computed figure as one JSON document.")] = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="Print the main table as CSV (raw values).")] = False,
    example: Annotated[bool, typer.Option("--example", help="Print a ready example scenario for MODEL.")] = False,
) -> None:
    """Run a cost model of the seeds over a scenario file. Without MODEL, list the models.

    Start from an example: margin plan breakeven --example > be.yaml && margin plan breakeven --scenario be.yaml
    """
    if model is None:
        _list_models()
        return
    if model not in MODEL_NAMES:
        raise typer.BadParameter(
            f"unknown planner model {model!r}; choose one of: {', '.join(MODEL_NAMES)}", param_hint="MODEL"
        )
    planner = get_model(model)
    if example:
        sys.stdout.write(planner.example.rstrip() + "\n")
        return
    if scenario is None:
        raise typer.BadParameter(
            f"give a scenario file, or run `margin plan {model} --example` for one", param_hint="--scenario"
        )
    if as_json and as_csv:
        raise typer.BadParameter("choose one of --json or --csv")
    st = state(ctx)
    parsed = parse_scenario(planner.scenario_type, read_scenario(scenario))
    context = PlanContext(resolve_rate=st.catalog.rate, words_per_token=st.config.tokens.words_per_token)
    result = planner.compute(parsed, context)
    if as_json:
        print_json({"model": planner.name, "result": result.model_dump(mode="python")})
        return
    report = planner.report(result)
    if as_csv:
        write_csv(report.tables[report.csv_table])
        return
    render_report(report, out_console)


def _list_models() -> None:
    table = RichTable(title="Planner models (margin plan MODEL --example | --scenario FILE)", title_justify="left")
    table.add_column("model")
    table.add_column("what it answers")
    for name in MODEL_NAMES:
        table.add_row(name, get_model(name).summary)
    out_console.print(table)


def read_scenario(source: str) -> Any:
    label = "stdin" if source == "-" else source
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScenarioError(f"scenario file {source} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"cannot read scenario file {source}: {exc}") from None
    try:
        data = yaml.safe_load(text)  # YAML is a superset of JSON: one parser for both
    except yaml.YAMLError as exc:
        raise ScenarioError(f"scenario {label} is neither valid YAML nor JSON: {exc}") from None
    if data is None:
        raise ScenarioError(f"scenario {label} is empty; run `margin plan MODEL --example` for a starting point")
    return data

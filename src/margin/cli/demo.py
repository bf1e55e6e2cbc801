"""``margin demo``: what ``make run`` shows until the gateway exists: a model comparison and a
self-hosting break-even, both from the planner's own example scenarios, offline."""

from __future__ import annotations

import typer
import yaml

from ..plan import PlanContext, get_model, parse_scenario
from ._common import out_console, render_report, state


def demo_command(ctx: typer.Context) -> None:
    """Print a model comparison and a self-hosting break-even table (the planner's example scenarios)."""
    st = state(ctx)
    context = PlanContext(resolve_rate=st.catalog.rate, words_per_token=st.config.tokens.words_per_token)
    out_console.rule("margin demo: offline, no API keys")
    for name in ("envelope", "breakeven"):
        planner = get_model(name)
        scenario = parse_scenario(planner.scenario_type, yaml.safe_load(planner.example))
        render_report(planner.report(planner.compute(scenario, context)), out_console)
        out_console.print(
            f"[dim](margin plan {name} --example shows this scenario; edit it and run "
            f"margin plan {name} --scenario FILE)[/]\n"
        )
    out_console.print(
        "Next: margin prices list --search gpt | margin cost --model gpt-4o -i 2000 -o 500 -r 10000 | margin plan"
    )

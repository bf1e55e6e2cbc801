"""``margin router train`` and ``margin router report``: the optional learned router (see
:mod:`margin.levers._learned` and docs/router.md)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table as RichTable

from ..config import MarginConfig, margin_home
from ..errors import ConfigError
from ..levers._learned import EvaluationReport, TrainedRouter, train_router, training_rows
from ..store.sqlite import default_ledger_path
from ._common import err_console, out_console, print_json, state
from .gateway import parse_since

__all__ = ["default_router_path", "read_ledger_rows", "render_router_report", "router_app"]

router_app = typer.Typer(
    help="The optional learned router: train it from the ledger's cascade outcomes, read its evaluation report.",
    no_args_is_help=True,
)

_COLUMNS = "request_id, attempt, status, error_type, served_model, route, decisions"


def default_router_path(config: MarginConfig | None = None) -> Path:
    return margin_home(config) / "router.json"


def read_ledger_rows(path: Path, since: str | None = None) -> list[dict[str, Any]]:
    """Ledger rows of every request with an event at or after ``since`` (ISO text), read-only."""
    if not path.exists():
        raise ConfigError(f"no ledger at {path}: run the gateway (with tier routing and cascade) first")
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        if since is None:
            cursor = conn.execute(f"SELECT {_COLUMNS} FROM usage_events")
        else:
            cursor = conn.execute(
                f"SELECT {_COLUMNS} FROM usage_events WHERE request_id IN "
                "(SELECT request_id FROM usage_events WHERE finished_at >= ?)",
                (since,),
            )
        return [dict(row) for row in cursor]
    except sqlite3.Error as exc:
        raise ConfigError(f"cannot read the ledger at {path}: {exc}") from None
    finally:
        conn.close()


def _cascade_levers(config: MarginConfig) -> tuple[list[str], set[str]]:
    """(names of lever routes with tier routing and cascade, their simple-tier models) in the config."""
    names, simple = [], set()
    for lever in getattr(config.gateway, "levers", []) or []:
        routing = lever.routing
        if routing is not None and routing.enabled and not routing.pin and routing.cascade:
            names.append(lever.name)
            simple.add(routing.tiers["simple"])
    return names, simple


def _pct(value: float) -> str:
    return f"{value * 100:.1f}%"


def render_router_report(router: TrainedRouter, path: Path | None = None) -> None:
    report: EvaluationReport = router.report
    title = "Learned router" + (f" ({path})" if path else "")
    out_console.print(f"[bold]{title}[/]")
    out_console.print(
        f"trained {router.trained_at.isoformat(timespec='minutes')} on {report.n_examples} labelled requests: "
        f"{report.n_train} train / {report.n_test} held out; cheap tier enough for "
        f"{_pct(report.base_rate)} of held-out requests"
    )
    threshold = "never" if router.threshold > 1.0 else f"{router.threshold:.4f}"
    out_console.print(
        f"threshold {threshold} (target: at most {_pct(report.max_escalation_rate)} escalations among requests "
        f"routed cheap; on the training part {_pct(report.train_escalation_rate)} with "
        f"{_pct(report.train_cheap_share)} routed cheap)"
    )
    table = RichTable(title="Held-out evaluation (positive = cheap tier enough)", title_justify="left")
    for header in (
        "router",
        "sent cheap",
        "escalation rate",
        "accuracy",
        "precision",
        "recall",
        "TP",
        "FP",
        "FN",
        "TN",
    ):
        table.add_column(header, justify="left" if header == "router" else "right")
    for name, point in (
        ("learned", report.learned),
        (f"heuristic (score < {report.simple_below:g})", report.heuristic),
    ):
        table.add_row(
            name,
            _pct(point.cheap_share),
            _pct(point.escalation_rate),
            _pct(point.accuracy),
            _pct(point.precision),
            _pct(point.recall),
            str(point.tp),
            str(point.fp),
            str(point.fn),
            str(point.tn),
        )
    out_console.print(table)
    auc = "-" if report.auc is None else f"{report.auc:.3f}"
    out_console.print(f"log loss {report.log_loss:.4f}, AUC {auc}")
    verdict = "[green]meets[/]" if report.meets_target else "[red]misses[/]"
    out_console.print(f"held-out escalation rate {verdict} the target of {_pct(report.max_escalation_rate)}")
    for note in report.notes:
        out_console.print(f"[dim]•[/] {note}")


@router_app.command("train")
def train(
    ctx: typer.Context,
    since: Annotated[
        str | None, typer.Option("--since", help="Requests from 7d, 24h, or a date (UTC) on. Default: 30d.")
    ] = "30d",
    out: Annotated[
        Path | None, typer.Option("--out", help="Where to save the model. Default: $MARGIN_HOME/router.json.")
    ] = None,
    max_escalation: Annotated[
        float,
        typer.Option(
            "--max-escalation", min=0.0, max=0.99, help="Highest share of cheap-routed requests that may escalate."
        ),
    ] = 0.05,
    lever: Annotated[
        list[str] | None,
        typer.Option(
            "--lever", help="Train on this lever route only (repeatable). Default: routes with cascade in the config."
        ),
    ] = None,
    l2: Annotated[float, typer.Option("--l2", min=0.0, help="L2 regularization strength.")] = 1.0,
    balanced: Annotated[
        bool, typer.Option("--balanced", help="Weight the classes equally (imbalanced outcomes).")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the model and its report as JSON.")] = False,
) -> None:
    """Train the learned router from the ledger's cascade outcomes, print its held-out report and save it."""
    st = state(ctx)
    config = st.config
    start = parse_since(since)
    rows = read_ledger_rows(
        default_ledger_path(config), None if start is None else start.isoformat(timespec="microseconds")
    )
    cascade_levers, simple_models = _cascade_levers(config)
    levers = lever or cascade_levers or None
    if levers and not lever and not as_json:
        err_console.print(f"[dim]training on the lever routes with cascade: {', '.join(levers)}[/]")
    examples = training_rows(rows, simple_models=simple_models, levers=levers)
    router = train_router(
        examples, l2=l2, max_escalation_rate=max_escalation, class_weight="balanced" if balanced else None
    )
    path = router.save(out or default_router_path(config))
    if as_json:
        print_json({"path": str(path), **router.to_json()})
        return
    render_router_report(router, path)
    err_console.print(f"[dim]saved to {path}; enable it with routing: {{learned: {path}}}[/]")


@router_app.command("report")
def report(
    ctx: typer.Context,
    path: Annotated[Path | None, typer.Argument(help="A saved model. Default: $MARGIN_HOME/router.json.")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Print a saved learned router's evaluation report (refuses a model without one)."""
    st = state(ctx)
    target = path or default_router_path(st.config)
    router = TrainedRouter.load(target)
    if as_json:
        print_json({"path": str(target), **router.to_json()})
        return
    render_router_report(router, target)

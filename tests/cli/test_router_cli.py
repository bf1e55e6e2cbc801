"""``margin router train`` / ``report`` on a real SQLite ledger in MARGIN_HOME (through a local Typer app: the
router sub-app is registered in the main CLI by ``margin.cli``)."""

from __future__ import annotations

import asyncio
import json
import os
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from margin.cli.router import read_ledger_rows, router_app
from margin.errors import ConfigError
from margin.levers._learned import FEATURES, InsufficientDataError, TrainedRouter, heuristic_score
from margin.store.sqlite import SQLiteLedger
from margin.usage import UsageEvent

app = typer.Typer()


@app.callback()
def _root() -> None:
    """Test root."""


app.add_typer(router_app, name="router")
runner = CliRunner()


def _event(request_id: str, attempt: int, model: str, decisions: dict, when: datetime, escalated: bool) -> UsageEvent:
    return UsageEvent(
        event_id=f"{request_id}-{attempt}",
        request_id=request_id,
        attempt=attempt,
        started_at=when,
        finished_at=when,
        status="ok",
        endpoint="chat.completions",
        requested_model="auto",
        served_model=model,
        input_tokens=10,
        output_tokens=5,
        list_cost=Decimal("0.0001"),
        effective_cost=Decimal("0.0001"),
        route="bot",
        error_type="cascade_escalated" if escalated else None,
        decisions=decisions,
    )


def write_ledger(home: Path, n: int, *, old: int = 0, seed: int = 5) -> None:
    """``n`` recent cascaded requests started on the simple tier (cheap enough iff no reasoning and no code,
    with 3% noise) and ``old`` ones from 60 days ago."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    events = []
    for i in range(n + old):
        when = now - timedelta(days=60 if i >= n else 0, minutes=i)
        signals = {
            "length": round(rng.random(), 4),
            "reasoning": rng.choice([0.0, 0.0, 0.5, 1.0]),
            "simple_task": rng.choice([0.0, 1.0]),
            "code": rng.choice([0.0, 0.0, 0.0, 1.0]),
            "math": 0.0,
            "structured_output": rng.choice([0.0, 1.0]),
            "tools": 0.0,
            "turns": rng.choice([0.0, 0.2]),
            "steps": 0.0,
        }
        ok = signals["reasoning"] < 0.5 and signals["code"] == 0
        if rng.random() < 0.03:
            ok = not ok
        decisions = {"lever": "bot", "routing": "tier", "tier": "simple", "score": heuristic_score(signals),
                     "signals": signals, "model": "small"}  # fmt: skip
        rid = f"r{i:05d}"
        if ok:
            events.append(_event(rid, 0, "small", decisions, when, False))
        else:
            decisions["cascade"] = [{"model": "small", "check": "refusal", "reason": "no", "cost": "0.0001"}]
            events.append(_event(rid, 0, "small", decisions, when, True))
            events.append(_event(rid, 1, "mid", decisions, when, False))

    async def write() -> None:
        ledger = SQLiteLedger(home / "ledger.db")
        for e in events:
            await ledger.write_event(e, wait=False)
        await ledger.aclose()

    asyncio.run(write())


@pytest.fixture
def home() -> Path:
    path = Path(os.environ["MARGIN_HOME"])
    path.mkdir(parents=True, exist_ok=True)
    return path


def test_train_saves_the_model_and_prints_the_report(home):
    write_ledger(home, 400, old=150)
    result = runner.invoke(app, ["router", "train"])
    assert result.exit_code == 0, result.output
    saved = home / "router.json"
    model = TrainedRouter.load(saved)
    assert model.report.n_examples == 400  # the 60-day-old requests are outside the default --since 30d
    assert model.features == FEATURES and 0 < model.threshold < 1
    assert model.report.learned.accuracy > model.report.heuristic.accuracy
    out = result.output
    assert "Learned router" in out and "400 labelled requests" in out and "held out" in out
    assert "learned" in out and "heuristic (score < 0.2)" in out and "escalation rate" in out
    assert "saved to" in out and "routing: {learned:" in out

    report = runner.invoke(app, ["router", "report"])
    assert report.exit_code == 0, report.output
    assert "Held-out evaluation" in report.output and f"{model.report.n_test} held out" in report.output


def test_train_json_since_out_and_max_escalation(home, tmp_path):
    write_ledger(home, 300, old=150)
    target = tmp_path / "models" / "r.json"
    args = ["router", "train", "--since", "90d", "--out", str(target), "--max-escalation", "0.1", "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["path"] == str(target) and target.exists()
    assert document["rows"]["examples"] == 450
    assert document["report"]["max_escalation_rate"] == 0.1
    assert set(document["report"]) >= {"n_train", "n_test", "base_rate", "threshold", "learned", "heuristic"}
    shown = runner.invoke(app, ["router", "report", str(target), "--json"])
    assert shown.exit_code == 0 and json.loads(shown.stdout)["weights"] == document["weights"]


def test_train_refuses_too_few_outcomes_and_report_refuses_without_report(home, tmp_path):
    write_ledger(home, 30)
    result = runner.invoke(app, ["router", "train"])
    assert isinstance(result.exception, InsufficientDataError)
    assert "found 30 labelled requests" in result.exception.message
    assert not (home / "router.json").exists()

    bare = tmp_path / "bare.json"
    bare.write_text(json.dumps({"format": "margin.learned-router/1", "features": [], "weights": {}, "bias": 0}))
    result = runner.invoke(app, ["router", "report", str(bare)])
    assert isinstance(result.exception, ConfigError) and "never enabled without" in result.exception.message


def test_read_ledger_rows_needs_a_ledger(tmp_path):
    with pytest.raises(ConfigError, match="no ledger"):
        read_ledger_rows(tmp_path / "nope.db")

"""The learned router: labels from cascade outcomes, a deterministic numpy logistic regression, the evaluation
report that must travel with the model, and save/load."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from datetime import UTC, datetime

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from margin.errors import ConfigError
from margin.levers._learned import (
    FEATURES,
    MIN_EXAMPLES,
    NEVER,
    Example,
    InsufficientDataError,
    TrainedRouter,
    choose_threshold,
    fit_logistic,
    heuristic_score,
    train_router,
    training_rows,
)

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
TIERS = {"simple": "small", "standard": "mid", "complex": "big"}


def rule(signals: dict[str, float]) -> bool:
    """The synthetic truth: the cheap tier is enough iff little reasoning and no code."""
    return signals["reasoning"] < 0.5 and signals["code"] == 0


def random_signals(rng: random.Random) -> dict[str, float]:
    return {
        "length": round(rng.random(), 4),
        "reasoning": rng.choice([0.0, 0.0, 0.5, 1.0]),
        "simple_task": rng.choice([0.0, 1.0]),
        "code": rng.choice([0.0, 0.0, 0.0, 0.5, 1.0]),
        "math": rng.choice([0.0, 0.0, 0.3333, 1.0]),
        "structured_output": rng.choice([0.0, 1.0]),
        "tools": rng.choice([0.0, 0.0, 1.0]),
        "turns": rng.choice([0.0, 0.2, 0.4]),
        "steps": rng.choice([0.0, 0.0, 0.5]),
    }


def decisions(signals: dict[str, float], tier: str = "simple", **extra) -> dict:
    return {
        "lever": "bot",
        "routing": "tier",
        "tier": tier,
        "score": heuristic_score(signals),
        "signals": signals,
        "model": TIERS[tier],
        **extra,
    }


def request_events(request_id: str, signals: dict[str, float], cheap_ok: bool) -> list[dict]:
    """Ledger rows of one cascaded request that started on the simple tier."""
    if cheap_ok:
        return [
            {"request_id": request_id, "attempt": 0, "status": "ok", "error_type": None, "served_model": "small",
             "decisions": json.dumps(decisions(signals))},
        ]  # fmt: skip
    step = {"model": "small", "check": "refusal", "reason": "refused", "cost": "0.0001"}
    d = decisions(signals, cascade=[step])
    return [
        {"request_id": request_id, "attempt": 0, "status": "ok", "error_type": "cascade_escalated",
         "served_model": "small", "decisions": d},
        {"request_id": request_id, "attempt": 1, "status": "ok", "error_type": None, "served_model": "mid",
         "decisions": json.dumps(d)},
    ]  # fmt: skip


def synthetic_ledger(n: int, *, noise: float = 0.03, seed: int = 7) -> list[dict]:
    rng = random.Random(seed)
    rows: list[dict] = []
    for i in range(n):
        signals = random_signals(rng)
        ok = rule(signals) if rng.random() >= noise else not rule(signals)
        rows.extend(request_events(f"req-{i:05d}", signals, ok))
    return rows


@pytest.fixture(scope="module")
def ledger() -> list[dict]:
    return synthetic_ledger(1200)


@pytest.fixture(scope="module")
def router(ledger) -> TrainedRouter:
    return train_router(training_rows(ledger), now=NOW)


# --- labels --------------------------------------------------------------------------------------------------


def test_labels_from_cascade_events_including_multi_attempt():
    s = {name: 0.0 for name in FEATURES}
    rows = [
        *request_events("ok", s, True),
        *request_events("esc", {**s, "reasoning": 1.0}, False),
        # an upstream error, then a retry on the same cheap model answered: cheap was enough
        {"request_id": "retry", "attempt": 0, "status": "upstream_error", "error_type": "upstream_5xx",
         "served_model": "small", "decisions": decisions(s)},
        {"request_id": "retry", "attempt": 1, "status": "ok", "error_type": None, "served_model": "small",
         "decisions": decisions(s)},
        # escalated twice (simple -> standard -> complex), rows out of order
        {"request_id": "twice", "attempt": 2, "status": "ok", "error_type": None, "served_model": "big",
         "decisions": decisions(s)},
        {"request_id": "twice", "attempt": 1, "status": "ok", "error_type": "cascade_escalated",
         "served_model": "mid", "decisions": decisions(s)},
        {"request_id": "twice", "attempt": 0, "status": "ok", "error_type": "cascade_escalated",
         "served_model": "small", "decisions": decisions(s)},
        # started above the cheap tier: no label
        {"request_id": "standard", "attempt": 0, "status": "ok", "error_type": "cascade_escalated",
         "served_model": "mid", "decisions": decisions(s, tier="standard")},
        # a budget downgrade (the cascade was cleared), a pinned route, no routing, no answer at all
        {"request_id": "down", "attempt": 0, "status": "ok", "error_type": None, "served_model": "small",
         "decisions": decisions(s, tier="standard", downgraded_from="mid")},
        {"request_id": "pinned", "attempt": 0, "status": "ok", "error_type": None, "served_model": "small",
         "decisions": {"routing": "pinned", "model": "small"}},
        {"request_id": "plain", "attempt": 0, "status": "ok", "error_type": None, "served_model": "x",
         "decisions": "{}"},
        {"request_id": "failed", "attempt": 0, "status": "upstream_error", "error_type": "upstream_5xx",
         "served_model": "small", "decisions": decisions(s)},
        {"request_id": "nosignals", "attempt": 0, "status": "ok", "error_type": None, "served_model": "small",
         "decisions": {"routing": "tier", "tier": "simple", "model": "small"}},
    ]  # fmt: skip
    examples = {e.request_id: e for e in training_rows(rows)}
    assert set(examples) == {"ok", "esc", "retry", "twice"}
    assert examples["ok"].cheap_ok and examples["retry"].cheap_ok
    assert not examples["esc"].cheap_ok and not examples["twice"].cheap_ok
    assert examples["esc"].signals["reasoning"] == 1.0 and examples["ok"].lever == "bot"
    assert examples["ok"].score == 0.0


def test_first_cascade_model_in_simple_models_labels_and_lever_filter():
    s = {name: 0.0 for name in FEATURES}
    d = decisions(s, tier="standard", cascade=[{"model": "small", "check": "empty", "reason": "", "cost": "0"}])
    rows = [
        {"request_id": "r", "attempt": 0, "status": "ok", "error_type": "cascade_escalated",
         "served_model": "small", "decisions": d},
        {"request_id": "r", "attempt": 1, "status": "ok", "error_type": None, "served_model": "mid",
         "decisions": d},
    ]  # fmt: skip
    assert training_rows(rows) == []
    [example] = training_rows(rows, simple_models={"small"})
    assert not example.cheap_ok
    assert training_rows(rows, simple_models={"small"}, levers={"other"}) == []
    assert len(training_rows(rows, simple_models={"small"}, levers={"bot"})) == 1


# --- the model -----------------------------------------------------------------------------------------------


def test_logistic_regression_recovers_a_known_model():
    rng = np.random.default_rng(0)
    x = np.column_stack([rng.random((4000, 2)), np.ones(4000)])
    true_w = np.array([4.0, -3.0, 0.5])
    y = (rng.random(4000) < 1 / (1 + np.exp(-(x @ true_w)))).astype(float)
    w = fit_logistic(x, y, l2=0.0)
    assert np.allclose(w, true_w, atol=0.5)
    # L2 shrinks the coefficients but never the bias' column
    shrunk = fit_logistic(x, y, l2=1000.0)
    assert np.all(np.abs(shrunk[:2]) < np.abs(w[:2]))


def test_class_weight_balanced_favours_the_minority_class(ledger):
    examples = training_rows(ledger)
    plain = train_router(examples, now=NOW)
    balanced = train_router(examples, class_weight="balanced", now=NOW)
    # balanced weighting moves probabilities toward the minority class (here cheap-ok: about a third)
    assert plain.report.train_base_rate < 0.5
    s = {name: 0.0 for name in FEATURES} | {"reasoning": 0.5}
    assert balanced.predict_cheap_ok(s) > plain.predict_cheap_ok(s)
    assert balanced.report.learned.escalation_rate <= 0.1


def test_learned_router_beats_the_heuristic_on_a_known_rule(router):
    report = router.report
    assert report.n_examples == 1200 and report.n_train + report.n_test == 1200
    assert 250 <= report.n_test <= 350
    assert report.learned.accuracy > report.heuristic.accuracy + 0.1
    assert report.learned.accuracy > 0.9
    assert report.auc is not None and report.auc > 0.9
    # the operating point: few escalations among the requests routed cheap, most of the cheap-ok traffic kept
    assert report.learned.escalation_rate <= 0.08
    assert report.learned.escalation_rate < report.heuristic.escalation_rate
    assert report.learned.cheap_share > 0.25
    assert 0.0 < router.threshold < 1.0
    # it learned the rule's direction
    assert router.weights["reasoning"] < -1 and router.weights["code"] < -1
    ok = {name: 0.0 for name in FEATURES}
    assert router.route_cheap(ok) and not router.route_cheap(ok | {"reasoning": 1.0, "code": 1.0})


def test_training_is_deterministic_and_the_split_follows_request_ids(ledger):
    examples = training_rows(ledger)
    a = train_router(examples, now=NOW).to_json()
    b = train_router(list(reversed(examples)), now=NOW).to_json()
    assert a == b
    c = train_router(examples, seed=1, now=NOW).to_json()
    assert c["report"]["n_test"] != a["report"]["n_test"] or c["weights"] != a["weights"]


def test_threshold_choice_keeps_escalations_under_target():
    p = np.array([0.95, 0.9, 0.85, 0.8, 0.7, 0.6, 0.5, 0.4])
    y = np.array([1, 1, 1, 1, 0, 1, 0, 0], dtype=float)
    assert choose_threshold(p, y, 0.0) == 0.8
    assert choose_threshold(p, y, 0.2) == 0.6  # 1 escalation among 6
    assert choose_threshold(np.array([0.9]), np.array([0.0]), 0.05) == NEVER


def test_refuses_too_few_examples_or_one_class(ledger):
    examples = training_rows(ledger)
    with pytest.raises(InsufficientDataError, match=rf"found 42 labelled requests, at least {MIN_EXAMPLES}.*cascade"):
        train_router(examples[:42])
    only_ok = [replace(e, cheap_ok=True) for e in examples]
    with pytest.raises(InsufficientDataError, match="cheap-ok: nothing to learn"):
        train_router(only_ok)
    with pytest.raises(InsufficientDataError, match="held-out part"):
        train_router(examples[:MIN_EXAMPLES], holdout=0.05)


# --- save / load ---------------------------------------------------------------------------------------------


def test_save_load_round_trip(router, tmp_path):
    path = router.save(tmp_path / "nested" / "router.json")
    loaded = TrainedRouter.load(path)
    assert loaded.to_json() == router.to_json()
    assert loaded.trained_at == NOW
    data = json.loads(path.read_text())
    assert data["features"] == list(FEATURES) and set(data["weights"]) == set(FEATURES)
    assert data["rows"] == {"examples": 1200, "train": router.report.n_train, "test": router.report.n_test}
    assert data["report"]["learned"]["confusion"].keys() == {"tp", "fp", "fn", "tn"}
    rng = random.Random(3)
    for _ in range(20):
        s = random_signals(rng)
        assert loaded.predict_cheap_ok(s) == router.predict_cheap_ok(s)


def test_loading_refuses_a_model_without_a_sufficient_report(router, tmp_path):
    data = router.to_json()
    no_report = tmp_path / "no-report.json"
    no_report.write_text(json.dumps({k: v for k, v in data.items() if k != "report"}))
    with pytest.raises(ConfigError, match="never enabled without"):
        TrainedRouter.load(no_report)
    small = tmp_path / "small.json"
    small.write_text(json.dumps({**data, "report": {**data["report"], "n_test": 12}}))
    with pytest.raises(ConfigError, match="held out only 12"):
        TrainedRouter.load(small)
    with pytest.raises(ConfigError, match="not a margin learned router"):
        TrainedRouter.from_json({"weights": {}})
    with pytest.raises(ConfigError, match="malformed"):
        TrainedRouter.from_json({**data, "bias": "x"})
    with pytest.raises(ConfigError, match="no learned router"):
        TrainedRouter.load(tmp_path / "missing.json")


signal_values = st.fixed_dictionaries({name: st.floats(0.0, 1.0) for name in FEATURES})
weights = st.fixed_dictionaries({name: st.floats(-50.0, 50.0) for name in FEATURES})


@settings(max_examples=200, deadline=None)
@given(signals=signal_values, w=weights, b1=st.floats(-50.0, 50.0), b2=st.floats(-50.0, 50.0))
def test_probabilities_in_unit_interval_and_monotone_in_bias(router, signals, w, b1, b2):
    low, high = sorted((b1, b2))
    p_low = replace(router, weights=w, bias=low).predict_cheap_ok(signals)
    p_high = replace(router, weights=w, bias=high).predict_cheap_ok(signals)
    assert 0.0 <= p_low <= p_high <= 1.0


def test_examples_are_plain_data():
    e = Example(request_id="r", signals={"length": 0.5}, cheap_ok=True)
    assert e.score is None and e.lever is None

"""An optional learned router: a small logistic regression, trained on the ledger's own cascade outcomes, that
says whether the cheap (``simple``) tier will answer a request without escalation.

Features are the complexity scorer's signals (:attr:`margin.levers._complexity.ComplexityScore.signals`: length,
reasoning, simple_task, code, math, structured_output, tools, turns, steps, each 0..1) plus a bias. They are
computed from the request alone, so the gateway can compute them at request time, and the ledger records them
in ``decisions.signals`` (prompts are never stored, so the signals are all training has).

Label, per request (see :func:`training_rows`): the request's FIRST attempt must have gone to the cheap tier
(``decisions.tier == "simple"``, or the first cascade step's model is one of ``simple_models``). Then
``cheap_ok = 1`` when no event of the request has ``error_type == "cascade_escalated"`` and one of them answered
(status ``ok``), ``0`` when the cheap answer was rejected and escalated. Requests that started above the cheap
tier, were downgraded by a budget, were pinned, or never got an answer carry no label for "was the cheap tier
enough?" and are skipped. Only routes that run a cascade produce meaningful labels: without a cascade nothing is
ever escalated, so every cheap answer would look good (filter those routes out with ``levers``).

:func:`train_router` splits requests deterministically (a hash of the request id), fits an L2-regularized
logistic regression by Newton's method (IRLS; deterministic, no randomness), picks the decision threshold on the
training part so that at most ``max_escalation_rate`` of the requests it routes cheap escalate, and evaluates
everything on the held-out part, next to the heuristic (``score < 0.2`` means simple) on the same rows. The
:class:`EvaluationReport` travels with the model: :meth:`TrainedRouter.from_json` refuses a model without one,
or with one whose held-out part is smaller than :data:`MIN_HOLDOUT` (a learned router is never enabled without
its report).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..errors import ConfigError, MarginError
from ._complexity import DEFAULT_SIMPLE_BELOW, DEFAULT_WEIGHTS

__all__ = [
    "FEATURES",
    "FORMAT",
    "MIN_EXAMPLES",
    "MIN_HOLDOUT",
    "NEVER",
    "EvaluationReport",
    "Example",
    "InsufficientDataError",
    "OperatingPoint",
    "TrainedRouter",
    "choose_threshold",
    "fit_logistic",
    "heuristic_score",
    "train_router",
    "training_rows",
]

FEATURES: tuple[str, ...] = tuple(DEFAULT_WEIGHTS)
FORMAT = "margin.learned-router/1"
MIN_EXAMPLES = 200  # labelled requests needed to train
MIN_HOLDOUT = 50  # held-out requests a report needs before a model may be loaded
# Threshold meaning "never route cheap": above any probability a float sigmoid can return.
NEVER = math.nextafter(1.0, 2.0)

ClassWeight = Literal["balanced"] | Mapping[int, float] | None


class InsufficientDataError(MarginError):
    """Not enough labelled outcomes in the ledger to train (or to evaluate) a learned router."""

    exit_code = 2
    error_type = "insufficient_data"


@dataclass(frozen=True)
class Example:
    """One labelled request: its signals and whether the cheap tier answered it without escalation."""

    request_id: str
    signals: Mapping[str, float]
    cheap_ok: bool
    score: float | None = None  # the heuristic score recorded at the time, if any
    lever: str | None = None


# --- labels from the ledger --------------------------------------------------------------------------------


def _decisions(row: Mapping[str, Any]) -> dict[str, Any]:
    value = row.get("decisions")
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else {}
        except json.JSONDecodeError:
            return {}
    return dict(value) if isinstance(value, Mapping) else {}


def _first_model(decisions: Mapping[str, Any], row: Mapping[str, Any]) -> str | None:
    cascade = decisions.get("cascade")
    if isinstance(cascade, list) and cascade and isinstance(cascade[0], Mapping):
        model = cascade[0].get("model")
        if isinstance(model, str):
            return model
    model = decisions.get("model")
    return model if isinstance(model, str) else row.get("served_model")


def _signals(decisions: Mapping[str, Any]) -> dict[str, float] | None:
    raw = decisions.get("signals")
    if not isinstance(raw, Mapping):
        return None
    out: dict[str, float] = {}
    for name in FEATURES:
        value = raw.get(name, 0.0)
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            return None
        out[name] = float(value)
    return out


def training_rows(
    events: Iterable[Mapping[str, Any]],
    *,
    simple_models: Collection[str] = (),
    levers: Collection[str] | None = None,
) -> list[Example]:
    """Labelled examples, one per request, from ledger rows (mappings with ``request_id``, ``attempt``,
    ``status``, ``error_type``, ``served_model``, ``decisions`` as a dict or JSON text).

    A request is labelled when its first attempt (lowest ``attempt``) was routed by tier with recorded signals
    and started on the cheap tier: ``decisions.tier == "simple"``, or its first model (the first cascade step's,
    else ``decisions.model``) is in ``simple_models``. ``cheap_ok`` is False when any of its events has
    ``error_type == "cascade_escalated"``, True when none has and one answered (status ``ok``). Skipped: other
    tiers, pinned or unrouted requests, budget downgrades (``downgraded_from``: the cascade was cleared), requests
    that never got an answer, and, when ``levers`` is given, requests of other lever routes. Sorted by request id.
    """
    by_request: dict[str, list[Mapping[str, Any]]] = {}
    for row in events:
        request_id = row.get("request_id")
        if isinstance(request_id, str) and request_id:
            by_request.setdefault(request_id, []).append(row)
    simple = set(simple_models)
    examples: list[Example] = []
    for request_id in sorted(by_request):
        rows = sorted(by_request[request_id], key=lambda r: int(r.get("attempt") or 0))
        first = rows[0]
        decisions = _decisions(first)
        if decisions.get("routing") != "tier" or "downgraded_from" in decisions:
            continue
        lever = decisions.get("lever") if isinstance(decisions.get("lever"), str) else None
        if levers is not None and lever not in levers:
            continue
        on_cheap = decisions.get("tier") == "simple" or (_first_model(decisions, first) in simple)
        if not on_cheap:
            continue
        signals = _signals(decisions)
        if signals is None:
            continue
        escalated = any(r.get("error_type") == "cascade_escalated" for r in rows)
        if not escalated and not any(r.get("status") == "ok" for r in rows):
            continue  # no answer at all (upstream error, rejection): says nothing about the cheap tier
        score = decisions.get("score")
        examples.append(
            Example(
                request_id=request_id,
                signals=signals,
                cheap_ok=not escalated,
                score=float(score) if isinstance(score, int | float) and not isinstance(score, bool) else None,
                lever=lever,
            )
        )
    return examples


# --- the model ---------------------------------------------------------------------------------------------


def _matrix(signals: Sequence[Mapping[str, float]]) -> np.ndarray:
    """Rows of FEATURES values (missing -> 0, clipped to 0..1) followed by a constant 1 (the bias)."""
    x = np.zeros((len(signals), len(FEATURES) + 1), dtype=np.float64)
    for i, s in enumerate(signals):
        for j, name in enumerate(FEATURES):
            value = s.get(name, 0.0)
            x[i, j] = min(max(float(value), 0.0), 1.0) if math.isfinite(float(value)) else 0.0
    x[:, -1] = 1.0
    return x


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # stable for any z, exactly within [0, 1]


def _sample_weights(y: np.ndarray, class_weight: ClassWeight) -> np.ndarray:
    if class_weight is None:
        return np.ones_like(y)
    if class_weight == "balanced":
        n, pos = len(y), float(y.sum())
        neg = n - pos
        w1 = n / (2.0 * pos) if pos else 0.0
        w0 = n / (2.0 * neg) if neg else 0.0
        return np.where(y == 1.0, w1, w0)
    if isinstance(class_weight, Mapping):
        return np.where(y == 1.0, float(class_weight.get(1, 1.0)), float(class_weight.get(0, 1.0)))
    raise ValueError(f"class_weight must be None, 'balanced' or {{0: w, 1: w}}, got {class_weight!r}")


def fit_logistic(
    x: np.ndarray,
    y: np.ndarray,
    *,
    l2: float = 1.0,
    sample_weight: np.ndarray | None = None,
    max_iter: int = 100,
    tol: float = 1e-10,
) -> np.ndarray:
    """Weights minimizing ``sum_i w_i * logloss_i + l2/2 * |coef|^2`` (the last column, the bias, is not
    penalized) by Newton's method with step halving. Deterministic: starts at zero, no randomness."""
    if l2 < 0:
        raise ValueError("l2 must be >= 0")
    n, d = x.shape
    sw = np.ones(n) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    penalty = np.full(d, float(l2))
    penalty[-1] = 0.0
    ridge = 1e-9  # keeps the Hessian invertible (separable data, l2=0)

    def loss(w: np.ndarray) -> float:
        z = x @ w
        # log(1 + e^z) - y z, computed stably
        return float(np.sum(sw * (np.logaddexp(0.0, z) - y * z)) + 0.5 * np.sum(penalty * w * w))

    w = np.zeros(d)
    current = loss(w)
    for _ in range(max_iter):
        p = _sigmoid(x @ w)
        grad = x.T @ (sw * (p - y)) + penalty * w
        hess = (x.T * (sw * p * (1.0 - p))) @ x + np.diag(penalty + ridge)
        step = np.linalg.solve(hess, grad)
        t = 1.0
        while True:
            candidate = w - t * step
            new = loss(candidate)
            if new <= current or t < 1e-8:
                break
            t *= 0.5
        w, previous, current = candidate, current, new
        if abs(previous - current) <= tol * max(1.0, abs(current)):
            break
    return w


def heuristic_score(signals: Mapping[str, float]) -> float:
    """The complexity scorer's score from its signals (default weights), clamped to 0..1."""
    total = sum(DEFAULT_WEIGHTS[name] * float(signals.get(name, 0.0)) for name in FEATURES)
    return round(min(max(total, 0.0), 1.0), 4)


# --- evaluation --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OperatingPoint:
    """Predicting "cheap is enough" (positive) on labelled requests: the confusion matrix and what follows.

    ``cheap_share``: share of the requests sent to the cheap tier; ``escalation_rate``: share of those that the
    cascade would then escalate (false positives / predicted positive)."""

    tp: int
    fp: int
    fn: int
    tn: int

    @property
    def n(self) -> int:
        return self.tp + self.fp + self.fn + self.tn

    @property
    def accuracy(self) -> float:
        return (self.tp + self.tn) / self.n if self.n else 0.0

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def cheap_share(self) -> float:
        return (self.tp + self.fp) / self.n if self.n else 0.0

    @property
    def escalation_rate(self) -> float:
        return self.fp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @classmethod
    def of(cls, predicted: np.ndarray, y: np.ndarray) -> OperatingPoint:
        pred, truth = predicted.astype(bool), y.astype(bool)
        return cls(
            tp=int(np.sum(pred & truth)),
            fp=int(np.sum(pred & ~truth)),
            fn=int(np.sum(~pred & truth)),
            tn=int(np.sum(~pred & ~truth)),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "confusion": {"tp": self.tp, "fp": self.fp, "fn": self.fn, "tn": self.tn},
            "accuracy": round(self.accuracy, 4),
            "precision": round(self.precision, 4),
            "recall": round(self.recall, 4),
            "cheap_share": round(self.cheap_share, 4),
            "escalation_rate": round(self.escalation_rate, 4),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OperatingPoint:
        c = data["confusion"]
        return cls(tp=int(c["tp"]), fp=int(c["fp"]), fn=int(c["fn"]), tn=int(c["tn"]))


@dataclass(frozen=True)
class EvaluationReport:
    """The offline evaluation that must accompany a learned router. All metrics are on the held-out requests
    except the ``train_*`` ones; "positive" means "the cheap tier is enough".

    ``learned`` is the model at ``threshold`` (chosen on the training part so that at most
    ``max_escalation_rate`` of the requests it routes cheap escalate); ``meets_target`` says whether the held-out
    escalation rate stays within it. ``heuristic`` is ``score < simple_below`` on the same held-out rows."""

    n_examples: int
    n_train: int
    n_test: int
    base_rate: float  # held-out share of cheap-ok requests
    train_base_rate: float
    threshold: float
    max_escalation_rate: float
    learned: OperatingPoint
    heuristic: OperatingPoint
    train_cheap_share: float
    train_escalation_rate: float
    log_loss: float
    auc: float | None
    simple_below: float = DEFAULT_SIMPLE_BELOW
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def meets_target(self) -> bool:
        return self.learned.escalation_rate <= self.max_escalation_rate

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["learned"] = self.learned.to_dict()
        data["heuristic"] = self.heuristic.to_dict()
        data["meets_target"] = self.meets_target
        data["notes"] = list(self.notes)
        for key in ("base_rate", "train_base_rate", "train_cheap_share", "train_escalation_rate", "log_loss"):
            data[key] = round(data[key], 4)
        data["auc"] = None if self.auc is None else round(self.auc, 4)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EvaluationReport:
        return cls(
            n_examples=int(data["n_examples"]),
            n_train=int(data["n_train"]),
            n_test=int(data["n_test"]),
            base_rate=float(data["base_rate"]),
            train_base_rate=float(data["train_base_rate"]),
            threshold=float(data["threshold"]),
            max_escalation_rate=float(data["max_escalation_rate"]),
            learned=OperatingPoint.from_dict(data["learned"]),
            heuristic=OperatingPoint.from_dict(data["heuristic"]),
            train_cheap_share=float(data["train_cheap_share"]),
            train_escalation_rate=float(data["train_escalation_rate"]),
            log_loss=float(data["log_loss"]),
            auc=None if data.get("auc") is None else float(data["auc"]),
            simple_below=float(data.get("simple_below", DEFAULT_SIMPLE_BELOW)),
            notes=tuple(str(n) for n in data.get("notes", ())),
        )


def _auc(p: np.ndarray, y: np.ndarray) -> float | None:
    """Area under the ROC curve (the Mann-Whitney statistic, ties counted half); None with one class."""
    pos, neg = p[y == 1.0], p[y == 0.0]
    if not len(pos) or not len(neg):
        return None
    order = np.argsort(np.concatenate([pos, neg]), kind="mergesort")
    values = np.concatenate([pos, neg])[order]
    ranks = np.empty(len(values))
    i = 0
    while i < len(values):  # average ranks over ties
        j = i
        while j + 1 < len(values) and values[j + 1] == values[i]:
            j += 1
        ranks[i : j + 1] = (i + j) / 2.0 + 1.0
        i = j + 1
    full = np.empty(len(values))
    full[order] = ranks
    rank_sum = float(full[: len(pos)].sum())
    return (rank_sum - len(pos) * (len(pos) + 1) / 2.0) / (len(pos) * len(neg))


def choose_threshold(p: np.ndarray, y: np.ndarray, max_escalation_rate: float) -> float:
    """The lowest probability threshold (the most traffic sent cheap) such that, among requests with
    ``p >= threshold``, at most ``max_escalation_rate`` escalate; :data:`NEVER` when none qualifies."""
    best = NEVER
    for t in np.unique(p)[::-1]:  # high to low
        routed = p >= t
        if float(np.mean(y[routed] == 0.0)) <= max_escalation_rate:
            best = float(t)
    return best


def _split(examples: Sequence[Example], seed: int, holdout: float) -> tuple[list[Example], list[Example]]:
    train, test = [], []
    for ex in examples:
        digest = hashlib.sha256(f"{seed}:{ex.request_id}".encode()).digest()
        (test if int.from_bytes(digest[:8], "big") / 2**64 < holdout else train).append(ex)
    return train, test


# --- the trained router ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainedRouter:
    """A fitted router: ``predict_cheap_ok(signals) >= threshold`` means "send it to the simple tier"."""

    weights: Mapping[str, float]
    bias: float
    threshold: float
    report: EvaluationReport
    trained_at: datetime
    l2: float = 1.0
    seed: int = 0
    holdout: float = 0.25
    class_weight: str | dict[str, float] | None = None
    features: tuple[str, ...] = FEATURES

    def predict_cheap_ok(self, signals: Mapping[str, float]) -> float:
        """Probability (0..1) that the cheap tier answers a request with these signals without escalation."""
        z = self.bias
        for name in self.features:
            value = float(signals.get(name, 0.0))
            if math.isfinite(value):
                z += self.weights[name] * min(max(value, 0.0), 1.0)
        return float(_sigmoid(np.float64(z)))

    def route_cheap(self, signals: Mapping[str, float]) -> bool:
        return self.predict_cheap_ok(signals) >= self.threshold

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "features": list(self.features),
            "weights": {name: self.weights[name] for name in self.features},
            "bias": self.bias,
            "threshold": self.threshold,
            "trained_at": self.trained_at.astimezone(UTC).isoformat(timespec="seconds"),
            "rows": {"examples": self.report.n_examples, "train": self.report.n_train, "test": self.report.n_test},
            "training": {
                "l2": self.l2,
                "seed": self.seed,
                "holdout": self.holdout,
                "class_weight": self.class_weight,
            },
            "report": self.report.to_dict(),
        }

    @classmethod
    def from_json(cls, data: Any, *, source: str = "learned router") -> TrainedRouter:
        """A router from :meth:`to_json`'s document. ConfigError when it is malformed, has no evaluation report,
        or its report held out fewer than :data:`MIN_HOLDOUT` requests."""
        if not isinstance(data, Mapping) or data.get("format") != FORMAT:
            raise ConfigError(f"{source}: not a margin learned router (expected format {FORMAT!r})")
        report_data = data.get("report")
        if not isinstance(report_data, Mapping) or not report_data:
            raise ConfigError(
                f"{source}: no evaluation report; a learned router is never enabled without one. "
                "Train it with `margin router train`."
            )
        try:
            report = EvaluationReport.from_dict(report_data)
            features = tuple(str(f) for f in data["features"])
            weights = {name: float(data["weights"][name]) for name in features}
            bias = float(data["bias"])
            threshold = float(data["threshold"])
            trained_at = datetime.fromisoformat(str(data["trained_at"]))
            training = data.get("training") or {}
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"{source}: malformed learned router ({type(exc).__name__}: {exc})") from None
        if report.n_test < MIN_HOLDOUT:
            raise ConfigError(
                f"{source}: its evaluation report held out only {report.n_test} requests (at least {MIN_HOLDOUT} "
                "needed); retrain on more outcomes with `margin router train`."
            )
        unknown = set(features) - set(FEATURES)
        if unknown:
            raise ConfigError(f"{source}: unknown features {sorted(unknown)}; known: {', '.join(FEATURES)}")
        if not all(math.isfinite(v) for v in [*weights.values(), bias, threshold]):
            raise ConfigError(f"{source}: weights and threshold must be finite numbers")
        return cls(
            weights=weights,
            bias=bias,
            threshold=threshold,
            report=report,
            trained_at=trained_at if trained_at.tzinfo else trained_at.replace(tzinfo=UTC),
            l2=float(training.get("l2", 1.0)),
            seed=int(training.get("seed", 0)),
            holdout=float(training.get("holdout", 0.25)),
            class_weight=training.get("class_weight"),
            features=features,
        )

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=2) + "\n", encoding="utf-8")
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> TrainedRouter:
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{path}: no learned router there; train one with `margin router train`") from None
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{path}: cannot read the learned router ({exc})") from None
        return cls.from_json(data, source=str(path))


def train_router(
    examples: Sequence[Example],
    *,
    l2: float = 1.0,
    seed: int = 0,
    holdout: float = 0.25,
    max_escalation_rate: float = 0.05,
    class_weight: ClassWeight = None,
    now: datetime | None = None,
) -> TrainedRouter:
    """Fit a router on ``examples`` and evaluate it on a held-out part (see the module docstring).

    Raises InsufficientDataError with fewer than :data:`MIN_EXAMPLES` examples, a held-out part under
    :data:`MIN_HOLDOUT`, or a training part with a single class."""
    if not 0.0 < holdout < 1.0:
        raise ValueError("holdout must be between 0 and 1")
    if not 0.0 <= max_escalation_rate < 1.0:
        raise ValueError("max_escalation_rate must be in [0, 1)")
    if len(examples) < MIN_EXAMPLES:
        raise InsufficientDataError(
            f"found {len(examples)} labelled requests, at least {MIN_EXAMPLES} are needed to train a learned "
            "router. Outcomes come from tier routing with `cascade: true` (requests started on the simple tier, "
            "escalated or not): run it first, then train again."
        )
    examples = sorted(examples, key=lambda e: e.request_id)  # the fit does not depend on input order
    train, test = _split(examples, seed, holdout)
    if len(test) < MIN_HOLDOUT:
        raise InsufficientDataError(
            f"only {len(test)} of {len(examples)} labelled requests fall in the held-out part (at least "
            f"{MIN_HOLDOUT} needed for the evaluation report); collect more outcomes or raise the holdout."
        )
    x_train = _matrix([e.signals for e in train])
    y_train = np.array([1.0 if e.cheap_ok else 0.0 for e in train])
    if y_train.min() == y_train.max():
        kind = "cheap-ok" if y_train[0] == 1.0 else "escalated"
        raise InsufficientDataError(
            f"all {len(train)} training requests are {kind}: nothing to learn. Is cascade enabled on the routes "
            "trained on? Without a cascade nothing is ever escalated."
        )
    w = fit_logistic(x_train, y_train, l2=l2, sample_weight=_sample_weights(y_train, class_weight))
    p_train = _sigmoid(x_train @ w)
    threshold = choose_threshold(p_train, y_train, max_escalation_rate)
    train_point = OperatingPoint.of(p_train >= threshold, y_train)

    x_test = _matrix([e.signals for e in test])
    y_test = np.array([1.0 if e.cheap_ok else 0.0 for e in test])
    p_test = _sigmoid(x_test @ w)
    heuristic = np.array(
        [(e.score if e.score is not None else heuristic_score(e.signals)) < DEFAULT_SIMPLE_BELOW for e in test]
    )
    eps = 1e-12
    log_loss = float(-np.mean(y_test * np.log(p_test + eps) + (1 - y_test) * np.log(1 - p_test + eps)))
    notes = []
    if threshold == NEVER:
        notes.append(
            f"no threshold keeps escalations at or below {max_escalation_rate:.1%} on the training part: the "
            "learned router would send nothing to the cheap tier."
        )
    learned = OperatingPoint.of(p_test >= threshold, y_test)
    if learned.escalation_rate > max_escalation_rate:
        notes.append(
            f"held-out escalation rate {learned.escalation_rate:.1%} exceeds the target {max_escalation_rate:.1%}."
        )
    notes.append(
        "labels exist only for requests that started on the simple tier; predictions for other requests are "
        "extrapolations."
    )
    report = EvaluationReport(
        n_examples=len(examples),
        n_train=len(train),
        n_test=len(test),
        base_rate=float(y_test.mean()),
        train_base_rate=float(y_train.mean()),
        threshold=threshold,
        max_escalation_rate=max_escalation_rate,
        learned=learned,
        heuristic=OperatingPoint.of(heuristic, y_test),
        train_cheap_share=train_point.cheap_share,
        train_escalation_rate=train_point.escalation_rate,
        log_loss=log_loss,
        auc=_auc(p_test, y_test),
        notes=tuple(notes),
    )
    cw: str | dict[str, float] | None
    if isinstance(class_weight, Mapping):
        cw = {str(k): float(v) for k, v in class_weight.items()}
    else:
        cw = class_weight
    return TrainedRouter(
        weights={name: float(w[j]) for j, name in enumerate(FEATURES)},
        bias=float(w[-1]),
        threshold=threshold,
        report=report,
        trained_at=now or datetime.now(UTC),
        l2=l2,
        seed=seed,
        holdout=holdout,
        class_weight=cw,
    )

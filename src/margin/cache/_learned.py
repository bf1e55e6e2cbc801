"""The learned pair verifier: a small model, trained on labelled question pairs, that says how likely a
cached answer is right for a new request.

``PairModel`` is what ``bench/cache/verifier.py`` trains and writes to ``margin/cache/data/verifier.npz``: a
logistic regression on standardized features, or a gradient-boosted ensemble of small oblivious trees, then a
Platt calibration, evaluated with numpy only. It also carries the word-vector basis its features were
computed with, the decision threshold chosen by cross-validation, the cosine floor below which it is not
asked, and the hand-written gate rules that refuse before it (see :mod:`margin.cache._pairfeatures`).

``LearnedVerifier`` plugs it into :class:`margin.cache.SemanticCache` (``verifier=``): the cache keeps a
:class:`~margin.cache._pairfeatures.PreparedText` per entry and prepares the query once per lookup, so a
candidate costs the pair features and the trees (about 0.2 ms), no embedding. Called on its own,
``verifier(query, candidate)`` embeds both texts with its embedder.
"""

from __future__ import annotations

import json
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from ._embed import CacheError, TokenStates
from ._pairfeatures import FEATURE_NAMES, PreparedText, WordBasis, pair_features, prepare
from ._verify import GATE_REASONS, OK, Verdict, gate_signals

__all__ = ["DEFAULT_MODEL_FILE", "LearnedVerifier", "PairModel", "load_model"]

DEFAULT_MODEL_FILE = "verifier.npz"
FORMAT = 1


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -40.0, 40.0)))


@dataclass(frozen=True)
class PairModel:
    """A trained pair classifier.

    ``kind`` ``"logistic"``: ``params`` has ``weights``, ``bias``, ``mean``, ``scale`` (one per feature).
    ``kind`` ``"trees"``: ``base``, ``learning_rate``, and per tree and level a ``feature`` and a
    ``threshold`` (oblivious trees: every node of a level splits on the same test; bit ``d`` of the leaf
    index, from the top, is ``x[feature] > threshold`` at level ``d``) and the ``leaf`` values.
    ``platt`` maps the raw margin to a probability: ``sigmoid(a * margin + b)``."""

    kind: str
    params: dict[str, np.ndarray]
    basis: WordBasis
    platt: tuple[float, float] = (1.0, 0.0)
    threshold: float = 0.5
    min_similarity: float = 0.0
    hard_rules: tuple[str, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in ("logistic", "trees"):
            raise CacheError(f"unknown verifier model kind {self.kind!r}")
        unknown = set(self.hard_rules) - set(GATE_REASONS)
        if unknown:
            raise CacheError(f"unknown gate rules {sorted(unknown)}; known: {', '.join(GATE_REASONS)}")
        params = {k: np.asarray(v, dtype=np.int64 if k == "feature" else np.float64) for k, v in self.params.items()}
        object.__setattr__(self, "params", params)

    def margin(self, x: np.ndarray) -> np.ndarray:
        """Raw scores (before calibration) of a ``(n, features)`` matrix."""
        x = np.atleast_2d(np.asarray(x, dtype=np.float64))
        p = self.params
        if self.kind == "logistic":
            return ((x - p["mean"]) / p["scale"]) @ p["weights"] + float(p["bias"])
        feat, thr, leaf = p["feature"], p["threshold"], p["leaf"]
        depth = feat.shape[1]
        bits = x[:, feat] > thr[None, :, :]  # (n, trees, depth)
        index = (bits * (1 << np.arange(depth - 1, -1, -1))).sum(axis=2)
        values = np.take_along_axis(leaf[None, :, :], index[:, :, None], axis=2)[:, :, 0]
        return float(p["base"]) + float(p["learning_rate"]) * values.sum(axis=1)

    def probability(self, x: np.ndarray) -> np.ndarray:
        a, b = self.platt
        return _sigmoid(a * self.margin(x) + b)

    def save(self, path: str | os.PathLike[str]) -> None:
        header = {
            "format": FORMAT,
            "kind": self.kind,
            "feature_names": list(FEATURE_NAMES),
            "platt": list(self.platt),
            "threshold": self.threshold,
            "min_similarity": self.min_similarity,
            "hard_rules": list(self.hard_rules),
            "meta": self.meta,
        }
        arrays = {f"param_{k}": v for k, v in self.params.items()}
        with open(path, "wb") as f:
            np.savez_compressed(
                f,
                header=np.array(json.dumps(header, sort_keys=True)),
                basis_mean=self.basis.mean.astype(np.float32),
                basis=self.basis.basis.astype(np.float32),
                **arrays,
            )

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> PairModel:
        try:
            with np.load(path, allow_pickle=False) as data:
                header = json.loads(str(data["header"]))
                arrays = {k: data[k] for k in data.files}
        except FileNotFoundError as exc:
            raise CacheError(f"verifier model file not found: {path}") from exc
        if header.get("format") != FORMAT:
            raise CacheError(f"unsupported verifier model format {header.get('format')!r} in {path}")
        if tuple(header["feature_names"]) != FEATURE_NAMES:
            raise CacheError(f"{path} was trained on other features than this margin computes: retrain it")
        params = {k.removeprefix("param_"): v for k, v in arrays.items() if k.startswith("param_")}
        return cls(
            kind=header["kind"],
            params=params,
            basis=WordBasis(arrays["basis_mean"], arrays["basis"]),
            platt=(float(header["platt"][0]), float(header["platt"][1])),
            threshold=float(header["threshold"]),
            min_similarity=float(header["min_similarity"]),
            hard_rules=tuple(header["hard_rules"]),
            meta=header.get("meta") or {},
        )


_DEFAULT: PairModel | None = None
_DEFAULT_LOCK = threading.Lock()


def load_model(path: str | os.PathLike[str] | None = None) -> PairModel:
    """The shipped model (``margin/cache/data/verifier.npz``, loaded once) or the one at ``path``."""
    global _DEFAULT
    if path is not None:
        return PairModel.load(path)
    with _DEFAULT_LOCK:
        if _DEFAULT is None:
            _DEFAULT = PairModel.load(Path(str(resources.files("margin.cache") / "data" / DEFAULT_MODEL_FILE)))
        return _DEFAULT


class LearnedVerifier:
    """A verification step for :class:`margin.cache.SemanticCache`: a candidate that is the same request up
    to case, punctuation, greetings and "please" (:func:`~margin.cache._pairfeatures.same_request`) is
    served; any other is served when its cosine
    similarity is at least ``min_similarity``, none of ``hard_rules`` (names from
    :data:`margin.cache._verify.GATE_REASONS`) objects, and the model's calibrated probability that the
    cached answer is right for the query is at least ``threshold``. Each defaults to the model file's (chosen
    by cross-validation in ``bench/cache/verifier.py``; a higher ``threshold`` serves fewer, safer hits).

    ``SemanticCache`` calls :meth:`prepare` once per stored text and once per query, then :meth:`check` per
    candidate. ``verifier(query, candidate)`` does everything itself with ``embedder`` (an embedder with
    ``embed_tokens``, such as :class:`margin.cache.MiniLMEmbedder`), keeping the last ``memo`` texts.
    """

    wants_tokens = True

    def __init__(
        self,
        embedder: Any = None,
        *,
        model: PairModel | str | os.PathLike[str] | None = None,
        threshold: float | None = None,
        min_similarity: float | None = None,
        hard_rules: Sequence[str] | None = None,
        memo: int = 1024,
    ) -> None:
        self.model = model if isinstance(model, PairModel) else load_model(model)
        self.threshold = self.model.threshold if threshold is None else float(threshold)
        if not 0.0 <= self.threshold <= 1.0:
            raise CacheError(f"threshold is a probability in [0, 1], not {self.threshold}")
        self.min_similarity = self.model.min_similarity if min_similarity is None else float(min_similarity)
        self.hard_rules = tuple(self.model.hard_rules if hard_rules is None else hard_rules)
        unknown = set(self.hard_rules) - set(GATE_REASONS)
        if unknown:
            raise CacheError(f"unknown gate rules {sorted(unknown)}; known: {', '.join(GATE_REASONS)}")
        self.embedder = embedder
        self._memo: OrderedDict[str, tuple[np.ndarray, PreparedText]] = OrderedDict()
        self._memo_size = memo
        self._lock = threading.Lock()

    def prepare(self, text: str, states: TokenStates) -> PreparedText:
        return prepare(text, states, self.model.basis)

    def probability(self, query: PreparedText, candidate: PreparedText, similarity: float) -> float:
        """The calibrated probability that ``candidate``'s answer is right for ``query`` (their sentence
        vectors at cosine ``similarity``)."""
        return float(self.model.probability(pair_features(query, candidate, similarity)[None, :])[0])

    def check(self, query: PreparedText, candidate: PreparedText, similarity: float) -> Verdict:
        """The verdict on serving ``candidate``'s answer for ``query``, their sentence vectors at cosine
        ``similarity``."""
        same = query.normalized_joined and query.normalized_joined == candidate.normalized_joined
        if query.text == candidate.text or same:
            return OK
        sim = float(similarity)
        if sim < self.min_similarity:
            return Verdict(False, "threshold", f"{sim:.4f} < {self.min_similarity:.4f}")
        if self.hard_rules:
            signals = gate_signals(query.text, candidate.text)
            fired = [r for r in self.hard_rules if signals[r]]
            if fired:
                return Verdict(False, fired[0], "hard rule of the learned verifier")
        p = self.probability(query, candidate, sim)
        if p < self.threshold:
            return Verdict(False, "verifier", f"p={p:.3f} < {self.threshold:.3f}")
        return Verdict(True, None, f"p={p:.3f}")

    def prepared(self, text: str) -> tuple[np.ndarray, PreparedText]:
        """``text`` embedded with the verifier's own embedder: its sentence vector and prepared form (memoized)."""
        with self._lock:
            hit = self._memo.get(text)
            if hit is not None:
                self._memo.move_to_end(text)
                return hit
        if self.embedder is None or not hasattr(self.embedder, "embed_tokens"):
            raise CacheError("LearnedVerifier(embedder) needs an embedder with embed_tokens, e.g. MiniLMEmbedder")
        (states,) = self.embedder.embed_tokens([text])
        result = (np.asarray(states.vector, dtype=np.float32), self.prepare(text, states))
        with self._lock:
            self._memo[text] = result
            while len(self._memo) > self._memo_size:
                self._memo.popitem(last=False)
        return result

    def __call__(self, query: str, candidate: str) -> Verdict:
        (vq, pq), (vc, pc) = self.prepared(query), self.prepared(candidate)
        return self.check(pq, pc, float(np.dot(vq, vc)))

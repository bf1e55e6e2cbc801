"""Train and choose margin's learned pair verifier (``src/margin/cache/data/verifier.npz``).

    .venv/bin/python bench/cache/verifier.py cv       # cross-validation of every configuration, tuning pairs
    .venv/bin/python bench/cache/verifier.py fit      # the best one: calibrate, threshold, fit, write the model
    .venv/bin/python bench/cache/verifier.py valid    # the written model on the validation split
    .venv/bin/python bench/cache/verifier.py heldout  # ... on fow-cache's held-out pairs: record every run!

Training data: TUNING pairs only (see bench/cache/README.md): ``data/generated_pairs.jsonl``, the ``tune`` split
of ``data/written_pairs.jsonl``, ``data/verifier_pairs.jsonl`` (pairs written for the verifier, all tuning) and
question pairs taken from fow-cache's conversation pairs (below). The ``valid`` split is scored by ``valid``
only, after a model is written; the held-out pairs only by ``heldout``.

Pairs from the conversations: the final user turns of ``same_context_reworded`` pairs (the same question
reworded: should hit), earlier user turns that one conversation repeats with small talk put before them
(``same_context_extra_chatter``: should hit), and the user turns that differ between the two sides of a
``detail_swap`` pair (a changed number, name or date: traps). Turns that are the same text up to case and
punctuation are skipped, and so is everything whose label depends on the earlier turns.

Method. Cross-validation groups pairs that share a text (union-find over normalized texts), so that no text
is in a training and a test fold at once: 5 folds, repeated with 3 shuffles. A configuration is a model
(logistic regression, or gradient-boosted oblivious trees with their hyper-parameters), a floor on cosine
similarity and a set of hard gate rules that refuse before the model is asked; pairs below the floor or
refused by a hard rule count as refused (a trap there is no wrong hit) and the model is trained on the pairs
that reach it. Configurations are ranked by their out-of-fold recall averaged over wrong-hit rates of 0.25%,
0.5% and 1% (the region a default must sit in; recall at one rate alone hangs on a few traps). The best one
is then calibrated (Platt scaling of its out-of-fold margins, averaged over the shuffles) and its decision
threshold is the lowest probability at which the 95% upper bound (Clopper-Pearson) of the out-of-fold
wrong-hit rate is still <= 1%. The word-vector basis (64 principal directions of the tuning texts' word
vectors) is computed once on all tuning texts, without labels.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np

from margin.cache import MiniLMEmbedder
from margin.cache._embed import TokenStates
from margin.cache._learned import PairModel
from margin.cache._pairfeatures import (
    FEATURE_NAMES,
    PreparedText,
    WordBasis,
    pair_features,
    prepare,
    same_request,
    word_vectors,
)
from margin.cache._verify import GATE_REASONS

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
RESULTS = HERE / "results"
DATA = HERE / "data"
MODEL_OUT = ROOT / "src" / "margin" / "cache" / "data" / "verifier.npz"
FIXTURE_OUT = ROOT / "tests" / "cache" / "data" / "verifier_fixture.json"
CV_OUT = RESULTS / "verifier_cv.json"
MAX_WRONG = 0.01
CONFIDENCE = 0.95
FOLDS = 5
REPEATS = 3
RATES = (0.0025, 0.005, 0.01)  # wrong-hit rates the CV score averages recall over
BASIS_DIM = 64

# --- data ------------------------------------------------------------------------------------------------


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _norm(text: str) -> str:
    return re.sub(r"[^\w]+", " ", text.lower()).strip()


def conversation_pairs() -> list[dict]:
    """Question pairs from fow-cache's conversation pairs (tuning data), see the module docstring."""
    from fow_cache.data import load_conversations

    out = []
    for conv in load_conversations():
        ua = [m["content"].strip() for m in conv["a"] if m["role"] == "user"]
        ub = [m["content"].strip() for m in conv["b"] if m["role"] == "user"]
        kind = conv["subtype"]
        found: list[tuple[str, str, bool]] = []
        if kind == "same_context_reworded":
            found.append((ua[-1], ub[-1], True))
        elif kind == "same_context_extra_chatter":
            for x in ua[:-1]:
                for y in ub[:-1]:
                    nx, ny = _norm(x), _norm(y)
                    # small talk put before the same message (not after it: that adds details)
                    if nx != ny and len(nx) >= 12 and len(ny) >= 12 and (ny.endswith(nx) or nx.endswith(ny)):
                        found.append((x, y, True))
        elif kind == "detail_swap" and len(ua) == len(ub):
            found += [(x, y, False) for x, y in zip(ua, ub, strict=True)]
        for a, b, label in found:
            if _norm(a) == _norm(b):
                continue
            out.append(
                {
                    "id": f"conv-{conv['id']}-{len(out)}",
                    "category": ("conv_" + kind),
                    "style": "conversation",
                    "a": a,
                    "b": b,
                    "label": label,
                }
            )
    return out


def load_sets() -> dict[str, list[dict]]:
    generated = _jsonl(DATA / "generated_pairs.jsonl")
    written = _jsonl(DATA / "written_pairs.jsonl")
    extra = _jsonl(DATA / "verifier_pairs.jsonl")
    for item in generated + written + extra:
        item["label"] = bool(item["same_answer"])
    return {
        "tuning": generated + [i for i in written if i["split"] == "tune"] + extra + conversation_pairs(),
        "validation": [i for i in written if i["split"] == "valid"],
    }


def load_heldout() -> list[dict]:
    from fow_cache.data import load_questions

    items = load_questions()
    for item in items:
        item["label"] = bool(item["same_answer"]) and not item.get("ambiguous")
    return items


class StateStore:
    """Token states by text, computed once and kept in results/token_states.npz."""

    def __init__(self) -> None:
        self.path = RESULTS / "token_states.npz"
        self.states: dict[str, TokenStates] = {}
        self._embedder: MiniLMEmbedder | None = None
        if self.path.exists():
            with np.load(self.path, allow_pickle=False) as d:
                offsets, vectors, tokens, ids = d["offsets"], d["vectors"], d["tokens"], d["ids"]
                texts = d["texts"].tolist()
            for i, text in enumerate(texts):
                lo, hi = offsets[i], offsets[i + 1]
                self.states[text] = TokenStates(vectors[i], tokens[lo:hi].copy(), ids[lo:hi].copy())

    def ensure(self, texts: list[str]) -> None:
        missing = sorted({t for t in texts if t not in self.states})
        if not missing:
            return
        if self._embedder is None:
            self._embedder = MiniLMEmbedder(threads=2)
        t0 = time.perf_counter()
        self.states.update(zip(missing, self._embedder.embed_tokens(missing), strict=True))
        print(f"embedded {len(missing)} texts in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        RESULTS.mkdir(parents=True, exist_ok=True)
        texts_all = list(self.states)
        lengths = [len(self.states[t].ids) for t in texts_all]
        np.savez(
            self.path,
            texts=np.array(texts_all),
            offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
            vectors=np.stack([self.states[t].vector for t in texts_all]),
            tokens=np.concatenate([self.states[t].tokens for t in texts_all]),
            ids=np.concatenate([self.states[t].ids for t in texts_all]),
        )


@dataclass
class PairSet:
    items: list[dict]
    x: np.ndarray  # (n, features)
    y: np.ndarray  # bool
    groups: np.ndarray  # int: pairs sharing a text share a group

    @property
    def cos(self) -> np.ndarray:
        return self.x[:, FEATURE_NAMES.index("cos")]

    @property
    def same(self) -> np.ndarray:
        """The pairs the verifier serves without its model (``same_request``)."""
        return np.array([same_request(i["b"], i["a"]) for i in self.items], dtype=bool)

    def gate(self, rules: tuple[str, ...]) -> np.ndarray:
        """True where none of ``rules`` fires."""
        ok = np.ones(len(self.y), dtype=bool)
        for r in rules:
            ok &= self.x[:, FEATURE_NAMES.index(f"gate_{r}")] == 0
        return ok


def fit_basis(texts: list[str], store: StateStore, dim: int = BASIS_DIM) -> WordBasis:
    """The first ``dim`` principal directions of the texts' word vectors (no labels used)."""
    store.ensure(texts)
    vectors = np.concatenate([word_vectors(store.states[t])[1] for t in sorted(set(texts))])
    mean = vectors.mean(axis=0)
    _, _, vt = np.linalg.svd(vectors - mean, full_matrices=False)
    return WordBasis(mean.astype(np.float32), vt[:dim].T.astype(np.float32))


def build(items: list[dict], store: StateStore, basis: WordBasis) -> PairSet:
    store.ensure([t for i in items for t in (i["a"], i["b"])])
    prepared: dict[str, PreparedText] = {}

    def prep(text: str) -> PreparedText:
        if text not in prepared:
            prepared[text] = prepare(text, store.states[text], basis)
        return prepared[text]

    sims = [float(store.states[i["a"]].vector @ store.states[i["b"]].vector) for i in items]
    x = np.stack([pair_features(prep(i["b"]), prep(i["a"]), sim) for i, sim in zip(items, sims, strict=True)])
    y = np.array([i["label"] for i in items], dtype=bool)
    parent: dict[str, str] = {}

    def find(t: str) -> str:
        while parent.setdefault(t, t) != t:
            parent[t] = parent[parent[t]]
            t = parent[t]
        return t

    for i in items:
        parent[find(_norm(i["a"]))] = find(_norm(i["b"]))
    roots: dict[str, int] = {}
    groups = np.array([roots.setdefault(find(_norm(i["a"])), len(roots)) for i in items])
    return PairSet(items, x, y, groups)


# --- models ----------------------------------------------------------------------------------------------


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -40, 40)))


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float) -> dict:
    """L2-regularized logistic regression by Newton's method on standardized features."""
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 1e-9] = 1.0
    z1 = np.hstack([(x - mean) / scale, np.ones((len(x), 1))])
    w = np.zeros(z1.shape[1])
    penalty = np.full(z1.shape[1], l2)
    penalty[-1] = 0.0
    t = y.astype(float)
    for _ in range(50):
        p = _sigmoid(z1 @ w)
        grad = z1.T @ (p - t) + penalty * w
        hess = (z1 * (p * (1 - p))[:, None]).T @ z1 + np.diag(penalty) + 1e-9 * np.eye(len(w))
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return {"weights": w[:-1], "bias": np.array(w[-1]), "mean": mean, "scale": scale}


def fit_trees(
    x: np.ndarray,
    y: np.ndarray,
    *,
    depth: int,
    trees: int,
    learning_rate: float,
    l2: float = 1.0,
    min_leaf: int = 5,
    subsample: float = 0.8,
    colsample: float = 0.8,
    bins: int = 32,
    seed: int = 0,
    monotone: np.ndarray | None = None,
    trap_weight: float = 1.0,
) -> dict:
    """Gradient boosting of oblivious trees (every node of a level splits on the same feature and threshold)
    on the logistic loss, with Newton leaf values, L2 on leaves, row and column subsampling. Thresholds are
    midpoints between a feature's quantiles (at most ``bins`` per feature); a split is allowed when every
    node it creates keeps ``min_leaf`` training rows. ``monotone`` (+1, -1 or 0 per feature): the model's
    score may only rise (+1) or fall (-1) with that feature; sibling leaves that break it are pooled.
    ``trap_weight`` weighs each trap's loss against a hit's (> 1: the top of the trap scores matters most)."""
    rng = np.random.default_rng(seed)
    n, f = x.shape
    cuts = np.full((f, bins), np.inf)  # per feature, ascending thresholds (inf: unused)
    binned = np.zeros((n, f), dtype=np.int64)  # number of thresholds below each value
    for j in range(f):
        vals = np.unique(x[:, j])
        if len(vals) > bins + 1:
            vals = np.unique(np.quantile(x[:, j], np.linspace(0, 1, bins + 1)))
        mids = (vals[:-1] + vals[1:]) / 2
        cuts[j, : len(mids)] = mids
        binned[:, j] = np.searchsorted(mids, x[:, j], side="left")  # value > mids[k] for k < binned
    t = y.astype(float)
    prior = np.clip(t.mean(), 1e-3, 1 - 1e-3)
    base = math.log(prior / (1 - prior))
    margin = np.full(n, base)
    feats = np.zeros((trees, depth), dtype=np.int64)
    thrs = np.full((trees, depth), np.inf)
    leaves = np.zeros((trees, 1 << depth))
    nb = bins + 1
    sample_weight = np.where(y, 1.0, trap_weight)
    for k in range(trees):
        p = _sigmoid(margin)
        g, h = (p - t) * sample_weight, p * (1 - p) * sample_weight
        rows = np.flatnonzero(rng.random(n) < subsample)
        cols = np.flatnonzero(rng.random(f) < colsample)
        if len(cols) == 0:
            cols = np.arange(f)
        node = np.zeros(n, dtype=np.int64)
        for level in range(depth):
            n_nodes = 1 << level
            nr = node[rows]
            best = (1e-9, -1, np.inf)
            for j in cols:
                key = nr * nb + binned[rows, j]
                gh = np.bincount(key, g[rows], n_nodes * nb).reshape(n_nodes, nb)
                hh = np.bincount(key, h[rows], n_nodes * nb).reshape(n_nodes, nb)
                ch = np.bincount(key, None, n_nodes * nb).reshape(n_nodes, nb)
                # left of cut c: bins 0..c (values <= cuts[c])
                gl, hl, cl = gh.cumsum(1)[:, :-1], hh.cumsum(1)[:, :-1], ch.cumsum(1)[:, :-1]
                gr, hr, cr = gh.sum(1, keepdims=True) - gl, hh.sum(1, keepdims=True) - hl, ch.sum(1, keepdims=True) - cl
                score = (gl**2 / (hl + l2) + gr**2 / (hr + l2)).sum(0)  # per cut, over nodes
                parent = (gh.sum(1) ** 2 / (hh.sum(1) + l2)).sum()
                ok = (np.minimum(cl, cr) >= min_leaf).all(0) & np.isfinite(cuts[j])
                if not ok.any():
                    continue
                gain = np.where(ok, score - parent, -np.inf)
                c = int(np.argmax(gain))
                if gain[c] > best[0]:
                    best = (float(gain[c]), int(j), float(cuts[j, c]))
            if best[1] >= 0:
                feats[k, level], thrs[k, level] = best[1], best[2]
            node = node * 2 + (x[:, feats[k, level]] > thrs[k, level])
        gs = np.bincount(node[rows], g[rows], 1 << depth)
        hs = np.bincount(node[rows], h[rows], 1 << depth)
        leaves[k] = -gs / (hs + l2)
        if monotone is not None:
            leaves[k] = _make_monotone(leaves[k], hs + l2, feats[k], thrs[k], monotone)
        margin += learning_rate * leaves[k][node]
    return {
        "base": base,
        "learning_rate": learning_rate,
        "feature": feats.tolist(),
        "threshold": [[float(v) if np.isfinite(v) else 1e300 for v in row] for row in thrs],
        "leaf": leaves.tolist(),
    }


def _make_monotone(
    leaf: np.ndarray, weight: np.ndarray, feats: np.ndarray, thrs: np.ndarray, monotone: np.ndarray
) -> np.ndarray:
    """Pool sibling leaves (weighted means) until, at every level that splits on a monotone feature, the
    leaf on the high side is >= (or <=, for -1) its sibling on the low side."""
    leaf, weight = leaf.copy(), weight.copy()
    depth = len(feats)
    for _ in range(4 * depth):
        changed = False
        for level in range(depth):
            sign = monotone[feats[level]] if np.isfinite(thrs[level]) else 0
            if not sign:
                continue
            bit = 1 << (depth - 1 - level)
            for lo in range(len(leaf)):
                if lo & bit:
                    continue
                hi = lo | bit
                if sign * (leaf[hi] - leaf[lo]) < -1e-12:
                    mean = (leaf[lo] * weight[lo] + leaf[hi] * weight[hi]) / (weight[lo] + weight[hi])
                    leaf[lo] = leaf[hi] = mean
                    weight[lo] = weight[hi] = weight[lo] + weight[hi]
                    changed = True
        if not changed:
            break
    return leaf


# How the score may move with a feature (a prior, not learned): it never falls as the cosine rises, and a
# number, date, name, negation or antonym the gate finds never raises it.
MONOTONE_UP = ("cos",)
MONOTONE_DOWN = ("gate_number", "gate_date", "gate_entity", "gate_negation", "gate_antonym")


def monotone_signs() -> np.ndarray:
    return np.array([1 if n in MONOTONE_UP else -1 if n in MONOTONE_DOWN else 0 for n in FEATURE_NAMES])


@dataclass(frozen=True)
class Config:
    model: str  # "logistic" or "trees"
    hp: tuple  # logistic: (l2,); trees: (depth, trees, learning_rate, l2, trap_weight)
    floor: float  # minimum cosine
    hard: tuple[str, ...]  # gate rules that refuse before the model

    def label(self) -> str:
        if self.model == "logistic":
            model = f"logistic, l2 {self.hp[0]:g}"
        else:
            depth, trees, lr, l2, weight = self.hp
            model = f"trees: {trees} x depth {depth}, rate {lr:g}, l2 {l2:g}, trap weight {weight:g}"
        hard = "+".join(self.hard) if self.hard else "none"
        return f"{model}; cos >= {self.floor:.2f}; hard rules: {hard}"

    def to_json(self) -> dict:
        return {"model": self.model, "hp": list(self.hp), "floor": self.floor, "hard": list(self.hard)}

    @classmethod
    def from_json(cls, d: dict) -> Config:
        return cls(d["model"], tuple(d["hp"]), float(d["floor"]), tuple(d["hard"]))


HARD_SETS = {
    "none": (),
    "number+date+entity": ("number", "date", "entity"),
    "all but order/tense/wording": tuple(r for r in GATE_REASONS if r not in ("order", "tense", "wording")),
}


def grid() -> list[Config]:
    """Every configuration cross-validation compares (declared before any was scored)."""
    out = []
    for hard in HARD_SETS.values():
        for l2 in (1.0, 10.0, 100.0):
            out.append(Config("logistic", (l2,), 0.5, hard))
        for depth in (3, 4):
            for weight in (1.0, 4.0, 8.0):
                out.append(Config("trees", (depth, 400, 0.05, 1.0, weight), 0.5, hard))
    return out


def fit(cfg: Config, x: np.ndarray, y: np.ndarray, basis: WordBasis, seed: int = 0) -> PairModel:
    if cfg.model == "logistic":
        params = fit_logistic(x, y, cfg.hp[0])
    else:
        depth, trees, lr, l2, weight = cfg.hp
        params = fit_trees(
            x, y, depth=depth, trees=trees, learning_rate=lr, l2=l2, seed=seed, monotone=monotone_signs(),
            trap_weight=weight,
        )  # fmt: skip
    return PairModel(cfg.model, params, basis, min_similarity=cfg.floor, hard_rules=cfg.hard)


def platt(margins: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Platt scaling: the (a, b) of sigmoid(a * margin + b) of highest likelihood (Platt's smoothed targets)."""
    m = np.vstack([margins, np.ones_like(margins)]).T
    t = np.where(y, (y.sum() + 1) / (y.sum() + 2), 1 / ((~y).sum() + 2))
    w = np.array([1.0, 0.0])
    for _ in range(100):
        p = _sigmoid(m @ w)
        grad = m.T @ (p - t)
        hess = (m * (p * (1 - p))[:, None]).T @ m + 1e-6 * np.eye(2)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-10:
            break
    return float(w[0]), float(w[1])


def folds(groups: np.ndarray, y: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Fold number per pair: whole groups, largest first, each to the fold with the fewest hits and traps."""
    rng = np.random.default_rng(seed)
    ids = np.unique(groups)
    rng.shuffle(ids)
    sizes = {g: int((groups == g).sum()) for g in ids}
    fold_of_group = {}
    counts = np.zeros((k, 2))
    for gid in sorted(ids, key=lambda g: -sizes[g]):  # stable: equal sizes keep the shuffled order
        members = groups == gid
        pos, neg = y[members].sum(), (~y[members]).sum()
        f = int(np.argmin((counts[:, 0] + pos) / max(1, y.sum()) + (counts[:, 1] + neg) / max(1, (~y).sum())))
        fold_of_group[gid] = f
        counts[f] += (pos, neg)
    return np.array([fold_of_group[g] for g in groups])


def oof_margins(cfg: Config, data: PairSet, basis: WordBasis, seed: int) -> np.ndarray:
    """Out-of-fold raw margins (-inf where the floor or a hard rule refuses, +inf for the same request up to
    case, punctuation and politeness, which the verifier serves without its model)."""
    eligible = (data.cos >= cfg.floor) & data.gate(cfg.hard) & ~data.same
    fold = folds(data.groups, data.y, FOLDS, seed)
    out = np.where(data.same, np.inf, -np.inf)
    for f in range(FOLDS):
        train, test = eligible & (fold != f), eligible & (fold == f)
        out[test] = fit(cfg, data.x[train], data.y[train], basis, seed=seed * 100 + f).margin(data.x[test])
    return out


def recall_at(scores: np.ndarray, y: np.ndarray, max_wrong: float) -> tuple[float, float, float, int]:
    """Served = score > cut, with the lowest cut whose wrong-hit rate is <= max_wrong (-inf: never served).
    Returns (recall, wrong-hit rate, cut, wrong hits)."""
    neg = np.sort(scores[~y])[::-1]
    allowed = math.floor(max_wrong * len(neg) + 1e-9)
    cut = neg[allowed] if allowed < len(neg) else -np.inf
    served = scores > cut
    tp, fp = int((served & y).sum()), int((served & ~y).sum())
    return tp / max(1, int(y.sum())), fp / max(1, int((~y).sum())), float(cut), fp


def wrong_upper_bound(wrong: int, traps: int, confidence: float = CONFIDENCE) -> float:
    """One-sided Clopper-Pearson upper bound of a wrong-hit rate after ``wrong`` wrong hits on ``traps`` traps."""
    if wrong >= traps:
        return 1.0

    def cdf(p: float) -> float:
        return sum(math.comb(traps, k) * p**k * (1 - p) ** (traps - k) for k in range(wrong + 1))

    lo, hi = wrong / traps, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if cdf(mid) > 1 - confidence else (lo, mid)
    return hi


def bounded_threshold(prob: np.ndarray, y: np.ndarray, max_wrong: float) -> float:
    """The lowest probability threshold (served: p >= threshold) whose wrong-hit rate has a 95% upper bound
    <= max_wrong; returned halfway between the last trap it refuses and the next score above it."""
    traps = int((~y).sum())
    allowed = 0
    while wrong_upper_bound(allowed + 1, traps) <= max_wrong:
        allowed += 1
    neg = np.sort(prob[~y])[::-1]
    cut = neg[allowed] if allowed < len(neg) else 0.0
    above = prob[prob > cut]
    return float((cut + above.min()) / 2) if len(above) else float(min(1.0, cut + 1e-6))


def _auc(scores: np.ndarray, y: np.ndarray) -> float:
    order = np.argsort(scores, kind="mergesort")
    s = scores[order]
    ranks = np.empty(len(s))
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and s[j + 1] == s[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    pos = int(y.sum())
    return float((ranks[y].sum() - pos * (pos + 1) / 2) / (pos * int((~y).sum())))


def pct(x: float) -> str:
    return f"{100 * x:.1f}%"


# --- commands --------------------------------------------------------------------------------------------


def prepare_tuning(store: StateStore) -> tuple[list[dict], WordBasis, PairSet]:
    tuning = load_sets()["tuning"]
    basis = fit_basis([t for i in tuning for t in (i["a"], i["b"])], store)
    return tuning, basis, build(tuning, store, basis)


def cmd_cv(store: StateStore, repeats: int) -> None:
    _, basis, data = prepare_tuning(store)
    print(f"tuning: {len(data.y)} pairs ({int(data.y.sum())} should-hit, {int((~data.y).sum())} traps), "
          f"{len(np.unique(data.groups))} groups", file=sys.stderr)  # fmt: skip
    rows = []
    for cfg in grid():
        t0 = time.perf_counter()
        per_rate = defaultdict(list)
        aucs = []
        for r in range(repeats):
            s = oof_margins(cfg, data, basis, seed=r)
            for rate in (*RATES, 0.02):
                per_rate[rate].append(recall_at(s, data.y, rate)[0])
            aucs.append(_auc(np.nan_to_num(s, posinf=1e9, neginf=-1e9), data.y))
        row = {
            "config": cfg.to_json(),
            "label": cfg.label(),
            "recall": {str(k): float(np.mean(v)) for k, v in per_rate.items()},
            "recall_sd_1pct": float(np.std(per_rate[0.01])),
            "score": float(np.mean([np.mean(per_rate[k]) for k in RATES])),
            "auc": float(np.mean(aucs)),
        }
        rows.append(row)
        rec = " ".join(pct(row["recall"][str(k)]) for k in (*RATES, 0.02))
        print(f"{row['score']:.3f} | {rec} | auc {row['auc']:.3f} | {cfg.label()} ({time.perf_counter() - t0:.0f} s)",
              file=sys.stderr, flush=True)  # fmt: skip
    rows.sort(key=lambda r: -r["score"])
    RESULTS.mkdir(parents=True, exist_ok=True)
    CV_OUT.write_text(json.dumps({"repeats": repeats, "folds": FOLDS, "rows": rows}, indent=1))
    print("| configuration | score | recall at 0.25% / 0.5% / 1% / 2% wrong (out of fold) | AUC |")
    print("|---|---:|---|---:|")
    for r in rows:
        rec = " / ".join(pct(r["recall"][str(k)]) for k in (*RATES, 0.02))
        print(f"| {r['label']} | {r['score']:.3f} | {rec} | {r['auc']:.3f} |")


def cmd_fit(store: StateStore, repeats: int, max_wrong: float) -> None:
    if not CV_OUT.exists():
        sys.exit("run `verifier.py cv` first")
    best = json.loads(CV_OUT.read_text())["rows"][0]
    cfg = Config.from_json(best["config"])
    print(f"chosen by cross-validation: {cfg.label()} (score {best['score']:.3f})", file=sys.stderr)
    tuning, basis, data = prepare_tuning(store)
    margins = np.mean([oof_margins(cfg, data, basis, seed=r) for r in range(repeats)], axis=0)
    eligible = np.isfinite(margins)
    a, b = platt(margins[eligible], data.y[eligible])
    prob = np.where(eligible, _sigmoid(a * np.where(eligible, margins, 0) + b), (margins > 0).astype(float))
    threshold = bounded_threshold(prob, data.y, max_wrong)
    served = prob >= threshold
    tp, fp = int((served & data.y).sum()), int((served & ~data.y).sum())
    train = (data.cos >= cfg.floor) & data.gate(cfg.hard) & ~data.same
    model = fit(cfg, data.x[train], data.y[train], basis, seed=0)
    meta = {
        "trained": date.today().isoformat(),
        "config": cfg.label(),
        "training_pairs": int(train.sum()),
        "tuning_pairs": len(data.y),
        "cv": {
            "folds": FOLDS,
            "repeats": repeats,
            "recall": tp / int(data.y.sum()),
            "wrong": fp / int((~data.y).sum()),
            "wrong_hits": fp,
            "traps": int((~data.y).sum()),
            "wrong_upper_bound_95": wrong_upper_bound(fp, int((~data.y).sum())),
        },
    }
    model = PairModel(cfg.model, model.params, basis, (a, b), threshold, cfg.floor, cfg.hard, meta)
    model.save(MODEL_OUT)
    # The fixture: feature rows of a few tuning pairs and the probabilities the written model gives them.
    rows = [i for i in range(len(data.y)) if train[i]][:: max(1, int(train.sum()) // 12)][:12]
    fixture = {
        "pairs": [{"a": tuning[i]["a"], "b": tuning[i]["b"]} for i in rows],
        "features": data.x[rows].tolist(),
        "probability": model.probability(data.x[rows]).tolist(),
    }
    FIXTURE_OUT.parent.mkdir(parents=True, exist_ok=True)
    FIXTURE_OUT.write_text(json.dumps(fixture, indent=1) + "\n")
    print(f"platt a={a:.3f} b={b:.3f}; threshold p >= {threshold:.4f}: out-of-fold recall {pct(tp / data.y.sum())} "
          f"({tp}/{int(data.y.sum())}), wrong hits {pct(fp / (~data.y).sum())} ({fp}/{int((~data.y).sum())}, "
          f"95% upper bound {pct(meta['cv']['wrong_upper_bound_95'])})")  # fmt: skip
    size = MODEL_OUT.stat().st_size
    print(f"wrote {MODEL_OUT.relative_to(ROOT)} ({size:,} bytes) and {FIXTURE_OUT.relative_to(ROOT)}")
    print(report_by_kind(data, served))


def report_by_kind(data: PairSet, served: np.ndarray) -> str:
    groups: dict[str, list[int]] = defaultdict(list)
    for i, item in enumerate(data.items):
        groups[("hit: " if data.y[i] else "trap: ") + item["category"]].append(i)
    lines = ["| kind | pairs | served |", "|---|---:|---:|"]
    for g in sorted(groups, key=lambda k: (k.startswith("trap"), k)):
        idx = groups[g]
        lines.append(f"| {g} | {len(idx)} | {int(served[idx].sum())} ({pct(served[idx].mean())}) |")
    return "\n".join(lines)


def score_set(name: str, items: list[dict], store: StateStore, sweep: bool = True, through_cache: bool = False) -> None:
    """The written model (and the hand-written gate's defaults, for comparison) on one pair set."""
    from margin.cache._learned import load_model

    model = load_model(MODEL_OUT)
    data = build(items, store, model.basis)
    eligible = (data.cos >= model.min_similarity) & data.gate(model.hard_rules)
    prob = np.where(data.same, 1.0, np.where(eligible, model.probability(data.x), 0.0))
    print(f"## {name}: {len(items)} pairs ({int(data.y.sum())} should-hit, {int((~data.y).sum())} traps)\n")
    print("| policy | recall | wrong hits |")
    print("|---|---:|---:|")
    thresholds = [model.threshold]
    if sweep:
        thresholds += [t for t in (0.3, 0.5, 0.7, 0.8, 0.9, 0.95) if abs(t - model.threshold) > 1e-3]
    for t in sorted(thresholds):
        s = prob >= t
        tp, fp = int((s & data.y).sum()), int((s & ~data.y).sum())
        mark = " **(model default)**" if t == model.threshold else ""
        print(f"| learned verifier, p >= {t:.3f}{mark} | {pct(tp / data.y.sum())} ({tp}/{int(data.y.sum())}) "
              f"| {pct(fp / (~data.y).sum())} ({fp}/{int((~data.y).sum())}) |")  # fmt: skip
    print()
    served = prob >= model.threshold
    print(report_by_kind(data, served))
    print()
    for style in sorted({str(i.get("style")) for i in items}):
        m = np.array([str(i.get("style")) == style for i in items])
        tp, fp = int((served & m & data.y).sum()), int((served & m & ~data.y).sum())
        print(f"- style `{style}`: recall {pct(tp / max(1, (m & data.y).sum()))} ({tp}/{int((m & data.y).sum())}), "
              f"wrong {pct(fp / max(1, (m & ~data.y).sum()))} ({fp}/{int((m & ~data.y).sum())})")  # fmt: skip
    if through_cache:
        right, wrong = run_through_cache(items)
        agree = right == int((served & data.y).sum()) and wrong == int((served & ~data.y).sum())
        print(f"\nThrough SemanticCache (MiniLMEmbedder, default verifier, one partition per pair): {right} right and "
              f"{wrong} wrong hits ({'the same as above' if agree else 'DIFFERENT from above'}).")  # fmt: skip
    print()


def run_through_cache(items: list[dict]) -> tuple[int, int]:
    """Each pair through a real SemanticCache with its defaults: ``a`` stored, ``b`` looked up."""
    from margin.cache import LearnedVerifier, SemanticCache

    embedder = MiniLMEmbedder(threads=2)
    cache = SemanticCache(embedder, verifier=LearnedVerifier(embedder, model=MODEL_OUT), ttl_seconds=None)
    right = wrong = 0
    for n, item in enumerate(items):
        cache.store("bench", f"pair-{n}", item["a"], n)
        if cache.lookup("bench", f"pair-{n}", item["b"]) is not None:
            right, wrong = (right + 1, wrong) if item["label"] else (right, wrong + 1)
    return right, wrong


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["cv", "fit", "valid", "heldout"])
    parser.add_argument("--repeats", type=int, default=REPEATS, help="shuffles of the folds")
    parser.add_argument("--max-wrong", type=float, default=MAX_WRONG)
    args = parser.parse_args()
    store = StateStore()
    if args.command == "cv":
        cmd_cv(store, args.repeats)
    elif args.command == "fit":
        cmd_fit(store, args.repeats, args.max_wrong)
    elif args.command == "valid":
        score_set("VALIDATION split", load_sets()["validation"], store, through_cache=True)
    else:
        score_set("HELD-OUT: fow-cache's 600 question pairs", load_heldout(), store, through_cache=True)


if __name__ == "__main__":
    main()

"""The learned pair verifier: the model format and its evaluation, the pair features, and the verifier in
SemanticCache (unit tests with small hand-built models and a fake embedder; the shipped model with the real
MiniLM is in test_learned_model.py)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from margin.cache import CacheError, SemanticCache, TokenStates, verify
from margin.cache._learned import LearnedVerifier, PairModel
from margin.cache._pairfeatures import (
    FEATURE_NAMES,
    PreparedText,
    WordBasis,
    exchange,
    pair_features,
    prepare,
    question_type,
    word_vectors,
)
from margin.cache._verify import GATE_REASONS, features, gate_signals

DIM = 16
K = 8
BASIS = WordBasis(np.zeros(DIM, np.float32), np.eye(DIM, K, dtype=np.float32))
COS = FEATURE_NAMES.index("cos")


def unit(seed: str, dim: int = DIM) -> np.ndarray:
    rng = np.random.default_rng(int.from_bytes(hashlib.sha256(seed.encode()).digest()[:8], "little"))
    v = rng.standard_normal(dim).astype(np.float32)
    return v / np.linalg.norm(v)


class FakeTokenEmbedder:
    """Token states from word hashes (a word's vector is the same wherever it appears); ids from the real
    vocabulary where the word is in it, so rarity and word grouping behave as with MiniLM."""

    dim = DIM

    def __init__(self) -> None:
        from margin.cache._pairfeatures import _vocabulary

        _, _, pieces = _vocabulary()
        self.ids = {p: i for i, p in enumerate(pieces) if p and not pieces[i].startswith("[")}
        self.calls = 0

    def _states(self, text: str) -> TokenStates:
        words = [w for w in text.lower().replace("?", " ?").split() if w]
        ids = np.array([self.ids.get(w, 20000 + len(w)) for w in words], dtype=np.int32)
        tokens = np.stack([unit(w) for w in words]).astype(np.float16) if words else np.zeros((0, DIM), np.float16)
        vector = unit(" ".join(sorted(set(words))))
        return TokenStates(vector, tokens, ids)

    def embed(self, texts: list[str]) -> np.ndarray:
        self.calls += 1
        return np.stack([self._states(t).vector for t in texts])

    def embed_tokens(self, texts: list[str]) -> list[TokenStates]:
        self.calls += 1
        return [self._states(t) for t in texts]


def cos_model(threshold: float = 0.5, **kw) -> PairModel:
    """A logistic model that reads only the cosine: p = sigmoid(20 * (cos - 0.8))."""
    weights = np.zeros(len(FEATURE_NAMES))
    weights[COS] = 20.0
    mean = np.zeros(len(FEATURE_NAMES))
    scale = np.ones(len(FEATURE_NAMES))
    params = {"weights": weights, "bias": np.array(-16.0), "mean": mean, "scale": scale}
    return PairModel("logistic", params, BASIS, threshold=threshold, **kw)


def stump_model() -> PairModel:
    """Two oblivious trees of depth 2 over cos and gate_any, written out by hand."""
    f_cos, f_gate = COS, FEATURE_NAMES.index("gate_any")
    params = {
        "base": np.array(-1.0),
        "learning_rate": np.array(0.5),
        "feature": np.array([[f_cos, f_gate], [f_cos, f_cos]]),
        "threshold": np.array([[0.8, 0.5], [0.9, 0.95]]),
        # leaf index = 2 * (x[f0] > t0) + (x[f1] > t1)
        "leaf": np.array([[-2.0, -3.0, 4.0, -1.0], [0.0, 0.0, 1.0, 2.0]]),
    }
    return PairModel("trees", params, BASIS, platt=(1.5, 0.25), threshold=0.5)


def row(cos: float, gate_any: float = 0.0) -> np.ndarray:
    x = np.zeros(len(FEATURE_NAMES))
    x[COS] = cos
    x[FEATURE_NAMES.index("gate_any")] = gate_any
    return x


def test_trees_are_evaluated_bit_by_bit() -> None:
    m = stump_model()
    x = np.stack([row(0.5), row(0.85), row(0.85, 1.0), row(0.92), row(0.97), row(0.97, 1.0)])
    # tree 1: cos > 0.8 is the high bit, gate_any > 0.5 the low bit; tree 2: cos > 0.9, cos > 0.95
    tree1 = np.array([-2.0, 4.0, -1.0, 4.0, 4.0, -1.0])
    tree2 = np.array([0.0, 0.0, 0.0, 1.0, 2.0, 2.0])
    expected = -1.0 + 0.5 * (tree1 + tree2)
    assert np.allclose(m.margin(x), expected)
    assert np.allclose(m.probability(x), 1 / (1 + np.exp(-(1.5 * expected + 0.25))))


def test_save_and_load_give_the_same_probabilities(tmp_path) -> None:
    for model in (stump_model(), cos_model(hard_rules=("number",), min_similarity=0.4, meta={"note": "x"})):
        path = tmp_path / f"{model.kind}.npz"
        model.save(path)
        loaded = PairModel.load(path)
        x = np.random.default_rng(0).random((50, len(FEATURE_NAMES)))
        assert np.array_equal(loaded.probability(x), model.probability(x))
        assert (loaded.threshold, loaded.min_similarity, loaded.hard_rules) == (
            model.threshold,
            model.min_similarity,
            model.hard_rules,
        )
        assert loaded.meta == model.meta
        assert np.array_equal(loaded.basis.basis, model.basis.basis)


def test_a_model_for_other_features_is_refused(tmp_path) -> None:
    import json

    path = tmp_path / "m.npz"
    cos_model().save(path)
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    header = json.loads(str(arrays["header"]))
    header["feature_names"] = header["feature_names"][:-1]
    arrays["header"] = np.array(json.dumps(header))
    np.savez(path, **arrays)
    with pytest.raises(CacheError, match="other features"):
        PairModel.load(path)
    with pytest.raises(CacheError, match="not found"):
        PairModel.load(tmp_path / "missing.npz")
    with pytest.raises(CacheError, match="unknown gate rules"):
        cos_model(hard_rules=("nonsense",))


def test_word_vectors_group_word_pieces() -> None:
    from margin.cache._pairfeatures import _vocabulary

    _, continues, pieces = _vocabulary()
    ids = {p: i for i, p in enumerate(pieces) if not continues[i] and p}
    cont = {p: i for i, p in enumerate(pieces) if continues[i]}
    seq = np.array([ids["ib"], cont["up"], cont["ro"], cont["fen"], ids["dose"]], dtype=np.int32)
    tokens = np.eye(5, DIM, dtype=np.float16)
    words, vectors, rarity = word_vectors(TokenStates(unit("x"), tokens, seq))
    assert words == ("ibuprofen", "dose")
    assert np.allclose(vectors[0], np.eye(5, DIM)[:4].mean(axis=0))
    assert rarity.shape == (2,) and rarity[0] > 0.35


def test_features_are_deterministic_and_order_free_where_they_should_be() -> None:
    emb = FakeTokenEmbedder()
    a, b = "How do I cancel my order?", "how can i cancel the order"
    pa, pb = (prepare(t, s, BASIS) for t, s in zip((a, b), emb.embed_tokens([a, b]), strict=True))
    x1 = pair_features(pb, pa, 0.9)
    x2 = pair_features(pb, pa, 0.9)
    assert x1.shape == (len(FEATURE_NAMES),) and x1.dtype == np.float64
    assert np.array_equal(x1, x2)
    x3 = pair_features(pa, pb, 0.9)  # the other way round: every "_lo"/"_hi" pair is the same
    for i, name in enumerate(FEATURE_NAMES):
        if name.endswith(("_lo", "_hi")) or name in ("cos", "jaccard", "len_ratio", "same_bag"):
            assert x1[i] == x3[i], name


def test_question_type_and_exchange() -> None:
    assert question_type("How do I claim my expenses?") == "how"
    assert question_type("What's the way to reset it?") == "how"
    assert question_type("What expenses can I claim?") == "what"
    assert question_type("Is it possible to change my seat?") == "can"
    assert question_type("Track my parcel") == "other"

    def ex(a: str, b: str) -> bool:
        return exchange(features(a).tokens, features(b).tokens)

    assert ex("Can a mother pass covid to her baby?", "Can a baby pass covid to its mother?")
    assert ex("How do I convert Celsius to Fahrenheit?", "How do I convert Fahrenheit to Celsius?")
    assert not ex("Is parking free at the hospital?", "Is parking at the hospital free?")
    assert not ex("Please send me the invoice again", "Send me the invoice again please")


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=60), st.text(max_size=60))
def test_gate_signals_agree_with_verify(a: str, b: str) -> None:
    signals = gate_signals(a, b)
    assert set(signals) == {*GATE_REASONS, "minimal"}
    assert verify(a, b).ok == (a == b or not any(signals[r] for r in GATE_REASONS))


def test_verifier_decides_by_threshold_floor_and_hard_rules() -> None:
    emb = FakeTokenEmbedder()
    v = LearnedVerifier(emb, model=cos_model(threshold=0.5))
    q, c = (v.prepare(t, s) for t, s in zip(("a b c", "a b d"), emb.embed_tokens(["a b c", "a b d"]), strict=True))
    assert v.check(q, c, 0.85).ok  # p = sigmoid(1) = 0.73
    refused = v.check(q, c, 0.75)  # p = sigmoid(-1)
    assert not refused.ok and refused.reason == "verifier"
    assert v.check(q, q, 0.0).ok  # the same text is always served
    assert not LearnedVerifier(emb, model=cos_model(), threshold=0.9).check(q, c, 0.85).ok
    floor = LearnedVerifier(emb, model=cos_model(), min_similarity=0.9).check(q, c, 0.85)
    assert floor.reason == "threshold"
    t1, t2 = "Track order 48213", "Track order 48231"
    q1, q2 = (v.prepare(t, s) for t, s in zip((t1, t2), emb.embed_tokens([t1, t2]), strict=True))
    assert v.check(q1, q2, 0.99).ok  # the cosine model alone serves it
    hard = LearnedVerifier(emb, model=cos_model(), hard_rules=("number",)).check(q1, q2, 0.99)
    assert not hard.ok and hard.reason == "number"
    with pytest.raises(CacheError):
        LearnedVerifier(emb, model=cos_model(), threshold=1.5)
    with pytest.raises(CacheError):
        LearnedVerifier(emb, model=cos_model(), hard_rules=("bogus",))


def test_verifier_called_directly_embeds_and_memoizes() -> None:
    emb = FakeTokenEmbedder()
    v = LearnedVerifier(emb, model=cos_model(), memo=2)
    assert v("a b c", "a b c").ok
    calls = emb.calls
    v("a b c", "a b c")
    assert emb.calls == calls
    for t in ("x", "y", "z"):
        v(t, t)
    assert len(v._memo) == 2
    with pytest.raises(CacheError, match="embed_tokens"):
        LearnedVerifier(None, model=cos_model())("a", "b")


def test_semantic_cache_with_the_learned_verifier() -> None:
    emb = FakeTokenEmbedder()
    v = LearnedVerifier(emb, model=cos_model(threshold=0.5, min_similarity=0.3))
    cache = SemanticCache(emb, verifier=v)
    assert cache.threshold == 0.3  # the verifier's floor, unless threshold= says otherwise
    q = "how do i cancel my order"
    near = "how do i cancel my order please"
    cache.store("s", "fp", q, "answer")
    entry = next(iter(cache._entries.values()))
    assert isinstance(entry.prepared, PreparedText)
    sim = float(emb.embed([q])[0] @ emb.embed([near])[0])
    result = cache.lookup_detailed("s", "fp", near)
    p = 1 / (1 + np.exp(-(20 * sim - 16)))
    if p >= 0.5:
        assert result.hit is not None and result.hit.payload == "answer"
    else:
        assert result.hit is None and result.refusals[0].reason in ("verifier", "threshold")
    assert cache.lookup("s", "fp", q).exact


def test_semantic_cache_prepares_entries_stored_with_vectors_lazily() -> None:
    emb = FakeTokenEmbedder()
    always = cos_model(threshold=0.0)
    cache = SemanticCache(emb, verifier=LearnedVerifier(emb, model=always), threshold=-1.0)
    texts = ["alpha beta", "gamma delta"]
    cache.store_many("s", "fp", texts, [1, 2], vectors=emb.embed(texts))
    assert all(e.prepared is None for e in cache._entries.values())
    hit = cache.lookup("s", "fp", "alpha beta gamma")
    assert hit is not None
    assert any(e.prepared is not None for e in cache._entries.values())
    cache2 = SemanticCache(emb, verifier=LearnedVerifier(emb, model=always), threshold=-1.0)
    cache2.store_many("s", "fp", texts, [1, 2])
    assert all(isinstance(e.prepared, PreparedText) for e in cache2._entries.values())


def test_verifier_names() -> None:
    emb = FakeTokenEmbedder()
    assert SemanticCache(emb).verifier is verify
    assert SemanticCache(emb, verifier="rules").verifier is verify
    with pytest.raises(CacheError, match="verifier must be"):
        SemanticCache(emb, verifier="magic")


def test_learned_verifier_needs_token_states() -> None:
    class VectorsOnly:
        dim = DIM

        def embed(self, texts: list[str]) -> np.ndarray:
            return np.stack([unit(t) for t in texts])

    with pytest.raises(CacheError, match="token states"):
        SemanticCache(VectorsOnly(), verifier=LearnedVerifier(model=cos_model()))


def test_store_after_a_missed_lookup_reuses_its_prepared_text() -> None:
    emb = FakeTokenEmbedder()
    cache = SemanticCache(emb, verifier=LearnedVerifier(emb, model=cos_model()))
    cache.store("s", "fp", "something else entirely", 0)
    result = cache.lookup_detailed("s", "fp", "how do i renew my passport")
    calls = emb.calls
    cache.store("s", "fp", "how do i renew my passport", 1, vector=result.vector)  # the gateway's flow
    assert emb.calls == calls
    entry = next(e for e in cache._entries.values() if e.text == "how do i renew my passport")
    assert isinstance(entry.prepared, PreparedText)

"""SemanticCache with a deterministic fake embedder: partitions, threshold, gate, TTL, LRU, feedback."""

from __future__ import annotations

import hashlib
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from margin.cache import CacheError, SemanticCache

DIM = 16


def unit(seed: str) -> np.ndarray:
    rng = np.random.default_rng(int.from_bytes(hashlib.sha256(seed.encode()).digest()[:8], "little"))
    v = rng.standard_normal(DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def near(v: np.ndarray, cos: float, seed: str = "n") -> np.ndarray:
    """A unit vector at exactly cosine ``cos`` from ``v``."""
    w = unit(seed)
    w = w - (w @ v) * v
    w /= np.linalg.norm(w)
    return (cos * v + np.sqrt(1 - cos**2) * w).astype(np.float32)


class FakeEmbedder:
    """Vectors from a table, or a hash of the text; counts calls."""

    dim = DIM

    def __init__(self, table: dict[str, np.ndarray] | None = None) -> None:
        self.table = table or {}
        self.calls = 0

    def embed(self, texts: list[str]) -> np.ndarray:
        self.calls += 1
        return np.stack([self.table.get(t, unit(t)) for t in texts])


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


Q = "How do I reset my password?"
P = "What's the way to reset my password?"


def make(table=None, **kw) -> tuple[SemanticCache, FakeEmbedder, Clock]:
    emb, clock = FakeEmbedder(table), Clock()
    kw.setdefault("threshold", 0.9)
    return SemanticCache(emb, clock=clock, **kw), emb, clock


def test_exact_text_hits_without_embedding() -> None:
    cache, emb, _ = make()
    cache.store("global", "fp", Q, {"answer": 1})
    calls = emb.calls
    hit = cache.lookup("global", "fp", Q)
    assert hit is not None and hit.exact and hit.similarity == 1.0 and hit.payload == {"answer": 1}
    assert emb.calls == calls


def test_similar_enough_hits_and_below_threshold_is_refused_with_reason() -> None:
    v = unit("q")
    cache, _, _ = make({Q: v, P: near(v, 0.95), "far": near(v, 0.5)})
    cache.store("global", "fp", Q, b"answer")
    hit = cache.lookup("global", "fp", P)
    assert hit is not None and not hit.exact and hit.similarity == pytest.approx(0.95, abs=1e-5)
    assert hit.cached_text == Q
    result = cache.lookup_detailed("global", "fp", "far")
    assert result.hit is None
    assert [r.reason for r in result.refusals] == ["threshold"]
    assert cache.stats()["refused_threshold"] == 1


def test_gate_refuses_a_near_identical_trap() -> None:
    v = unit("order")
    cache, _, _ = make({"Track order 48213": v, "Track order 48231": v})
    cache.store("global", "fp", "Track order 48213", b"in transit")
    result = cache.lookup_detailed("global", "fp", "Track order 48231")
    assert result.hit is None
    assert result.refusals[0].reason == "number"
    assert cache.stats()["refused_number"] == 1


def test_one_word_swap_is_checked_with_the_embedder() -> None:
    v = unit("bridge")
    a, b = "Is the bridge open to cyclists?", "Is the bridge shut to cyclists?"
    unrelated = {a: v, b: v, "open": unit("open"), "shut": unit("shut")}
    cache, _, _ = make(unrelated)
    cache.store("global", "fp", a, b"yes")
    result = cache.lookup_detailed("global", "fp", b)
    assert result.hit is None and result.refusals[0].reason == "swap"

    synonyms = {a: v, b: v, "open": unit("open"), "shut": near(unit("open"), 0.9)}
    cache, _, _ = make(synonyms)
    cache.store("global", "fp", a, b"yes")
    assert cache.lookup("global", "fp", b) is not None
    cache, _, _ = make(unrelated, swap_similarity=None)
    cache.store("global", "fp", a, b"yes")
    assert cache.lookup("global", "fp", b) is not None


def test_scope_and_fingerprint_isolate() -> None:
    cache, _, _ = make()
    cache.store("team:a", "fp1", Q, b"a")
    assert cache.lookup("team:b", "fp1", Q) is None
    assert cache.lookup("team:a", "fp2", Q) is None
    assert cache.lookup("team:a", "fp1", Q) is not None
    cache.store("team:b", "fp1", Q, b"b")
    assert cache.lookup("team:b", "fp1", Q).payload == b"b"
    assert cache.lookup("team:a", "fp1", Q).payload == b"a"
    assert cache.clear("team:a") == 1
    assert cache.lookup("team:a", "fp1", Q) is None and len(cache) == 1


def test_ttl_expiry_with_injected_clock() -> None:
    cache, _, clock = make(ttl_seconds=60)
    cache.store("global", "fp", Q, b"x")
    clock.now += 59
    hit = cache.lookup("global", "fp", Q)
    assert hit is not None and hit.age_seconds == 59
    clock.now += 1
    assert cache.lookup("global", "fp", Q) is None
    assert len(cache) == 0 and cache.stats()["expired"] == 1
    cache.store("global", "fp", Q, b"y", ttl_seconds=5)
    clock.now += 6
    assert cache.lookup("global", "fp", Q) is None


def test_lru_bound_evicts_least_recently_used() -> None:
    cache, _, _ = make(max_entries=3)
    for i in range(3):
        cache.store("global", "fp", f"question {i}", i)
    assert cache.lookup("global", "fp", "question 0") is not None  # 0 becomes most recent
    cache.store("global", "fp", "question 3", 3)
    assert len(cache) == 3
    assert cache.lookup("global", "fp", "question 1") is None
    assert all(cache.lookup("global", "fp", f"question {i}") is not None for i in (0, 2, 3))
    assert cache.stats()["evicted_lru"] == 1


def test_restoring_the_same_text_replaces_the_entry() -> None:
    cache, _, _ = make()
    cache.store("global", "fp", Q, b"old")
    cache.store("global", "fp", Q, b"new")
    assert len(cache) == 1 and cache.lookup("global", "fp", Q).payload == b"new"


def test_wrong_report_raises_the_entry_threshold_then_drops_it() -> None:
    v = unit("q")
    cache, _, _ = make({Q: v, P: near(v, 0.95), "R": near(v, 0.97, "r")}, max_wrong_reports=2)
    cache.store("global", "fp", Q, b"x")
    hit = cache.lookup("global", "fp", P)
    assert hit is not None
    cache.report(hit, correct=False)
    assert cache.entry_threshold(hit.entry_id) == pytest.approx(0.96, abs=1e-5)
    refused = cache.lookup_detailed("global", "fp", P)
    assert refused.hit is None and refused.refusals[0].reason == "threshold"
    hit2 = cache.lookup("global", "fp", "R")  # more similar than the wrong one: still served
    assert hit2 is not None
    cache.report(hit2, correct=True)
    cache.report(hit2, correct=False)
    assert len(cache) == 0 and cache.stats()["dropped_wrong"] == 1


def test_store_many_and_hnsw_switch() -> None:
    texts = [f"entry {i}" for i in range(300)]
    cache, emb, _ = make(hnsw_threshold=100)
    ids = cache.store_many("global", "fp", texts, list(range(300)))
    assert len(ids) == 300 and len(cache) == 300 and emb.calls == 1
    part = next(iter(cache._partitions.values()))
    assert part.index.mode == "hnsw"
    hit = cache.lookup("global", "fp", "entry 7", vector=unit("entry 7"))
    assert hit is not None and hit.payload == 7
    with pytest.raises(CacheError):
        cache.store_many("global", "fp", ["a", "a"], [1, 2])


def test_bad_settings_are_refused() -> None:
    with pytest.raises(CacheError):
        SemanticCache(FakeEmbedder(), threshold=1.5)
    with pytest.raises(CacheError):
        SemanticCache(FakeEmbedder(), ttl_seconds=0)
    cache, _, _ = make()
    with pytest.raises(CacheError):
        cache.store("global", "fp", "x", b"", vector=np.ones(DIM + 1, dtype=np.float32))


def test_concurrent_use() -> None:
    cache, _, _ = make(max_entries=200)
    errors: list[BaseException] = []

    def worker(k: int) -> None:
        try:
            for i in range(200):
                text = f"question {(i * 7 + k) % 300}"
                if cache.lookup(f"scope{k % 3}", "fp", text) is None:
                    cache.store(f"scope{k % 3}", "fp", text, i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(cache) <= 200
    stats = cache.stats()
    assert stats["lookups"] == 8 * 200 == stats["hits"] + stats["misses"]


def test_a_minimal_edit_must_reach_the_edit_threshold() -> None:
    v = unit("q")
    edit = "How do I reset my PIN?"  # one content word changed: judged by edit_threshold
    reworded = "I forgot my password, how can I get a new one?"  # a rewording: judged by threshold
    cache, _, _ = make({Q: v, edit: near(v, 0.93, "e"), reworded: near(v, 0.93, "r")}, edit_threshold=0.95)
    cache.store("global", "fp", Q, b"x")
    refused = cache.lookup_detailed("global", "fp", edit)
    assert refused.hit is None
    assert refused.refusals[0].reason == "threshold" and "minimal edit" in (refused.refusals[0].detail or "")
    assert cache.lookup("global", "fp", reworded) is not None
    lenient, _, _ = make({Q: v, P: near(v, 0.93, "p")}, edit_threshold=0.9)
    lenient.store("global", "fp", Q, b"x")
    assert lenient.lookup("global", "fp", P) is not None  # P is a minimal edit of Q, above 0.9


@settings(deadline=None, max_examples=60)
@given(
    st.lists(
        st.tuples(st.floats(min_value=0.9, max_value=0.999), st.booleans()),
        min_size=1,
        max_size=12,
    )
)
def test_learned_entry_threshold_only_tightens(reports: list[tuple[float, bool]]) -> None:
    """Whatever feedback arrives, an entry's own threshold never falls below the cache's, never falls at all,
    and a query reported wrong at similarity s is not served again at s."""
    cache, _, _ = make(max_wrong_reports=len(reports) + 1)
    entry = cache.store("global", "fp", Q, b"x", vector=unit("q"))
    previous = cache.entry_threshold(entry)
    for sim, correct in reports:
        cache.report(entry, correct=correct, similarity=sim)
        now = cache.entry_threshold(entry)
        assert now is not None and previous is not None
        assert now >= previous >= cache.threshold
        if not correct:
            assert now > sim or now == 1.0
        previous = now


# --- entries embedded elsewhere (the gateway's Redis-shared semantic cache) -----------------------------------


def test_insert_adds_a_pre_embedded_entry_under_its_id_without_embedding() -> None:
    v = unit("q")
    cache, emb, clock = make({P: near(v, 0.95)})
    assert cache.insert(1_700_000_000_000_042, "team:a", "fp", Q, {"a": 1}, v, expires_in=60, age_seconds=5)
    assert emb.calls == 0  # the vector travelled with the entry
    assert 1_700_000_000_000_042 in cache and cache.entry_ids() == [1_700_000_000_000_042]
    hit = cache.lookup("team:a", "fp", P)
    assert hit is not None and hit.entry_id == 1_700_000_000_000_042 and hit.age_seconds == pytest.approx(5)
    assert cache.lookup("team:b", "fp", P) is None  # partitions still isolate
    clock.now += 61
    assert cache.lookup("team:a", "fp", P) is None and len(cache) == 0  # its own expiry, from the sender's TTL
    assert not cache.insert(7, "team:a", "fp", Q, {}, v, expires_in=0)  # already expired: refused


def test_insert_keeps_the_highest_id_for_one_text() -> None:
    """Two instances that learn of two concurrent stores of one text in different orders keep the same one."""
    v = unit("q")
    first, _, _ = make()
    second, _, _ = make()
    first.insert(10, "g", "fp", Q, "older", v, expires_in=60)
    first.insert(11, "g", "fp", Q, "newer", v, expires_in=60)
    second.insert(11, "g", "fp", Q, "newer", v, expires_in=60)
    assert not second.insert(10, "g", "fp", Q, "older", v, expires_in=60)
    for cache in (first, second):
        assert cache.entry_ids() == [11] and cache.lookup("g", "fp", Q).payload == "newer"  # type: ignore[union-attr]
    assert first.insert(11, "g", "fp", Q, "again", v, expires_in=60)  # the same id again replaces it
    assert first.entry_ids() == [11]


def test_stored_ids_never_collide_with_inserted_ones() -> None:
    cache, _, _ = make()
    cache.insert(500, "g", "fp", "inserted", {}, unit("i"), expires_in=None)
    assert cache.store("g", "fp", Q, {}) == 501


def test_insert_carries_feedback_and_apply_feedback_only_tightens() -> None:
    v = unit("q")
    cache, _, _ = make({P: near(v, 0.95)})
    cache.insert(3, "g", "fp", Q, {}, v, expires_in=60, threshold=0.5, reported_wrong=1)
    assert cache.entry_threshold(3) == pytest.approx(0.9)  # never below the cache's own threshold
    cache.insert(4, "g", "fp", "other", {}, unit("o"), expires_in=60, threshold=0.97)
    assert cache.entry_threshold(4) == pytest.approx(0.97)
    assert cache.apply_feedback(3, threshold=0.96, reported_wrong=2)
    assert cache.lookup("g", "fp", P) is None  # 0.95 < 0.96
    assert cache.apply_feedback(3, threshold=0.2, reported_wrong=1)
    assert cache.entry_threshold(3) == pytest.approx(0.96)
    assert not cache.apply_feedback(99, threshold=0.99, reported_wrong=1)


def test_clear_by_scope_and_payload_filter() -> None:
    cache, _, _ = make()
    cache.store("team:a", "fp", "q1", {"key": "abc1"})
    cache.store("team:a", "fp", "q2", {"key": "xyz2"})
    cache.store("team:b", "fp", "q3", {"key": "abc3"})
    assert cache.clear("team:a", where=lambda p: p["key"].startswith("abc")) == 1
    assert cache.clear(where=lambda p: p["key"].startswith("abc")) == 1
    assert len(cache) == 1 and cache.lookup("team:a", "fp", "q2") is not None

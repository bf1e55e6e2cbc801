"""VectorIndex: exact numpy search, usearch HNSW above the threshold, and their agreement."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from margin.cache import VectorIndex


def unit_rows(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("dtype", ["f16", "i8"])
def test_exact_and_hnsw_agree_on_random_vectors(dtype: str) -> None:
    rng = np.random.default_rng(1)
    x = unit_rows(rng, 3000, 64)
    exact = VectorIndex(64, hnsw_threshold=None)
    hnsw = VectorIndex(64, hnsw_threshold=1000, hnsw_dtype=dtype)
    exact.add_many(np.arange(3000), x)
    for start in range(0, 3000, 500):  # crosses the threshold part-way
        hnsw.add_many(np.arange(start, start + 500), x[start : start + 500])
    assert exact.mode == "exact" and hnsw.mode == "hnsw" and len(hnsw) == 3000
    queries = x[:200] + 0.05 * rng.standard_normal((200, 64)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    agree = 0
    for q in queries:
        (ke, se), (kh, sh) = exact.search(q, 1)[0], hnsw.search(q, 1)[0]
        agree += ke == kh
        if ke == kh:
            assert sh == pytest.approx(se, abs=0.02 if dtype == "i8" else 2e-3)
    assert agree >= 190  # HNSW is approximate (and its multi-threaded build not deterministic)


def test_remove_and_replace() -> None:
    rng = np.random.default_rng(2)
    x = unit_rows(rng, 10, 8)
    for threshold in (None, 0):
        index = VectorIndex(8, hnsw_threshold=threshold)
        index.add_many(list(range(10)), x)
        assert index.search(x[3], 1)[0][0] == 3
        assert index.remove(3) and not index.remove(3) and 3 not in index and len(index) == 9
        assert index.search(x[3], 1)[0][0] != 3
        index.add(3, x[4])  # re-add with another vector
        assert len(index) == 10 and 3 in index
        assert {k for k, _ in index.search(x[4], 2)} == {3, 4}
    with pytest.raises(ValueError):
        VectorIndex(8).add_many([1, 1], x[:2])
    with pytest.raises(ValueError):
        VectorIndex(8).add(1, np.ones(9, dtype=np.float32))


def test_empty_and_k_larger_than_size() -> None:
    index = VectorIndex(4)
    assert index.search(np.ones(4, dtype=np.float32) / 2, 3) == []
    index.add(7, np.array([1, 0, 0, 0], dtype=np.float32))
    assert index.search(np.array([1, 0, 0, 0], dtype=np.float32), 5) == [(7, pytest.approx(1.0))]


@settings(max_examples=30, deadline=None)
@given(st.lists(st.sampled_from(["add", "remove"]), min_size=1, max_size=60), st.integers(0, 2**31))
def test_exact_index_matches_brute_force(ops: list[str], seed: int) -> None:
    rng = np.random.default_rng(seed)
    index = VectorIndex(8, hnsw_threshold=None, initial_capacity=2)
    model: dict[int, np.ndarray] = {}
    for op in ops:
        key = int(rng.integers(0, 20))
        if op == "add":
            v = unit_rows(rng, 1, 8)[0]
            index.add(key, v)
            model[key] = v
        else:
            assert index.remove(key) == (key in model)
            model.pop(key, None)
    assert len(index) == len(model)
    q = unit_rows(rng, 1, 8)[0]
    got = index.search(q, 3)
    want = sorted(((k, float(v @ q)) for k, v in model.items()), key=lambda kv: -kv[1])[:3]
    # float32 dot products in a different order: equal to ~1e-6, so compare with a tolerance, not rounding
    # (two rounded values can straddle a rounding boundary).
    assert [s for _, s in got] == pytest.approx([s for _, s in want], abs=1e-5)

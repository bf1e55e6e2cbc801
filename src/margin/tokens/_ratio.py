"""Words <-> tokens by the seeds' rule of thumb: 1,000 tokens are about 750 words."""

from __future__ import annotations

import math
from decimal import Decimal

__all__ = ["DEFAULT_WORDS_PER_TOKEN", "words_to_tokens"]

DEFAULT_WORDS_PER_TOKEN = Decimal("0.75")


def words_to_tokens(words: Decimal | int, words_per_token: Decimal = DEFAULT_WORDS_PER_TOKEN) -> int:
    """Tokens for a word count, rounded up: a budget sized from words should never come out short.

    250 words at 0.75 words/token is 333.3 tokens, so 334.
    """
    if words_per_token <= 0:
        raise ValueError("words_per_token must be greater than 0")
    if words < 0:
        raise ValueError("words must not be negative")
    return math.ceil(Decimal(words) / words_per_token)

"""Virtual API keys: generation, hashing, display prefix, and the ``AMOUNT/PERIOD`` budget syntax.

A key looks like ``mk-`` followed by 32 URL-safe random characters (192 bits from :mod:`secrets`). It is
shown once, when created; the ledger stores only its sha256 (:func:`hash_key`) and its first ten characters
(:func:`key_prefix`) so people can tell keys apart in listings.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Literal, cast

from .store.base import VirtualKey

__all__ = [
    "BUDGET_PERIODS",
    "KEY_PREFIX",
    "BudgetPeriod",
    "generate_key",
    "hash_key",
    "key_prefix",
    "parse_budget",
]

KEY_PREFIX = "mk-"
BudgetPeriod = Literal["request", "hour", "day", "month"]
BUDGET_PERIODS: tuple[BudgetPeriod, ...] = ("request", "hour", "day", "month")
_PREFIX_LENGTH = 10
_BUDGET = re.compile(r"^\s*\$?\s*(?P<amount>[^/\s]+)\s*/\s*(?P<period>[^/\s]+)\s*$")
_PLAIN_AMOUNT = re.compile(r"^\d+(\.\d+)?$|^\.\d+$")


def generate_key() -> str:
    """A new random key: ``mk-`` + 32 URL-safe characters (24 random bytes)."""
    return KEY_PREFIX + secrets.token_urlsafe(24)


def hash_key(key: str) -> str:
    """The sha256 hex digest of a key: what the ledger stores and looks keys up by."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def key_prefix(key: str) -> str:
    """The first ten characters of a key (``mk-`` + 7), safe to display and log."""
    return key[:_PREFIX_LENGTH]


def parse_budget(text: str) -> tuple[Decimal, BudgetPeriod]:
    """Parse ``"5/day"`` (also ``"$0.50/request"``, ``"100 / month"``) into ``(Decimal("5"), "day")``.

    The amount is USD, a plain non-negative decimal number; the period is one of request, hour, day, month.
    """
    match = _BUDGET.match(text)
    if match is None:
        raise ValueError(f"invalid budget {text!r}: write AMOUNT/PERIOD in USD, e.g. 5/day, 0.50/request or 200/month")
    amount_text, period_text = match["amount"], match["period"].lower()
    if not _PLAIN_AMOUNT.match(amount_text):
        raise ValueError(
            f"invalid budget amount {amount_text!r} in {text!r}: use a non-negative number of dollars "
            "such as 5 or 0.25 (no sign, exponent or thousands separator)"
        )
    try:
        amount = Decimal(amount_text)
    except InvalidOperation:  # pragma: no cover - the pattern admits only valid decimals
        raise ValueError(f"invalid budget amount {amount_text!r} in {text!r}") from None
    if period_text not in BUDGET_PERIODS:
        raise ValueError(
            f"invalid budget period {match['period']!r} in {text!r}: use one of {', '.join(BUDGET_PERIODS)}"
        )
    return amount, cast(BudgetPeriod, period_text)


def new_virtual_key(
    *,
    user: str | None,
    team: str | None,
    project: str | None,
    tags: dict[str, str],
    budget: str | None,
    models: tuple[str, ...],
) -> tuple[str, VirtualKey]:
    """A fresh key: the secret (shown once) and the record to store (hashed). Validates the budget."""
    if budget is not None:
        parse_budget(budget)
    secret = generate_key()
    digest = hash_key(secret)
    key = VirtualKey(
        key_id=digest[:16],
        key_hash=digest,
        prefix=key_prefix(secret),
        user=user,
        team=team,
        project=project,
        tags=dict(tags),
        budget=budget,
        models=tuple(models),
        created_at=datetime.now(UTC),
        revoked_at=None,
    )
    return secret, key

"""Virtual key generation, hashing, prefixes and the AMOUNT/PERIOD budget syntax."""

from __future__ import annotations

import hashlib
import re
from decimal import Decimal

import pytest

from margin.keys import generate_key, hash_key, key_prefix, parse_budget


def test_generated_keys_are_random_url_safe_and_prefixed():
    keys = {generate_key() for _ in range(1000)}
    assert len(keys) == 1000
    for key in keys:
        assert re.fullmatch(r"mk-[A-Za-z0-9_-]{32}", key)


def test_hash_and_prefix():
    key = "mk-abcdefghijklmnopqrstuvwxyz012345"
    assert hash_key(key) == hashlib.sha256(key.encode()).hexdigest()
    assert len(hash_key(key)) == 64 and hash_key(key) != hash_key(key + "x")
    assert key_prefix(key) == "mk-abcdefg"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("5/day", (Decimal("5"), "day")),
        ("0.50/request", (Decimal("0.50"), "request")),
        ("$200/month", (Decimal("200"), "month")),
        (" 1.25 / HOUR ", (Decimal("1.25"), "hour")),
        (".5/day", (Decimal("0.5"), "day")),
        ("0/day", (Decimal("0"), "day")),
    ],
)
def test_parse_budget(text, expected):
    assert parse_budget(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("5", "write AMOUNT/PERIOD"),
        ("5/day/extra", "write AMOUNT/PERIOD"),
        ("", "write AMOUNT/PERIOD"),
        ("-5/day", "non-negative number"),
        ("1e3/day", "non-negative number"),
        ("1,000/day", "non-negative number"),
        ("five/day", "non-negative number"),
        ("NaN/day", "non-negative number"),
        ("5/week", "use one of request, hour, day, month"),
        ("5/days", "use one of request, hour, day, month"),
    ],
)
def test_parse_budget_errors_say_what_to_write(text, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_budget(text)

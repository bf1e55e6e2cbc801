"""Redaction before retention: each default rule on what it must catch and what it must leave alone."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from margin.redact import DEFAULT_RULES, _digits, redact_body, redact_text, rules_from_config


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("my key is sk-proj-abcdefghijklmnop1234", "secret"),
        ("export ANTHROPIC_API_KEY=sk-ant-api03-AbCdEfGhIjKlMnOp", "secret"),
        ("aws AKIAIOSFODNN7EXAMPLE here", "secret"),
        ("Authorization: Bearer abcdefghijklmnopqrstuvwxyz012345", "secret"),
        ("token ghp_abcdefghijklmnopqrstuvwxyz0123456789", "secret"),
        ("jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U", "secret"),
        ("write to ana.lopez+billing@example.co.uk please", "email"),
        ("card 4111 1111 1111 1111 exp 12/29", "card"),
        ("card 5500-0000-0000-0004", "card"),
        ("IBAN DE89370400440532013000", "iban"),
        ("ssn 123-45-6789", "ssn"),
        ("call +44 20 7946 0958 tomorrow", "phone"),
        ("server at 192.168.10.254 is down", "ipv4"),
        ("it answers on 10.0.0.1.", "ipv4"),
    ],
)
def test_default_rules_catch(text, rule):
    out = redact_text(text)
    assert f"[REDACTED:{rule}]" in out


@pytest.mark.parametrize(
    "text",
    [
        "order 1234567890123 shipped",  # 13 digits that fail the Luhn check
        "the meeting is at 10:30 on 2026-11-24",
        "version 1.2.3.4.5 of the tool",
        "what is 2+2?",
        "ask the sk team about it",
    ],
)
def test_ordinary_text_survives(text):
    assert redact_text(text) == text


def test_bodies_keep_their_structure_and_non_strings():
    body = {
        "model": "gpt-4o-mini",
        "temperature": 0,
        "messages": [
            {"role": "system", "content": "You help ana@example.com"},
            {"role": "user", "content": [{"type": "text", "text": "my card is 4111111111111111"}]},
        ],
        "tools": [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}],
    }
    out = redact_body(body)
    assert out["model"] == "gpt-4o-mini" and out["temperature"] == 0 and out["tools"] == body["tools"]
    assert out["messages"][0]["content"] == "You help [REDACTED:email]"
    assert out["messages"][1]["content"][0]["text"] == "my card is [REDACTED:card]"
    assert body["messages"][0]["content"] == "You help ana@example.com"  # the input is not modified


def test_custom_rules_and_invalid_patterns():
    rules = rules_from_config({"employee_id": r"\bEMP-\d{6}\b"})
    assert redact_text("EMP-123456 at ana@example.com", rules) == "[REDACTED:employee_id] at [REDACTED:email]"
    only = rules_from_config({"employee_id": r"\bEMP-\d{6}\b"}, defaults=False)
    assert redact_text("EMP-123456 at ana@example.com", only) == "[REDACTED:employee_id] at ana@example.com"
    with pytest.raises(ValueError, match="employee_id"):
        rules_from_config({"employee_id": "EMP-("})


_ALPHABET = "0123456789" * 4 + " -.+()@_/=abcdeABCDEFGHXYZ" + "skmAKIghpuorsxyeJBear"


@settings(max_examples=400)
@given(st.text(alphabet=_ALPHABET, max_size=60))
def test_a_rule_is_skipped_only_when_it_cannot_match(text):
    # The hints skip a rule's regex pass for speed; they must be necessary conditions of a match.
    for rule in DEFAULT_RULES:
        if rule.pattern.search(text):
            assert rule.hint(text, _digits(text)), (rule.name, text)

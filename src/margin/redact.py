"""Redaction of request bodies before margin retains them (``gateway.prompt_retention``). Pure, no I/O.

Every string in the body (message text, tool arguments, system prompts; keys are kept) is scanned with the
rules in order; a match becomes ``[REDACTED:<rule>]``. The default rules catch what most often leaks into
prompts; they are patterns, not a guarantee, and users add their own (a name and a regular expression).

Default rules, in order (earlier rules win where matches overlap):

* ``secret``: API keys and tokens: ``sk-...`` / ``sk-ant-...`` / ``mk-...`` keys, AWS access key ids
  (``AKIA...``), GitHub tokens (``ghp_...``, ``github_pat_...``), Slack tokens (``xox?-...``), JWTs, and the value
  after ``Bearer``;
* ``email``: addresses such as ``ana@example.com``;
* ``card``: 13 to 19 digits, optionally grouped by spaces or dashes, that pass the Luhn check (so order
  numbers and timestamps mostly survive);
* ``iban``: international bank account numbers (two letters, two check digits, 11 to 30 characters);
* ``ssn``: US social security numbers written ``123-45-6789``;
* ``phone``: international numbers (``+`` and 8 to 15 digits, spaces, dots, dashes or parentheses between);
* ``ipv4``: dotted-quad addresses.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["DEFAULT_RULES", "RedactionRule", "redact_body", "redact_text", "rules_from_config"]


@dataclass(frozen=True)
class RedactionRule:
    """A named pattern; ``check`` (optional) must accept the matched text for it to be redacted. ``hint``
    (optional, ``(text, digit count) -> bool``) is a cheap necessary condition: False skips the pattern."""

    name: str
    pattern: re.Pattern[str]
    check: Any = None
    hint: Any = None


def _luhn(text: str) -> bool:
    digits = [int(c) for c in text if c.isdigit()]
    if not 13 <= len(digits) <= 19:
        return False
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


# Cheap necessary conditions (simple patterns scan fast; the rules' word boundaries and lookbehinds do not).
_FIVE_DIGITS = re.compile(r"\d[ \-]?\d[ \-]?\d[ \-]?\d[ \-]?\d").search
_IBAN_START = re.compile(r"[A-Z]{2}\d{2}").search
_DOTTED_DIGITS = re.compile(r"\d\.\d").search
_SECRET_MARKERS = ("sk-", "mk-", "AKIA", "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_", "xox", "eyJ", "Bearer ")


DEFAULT_RULES: tuple[RedactionRule, ...] = (
    RedactionRule(
        "secret",
        re.compile(
            r"\b(?:sk-(?:ant-|proj-)?[A-Za-z0-9_\-]{16,}|mk-[A-Za-z0-9_\-]{16,}|AKIA[0-9A-Z]{16}"
            r"|gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{40,}|xox[abprs]-[A-Za-z0-9\-]{10,}"
            r"|eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,})"
            r"|(?<=Bearer )[A-Za-z0-9._~+/\-]{16,}=*",
        ),
        hint=lambda text, digits: any(marker in text for marker in _SECRET_MARKERS),
    ),
    RedactionRule(
        "email",
        re.compile(r"\b[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}\b"),
        hint=lambda text, digits: "@" in text,
    ),
    RedactionRule(
        "card",
        re.compile(r"\b\d(?:[ \-]?\d){12,18}\b"),
        _luhn,
        hint=lambda text, digits: digits >= 13 and _FIVE_DIGITS(text),
    ),
    RedactionRule(
        "iban",
        re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b"),
        hint=lambda text, digits: digits >= 2 and _IBAN_START(text),
    ),
    RedactionRule("ssn", re.compile(r"\b\d{3}-\d{2}-\d{4}\b"), hint=lambda text, digits: digits >= 9 and "-" in text),
    RedactionRule(
        "phone",
        re.compile(r"(?<![\w+])\+\d(?:[ .\-()]*\d){7,14}\b"),
        hint=lambda text, digits: digits >= 8 and "+" in text,
    ),
    # Not inside a longer dotted number (a version such as 1.2.3.4.5); a sentence's full stop may follow.
    RedactionRule(
        "ipv4",
        re.compile(r"(?<![\d.])(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)(?![\d]|\.\d)"),
        hint=lambda text, digits: digits >= 4 and _DOTTED_DIGITS(text),
    ),
)


def rules_from_config(patterns: Mapping[str, str], *, defaults: bool = True) -> tuple[RedactionRule, ...]:
    """The default rules (unless ``defaults`` is False) followed by the user's ``{name: regex}``. A pattern that
    does not compile raises ValueError naming it."""
    extra = []
    for name, pattern in patterns.items():
        try:
            extra.append(RedactionRule(name, re.compile(pattern)))
        except re.error as exc:
            raise ValueError(
                f"redaction rule {name!r}: {pattern!r} is not a valid regular expression ({exc})"
            ) from None
    return (*(DEFAULT_RULES if defaults else ()), *extra)


def _digits(text: str) -> int:
    return sum(text.count(d) for d in "0123456789")  # ten C-level scans: far cheaper than one regex pass


def redact_text(text: str, rules: Sequence[RedactionRule] = DEFAULT_RULES) -> str:
    digits: int | None = None
    for rule in rules:
        if rule.hint is not None:
            if digits is None:
                digits = _digits(text)
            if not rule.hint(text, digits):
                continue  # the text cannot hold a match: skip the regex pass (~50-250 µs per 3 KB)

        def replace(match: re.Match[str], rule: RedactionRule = rule) -> str:
            if rule.check is not None and not rule.check(match.group(0)):
                return match.group(0)
            return f"[REDACTED:{rule.name}]"

        text = rule.pattern.sub(replace, text)
    return text


def redact_body(body: Any, rules: Sequence[RedactionRule] = DEFAULT_RULES) -> Any:
    """A copy of ``body`` (JSON values) with every string value redacted; keys, numbers and structure kept."""
    if isinstance(body, str):
        return redact_text(body, rules)
    if isinstance(body, Mapping):
        return {k: redact_body(v, rules) for k, v in body.items()}
    if isinstance(body, list | tuple):
        return [redact_body(v, rules) for v in body]
    return body

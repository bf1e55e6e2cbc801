"""Prompt compression: fold whitespace and drop filler phrases from message text, never from protected text.

Protected, byte for byte: fenced code blocks (```` ``` ```` or ``~~~``, an unclosed fence protects the rest of
the text), inline code (`` `...` ``), JSON objects and arrays embedded in the text, quoted text (``"..."``,
``“...”``, ``«...»``, ``„...“``, ``「...」``, ``『...』``; an unclosed double quote protects the rest of the
text; ``'...'`` and ``‘...’`` when the quote marks stand at word edges, so apostrophes are not quotes),
block-quote lines (``> ...``) and indented code lines (4 spaces or a tab).

JSON is found as balanced ``{...}``/``[...]`` groups (brackets inside JSON strings do not count), and *every*
balanced group is protected, not only those that parse: otherwise removing a filler inside a broken group
(``{"a": 1, please}``) could make it parse, and a second compression would then protect what the first
changed. Bracketed prose therefore keeps its filler.

Only message text is compressed: ``tools``/``functions`` are never passed here, and by default only system,
developer and user messages are touched (assistant turns and tool results are left as they were).

What changes, in the free text only:

* filler phrases are removed (``please``, ``could you kindly``, ``I would like you to``, ``as an AI language
  model,``, ``it is important to note that``, ``thanks in advance``, and French, German, Spanish, Portuguese
  equivalents), case-insensitively and on word boundaries; a capital letter moves to the next word
  ("Please summarize" -> "Summarize");
* a few wordy phrases are shortened (``in order to`` -> ``to``, ``due to the fact that`` -> ``because``);
* runs of spaces or tabs inside a line fold to one space, trailing spaces are removed, three or more line
  breaks become a blank line. Indentation at the start of a line is kept.

A text part whose compressed form would count more tokens is left unchanged, so compression never increases
a prompt; the transformation runs to a fixed point, so compressing twice changes nothing more.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..tokens import count_messages, count_text
from ._shape import TEXT_PART_TYPES, is_sequence, is_tool_result, role

__all__ = [
    "DEFAULT_COMPRESS_ROLES",
    "FILLER_PHRASES",
    "CompressionResult",
    "TextCompression",
    "compress_messages",
    "compress_text",
    "protected_spans",
]

DEFAULT_COMPRESS_ROLES = frozenset({"system", "developer", "user"})

# --- protected spans ---------------------------------------------------------------------------------------
_WORD = re.compile(r"\w")
_FENCE_OPEN = re.compile(r"`{3,}|~{3,}")
_BACKTICKS = re.compile(r"`+")
_LINE_PROTECTED = re.compile(r"[ \t]{0,3}>|(?: {4}|\t)[ \t]*\S")
_DOUBLE_QUOTES = {'"': '"', "“": "”", "«": "»", "„": "“", "「": "」", "『": "』"}
_SINGLE_QUOTES = {"'": "'", "‘": "’"}


def _is_word(ch: str) -> bool:
    return bool(_WORD.match(ch))


def protected_spans(text: str) -> list[tuple[int, int]]:
    """``(start, end)`` of every protected span of ``text``, in order, non-overlapping."""
    spans: list[tuple[int, int]] = []
    groups: dict[int, int] | None = None  # computed on the first bracket
    n = len(text)
    i = 0
    while i < n:
        if i == 0 or text[i - 1] == "\n":
            if _LINE_PROTECTED.match(text, i):
                end = text.find("\n", i)
                end = n if end < 0 else end
                spans.append((i, end))
                i = end
                continue
        ch = text[i]
        if ch in "`~":
            fence = _FENCE_OPEN.match(text, i)
            if fence:
                close = text.find(fence.group(), fence.end())
                if close < 0:
                    end = n
                else:
                    end = close + len(fence.group())
                    while end < n and text[end] == fence.group()[0]:
                        end += 1
                spans.append((i, end))
                i = end
                continue
            if ch == "`":
                run = _BACKTICKS.match(text, i)
                assert run is not None
                width = len(run.group())
                closing = re.compile(rf"(?<!`)`{{{width}}}(?!`)").search(text, run.end())
                if closing:
                    spans.append((i, closing.end()))
                    i = closing.end()
                else:
                    i = run.end()
                continue
        elif ch in "{[":
            if groups is None:
                groups = _bracket_groups(text)
            end = groups.get(i)
            if end is not None:
                spans.append((i, end))
                i = end
                continue
        elif ch in _DOUBLE_QUOTES:
            close = text.find(_DOUBLE_QUOTES[ch], i + 1)
            end = n if close < 0 else close + 1
            spans.append((i, end))
            i = end
            continue
        elif ch in _SINGLE_QUOTES:
            end = _single_quote_end(text, i, _SINGLE_QUOTES[ch])
            if end > 0:
                spans.append((i, end))
                i = end
                continue
        i += 1
    return spans


_CLOSERS = {"{": "}", "[": "]"}


def _bracket_groups(text: str) -> dict[int, int]:
    """Balanced ``{...}``/``[...]`` groups in one pass: opener index -> end. Inside a group, ``"`` starts a JSON
    string (brackets in it do not count); a mismatched closer abandons the open groups."""
    groups: dict[int, int] = {}
    stack: list[int] = []
    n = len(text)
    i = 0
    while i < n:
        ch = text[i]
        if ch in _CLOSERS:
            stack.append(i)
        elif ch in "}]" and stack:
            start = stack.pop()
            if _CLOSERS[text[start]] == ch:
                groups[start] = i + 1
            else:
                stack.clear()
        elif ch == '"' and stack:
            i += 1
            while i < n and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
        i += 1
    return groups


def _single_quote_end(text: str, i: int, closer: str) -> int:
    """End of a single-quoted span opening at ``i``, or -1. A quote mark opens only after a non-word character
    and before a non-space; it closes after a non-space and before a non-word character, on the same line."""
    n = len(text)
    if (i > 0 and _is_word(text[i - 1])) or i + 1 >= n or text[i + 1].isspace():
        return -1
    line_end = text.find("\n", i)
    line_end = n if line_end < 0 else line_end
    j = text.find(closer, i + 1, line_end)
    while j >= 0:
        if not text[j - 1].isspace() and (j + 1 >= n or not _is_word(text[j + 1])):
            return j + 1
        j = text.find(closer, j + 1, line_end)
    return -1


# --- filler phrases ----------------------------------------------------------------------------------------
# Removed when followed by more words (leading position). Order does not matter: longer phrases win.
FILLER_PHRASES: tuple[str, ...] = (
    # English
    "I would like you to", "I'd like you to", "I want you to", "I need you to", "I would like to ask you to",
    "I would be grateful if you could", "I would appreciate it if you could", "I was wondering if you could",
    "could you please", "can you please", "would you please", "could you kindly", "would you kindly",
    "can you kindly", "would you be so kind as to", "please kindly", "kindly", "please",
    "it is important to note that", "it's important to note that", "it is worth noting that",
    "it's worth noting that", "it should be noted that", "please note that", "needless to say,",
    "to be honest,", "as an AI language model,", "as an AI model,", "as an AI assistant,", "as an AI,",
    "as a large language model,",
    # French
    "s'il vous plaît,", "s'il te plaît,", "pourriez-vous", "pourrais-tu", "je voudrais que vous",
    "j'aimerais que vous", "je voudrais que tu", "j'aimerais que tu", "veuillez",
    "il est important de noter que",
    # German
    "könnten Sie bitte", "könntest du bitte", "bitte", "es ist wichtig zu beachten, dass",
    # Spanish and Portuguese
    "por favor,", "por favor", "es importante tener en cuenta que", "é importante notar que",
)  # fmt: skip
# Removed when they close a sentence ("Summarize it, please.").
_TRAILING_POLITE = ("please", "bitte", "por favor", "s'il vous plaît", "s'il te plaît")
# Whole sentences of thanks.
_THANKS = (
    "thanks in advance", "thank you in advance", "merci d'avance", "merci par avance", "vielen dank im voraus",
    "danke im voraus", "gracias de antemano", "gracias por adelantado", "obrigado desde já", "obrigada desde já",
)  # fmt: skip
_SHORTER: tuple[tuple[str, str], ...] = (
    ("in order to", "to"),
    ("due to the fact that", "because"),
    ("at this point in time", "now"),
    ("for the purpose of", "for"),
    ("in the event that", "if"),
    ("with regard to", "about"),
    ("with regards to", "about"),
)
# "please" and "kindly" are verbs/adverbs too: "eager to please", "it will please them", "treat them kindly".
_VERB_GUARD = "".join(
    rf"(?<!\b{w}[ \t])" for w in ("to", "not", "will", "can", "would", "could", "must", "should", "may", "did")
)


# At the start of the text or a line, or after ". ", "! ", "? ", ": ".
_SENTENCE_START = r"(?:(?<![^\n])|(?<=[.!?:][ \t]))"


def _phrase(phrase: str) -> str:
    parts = [re.escape(piece).replace("'", "['’]") for piece in phrase.split()]
    body = r"[ \t]+".join(parts)
    if phrase.lower() in ("please", "bitte"):
        body = _VERB_GUARD + body
    elif phrase.lower() == "kindly":  # mid-sentence it is an adverb of manner ("treat them kindly and ...")
        body = _SENTENCE_START + body
    return body


def _alternation(phrases: Sequence[str]) -> str:
    return "|".join(_phrase(p) for p in sorted(set(phrases), key=lambda p: (-len(p), p)))


def _first_letters(phrases: Sequence[str]) -> str:
    """A lookahead on the phrases' first letters: lets the regex engine skip most positions quickly."""
    letters = sorted({p[0].lower() for p in phrases} | {p[0].upper() for p in phrases})
    return "(?=[" + re.escape("".join(letters)) + "])"


def _build(placeholder: str) -> list[tuple[re.Pattern[str], Callable[[re.Match[str]], str]]]:
    """The substitutions, in order. ``placeholder`` stands for each protected span: a non-word, non-space
    character no pattern ever consumes."""
    p = re.escape(placeholder)
    edge = r"(?<![\w'’-])"
    flags = re.IGNORECASE
    rules: list[tuple[re.Pattern[str], Callable[[re.Match[str]], str]]] = []
    # "Please X for me." -> "X." (the seeds' pattern, kept to one sentence).
    rules.append(
        (
            re.compile(
                "(?=[pP])"
                + edge
                + rf"(?P<lead>{_VERB_GUARD}please)[ \t]+(?P<body>[^\W_][^\n.!?{p}]{{0,200}}?)[ \t]+for[ \t]+me"
                r"(?=[.!?\n]|\Z)",
                flags,
            ),
            lambda m: _capitalize_like(m.group("lead"), m.group("body")),
        )
    )
    rules.append(
        (
            re.compile(
                _first_letters(FILLER_PHRASES)
                + edge
                + rf"(?P<lead>{_alternation(FILLER_PHRASES)})(?:[ \t]*,)?[ \t]+(?=[^\W_]|{p})",
                flags,
            ),
            lambda m: "",
        )
    )
    rules.append(
        (
            re.compile(rf"(?:[ \t]*,[ \t]*|[ \t]+)(?:{_alternation(_TRAILING_POLITE)})(?=[.!?…]|\n|\Z)", flags),
            lambda m: "",
        )
    )
    rules.append(
        (
            re.compile(
                _first_letters(_THANKS)
                + edge
                + rf"(?:{_alternation(_THANKS)})(?:[ \t]+for[ \t]+your[ \t]+help)?(?![\w'’-])[.!]*+[ \t]*+"
                rf"(?=\n|[^\W_]|{p}|\Z)",  # never leave spaces behind: they could become an indent
                flags,
            ),
            lambda m: "",
        )
    )
    shorter = {" ".join(long.split()): short for long, short in _SHORTER}
    rules.append(
        (
            re.compile(_first_letters(list(shorter)) + edge + rf"(?:{_alternation(list(shorter))})(?![\w'’-])", flags),
            lambda m: _capitalize_like(m.group(0), shorter[" ".join(m.group(0).lower().split())]),
        )
    )
    return rules


def _capitalize_like(lead: str, text: str) -> str:
    if lead[:1].isupper() and text[:1].islower():
        return text[0].upper() + text[1:]
    return text


_WS_RUN = re.compile(r"(?<=\S)[ \t]{2,}(?=\S)")
_WS_TRAILING = re.compile(r"[ \t]+(?=\n|\Z)")
_BLANK_LINES = re.compile(r"\n(?:[ \t]*\n){2,}")
_RULES_CACHE: dict[str, list[tuple[re.Pattern[str], Callable[[re.Match[str]], str]]]] = {}


def _rules(placeholder: str) -> list[tuple[re.Pattern[str], Callable[[re.Match[str]], str]]]:
    rules = _RULES_CACHE.get(placeholder)
    if rules is None:
        rules = _RULES_CACHE[placeholder] = _build(placeholder)
    return rules


def _placeholder_for(text: str) -> str:
    for code in range(0xE000, 0xF900):
        if chr(code) not in text:
            return chr(code)
    raise ValueError("text uses every private-use character; cannot compress it")  # pragma: no cover


def _one_pass(text: str) -> tuple[str, int]:
    spans = protected_spans(text)
    placeholder = _placeholder_for(text)
    pieces: list[str] = []
    last = 0
    for start, end in spans:
        pieces.append(text[last:start])
        last = end
    pieces.append(text[last:])
    work = placeholder.join(pieces)
    changes = 0
    while True:
        before = changes
        for pattern, replace in _rules(placeholder):
            work, count = _subn(pattern, replace, work, placeholder)
            changes += count
        for pattern, replacement in ((_WS_RUN, " "), (_WS_TRAILING, ""), (_BLANK_LINES, "\n\n")):
            work, count = pattern.subn(replacement, work)
            changes += count
        if changes == before:
            break
    parts = work.split(placeholder)
    if len(parts) != len(spans) + 1:  # a rule consumed a placeholder: a bug; never corrupt the text
        return text, 0
    out = [parts[0]]
    for (start, end), part in zip(spans, parts[1:], strict=True):
        out.append(text[start:end])
        out.append(part)
    return "".join(out), changes


# Characters that decide where protected spans start and end. A removal never leaves two of them (or two
# protected spans) touching: "`a`please `b`" becomes "`a` `b`", not "`a``b`", which would parse differently.
_DELIMITERS = frozenset("`~'\"“”‘’«»„「」『』{}[]>")


def _subn(
    pattern: re.Pattern[str], replace: Callable[[re.Match[str]], str], text: str, placeholder: str
) -> tuple[str, int]:
    """Like ``pattern.subn`` but counts only matches whose replacement differs, moves a removed capital letter
    onto the next word, and keeps delimiters apart (see :data:`_DELIMITERS`)."""
    count = 0
    out: list[str] = []
    last = 0
    for m in pattern.finditer(text):
        new = replace(m)
        if new == m.group(0):
            continue
        if new == "" and 0 < m.start() and m.end() < len(text):
            before, after = text[m.start() - 1], text[m.end()]
            if (before == placeholder or before in _DELIMITERS) and (after == placeholder or after in _DELIMITERS):
                new = " "
                if new == m.group(0):
                    continue
        out.append(text[last : m.start()])
        last = m.end()
        if new == "" and "lead" in pattern.groupindex and m.group("lead")[:1].isupper():
            rest = text[last : last + 1]
            if rest.islower():
                new = rest.upper()
                last += 1
        out.append(new)
        count += 1
    if not count:
        return text, 0
    out.append(text[last:])
    return "".join(out), count


@dataclass(frozen=True)
class TextCompression:
    text: str
    changes: int


_MAX_PASSES = 8


def compress_text(text: str) -> TextCompression:
    """Compress one text (no token guard; :func:`compress_messages` adds it). Runs to a fixed point."""
    changes = 0
    for _ in range(_MAX_PASSES):
        new, count = _one_pass(text)
        if new == text:
            break
        text, changes = new, changes + count
    return TextCompression(text, changes)


# --- messages ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CompressionResult:
    """The compressed messages (same structure; unchanged messages are the same objects), the prompt tokens
    before and after (:func:`~margin.tokens.count_messages`), and how many edits were made."""

    messages: list[Any]
    tokens_before: int
    tokens_after: int
    changes: int

    @property
    def tokens_saved(self) -> int:
        return self.tokens_before - self.tokens_after


def _compress_piece(text: str, model: str) -> tuple[str, int]:
    result = compress_text(text)
    if result.text == text:
        return text, 0
    if count_text(result.text, model).tokens > count_text(text, model).tokens:
        return text, 0
    return result.text, result.changes


def compress_messages(
    messages: Sequence[Mapping[str, Any]],
    *,
    model: str,
    roles: Collection[str] = DEFAULT_COMPRESS_ROLES,
) -> CompressionResult:
    """Compress the text of ``messages`` whose role is in ``roles`` (OpenAI or Anthropic shapes: string
    content or lists of parts; only ``text``/``input_text`` parts change). Tool results, images, names,
    ``tool_calls`` and every other key are kept as they are. The input is never mutated.

    For Anthropic's top-level ``system``, compress ``[{"role": "system", "content": system}]`` and take the
    content back."""
    out: list[Any] = []
    changes = 0
    for message in messages:
        if not isinstance(message, Mapping) or role(message) not in roles or is_tool_result(message):
            out.append(message)
            continue
        content = message.get("content")
        if isinstance(content, str):
            new_text, count = _compress_piece(content, model)
            out.append({**message, "content": new_text} if count else message)
            changes += count
        elif is_sequence(content):
            parts: list[Any] = []
            message_changes = 0
            for part in content:
                if isinstance(part, str):
                    new_text, count = _compress_piece(part, model)
                    parts.append(new_text if count else part)
                elif (
                    isinstance(part, Mapping)
                    and part.get("type") in TEXT_PART_TYPES
                    and isinstance(part.get("text"), str)
                ):
                    new_text, count = _compress_piece(part["text"], model)
                    parts.append({**part, "text": new_text} if count else part)
                else:
                    parts.append(part)
                    count = 0
                message_changes += count
            out.append({**message, "content": parts} if message_changes else message)
            changes += message_changes
        else:
            out.append(message)
    before = count_messages(messages, model).tokens
    after = count_messages(out, model).tokens if changes else before
    return CompressionResult(messages=out, tokens_before=before, tokens_after=after, changes=changes)

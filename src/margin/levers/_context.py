"""Context management: make a conversation fit an input-token budget by dropping whole middle turns.

A *turn* starts at a user message (not one that only carries tool results) and runs to the next such user
message: the user's words, the assistant's reply, its tool calls and their results. Dropping whole turns
means a tool call is never separated from its result. System and developer messages are always kept, where
they are; the first ``keep_first`` turns and the last ``keep_recent`` turns are never dropped. The oldest
droppable turns go first, as few as needed, and a one-line note takes their place, at the head of the next user
message (so user and assistant turns still alternate, as Anthropic's API expects).

When a summary of the dropped turns is wanted, :func:`fit_context` with ``summarize=True`` leaves room for it
and says ``summary_needed``; the gateway sends :func:`summary_request` to a cheap model and splices the answer in
with :func:`with_summary`. Everything here is pure: no calls are made.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ..tokens import count_messages
from ._shape import (
    SYSTEM_ROLES,
    content_texts,
    is_sequence,
    is_tool_result,
    message_text,
    role,
)

__all__ = [
    "DEFAULT_KEEP_RECENT",
    "DEFAULT_SUMMARY_INSTRUCTIONS",
    "DEFAULT_SUMMARY_MAX_TOKENS",
    "ContextResult",
    "fit_context",
    "summary_request",
    "turns",
    "with_summary",
]

DEFAULT_KEEP_RECENT = 2
DEFAULT_SUMMARY_MAX_TOKENS = 256
DEFAULT_SUMMARY_INSTRUCTIONS = (
    "Summarize the conversation excerpt below in at most 8 short bullet points. Keep facts, decisions, names, "
    "numbers, open questions and the user's preferences; drop greetings and small talk. Write only the bullets."
)

Method = Literal["none", "dropped_middle", "summary_needed"]


@dataclass(frozen=True)
class ContextResult:
    """``messages`` to send; prompt tokens before and after; how the fit was made; the indices (into the
    original list) of the dropped messages; whether the result fits the budget (False when even the kept
    minimum, system prompts + first/recent turns, is over it)."""

    messages: list[Any]
    tokens_before: int
    tokens_after: int
    method: Method
    dropped: list[int] = field(default_factory=list)
    fits: bool = True


def turns(messages: Sequence[Mapping[str, Any]]) -> list[list[int]]:
    """Indices of the non-system messages grouped into turns (see the module docstring)."""
    grouped: list[list[int]] = []
    for i, message in enumerate(messages):
        if role(message) in SYSTEM_ROLES:
            continue
        if not grouped or (role(message) == "user" and not is_tool_result(message)):
            grouped.append([])
        grouped[-1].append(i)
    return grouped


def _note(count: int) -> str:
    noun = "message" if count == 1 else "messages"
    return f"[{count} earlier {noun} omitted to fit the context window.]"


def _prepend(message: Mapping[str, Any], text: str) -> dict[str, Any]:
    """``message`` with ``text`` (and a blank line) before its content; a new dict, parts list copied."""
    content = message.get("content")
    if isinstance(content, str):
        return {**message, "content": f"{text}\n\n{content}"}
    if is_sequence(content):
        return {**message, "content": [{"type": "text", "text": text}, *content]}
    return {**message, "content": text}


def _without(messages: Sequence[Any], dropped: Sequence[int], note: str) -> list[Any]:
    """``messages`` minus ``dropped``, with ``note`` at the head of the first user turn after the gap.

    Merging the note into that user message (instead of adding a message) keeps user and assistant turns
    alternating, which Anthropic's API expects. Without such a message the note becomes a user message of
    its own where the gap was."""
    if not dropped:
        return list(messages)
    gone = set(dropped)
    first = min(gone)
    out: list[Any] = []
    placed = False
    for i, message in enumerate(messages):
        if i in gone:
            continue
        if not placed and i > first and role(message) == "user" and not is_tool_result(message):
            out.append(_prepend(message, note))
            placed = True
        else:
            out.append(message)
    if not placed:
        out.insert(sum(1 for i in range(first) if i not in gone), {"role": "user", "content": note})
    return out


def fit_context(
    messages: Sequence[Mapping[str, Any]],
    *,
    model: str,
    max_input_tokens: int,
    keep_recent: int = DEFAULT_KEEP_RECENT,
    keep_first: int = 0,
    summarize: bool = False,
    summary_max_tokens: int = DEFAULT_SUMMARY_MAX_TOKENS,
) -> ContextResult:
    """Fit ``messages`` into ``max_input_tokens`` (as :func:`~margin.tokens.count_messages` counts them for
    ``model``; leave tool definitions out of the budget yourself) by dropping the fewest oldest middle turns.

    * Fits already: ``method="none"``, the messages unchanged.
    * Otherwise: ``method="dropped_middle"`` with a placeholder note where the turns were; with
      ``summarize=True`` the fit leaves ``summary_max_tokens`` spare for the summary and the method is
      ``summary_needed`` (the returned messages, with the note, are still a usable fallback).
    * Cannot fit (only system prompts, the first ``keep_first`` and last ``keep_recent`` turns would remain and
      they are still too long): every droppable turn is dropped and ``fits`` is False.
    """
    if isinstance(max_input_tokens, bool) or not isinstance(max_input_tokens, int) or max_input_tokens <= 0:
        raise ValueError(f"max_input_tokens must be a positive integer, got {max_input_tokens!r}.")
    if keep_recent < 1:
        raise ValueError("keep_recent must be at least 1: the last turn holds the request being answered.")
    if keep_first < 0:
        raise ValueError("keep_first must be 0 or more.")
    if summarize and not 0 <= summary_max_tokens < max_input_tokens:
        raise ValueError("summary_max_tokens must be at least 0 and below max_input_tokens.")

    before = count_messages(messages, model).tokens
    if before <= max_input_tokens:
        return ContextResult(list(messages), before, before, "none")

    grouped = turns(messages)
    droppable = grouped[keep_first : max(keep_first, len(grouped) - keep_recent)]
    if not droppable:
        return ContextResult(list(messages), before, before, "none", fits=False)
    budget = max_input_tokens - (summary_max_tokens if summarize else 0)

    def candidate(k: int) -> tuple[list[Any], list[int], int]:
        dropped = [i for turn in droppable[:k] for i in turn]
        kept = _without(messages, dropped, _note(len(dropped)))
        return kept, dropped, count_messages(kept, model).tokens

    # Tokens fall strictly as more turns are dropped (a dropped message outweighs a longer count in the
    # note), so the fewest turns that fit are found by bisection.
    low, high = 1, len(droppable)
    best = candidate(high)
    if best[2] > budget:
        return ContextResult(best[0], before, best[2], "dropped_middle", best[1], fits=False)
    while low < high:
        mid = (low + high) // 2
        attempt = candidate(mid)
        if attempt[2] <= budget:
            best, high = attempt, mid
        else:
            low = mid + 1
    kept, dropped, after = best
    return ContextResult(kept, before, after, "summary_needed" if summarize else "dropped_middle", dropped)


# --- summaries ---------------------------------------------------------------------------------------------
def _clip(text: str, limit: int | None) -> str:
    if limit is None or len(text) <= limit:
        return text
    return text[:limit] + " […]"


def _render(message: Mapping[str, Any], limit: int | None) -> str:
    """One message as transcript text: ``role: text``, tool calls and results spelled out."""
    lines: list[str] = []
    text = message_text(message)
    if text:
        lines.append(text)
    calls = message.get("tool_calls")
    if is_sequence(calls):
        for call in calls:
            function = call.get("function") if isinstance(call, Mapping) else None
            if isinstance(function, Mapping):
                lines.append(f"[called {function.get('name')}({function.get('arguments', '')})]")
    content = message.get("content")
    if is_sequence(content):
        for block in content:
            if not isinstance(block, Mapping):
                continue
            if block.get("type") == "tool_use":
                arguments = json.dumps(block.get("input", {}), ensure_ascii=False, sort_keys=True)
                lines.append(f"[called {block.get('name')}({arguments})]")
            elif block.get("type") == "tool_result":
                lines.append("[tool result] " + "\n".join(content_texts(block.get("content"))))
            elif block.get("type") not in ("text", "input_text", None):
                lines.append(f"[{block.get('type')}]")
    label = role(message) or "message"
    if label in ("tool", "function"):
        label = "tool result"
    return f"{label}: {_clip(chr(10).join(lines), limit)}"


def summary_request(
    dropped_messages: Sequence[Mapping[str, Any]],
    *,
    model: str | None = None,
    max_tokens: int = DEFAULT_SUMMARY_MAX_TOKENS,
    instructions: str = DEFAULT_SUMMARY_INSTRUCTIONS,
    max_chars_per_message: int | None = 4000,
) -> dict[str, Any]:
    """An OpenAI chat-completions body asking a (cheap) model to summarize ``dropped_messages``: the
    instructions as the system message, the messages as one transcript, ``temperature`` 0. ``model`` is
    included only when given; each message is clipped to ``max_chars_per_message`` characters (None: never)."""
    transcript = "\n\n".join(_render(m, max_chars_per_message) for m in dropped_messages)
    body: dict[str, Any] = {
        "messages": [
            {"role": "system", "content": instructions},
            {"role": "user", "content": transcript},
        ],
        "max_tokens": max_tokens,
        "temperature": 0,
    }
    if model is not None:
        body = {"model": model, **body}
    return body


def with_summary(messages: Sequence[Mapping[str, Any]], dropped: Sequence[int], summary_text: str) -> list[Any]:
    """The original ``messages`` without the ``dropped`` indices (as :func:`fit_context` reported them), with
    ``summary_text`` at the head of the next user message, where the placeholder note would have been."""
    for i in dropped:
        if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < len(messages):
            raise ValueError(f"dropped index {i!r} is not a position in the {len(messages)} messages.")
    count = len(set(dropped))
    noun = "message" if count == 1 else "messages"
    summary = f"[Summary of {count} earlier {noun}, omitted to fit the context window:]\n{summary_text.strip()}"
    return _without(messages, dropped, summary)

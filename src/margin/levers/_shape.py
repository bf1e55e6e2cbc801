"""Message shapes the levers read: OpenAI chat messages and Anthropic messages, never mutated.

Both shapes carry ``role`` and ``content``; content is a string or a list of parts. Text parts are
``{"type": "text", "text": ...}`` (OpenAI also ``input_text``). Tool calls are OpenAI ``tool_calls`` on an
assistant message answered by ``role: "tool"`` messages (``tool_call_id``), or Anthropic ``tool_use`` blocks
answered by ``tool_result`` blocks (``tool_use_id``) inside the next user message.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

TEXT_PART_TYPES = frozenset({"text", "input_text"})
SYSTEM_ROLES = frozenset({"system", "developer"})


def is_sequence(value: object) -> bool:
    """A list-like value that is not a string or bytes."""
    return isinstance(value, Sequence) and not isinstance(value, str | bytes | bytearray)


def content_texts(content: object) -> Iterator[str]:
    """The text pieces of a message's content: the string itself, or each text part's ``text``."""
    if isinstance(content, str):
        yield content
    elif is_sequence(content):
        for part in content:  # type: ignore[union-attr]
            if isinstance(part, str):
                yield part
            elif isinstance(part, Mapping) and part.get("type") in TEXT_PART_TYPES:
                text = part.get("text")
                if isinstance(text, str):
                    yield text


def message_text(message: Mapping[str, Any]) -> str:
    """All text of one message, pieces joined by newlines (tool results and images contribute nothing)."""
    return "\n".join(content_texts(message.get("content")))


def system_text(system: object) -> str:
    """Anthropic's top-level ``system``: a string or a list of text blocks."""
    return "\n".join(content_texts(system)) if system is not None else ""


def role(message: Mapping[str, Any]) -> str:
    value = message.get("role")
    return value if isinstance(value, str) else ""


def _blocks(message: Mapping[str, Any], block_type: str) -> Iterator[Mapping[str, Any]]:
    content = message.get("content")
    if is_sequence(content):
        for part in content:
            if isinstance(part, Mapping) and part.get("type") == block_type:
                yield part


def is_tool_result(message: Mapping[str, Any]) -> bool:
    """A message that answers tool calls: OpenAI ``tool``/``function`` roles, or an Anthropic user message
    carrying ``tool_result`` blocks."""
    if role(message) in ("tool", "function"):
        return True
    return role(message) == "user" and any(True for _ in _blocks(message, "tool_result"))


def tool_call_ids(message: Mapping[str, Any]) -> set[str]:
    """Ids of the tool calls an assistant message makes (OpenAI ``tool_calls``, Anthropic ``tool_use``)."""
    ids: set[str] = set()
    calls = message.get("tool_calls")
    if is_sequence(calls):
        for call in calls:
            if isinstance(call, Mapping) and isinstance(call.get("id"), str):
                ids.add(call["id"])
    for block in _blocks(message, "tool_use"):
        if isinstance(block.get("id"), str):
            ids.add(block["id"])
    return ids


def tool_result_ids(message: Mapping[str, Any]) -> set[str]:
    """Ids of the tool calls a message answers (OpenAI ``tool_call_id``, Anthropic ``tool_use_id``)."""
    ids: set[str] = set()
    if role(message) == "tool" and isinstance(message.get("tool_call_id"), str):
        ids.add(message["tool_call_id"])
    for block in _blocks(message, "tool_result"):
        if isinstance(block.get("tool_use_id"), str):
            ids.add(block["tool_use_id"])
    return ids

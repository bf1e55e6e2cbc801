"""What a semantic-cache lookup compares: an embedded text, and a fingerprint that must match exactly.

The split (one decision, used by every lookup):

* **Fingerprint (exact).** sha256 over a canonical JSON of the model, the system prompt (a ``system``
  argument plus every ``system``/``developer`` message), the tool definitions and ``tool_choice``, every
  request parameter that can change the answer (temperature, top_p, max_tokens, seed, stop, response
  format, ... : every parameter except a short list that cannot, such as ``stream`` or ``user``), and, in
  the default ``history="exact"`` mode, every earlier turn of the conversation (text whitespace-normalized,
  tool calls and tool results included). Two requests share cache entries only when all of that is equal,
  so the same words under another system prompt, model, temperature or conversation never hit.
* **Semantic text (embedded, then verified).** In ``"exact"`` mode, only the final user turn: the rest of
  the conversation already matched exactly. In ``history="embedded"`` mode the earlier turns leave the
  fingerprint and go into the text instead (final user turn first, then earlier turns newest first, so an
  embedding model's token limit cuts the oldest); the verification gate then compares the whole rendered
  conversation, so a different name, number or negation anywhere in it refuses the hit. This serves
  reworded conversations that exact matching never can, at a measured risk (``bench/cache``).

Either way the whole conversation is compared; only the final user turn is ever compared loosely in
``"exact"`` mode. A request whose last message is not a user turn (a tool result, an assistant prefill)
is not cacheable: :func:`semantic_text` returns ``None``.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any, Literal

__all__ = ["History", "context_fingerprint", "message_text", "semantic_text"]

History = Literal["exact", "embedded"]
FINGERPRINT_VERSION = 1

# Request fields that cannot change the answer's content. Everything else is part of the fingerprint.
_IGNORED_PARAMS = frozenset(
    {"messages", "model", "system", "tools", "stream", "stream_options", "user", "metadata", "store", "service_tier"}
)
_SYSTEM_ROLES = frozenset({"system", "developer"})
_WS = re.compile(r"\s+")


def _norm(text: str) -> str:
    return _WS.sub(" ", unicodedata.normalize("NFC", text)).strip()


def message_text(content: Any) -> str:
    """The text of a message's content: a string, or the text of OpenAI/Anthropic content parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return _norm(content)
    if isinstance(content, Sequence):
        texts = []
        for part in content:
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, Mapping) and isinstance(part.get("text"), str):
                texts.append(part["text"])
        return _norm(" ".join(texts))
    return _norm(str(content))


def _canonical(value: Any) -> Any:
    """A JSON-safe, order-stable form: strings normalized, dict keys sorted by json.dumps."""
    if isinstance(value, str):
        return _norm(value)
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return repr(value)


def _split(messages: Sequence[Mapping[str, Any]]) -> tuple[list[Any], list[Mapping[str, Any]]]:
    system = [_canonical(m.get("content")) for m in messages if m.get("role") in _SYSTEM_ROLES]
    turns = [m for m in messages if m.get("role") not in _SYSTEM_ROLES]
    return system, turns


def _is_user_turn(message: Mapping[str, Any] | None) -> bool:
    return message is not None and message.get("role") == "user" and bool(message_text(message.get("content")))


def semantic_text(
    messages: Sequence[Mapping[str, Any]], *, history: History = "exact", max_chars: int = 4000
) -> str | None:
    """The text to embed and verify, or ``None`` when the request is not cacheable.

    ``"exact"``: the final user turn. ``"embedded"``: the final user turn, then the earlier turns newest
    first as ``role: text`` lines (``max_chars`` bounds the result; the gate sees this same text).
    """
    _, turns = _split(messages)
    if not turns or not _is_user_turn(turns[-1]):
        return None
    last = message_text(turns[-1].get("content"))
    if history == "exact":
        return last
    if history != "embedded":
        raise ValueError(f"history must be 'exact' or 'embedded', not {history!r}")
    lines = [last]
    size = len(last)
    for m in reversed(turns[:-1]):
        text = message_text(m.get("content"))
        if not text:
            continue
        line = f"{m.get('role', '')}: {text}"
        if size + len(line) + 1 > max_chars:
            break
        lines.append(line)
        size += len(line) + 1
    return "\n".join(lines)


def context_fingerprint(
    model: str,
    messages: Sequence[Mapping[str, Any]],
    *,
    system: Any = None,
    tools: Any = None,
    params: Mapping[str, Any] | None = None,
    history: History = "exact",
) -> str:
    """sha256 hex of everything that must match exactly for two requests to share a cached answer.

    ``params`` is the rest of the request body (temperature, top_p, max_tokens, tool_choice, ...); fields
    that cannot change the answer (stream, user, metadata, ...) are dropped. ``system`` is a top-level
    system prompt (Anthropic style); system/developer messages are taken from ``messages`` as well.
    """
    if history not in ("exact", "embedded"):
        raise ValueError(f"history must be 'exact' or 'embedded', not {history!r}")
    sys_msgs, turns = _split(messages)
    kept = {k: _canonical(v) for k, v in (params or {}).items() if k not in _IGNORED_PARAMS and v is not None}
    earlier = turns[:-1] if turns and _is_user_turn(turns[-1]) else turns
    doc: dict[str, Any] = {
        "v": FINGERPRINT_VERSION,
        "history": history,
        "model": _norm(model),
        "system": [_canonical(system), *sys_msgs] if system is not None else sys_msgs,
        "tools": _canonical(tools) if tools is not None else None,
        "params": kept,
    }
    if history == "exact":
        doc["turns"] = [{k: _canonical(v) for k, v in m.items()} for m in earlier]
    blob = json.dumps(doc, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()

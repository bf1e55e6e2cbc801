"""What a semantic-cache lookup compares: an embedded text, and a fingerprint that must match exactly.

The split (one decision, used by every lookup):

* **Fingerprint (exact).** sha256 over a canonical JSON of the model, the system prompt (a ``system``
  argument plus every ``system``/``developer`` message), the tool definitions, every request parameter
  that can change the answer (temperature, top_p, max_tokens, seed, stop, tool_choice, response format,
  ...: every parameter except a short list that cannot, such as ``stream`` or ``user``), and every earlier
  turn of the conversation (text whitespace-normalized; tool calls and tool results included). Two
  requests share cache entries only when all of that is equal, so the same words under another system
  prompt, model, temperature or conversation never hit.
* **Semantic text (embedded, then verified).** The final user turn only: the rest of the conversation
  has already matched exactly.

So the whole conversation is compared, and only its last user turn loosely. Embedding the earlier turns
instead was measured and rejected (``bench/cache``, fow-cache's conversation pairs): a reworded or
chattier history almost never passes the verification gate, while a swapped detail deep in a long
history does not move the embedding enough, so it served few right answers and many wrong ones; and
comparing only the last message, as popular caches do, serves "cancel it" from one chat in another. A
request whose last message is not a user turn (a tool result, an assistant prefill) is not cacheable:
:func:`semantic_text` returns ``None``.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["context_fingerprint", "message_text", "semantic_key", "semantic_text"]

FINGERPRINT_VERSION = 1

# Request fields that cannot change an answer's content (transport and bookkeeping): left out of the exact
# cache's key and of this fingerprint alike.
TRANSPORT_FIELDS = frozenset({"stream", "stream_options", "user", "metadata", "store", "service_tier"})
# The fingerprint also leaves out what it takes separately (model, system, tools) and what is embedded.
_IGNORED_PARAMS = TRANSPORT_FIELDS | {"messages", "model", "system", "tools"}
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


def semantic_text(messages: Sequence[Mapping[str, Any]]) -> str | None:
    """The final user turn's text (to embed and verify), or ``None`` when the request is not cacheable."""
    _, turns = _split(messages)
    if not turns or not _is_user_turn(turns[-1]):
        return None
    return message_text(turns[-1].get("content"))


def context_fingerprint(
    model: str,
    messages: Sequence[Mapping[str, Any]],
    *,
    system: Any = None,
    tools: Any = None,
    params: Mapping[str, Any] | None = None,
) -> str:
    """sha256 hex of everything that must match exactly for two requests to share a cached answer.

    ``params`` is the rest of the request body (temperature, top_p, max_tokens, tool_choice, ...); fields
    that cannot change the answer (stream, user, metadata, ...) are dropped. ``system`` is a top-level
    system prompt (Anthropic style); system/developer messages are taken from ``messages`` as well.
    """
    sys_msgs, turns = _split(messages)
    kept = {k: _canonical(v) for k, v in (params or {}).items() if k not in _IGNORED_PARAMS and v is not None}
    earlier = turns[:-1] if turns and _is_user_turn(turns[-1]) else turns
    doc = {
        "v": FINGERPRINT_VERSION,
        "model": _norm(model),
        "system": [_canonical(system), *sys_msgs] if system is not None else sys_msgs,
        "tools": _canonical(tools) if tools is not None else None,
        "params": kept,
        "turns": [{k: _canonical(v) for k, v in m.items()} for m in earlier],
    }
    blob = json.dumps(doc, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def semantic_key(body: Mapping[str, Any]) -> tuple[str, str] | None:
    """``(context fingerprint, final user turn)`` of a chat request body, as the semantic cache partitions and
    embeds it, or ``None`` when the request has no final user turn to match on."""
    messages = body.get("messages") if isinstance(body.get("messages"), list) else []
    text = semantic_text(messages)
    if not text:
        return None
    fingerprint = context_fingerprint(
        str(body.get("model")),
        messages,
        system=body.get("system"),
        tools=body.get("tools"),
        params={k: v for k, v in body.items() if k not in ("model", "messages", "system", "tools")},
    )
    return fingerprint, text

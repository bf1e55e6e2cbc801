"""A stored (non-streamed) answer replayed as a stream, in the client's wire format.

Used for cache hits on streaming requests: the client gets the events its SDK expects (OpenAI
``chat.completion.chunk`` objects ending in ``data: [DONE]``; Anthropic ``message_start`` ...
``message_stop``), built from the cached JSON body. Text is sent in a few deltas rather than one, so clients
that render incrementally behave as usual.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import orjson

from .providers.base import SSEEvent
from .providers.sse import encode_sse

__all__ = ["replay_anthropic", "replay_openai"]

_PIECE = 64  # characters per text delta


def _pieces(text: str) -> Iterator[str]:
    for start in range(0, len(text), _PIECE):
        yield text[start : start + _PIECE]


def _data(value: Any) -> bytes:
    return encode_sse(SSEEvent(data=orjson.dumps(value).decode()))


def replay_openai(body: Mapping[str, Any], *, include_usage: bool) -> bytes:
    """A chat.completion body as the chunk stream OpenAI would have sent."""
    base = {
        "id": body.get("id", "chatcmpl-cached"),
        "object": "chat.completion.chunk",
        "created": body.get("created", 0),
        "model": body.get("model", ""),
    }
    if body.get("system_fingerprint"):
        base["system_fingerprint"] = body["system_fingerprint"]
    out: list[bytes] = []

    def chunk(choices: list[dict[str, Any]], **extra: Any) -> None:
        out.append(_data({**base, "choices": choices, **extra}))

    for choice in body.get("choices") or []:
        index = choice.get("index", 0)
        message = choice.get("message") or {}
        chunk(
            [
                {
                    "index": index,
                    "delta": {"role": message.get("role", "assistant"), "content": ""},
                    "finish_reason": None,
                }
            ]
        )
        for piece in _pieces(message.get("content") or ""):
            chunk([{"index": index, "delta": {"content": piece}, "finish_reason": None}])
        for position, call in enumerate(message.get("tool_calls") or []):
            function = call.get("function") or {}
            delta = {
                "tool_calls": [
                    {
                        "index": position,
                        "id": call.get("id"),
                        "type": call.get("type", "function"),
                        "function": {"name": function.get("name"), "arguments": function.get("arguments", "")},
                    }
                ]
            }
            chunk([{"index": index, "delta": delta, "finish_reason": None}])
        chunk([{"index": index, "delta": {}, "finish_reason": choice.get("finish_reason", "stop")}])
    if include_usage and body.get("usage") is not None:
        chunk([], usage=body["usage"])
    out.append(encode_sse(SSEEvent(data="[DONE]")))
    return b"".join(out)


def _event(name: str, value: Mapping[str, Any]) -> bytes:
    return encode_sse(SSEEvent(event=name, data=orjson.dumps(value).decode()))


def replay_anthropic(body: Mapping[str, Any]) -> bytes:
    """A Messages API body as the event stream Anthropic would have sent."""
    usage = dict(body.get("usage") or {})
    start_usage = {k: v for k, v in usage.items() if k != "output_tokens"}
    start_usage["output_tokens"] = 1
    message = {
        "id": body.get("id", "msg_cached"),
        "type": "message",
        "role": "assistant",
        "model": body.get("model", ""),
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": start_usage,
    }
    out = [_event("message_start", {"type": "message_start", "message": message})]
    for index, block in enumerate(body.get("content") or []):
        kind = block.get("type")
        if kind == "text":
            out.append(
                _event(
                    "content_block_start",
                    {"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}},
                )
            )
            for piece in _pieces(block.get("text") or ""):
                out.append(
                    _event(
                        "content_block_delta",
                        {"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": piece}},
                    )
                )
        elif kind == "tool_use":
            start = {"type": "tool_use", "id": block.get("id"), "name": block.get("name"), "input": {}}
            out.append(
                _event("content_block_start", {"type": "content_block_start", "index": index, "content_block": start})
            )
            partial = orjson.dumps(block.get("input") or {}).decode()
            out.append(
                _event(
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": index,
                        "delta": {"type": "input_json_delta", "partial_json": partial},
                    },
                )
            )
        else:  # thinking and other blocks: sent whole as their start event
            out.append(
                _event("content_block_start", {"type": "content_block_start", "index": index, "content_block": block})
            )
        out.append(_event("content_block_stop", {"type": "content_block_stop", "index": index}))
    delta = {"stop_reason": body.get("stop_reason", "end_turn"), "stop_sequence": body.get("stop_sequence")}
    out.append(
        _event(
            "message_delta",
            {"type": "message_delta", "delta": delta, "usage": {"output_tokens": usage.get("output_tokens", 0)}},
        )
    )
    out.append(_event("message_stop", {"type": "message_stop"}))
    return b"".join(out)

"""An in-process, deterministic fake model speaking both wires (no HTTP), for demos and tests.

* The reply is English-ish text drawn from a hash of the model, the prompt and ``seed``: the same request
  always gets the same reply. Its length is picked in ``reply_tokens`` and cut at the request's max tokens
  (``finish_reason`` ``length`` / ``stop_reason`` ``max_tokens``; else ``stop`` / ``end_turn``).
* Usage is counted with :mod:`margin.tokens` exactly as the gateway estimates prompts
  (:func:`margin.usage.count_prompt_tokens`); output tokens are ``count_text(reply)``. Anthropic
  ``cache_control`` breakpoints are honoured: the first request with a given prefix writes it
  (``cache_creation_input_tokens``), later requests read it (``cache_read_input_tokens``).
* Faults per request with the ``x-mock-fault`` header (:data:`FAULTS`), or at random with ``fault_rates``
  (a seeded rng): ``429``/``500``/``503``/``400`` raise the UpstreamError an HTTP provider would raise,
  ``timeout`` a timeout (504) after a short sleep, ``malformed`` a malformed_response, ``drop`` a stream
  that breaks after a few deltas (a non-streaming ``drop`` is a connection_error).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import math
import random
import struct
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from ...errors import ConfigError, MarginError
from ...tokens import count_messages, count_text
from ...usage import count_prompt_tokens
from .base import SSEEvent, UpstreamCall, UpstreamError, UpstreamResponse, Wire

__all__ = ["FAULTS", "MockProvider", "error_body"]

FAULTS = ("429", "500", "503", "400", "timeout", "malformed", "drop")
FAULT_HEADER = "x-mock-fault"
_WORDS = (
    "the cost of every token adds up fast when a model answers in long form so we plan budgets with care and "
    "measure each request against the price per million tokens a small model often does the job well while a "
    "large one costs more but reasons better cache hits make repeated prompts cheap and batch jobs run at half "
    "price our gateway meters usage keeps a ledger and stops spending before the limit is reached"
).split()
_ERRORS = {  # status -> (message, openai type, openai code, anthropic type)
    400: ("Invalid request (mock fault).", "invalid_request_error", None, "invalid_request_error"),
    401: ("Invalid API key.", "invalid_request_error", "invalid_api_key", "authentication_error"),
    404: ("Not found.", "invalid_request_error", "model_not_found", "not_found_error"),
    429: (
        "Rate limit reached (mock fault). Please try again later.",
        "requests",
        "rate_limit_exceeded",
        "rate_limit_error",
    ),
    500: ("The server had an error while processing your request (mock fault).", "server_error", None, "api_error"),
    503: ("The engine is currently overloaded (mock fault).", "server_error", None, "overloaded_error"),
    504: ("The upstream timed out (mock fault).", "timeout", None, "api_error"),
}
_ERROR_TYPES = {400: "bad_request", 401: "auth_error", 404: "not_found", 429: "rate_limited"}


def error_body(wire: Wire, status: int, message: str | None = None) -> dict[str, Any]:
    """An error body as the real API would send it for ``status`` on ``wire``."""
    default, oa_type, oa_code, an_type = _ERRORS.get(status, _ERRORS[500 if status >= 500 else 400])
    if wire == "anthropic":
        return {"type": "error", "error": {"type": an_type, "message": message or default}}
    return {"error": {"message": message or default, "type": oa_type, "param": None, "code": oa_code}}


def _upstream_error(name: str, wire: Wire, status: int, message: str | None = None) -> UpstreamError:
    body = error_body(wire, status, message)
    return UpstreamError(
        f"{name}: HTTP {status} from upstream: {body['error']['message']}",
        status=status,
        error_type=_ERROR_TYPES.get(status, "server_error" if status >= 500 else "bad_request"),
        retryable=status == 429 or status >= 500,
        body=body,
        retry_after=MockProvider.retry_after_s if status == 429 else None,
    )


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str).encode()


def _json_tokens(value: Any, model: str) -> int:
    """Tokens of a value's compact JSON text, as the gateway counts tool definitions."""
    return count_text(json.dumps(value, ensure_ascii=False, separators=(",", ":")), model).tokens


def _strip_cache_control(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _strip_cache_control(v) for k, v in value.items() if k != "cache_control"}
    if isinstance(value, list | tuple):
        return [_strip_cache_control(v) for v in value]
    return value


@dataclass(frozen=True)
class _Reply:
    pieces: tuple[str, ...]  # the reply, split where a stream sends deltas ("".join(pieces) is the text)
    output_tokens: int
    truncated: bool

    @property
    def text(self) -> str:
        return "".join(self.pieces)


class MockProvider:
    """A deterministic fake upstream for both wires (see the module docs)."""

    wires: frozenset[Wire] = frozenset({"openai", "anthropic"})
    timeout_fault_s = 0.1  # how long a "timeout" fault waits (at most the call's timeout)
    retry_after_s = 0.05  # the Retry-After a "429" fault reports
    drop_after = 3  # deltas a "drop" fault sends before breaking the stream
    default_dimensions = 8
    _cache_capacity = 4096

    def __init__(
        self,
        name: str = "mock",
        *,
        latency_ms: float = 0,
        ms_per_token: float = 0,
        reply_tokens: tuple[int, int] = (40, 160),
        seed: int = 0,
        fault_rates: Mapping[str, float] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        low, high = reply_tokens
        if not 1 <= low <= high:
            raise ConfigError(f"mock provider {name!r}: reply_tokens must be (low, high) with 1 <= low <= high")
        rates = dict(fault_rates or {})
        for fault, rate in rates.items():
            if fault not in FAULTS:
                raise ConfigError(
                    f"mock provider {name!r}: unknown fault {fault!r} in fault_rates; known faults: {', '.join(FAULTS)}"
                )
            if not 0 <= rate <= 1:
                raise ConfigError(f"mock provider {name!r}: fault rate for {fault!r} must be in 0..1, got {rate}")
        if sum(rates.values()) > 1:
            raise ConfigError(f"mock provider {name!r}: fault rates add up to more than 1")
        self.name = name
        self.latency_ms = latency_ms
        self.ms_per_token = ms_per_token
        self.reply_tokens = (low, high)
        self.seed = seed
        self.fault_rates = rates
        self._rng = rng if rng is not None else random.Random(seed)
        self._cache: OrderedDict[bytes, None] = OrderedDict()
        self._counter = 0

    # --- the Provider interface --------------------------------------------------------------------------------
    async def send(self, call: UpstreamCall) -> UpstreamResponse:
        fault = self._fault(call)
        await self._before(call, fault, stream=False)
        if call.endpoint == "embeddings":
            body = self._embeddings(call)
        else:
            reply = self._reply(call)
            body = self._anthropic_body(call, reply) if call.wire == "anthropic" else self._openai_body(call, reply)
            await asyncio.sleep(self.ms_per_token * reply.output_tokens / 1000)
        return UpstreamResponse(status=200, body=body, headers={"content-type": "application/json"})

    async def stream(self, call: UpstreamCall) -> AsyncIterator[SSEEvent]:
        fault = self._fault(call)
        await self._before(call, fault, stream=True)
        if call.endpoint == "embeddings":
            raise _upstream_error(self.name, call.wire, 400, "embeddings cannot be streamed")
        reply = self._reply(call)
        events = self._anthropic_events(call, reply) if call.wire == "anthropic" else self._openai_events(call, reply)
        drop_at = min(self.drop_after, len(reply.pieces)) if fault == "drop" else -1
        deltas = sent = 0
        for event, is_delta in events:
            if deltas == drop_at and sent and (is_delta or deltas == len(reply.pieces)):
                raise UpstreamError(
                    f"{self.name}: the stream broke after {deltas} deltas (mock fault)",
                    status=502,
                    error_type="stream_dropped",
                    retryable=False,
                )
            if is_delta:
                deltas += 1
                if self.ms_per_token:
                    await asyncio.sleep(self.ms_per_token / 1000)
            sent += 1
            yield event

    async def aclose(self) -> None:
        return None

    # --- faults and validation ---------------------------------------------------------------------------------
    def _fault(self, call: UpstreamCall) -> str | None:
        header = next((v for k, v in call.headers.items() if k.lower() == FAULT_HEADER), None)
        if header is not None and header.strip():
            fault = header.strip().lower()
            if fault not in FAULTS:
                raise _upstream_error(
                    self.name, call.wire, 400, f"unknown {FAULT_HEADER} {header!r}; use one of {', '.join(FAULTS)}"
                )
            return fault
        if not self.fault_rates:
            return None
        draw, total = self._rng.random(), 0.0
        for fault in sorted(self.fault_rates):
            total += self.fault_rates[fault]
            if draw < total:
                return fault
        return None

    async def _before(self, call: UpstreamCall, fault: str | None, *, stream: bool) -> None:
        """Validate the call, wait out the latency, and raise the fault (except a streaming drop)."""
        expected = "anthropic" if call.endpoint == "messages" else "openai"
        if call.wire != expected:
            raise _upstream_error(self.name, call.wire, 404, f"{call.wire} has no endpoint {call.endpoint!r}")
        if not isinstance(call.body.get("model"), str) or not call.body["model"]:
            raise _upstream_error(self.name, call.wire, 400, "model: a model name is required")
        if call.wire == "anthropic" and not isinstance(call.body.get("max_tokens"), int):
            raise _upstream_error(self.name, call.wire, 400, "max_tokens: Field required")
        if fault == "timeout":
            await asyncio.sleep(min(call.timeout, self.timeout_fault_s))
            raise UpstreamError(
                f"{self.name}: the upstream did not answer in time (mock fault)",
                status=504,
                error_type="timeout",
                retryable=True,
            )
        if self.latency_ms:
            await asyncio.sleep(self.latency_ms / 1000)
        if fault in ("429", "500", "503", "400"):
            raise _upstream_error(self.name, call.wire, int(fault))
        if fault == "malformed":
            raise UpstreamError(
                f"{self.name}: the upstream answered HTTP 200 with a body that is not a JSON object (mock fault)",
                status=502,
                error_type="malformed_response",
                retryable=True,
                body='{"id": "chatcmpl-mock", "choices": [',
            )
        if fault == "drop" and not stream:
            raise UpstreamError(
                f"{self.name}: the connection dropped before the response (mock fault)",
                status=502,
                error_type="connection_error",
                retryable=True,
            )

    def _count(self, call: UpstreamCall) -> int:
        try:
            return count_prompt_tokens(call.endpoint, call.body, call.body["model"])
        except MarginError as exc:
            raise _upstream_error(self.name, call.wire, 400, exc.message) from None

    # --- generation ----------------------------------------------------------------------------------------------
    def _reply(self, call: UpstreamCall) -> _Reply:
        body = call.body
        model = body["model"]
        digest = hashlib.sha256(_canonical([self.seed, model, body.get("system"), body.get("messages")])).digest()
        rng = random.Random(digest)
        target = rng.randint(*self.reply_tokens)
        words: list[str] = []
        while len(words) <= target:  # every word is at least one token: target + 1 words always suffice
            sentence = [rng.choice(_WORDS) for _ in range(rng.randint(5, 14))]
            sentence[0] = sentence[0].capitalize()
            sentence[-1] += rng.choice(".....?!")
            words.extend(sentence)
        pieces = [words[0], *(" " + word for word in words[1:])]

        def tokens(n: int) -> int:
            return count_text("".join(pieces[:n]), model).tokens

        def longest(limit: int) -> int:  # the most words whose text has at most `limit` tokens
            lo, hi = 0, len(pieces)
            while lo < hi:
                mid = (lo + hi + 1) // 2
                lo, hi = (mid, hi) if tokens(mid) <= limit else (lo, mid - 1)
            return lo

        n = longest(target)
        if tokens(n) < self.reply_tokens[0]:
            n += 1  # scaled estimates move in steps of 2 or more: step over the low end rather than under it
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        truncated = isinstance(limit, int) and tokens(n) > limit
        if truncated:
            n = longest(max(limit, 0))
        return _Reply(tuple(pieces[:n]), tokens(n), truncated)

    def _next_id(self, prefix: str, call: UpstreamCall) -> str:
        self._counter += 1
        digest = hashlib.sha256(_canonical([self.name, self.seed, self._counter, call.body.get("model")])).hexdigest()
        return f"{prefix}{digest[:24]}"

    # --- OpenAI --------------------------------------------------------------------------------------------------
    def _openai_usage(self, call: UpstreamCall, reply: _Reply) -> dict[str, Any]:
        prompt = self._count(call)
        return {
            "prompt_tokens": prompt,
            "completion_tokens": reply.output_tokens,
            "total_tokens": prompt + reply.output_tokens,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }

    def _openai_body(self, call: UpstreamCall, reply: _Reply) -> dict[str, Any]:
        return {
            "id": self._next_id("chatcmpl-mock", call),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": call.body["model"],
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": reply.text, "refusal": None, "annotations": []},
                    "logprobs": None,
                    "finish_reason": "length" if reply.truncated else "stop",
                }
            ],
            "usage": self._openai_usage(call, reply),
            "service_tier": "default",
            "system_fingerprint": "fp_mock",
        }

    def _openai_events(self, call: UpstreamCall, reply: _Reply) -> Iterator[tuple[SSEEvent, bool]]:
        options = call.body.get("stream_options")
        include_usage = isinstance(options, Mapping) and bool(options.get("include_usage"))
        usage = self._openai_usage(call, reply)  # counted before the first event, like the prompt is
        base = {
            "id": self._next_id("chatcmpl-mock", call),
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": call.body["model"],
            "service_tier": "default",
            "system_fingerprint": "fp_mock",
        }

        def chunk(delta: dict[str, Any], finish: str | None = None) -> SSEEvent:
            data = {**base, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
            if include_usage:
                data["usage"] = None
            return SSEEvent(data=json.dumps(data, ensure_ascii=False))

        yield chunk({"role": "assistant", "content": "", "refusal": None}), False
        for piece in reply.pieces:
            yield chunk({"content": piece}), True
        yield chunk({}, "length" if reply.truncated else "stop"), False
        if include_usage:
            yield SSEEvent(data=json.dumps({**base, "choices": [], "usage": usage}, ensure_ascii=False)), False
        yield SSEEvent(data="[DONE]"), False

    def _embeddings(self, call: UpstreamCall) -> dict[str, Any]:
        body = call.body
        prompt = self._count(call)
        dimensions = body.get("dimensions", self.default_dimensions)
        if not isinstance(dimensions, int) or isinstance(dimensions, bool) or not 1 <= dimensions <= 4096:
            raise _upstream_error(self.name, "openai", 400, "dimensions must be an integer from 1 to 4096")
        items = body["input"]
        if isinstance(items, str) or (isinstance(items, list) and items and isinstance(items[0], int)):
            items = [items]
        data = []
        for index, item in enumerate(items):
            rng = random.Random(hashlib.sha256(_canonical([self.seed, body["model"], item])).digest())
            vector = [rng.gauss(0.0, 1.0) for _ in range(dimensions)]
            norm = math.sqrt(sum(x * x for x in vector)) or 1.0
            vector = [x / norm for x in vector]
            embedding: Any = vector
            if body.get("encoding_format") == "base64":  # what the official SDK asks for by default
                embedding = base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode()
            data.append({"object": "embedding", "index": index, "embedding": embedding})
        return {
            "object": "list",
            "data": data,
            "model": body["model"],
            "usage": {"prompt_tokens": prompt, "total_tokens": prompt},
        }

    # --- Anthropic ----------------------------------------------------------------------------------------------
    def _anthropic_usage(self, call: UpstreamCall, output_tokens: int) -> dict[str, Any]:
        total = self._count(call)
        read, written = self._cache_split(call.body, total)
        created = written["5m"] + written["1h"]
        return {
            "input_tokens": total - read - created,
            "cache_creation_input_tokens": created,
            "cache_read_input_tokens": read,
            "cache_creation": {"ephemeral_5m_input_tokens": written["5m"], "ephemeral_1h_input_tokens": written["1h"]},
            "output_tokens": output_tokens,
            "service_tier": "standard",
        }

    def _cache_split(self, body: Mapping[str, Any], total: int) -> tuple[int, dict[str, int]]:
        """(tokens read from the cache, tokens written by TTL) for the request's cache_control breakpoints.
        The longest cached prefix is read; everything after it up to the last breakpoint is written."""
        model = body["model"]
        tools = body.get("tools") or []
        system = body.get("system")
        messages = body.get("messages") or []
        tools_tokens = _json_tokens(tools, model) if tools else 0
        breakpoints: list[tuple[Any, int, Any]] = []  # (prefix, its tokens, cache_control)

        def add(prefix: Any, tokens: int, block: Any) -> None:
            if isinstance(block, Mapping) and isinstance(block.get("cache_control"), Mapping):
                before = breakpoints[-1][1] if breakpoints else 0
                breakpoints.append((prefix, min(total, max(before, tokens)), block["cache_control"]))

        for i, tool in enumerate(tools if isinstance(tools, list) else []):
            add(["tools", tools[: i + 1]], _json_tokens(tools[: i + 1], model), tool)
        system_blocks = system if isinstance(system, list) else []
        for j, block in enumerate(system_blocks):
            head = [{"role": "system", "content": system_blocks[: j + 1]}]
            add(["system", tools, system_blocks[: j + 1]], tools_tokens + count_messages(head, model).tokens, block)
        head = [{"role": "system", "content": system}] if system else []
        for i, message in enumerate(messages if isinstance(messages, list) else []):
            content = message.get("content") if isinstance(message, Mapping) else None
            for j, block in enumerate(content if isinstance(content, list) else []):
                partial = [*head, *messages[:i], {**message, "content": content[: j + 1]}]
                add(["messages", tools, partial], tools_tokens + count_messages(partial, model).tokens, block)
        if not breakpoints:
            return 0, {"5m": 0, "1h": 0}
        keys = [hashlib.sha256(_canonical([model, _strip_cache_control(p)])).digest() for p, _, _ in breakpoints]
        hit = max((i for i, key in enumerate(keys) if key in self._cache), default=-1)
        read = breakpoints[hit][1] if hit >= 0 else 0
        written = {"5m": 0, "1h": 0}
        previous = read
        for _, tokens, control in breakpoints[hit + 1 :]:
            written["1h" if control.get("ttl") == "1h" else "5m"] += tokens - previous
            previous = tokens
        for key in keys:
            self._cache[key] = None
            self._cache.move_to_end(key)
        while len(self._cache) > self._cache_capacity:
            self._cache.popitem(last=False)
        return read, written

    def _anthropic_body(self, call: UpstreamCall, reply: _Reply) -> dict[str, Any]:
        return {
            "id": self._next_id("msg_mock", call),
            "type": "message",
            "role": "assistant",
            "model": call.body["model"],
            "content": [{"type": "text", "text": reply.text}],
            "stop_reason": "max_tokens" if reply.truncated else "end_turn",
            "stop_sequence": None,
            "usage": self._anthropic_usage(call, reply.output_tokens),
        }

    def _anthropic_events(self, call: UpstreamCall, reply: _Reply) -> Iterator[tuple[SSEEvent, bool]]:
        usage = self._anthropic_usage(call, min(1, reply.output_tokens))

        def event(name: str, data: dict[str, Any]) -> SSEEvent:
            return SSEEvent(event=name, data=json.dumps({"type": name, **data}, ensure_ascii=False))

        message = {
            "id": self._next_id("msg_mock", call),
            "type": "message",
            "role": "assistant",
            "model": call.body["model"],
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": usage,
        }
        yield event("message_start", {"message": message}), False
        yield event("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}), False
        yield event("ping", {}), False
        for piece in reply.pieces:
            yield event("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": piece}}), True
        yield event("content_block_stop", {"index": 0}), False
        stop = "max_tokens" if reply.truncated else "end_turn"
        yield (
            event(
                "message_delta",
                {
                    "delta": {"stop_reason": stop, "stop_sequence": None},
                    "usage": {"output_tokens": reply.output_tokens},
                },
            ),
            False,
        )
        yield event("message_stop", {}), False

"""Usage: what one request consumed, normalized across providers, and the ledger row that records it.

Normalization matters because providers disagree: OpenAI's ``prompt_tokens`` INCLUDES cached tokens
(``prompt_tokens_details.cached_tokens`` is a part of it), while Anthropic's ``input_tokens`` EXCLUDES
cache reads and writes (``cache_read_input_tokens`` and ``cache_creation_input_tokens`` come on top).
margin follows genai-prices: ``input_tokens`` is the whole prompt, cache reads and writes are parts of it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from .errors import MarginError
from .pricing.cost import TokenUsage
from .tokens import TokenInputError, count_messages, count_text

# A prompt count the caller already has, or a function that counts it only if it is needed.
PromptTokens = int | Callable[[], int] | None

__all__ = [
    "AnthropicStreamTracker",
    "EventStatus",
    "NormalizedUsage",
    "OpenAIStreamTracker",
    "UsageBlockError",
    "UsageEvent",
    "UsageSource",
    "count_prompt_tokens",
    "from_anthropic",
    "from_openai_chat",
    "from_openai_embeddings",
]

# upstream: the provider's usage block; local_count: counted by margin (stream cut, provider without usage);
# none: nothing was generated (rejected before the call).
UsageSource = Literal["upstream", "local_count", "none"]
EventStatus = Literal["ok", "cached", "rejected", "upstream_error", "client_abort"]


@dataclass(frozen=True, kw_only=True)
class NormalizedUsage:
    """Tokens of one call in margin's convention (see the module docstring)."""

    input_tokens: int = 0
    output_tokens: int = 0  # includes reasoning tokens, which are billed as output
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    source: UsageSource = "upstream"

    def to_token_usage(self) -> TokenUsage:
        return TokenUsage(
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            cache_read_tokens=self.cache_read_tokens,
            cache_write_tokens=self.cache_write_tokens,
        )


@dataclass(frozen=True, kw_only=True)
class UsageEvent:
    """One ledger row: one attempt of one request (a retried or fallen-back request writes one row per
    attempt, all sharing ``request_id``). Money is Decimal USD; the store keeps it exactly."""

    event_id: str
    request_id: str
    attempt: int
    started_at: datetime
    finished_at: datetime
    status: EventStatus
    endpoint: str
    requested_model: str
    served_model: str | None = None
    provider: str | None = None
    key_id: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    task_id: str | None = None
    input_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    usage_source: UsageSource = "none"
    list_cost: Decimal = Decimal(0)
    effective_cost: Decimal = Decimal(0)
    price_source: str | None = None
    latency_ms: int | None = None
    ttft_ms: int | None = None
    error_type: str | None = None
    error_message: str | None = None
    retries: int = 0
    stream: bool = False
    # Free-form decisions: route taken, cache decision, fallback reason, max_tokens clamp.
    route: str | None = None
    cache: str | None = None
    fallback_from: str | None = None
    max_tokens: int | None = None
    reserved_cost: Decimal = Decimal(0)
    reservation_id: str | None = None  # the budget reservation this event settled
    # What the upstream call this event avoided would have cost at current prices (cache hits), and the
    # cost-reduction levers' decisions (routing tier and score, cascade, compression, context), as JSON-ready.
    avoided_cost: Decimal = Decimal(0)
    decisions: dict[str, Any] = field(default_factory=dict)
    # The exact-cache key of the request (sha256 of everything that determines the answer, see
    # margin.cache.exact_key): equal hashes are repeats, which reports and what-if replay count without the text.
    prompt_hash: str | None = None


# --- usage blocks -> NormalizedUsage ------------------------------------------------------------------------


class UsageBlockError(MarginError):
    """An upstream usage block is missing a count or reports impossible ones (negative, not a whole number,
    cached tokens above the prompt, ...): the call cannot be metered from it."""

    http_status = 502
    error_type = "malformed_usage"


# Keys that only Anthropic's usage block has: their presence next to input_tokens/output_tokens means the
# block is Anthropic's (input_tokens WITHOUT cache), not OpenAI Responses' (input_tokens WITH cache).
_ANTHROPIC_ONLY_KEYS = ("cache_read_input_tokens", "cache_creation_input_tokens", "cache_creation")


def _block(value: object, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise UsageBlockError(f"{where} must be a JSON object, got {type(value).__name__}: {value!r:.80}")
    return value


def _opt_count(block: Mapping[str, Any], key: str, where: str) -> int | None:
    """``block[key]`` as a count: None when missing or null, UsageBlockError unless a whole number >= 0."""
    value = block.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise UsageBlockError(f"{where}.{key} must be a whole number >= 0, got {value!r}")
    return value


def _count(block: Mapping[str, Any], key: str, where: str, *, required: bool = False) -> int:
    value = _opt_count(block, key, where)
    if value is None:
        if required:
            raise UsageBlockError(f"{where}.{key} is missing; the upstream did not report it")
        return 0
    return value


def _details(block: Mapping[str, Any], names: Sequence[str], where: str) -> tuple[Mapping[str, Any], str] | None:
    """The first present (non-null) details object among ``names``, with its path for messages."""
    for name in names:
        value = block.get(name)
        if value is not None:
            return _block(value, f"{where}.{name}"), f"{where}.{name}"
    return None


def from_openai_chat(usage: Mapping[str, Any]) -> NormalizedUsage:
    """Normalize an OpenAI(-compatible) usage block.

    Accepted shapes (the first one whose counts are present wins):

    * Chat Completions: ``prompt_tokens`` (INCLUDES ``prompt_tokens_details.cached_tokens``),
      ``completion_tokens`` (INCLUDES ``completion_tokens_details.reasoning_tokens``), ``total_tokens``.
    * Responses: ``input_tokens``, ``output_tokens``, ``input_tokens_details.cached_tokens``,
      ``output_tokens_details.reasoning_tokens``. Servers mixing the two spellings (details objects named the
      other way) are accepted too.
    * OpenAI-compatible servers: details objects missing or null (vLLM, llama.cpp, Ollama) count as 0; DeepSeek's
      top-level ``prompt_cache_hit_tokens`` is read as the cached part when no ``cached_tokens`` is given.
    * Reasoning reported ON TOP of ``completion_tokens`` (some Gemini/proxy translations): recognized when
      ``total_tokens == prompt + completion + reasoning``, or when ``reasoning > completion`` (it cannot be a part
      then); the output is then ``completion + reasoning``. Otherwise ``total_tokens`` is not checked.

    OpenAI reports no cache-write tokens: ``cache_write_tokens`` is always 0. Audio and predicted-output details
    are parts of the prompt/completion counts and are priced as text tokens. Raises :class:`UsageBlockError`
    when a count is missing, not a whole number >= 0, when the cached part exceeds the prompt, or when the block
    is Anthropic's (``cache_read_input_tokens``/``cache_creation_input_tokens`` next to ``input_tokens``): read
    that one with :func:`from_anthropic`.
    """
    where = "usage"
    block = _block(usage, where)
    if block.get("prompt_tokens") is not None or block.get("completion_tokens") is not None:
        prompt_key, completion_key = "prompt_tokens", "completion_tokens"
    elif block.get("input_tokens") is not None or block.get("output_tokens") is not None:
        if any(block.get(key) is not None for key in _ANTHROPIC_ONLY_KEYS):
            raise UsageBlockError(
                "usage looks like an Anthropic usage block (input_tokens next to cache_read_input_tokens/"
                "cache_creation_input_tokens, where input_tokens EXCLUDES the cache); normalize it with "
                "from_anthropic, not from_openai_chat"
            )
        prompt_key, completion_key = "input_tokens", "output_tokens"
    else:
        raise UsageBlockError(
            "usage has neither prompt_tokens/completion_tokens (Chat Completions) nor input_tokens/output_tokens "
            f"(Responses); got keys {sorted(map(str, block))}"
        )
    prompt = _count(block, prompt_key, where, required=True)
    completion = _count(block, completion_key, where, required=True)

    cached: int | None = None
    if found := _details(block, ("prompt_tokens_details", "input_tokens_details"), where):
        cached = _opt_count(found[0], "cached_tokens", found[1])
    if cached is None:
        cached = _count(block, "prompt_cache_hit_tokens", where)
    if cached > prompt:
        raise UsageBlockError(
            f"usage reports {cached} cached tokens but only {prompt} {prompt_key}; the cached tokens are a part "
            "of the prompt and cannot exceed it"
        )

    reasoning = 0
    if found := _details(block, ("completion_tokens_details", "output_tokens_details"), where):
        reasoning = _count(found[0], "reasoning_tokens", found[1])
    total = _opt_count(block, "total_tokens", where)
    output = completion
    if reasoning:
        on_top = total == prompt + completion + reasoning
        if not on_top and reasoning > completion:
            if total == prompt + completion:
                raise UsageBlockError(
                    f"usage reports {reasoning} reasoning tokens as a part of {completion} {completion_key} "
                    f"(total_tokens={total}); a part cannot exceed the whole"
                )
            on_top = True
        if on_top:
            output = completion + reasoning
    return NormalizedUsage(
        input_tokens=prompt, output_tokens=output, cache_read_tokens=cached, reasoning_tokens=reasoning
    )


def from_openai_embeddings(usage: Mapping[str, Any]) -> NormalizedUsage:
    """Normalize an embeddings usage block: ``prompt_tokens`` (or ``total_tokens`` when it is missing) is the
    input; embeddings have no output. Raises :class:`UsageBlockError` when neither count is usable."""
    where = "usage"
    block = _block(usage, where)
    prompt = _opt_count(block, "prompt_tokens", where)
    if prompt is None:
        prompt = _opt_count(block, "total_tokens", where)
    if prompt is None:
        raise UsageBlockError("usage.prompt_tokens is missing (and no total_tokens); the upstream did not report it")
    return NormalizedUsage(input_tokens=prompt)


def from_anthropic(usage: Mapping[str, Any]) -> NormalizedUsage:
    """Normalize an Anthropic Messages usage block.

    Anthropic's ``input_tokens`` EXCLUDES the cache: ``cache_read_input_tokens`` and
    ``cache_creation_input_tokens`` come on top, so the prompt is their sum (``input_tokens=100`` with
    ``cache_read_input_tokens=50000`` is a 50,100-token prompt). The cache write is
    ``cache_creation_input_tokens``; when a ``cache_creation`` object is present its ``ephemeral_*_input_tokens``
    (5m, 1h) are summed and must agree with it. 1-hour writes are priced at the cache-write (5-minute) rate:
    :class:`~margin.pricing.cost.TokenUsage` has one cache-write count. Missing or null cache counts are 0;
    ``input_tokens`` and ``output_tokens`` are required. Raises :class:`UsageBlockError` otherwise.
    """
    where = "usage"
    block = _block(usage, where)
    if block.get("input_tokens") is None and block.get("prompt_tokens") is not None:
        raise UsageBlockError(
            "usage looks like an OpenAI usage block (prompt_tokens, no input_tokens); normalize it with "
            "from_openai_chat, not from_anthropic"
        )
    uncached = _count(block, "input_tokens", where, required=True)
    output = _count(block, "output_tokens", where, required=True)
    read = _count(block, "cache_read_input_tokens", where)
    write = _opt_count(block, "cache_creation_input_tokens", where)
    creation = block.get("cache_creation")
    if creation is not None:
        creation = _block(creation, f"{where}.cache_creation")
        split = sum(
            _count(creation, str(key), f"{where}.cache_creation")
            for key in creation
            if str(key).startswith("ephemeral_") and str(key).endswith("_input_tokens")
        )
        if write is not None and write != split:
            raise UsageBlockError(
                f"usage.cache_creation_input_tokens ({write}) disagrees with the sum of usage.cache_creation "
                f"({split}: {dict(creation)})"
            )
        write = split
    write = write or 0
    return NormalizedUsage(
        input_tokens=uncached + read + write, output_tokens=output, cache_read_tokens=read, cache_write_tokens=write
    )


# --- local counts ----------------------------------------------------------------------------------------------


def _tools_tokens(body: Mapping[str, Any], model: str, keys: Sequence[str]) -> int:
    total = 0
    for key in keys:
        value = body.get(key)
        if value:
            try:
                text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
            except (TypeError, ValueError) as exc:
                raise TokenInputError(f"{key}: cannot count a value that is not JSON-serializable: {exc}") from None
            total += count_text(text, model).tokens
    return total


def _anthropic_messages(system: object, messages: object) -> list[Mapping[str, Any]]:
    if isinstance(messages, str | bytes | Mapping) or not isinstance(messages, Sequence):
        raise TokenInputError(f"messages must be a list of message objects, got {type(messages).__name__}.")
    if system is None or system == "" or system == []:
        return list(messages)
    # A system prompt is a string or a list of text blocks; count_messages reads both as message content.
    return [{"role": "system", "content": system}, *messages]


def _embedding_input_tokens(value: object, model: str) -> int:
    if isinstance(value, str):
        return count_text(value, model).tokens
    if isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        if all(isinstance(item, int) and not isinstance(item, bool) for item in value):
            return len(value)  # one input already tokenized
        return sum(_embedding_input_tokens(item, model) for item in value)
    raise TokenInputError(
        f"embeddings input must be a string, a list of strings or a list of token ids, got {type(value).__name__}."
    )


def count_prompt_tokens(endpoint: str, body: Mapping[str, Any], model: str) -> int:
    """Local count of a request's prompt, for pricing the worst case before the call.

    ``endpoint`` is the gateway's endpoint name (``chat.completions``, ``messages``, ``embeddings``; URL paths
    such as ``/v1/chat/completions`` are accepted too):

    * ``chat.completions``: :func:`~margin.tokens.count_messages` of ``messages``, plus the compact JSON text of
      ``tools`` (and legacy ``functions``) if present;
    * ``messages`` (Anthropic): ``system`` counted as a leading system message, then ``messages``, plus ``tools``;
    * ``embeddings``: the tokens of ``input`` (a string, strings, or token id lists).

    Tool definitions are counted as their JSON text, an approximation; for models without a public tokenizer
    the count is margin's labelled estimate. Raises :class:`~margin.tokens.TokenInputError` on a malformed body.
    """
    if not isinstance(body, Mapping):
        raise TokenInputError(f"the request body must be a JSON object, got {type(body).__name__}.")
    name = endpoint.strip().lower().split("?", 1)[0].strip("/")
    name = name.removeprefix("v1/").replace("/", ".")
    if name == "chat.completions":
        messages = body.get("messages")
        if messages is None:
            raise TokenInputError("a chat.completions request needs 'messages'.")
        return count_messages(messages, model).tokens + _tools_tokens(body, model, ("tools", "functions"))
    if name == "messages":
        messages = body.get("messages")
        if messages is None:
            raise TokenInputError("a messages request needs 'messages'.")
        prompt = _anthropic_messages(body.get("system"), messages)
        return count_messages(prompt, model).tokens + _tools_tokens(body, model, ("tools",))
    if name == "embeddings":
        if "input" not in body:
            raise TokenInputError("an embeddings request needs 'input'.")
        return _embedding_input_tokens(body["input"], model)
    raise TokenInputError(
        f"cannot count the prompt of endpoint {endpoint!r}; known endpoints: chat.completions, messages, embeddings."
    )


class _Generated:
    """Text a stream generated, kept per (choice or block, kind) so that counting does not merge unrelated
    pieces; ``reasoning`` parts are also reported as reasoning tokens."""

    def __init__(self) -> None:
        self._parts: dict[tuple[int, str], list[str]] = {}

    def add(self, index: int, kind: str, value: object) -> bool:
        if not isinstance(value, str) or not value:
            return False
        self._parts.setdefault((index, kind), []).append(value)
        return True

    def text(self) -> str:
        return "".join("".join(parts) for parts in self._parts.values())

    def counts(self, model: str) -> tuple[int, int]:
        """(output, reasoning) tokens of everything generated so far."""
        output = reasoning = 0
        for (_, kind), parts in self._parts.items():
            tokens = count_text("".join(parts), model).tokens
            output += tokens
            if kind == "reasoning":
                reasoning += tokens
        return output, reasoning


def _index(value: object, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


class OpenAIStreamTracker:
    """Follows a chat.completions stream, chunk by chunk, to meter it.

    Feed every parsed ``data:`` JSON chunk (not ``[DONE]``; anything that is not an object is ignored). The
    tracker keeps the generated text (``delta.content``, ``delta.refusal``, ``delta.reasoning_content`` or
    ``delta.reasoning``, tool call names and arguments, legacy ``function_call``), the last ``finish_reason``
    and the last non-null ``usage`` block: with ``stream_options.include_usage`` OpenAI sends it in a final chunk
    with ``choices: []``; servers sending cumulative usage in every chunk (vLLM's continuous usage stats) work too.
    Unknown fields and chunk types are ignored; :meth:`feed` never raises.
    """

    def __init__(self, model: str) -> None:
        self.model = model
        self.saw_usage = False
        self.finish_reason: str | None = None
        self.first_content_seen = False
        self.chunks = 0
        # Why the upstream usage block was not used (malformed), when usage() fell back to a local count.
        self.usage_error: str | None = None
        self._usage_block: Mapping[str, Any] | None = None
        self._generated = _Generated()

    @property
    def text(self) -> str:
        """Everything generated so far (content, reasoning, tool calls), for inspection."""
        return self._generated.text()

    def feed(self, chunk: Mapping[str, Any]) -> None:
        if not isinstance(chunk, Mapping):
            return
        self.chunks += 1
        usage = chunk.get("usage")
        if isinstance(usage, Mapping):
            self._usage_block = usage
            self.saw_usage = True
        choices = chunk.get("choices")
        if not isinstance(choices, Sequence) or isinstance(choices, str):
            return
        for position, choice in enumerate(choices):
            if not isinstance(choice, Mapping):
                continue
            index = _index(choice.get("index"), position)
            finish_reason = choice.get("finish_reason")
            if isinstance(finish_reason, str) and finish_reason:
                self.finish_reason = finish_reason
            delta = choice.get("delta")
            if isinstance(delta, Mapping):
                self._feed_delta(index, delta)

    def _feed_delta(self, index: int, delta: Mapping[str, Any]) -> None:
        add = self._generated.add
        seen = add(index, "content", delta.get("content"))
        seen |= add(index, "refusal", delta.get("refusal"))
        # DeepSeek and vLLM send reasoning_content, OpenRouter and newer vLLM reasoning; some send both.
        reasoning = delta.get("reasoning_content")
        seen |= add(
            index, "reasoning", reasoning if isinstance(reasoning, str) and reasoning else delta.get("reasoning")
        )
        tool_calls = delta.get("tool_calls")
        if isinstance(tool_calls, Sequence) and not isinstance(tool_calls, str):
            for position, call in enumerate(tool_calls):
                if isinstance(call, Mapping) and isinstance(function := call.get("function"), Mapping):
                    kind = f"tool:{_index(call.get('index'), position)}"
                    seen |= add(index, kind, function.get("name"))
                    seen |= add(index, kind, function.get("arguments"))
        function_call = delta.get("function_call")
        if isinstance(function_call, Mapping):
            seen |= add(index, "function_call", function_call.get("name"))
            seen |= add(index, "function_call", function_call.get("arguments"))
        if seen:
            self.first_content_seen = True

    def usage(
        self, prompt_messages: Sequence[Mapping[str, Any]], *, prompt_tokens: PromptTokens = None
    ) -> NormalizedUsage:
        """The upstream usage when the stream carried one (source ``upstream``), else a local count (source
        ``local_count``): ``count_messages(prompt_messages)`` (or ``prompt_tokens`` when the caller already
        counted the prompt, tools included) and the tokens of the generated text. A malformed upstream block
        also falls back to the local count (``usage_error`` says why). Reasoning that the provider does not
        stream (OpenAI o-series) cannot be counted locally."""
        if self._usage_block is not None:
            try:
                return from_openai_chat(self._usage_block)
            except UsageBlockError as exc:
                self.usage_error = exc.message
        prompt = _resolve_prompt(prompt_tokens, lambda: count_messages(prompt_messages, self.model).tokens)
        output, reasoning = self._generated.counts(self.model)
        return NormalizedUsage(
            input_tokens=prompt, output_tokens=output, reasoning_tokens=reasoning, source="local_count"
        )


_ANTHROPIC_PROMPT_KEYS = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")


class AnthropicStreamTracker:
    """Follows an Anthropic Messages stream, event by event, to meter it.

    Feed each server-sent event: its ``event:`` name (or None) and its parsed ``data`` JSON; the data's ``type``
    wins over the event name. ``message_start`` carries the prompt's usage (``input_tokens``, cache counts, a
    first ``output_tokens``); ``content_block_start``/``content_block_delta`` the generated text
    (``text_delta``, ``input_json_delta``, ``thinking_delta``, tool names); ``message_delta`` the stop reason
    and the CUMULATIVE final ``output_tokens`` (newer APIs repeat the prompt counts there: the largest value
    of each count wins); ``message_stop`` the end. Unknown events (``ping``, ``error``, new types) and missing
    fields are ignored; :meth:`feed` never raises.
    """

    def __init__(self, model: str) -> None:
        self.model = model
        self.saw_usage = False  # message_start with a usage block
        self.saw_final_usage = False  # message_delta with usage.output_tokens
        self.finish_reason: str | None = None
        self.first_content_seen = False
        self.stopped = False  # message_stop seen
        self.usage_error: str | None = None
        self._prompt: dict[str, Any] = {}
        self._cache_creation: dict[str, Any] = {}
        self._start_output: Any = None
        self._final_output: Any = None
        self._generated = _Generated()

    @property
    def text(self) -> str:
        """Everything generated so far (text, thinking, tool names and inputs), for inspection."""
        return self._generated.text()

    def feed(self, event: str | None, data: Mapping[str, Any]) -> None:
        if not isinstance(data, Mapping):
            return
        kind = data.get("type") if isinstance(data.get("type"), str) else event
        if kind == "message_start":
            message = data.get("message")
            usage = message.get("usage") if isinstance(message, Mapping) else None
            if isinstance(usage, Mapping):
                self.saw_usage = True
                self._merge_prompt(usage)
                self._start_output = _merged(self._start_output, usage.get("output_tokens"))
        elif kind == "content_block_start":
            block = data.get("content_block")
            if isinstance(block, Mapping):
                self._feed_block(_index(data.get("index"), 0), block)
        elif kind == "content_block_delta":
            delta = data.get("delta")
            if isinstance(delta, Mapping):
                self._feed_delta(_index(data.get("index"), 0), delta)
        elif kind == "message_delta":
            delta = data.get("delta")
            if isinstance(delta, Mapping) and isinstance(stop := delta.get("stop_reason"), str) and stop:
                self.finish_reason = stop
            usage = data.get("usage")
            if isinstance(usage, Mapping):
                self._merge_prompt(usage)
                if usage.get("output_tokens") is not None:
                    self.saw_final_usage = True
                    self._final_output = _merged(self._final_output, usage.get("output_tokens"))
        elif kind == "message_stop":
            self.stopped = True

    def _merge_prompt(self, usage: Mapping[str, Any]) -> None:
        for key in _ANTHROPIC_PROMPT_KEYS:
            self._prompt[key] = _merged(self._prompt.get(key), usage.get(key))
        creation = usage.get("cache_creation")
        if isinstance(creation, Mapping):
            for key, value in creation.items():
                self._cache_creation[str(key)] = _merged(self._cache_creation.get(str(key)), value)

    def _feed_block(self, index: int, block: Mapping[str, Any]) -> None:
        add = self._generated.add
        kind = block.get("type")
        seen = False
        if kind == "text":
            seen = add(index, "text", block.get("text"))
        elif kind == "thinking":
            seen = add(index, "reasoning", block.get("thinking"))
        elif kind in ("tool_use", "server_tool_use"):
            seen = add(index, "tool", block.get("name"))
        if seen:
            self.first_content_seen = True

    def _feed_delta(self, index: int, delta: Mapping[str, Any]) -> None:
        add = self._generated.add
        kind = delta.get("type")
        seen = False
        if kind == "text_delta":
            seen = add(index, "text", delta.get("text"))
        elif kind == "thinking_delta":
            seen = add(index, "reasoning", delta.get("thinking"))
        elif kind == "input_json_delta":
            seen = add(index, "tool", delta.get("partial_json"))
        if seen:
            self.first_content_seen = True

    def usage(
        self,
        prompt_messages: Sequence[Mapping[str, Any]],
        system: object = None,
        *,
        prompt_tokens: PromptTokens = None,
    ) -> NormalizedUsage:
        """What the stream consumed.

        * ``message_start`` and ``message_delta`` seen: the upstream usage (source ``upstream``).
        * ``message_start`` only (the stream was cut): the upstream prompt and cache counts, and as output the
          local count of the generated text, at least message_start's ``output_tokens`` (source ``local_count``).
        * neither (or a malformed usage, see ``usage_error``): all counted locally: ``system`` + ``prompt_messages``
          (or ``prompt_tokens`` when the caller already counted the prompt) and the generated text.

        Thinking is counted from the streamed thinking text, which undercounts when the API streams a summary.
        """
        if self.saw_usage and self.saw_final_usage:
            output = reasoning = 0  # not needed: the upstream reported everything (counted below if malformed)
        else:
            output, reasoning = self._generated.counts(self.model)
        if self.saw_usage:
            block: dict[str, Any] = dict(self._prompt)
            block["output_tokens"] = self._final_output if self.saw_final_usage else 0
            if self._cache_creation:
                block["cache_creation"] = dict(self._cache_creation)
            try:
                normalized = from_anthropic(block)
                start_output = _opt_count({"output_tokens": self._start_output}, "output_tokens", "usage") or 0
            except UsageBlockError as exc:
                self.usage_error = exc.message
            else:
                if self.saw_final_usage:
                    return normalized
                return replace(
                    normalized,
                    output_tokens=max(output, start_output),
                    reasoning_tokens=reasoning,
                    source="local_count",
                )
        if self.saw_final_usage:  # a malformed final block: count what was generated after all
            output, reasoning = self._generated.counts(self.model)
        prompt = _resolve_prompt(
            prompt_tokens, lambda: count_messages(_anthropic_messages(system, prompt_messages), self.model).tokens
        )
        return NormalizedUsage(
            input_tokens=prompt, output_tokens=output, reasoning_tokens=reasoning, source="local_count"
        )


def _resolve_prompt(given: PromptTokens, count: Callable[[], int]) -> int:
    if given is None:
        return count()
    return given() if callable(given) else given


def _merged(old: Any, new: Any) -> Any:
    """A usage count seen again: the largest whole number wins (counts are cumulative); anything else that is
    not null replaces it, so that a malformed value surfaces when the block is normalized."""
    if new is None:
        return old
    if _is_count(old) and _is_count(new):
        return max(old, new)
    return new


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0

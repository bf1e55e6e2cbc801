"""Golden tests: provider usage blocks and streams -> NormalizedUsage -> list cost.

Every expected NormalizedUsage is written out, and every expected cost is computed here by hand from the
catalog's prices (per-MTok rates read with ``prices_at(AT)``), never by calling the code under test twice.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from genai_prices import types as gp

from margin.errors import MarginError
from margin.pricing import Catalog, load_catalog
from margin.tokens import TokenInputError, count_messages, count_text
from margin.usage import (
    AnthropicStreamTracker,
    NormalizedUsage,
    OpenAIStreamTracker,
    UsageBlockError,
    count_prompt_tokens,
    from_anthropic,
    from_openai_chat,
    from_openai_embeddings,
)

AT = datetime(2026, 11, 20, tzinfo=UTC)
OPENAI_MODEL = "gpt-5.4"  # a 272,000-token input tier in the catalog
ANTHROPIC_MODEL = "claude-sonnet-4-5"  # a 200,000-token input tier in the catalog
ANTHROPIC_SNAPSHOT = "claude-sonnet-4-5-20250929"  # what the API echoes in message_start

PROMPT = [
    {"role": "system", "content": "You are a terse assistant for an online bookshop."},
    {"role": "user", "content": "Which of our three warehouses ships fastest to Lisbon?"},
]
ANSWER = "The Madrid warehouse ships fastest to Lisbon: orders placed before 14:00 arrive the next business day."
ANSWER_PIECES = [
    "The",
    " Madrid",
    " warehouse",
    " ships",
    " fastest",
    " to",
    " Lisbon",
    ":",
    " orders placed",
    " before",
]
ANSWER_PIECES += [" 14", ":", "00", " arrive", " the", " next", " business", " day", "."]
assert "".join(ANSWER_PIECES) == ANSWER
SYSTEM = "You are a careful legal assistant."
A_PROMPT = [{"role": "user", "content": "Summarise the attached contract in three bullet points."}]


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


# --- pricing by hand --------------------------------------------------------------------------------------------


def _rate(price: Decimal | gp.TieredPrices | None, prompt_tokens: int) -> Decimal:
    """The per-MTok rate of one price for a request with ``prompt_tokens`` in its prompt: a tier's rate once
    the WHOLE prompt (cached part included) is above the tier's start, and then for every token of the
    request (genai-prices' cliff), else the base rate."""
    assert price is not None, "the test models have every price used here"
    if not isinstance(price, gp.TieredPrices):
        return price
    rate = price.base
    for tier in price.tiers:
        if prompt_tokens > tier.start:
            rate = tier.price
    return rate


def hand_cost(catalog: Catalog, model: str, usage: NormalizedUsage, provider: str | None = None) -> Decimal:
    prices = catalog.find(model, provider).prices_at(AT)
    n = usage.input_tokens
    uncached = usage.input_tokens - usage.cache_read_tokens - usage.cache_write_tokens
    total = Decimal(uncached) * _rate(prices.input_mtok, n) + Decimal(usage.output_tokens) * _rate(
        prices.output_mtok, n
    )
    if usage.cache_read_tokens:
        total += Decimal(usage.cache_read_tokens) * _rate(prices.cache_read_mtok, n)
    if usage.cache_write_tokens:
        total += Decimal(usage.cache_write_tokens) * _rate(prices.cache_write_mtok, n)
    return total / 1_000_000


def threshold(catalog: Catalog, model: str) -> int:
    price = catalog.find(model).prices_at(AT).input_mtok
    assert isinstance(price, gp.TieredPrices), f"{model} should have a context tier in the catalog"
    return price.tiers[0].start


def test_the_test_models_have_the_tiers_the_matrix_relies_on(catalog):
    assert threshold(catalog, OPENAI_MODEL) == 272_000
    assert threshold(catalog, ANTHROPIC_MODEL) == 200_000
    sonnet = catalog.find(ANTHROPIC_MODEL).prices_at(AT)
    # The tier doubles the input rate: pricing every token of a 200,001-token prompt at it is a cliff.
    assert _rate(sonnet.input_mtok, 200_001) == 2 * _rate(sonnet.input_mtok, 200_000)


# --- realistic stream builders ----------------------------------------------------------------------------------


def openai_chunk(model: str, choices: list[dict[str, Any]], usage: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-CgXq2bT6kE9r1yQv0hJ3aLmNoPqRs",
        "object": "chat.completion.chunk",
        "created": 1795176000,
        "model": model,
        "service_tier": "default",
        "system_fingerprint": None,
        "choices": choices,
        "usage": usage,  # null in every chunk but the last when stream_options.include_usage is true
        "obfuscation": "x7Qm",  # padding field OpenAI adds to stream chunks; must be ignored
    }


def openai_stream(
    model: str, pieces: list[str], usage: dict[str, Any] | None, finish_reason: str = "stop"
) -> list[dict[str, Any]]:
    """A chat.completions stream as OpenAI emits it: a role chunk, content chunks, a finish chunk and, with
    include_usage, a final chunk with ``choices: []`` and the usage block."""
    delta0 = {"role": "assistant", "content": "", "refusal": None}
    chunks = [openai_chunk(model, [{"index": 0, "delta": delta0, "logprobs": None, "finish_reason": None}])]
    for piece in pieces:
        choice = {"index": 0, "delta": {"content": piece}, "logprobs": None, "finish_reason": None}
        chunks.append(openai_chunk(model, [choice]))
    chunks.append(openai_chunk(model, [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": finish_reason}]))
    if usage is not None:
        chunks.append(openai_chunk(model, [], usage))
    return chunks


def a_start_usage(uncached: int, *, read: int = 0, write_5m: int = 0, write_1h: int = 0) -> dict[str, Any]:
    return {
        "input_tokens": uncached,
        "cache_creation_input_tokens": write_5m + write_1h,
        "cache_read_input_tokens": read,
        "cache_creation": {"ephemeral_5m_input_tokens": write_5m, "ephemeral_1h_input_tokens": write_1h},
        "output_tokens": 1,
        "service_tier": "standard",
    }


def anthropic_stream(
    start_usage: dict[str, Any], blocks: list[tuple], delta_usage: dict[str, Any] | None, stop: str = "end_turn"
) -> list[tuple[str, dict[str, Any]]]:
    """An Anthropic Messages stream as the API emits it. ``blocks``: ("text", pieces), ("thinking", pieces),
    ("tool_use", name, json_pieces). ``delta_usage`` None leaves out message_delta and message_stop."""
    message = {
        "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
        "type": "message",
        "role": "assistant",
        "model": ANTHROPIC_SNAPSHOT,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": start_usage,
    }
    events: list[tuple[str, dict[str, Any]]] = [("message_start", {"type": "message_start", "message": message})]
    for index, block in enumerate(blocks):
        kind = block[0]
        if kind == "text":
            content_block: dict[str, Any] = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": piece} for piece in block[1]]
        elif kind == "thinking":
            content_block = {"type": "thinking", "thinking": "", "signature": ""}
            deltas = [{"type": "thinking_delta", "thinking": piece} for piece in block[1]]
            deltas.append({"type": "signature_delta", "signature": "EqQBCgIYAhIM1gbcDa9GJwZA2b3h"})
        else:
            content_block = {"type": "tool_use", "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "name": block[1], "input": {}}
            deltas = [{"type": "input_json_delta", "partial_json": piece} for piece in block[2]]
        events.append(
            ("content_block_start", {"type": "content_block_start", "index": index, "content_block": content_block})
        )
        if index == 0:
            events.append(("ping", {"type": "ping"}))
        for delta in deltas:
            events.append(("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}))
        events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
    if delta_usage is not None:
        delta = {"stop_reason": stop, "stop_sequence": None}
        events.append(("message_delta", {"type": "message_delta", "delta": delta, "usage": delta_usage}))
        events.append(("message_stop", {"type": "message_stop"}))
    return events


TEXT_BLOCK = ("text", ["- The supplier", " must deliver", " within 30 days", ".\n- Payment", " is due", " in 60 days."])
THINKING_BLOCK = ("thinking", ["The user wants", " a summary.", " Key terms: delivery,", " payment."])
TOOL_BLOCK = ("tool_use", "get_clause", ['{"sect', 'ion": "pay', 'ment"}'])


# --- the golden matrix ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    # provider/transport/cache/regime: openai|anthropic / json|stream / none|read|write|read+write / below|above
    # (the regime is the model's input tier threshold).
    cell: str
    model: str
    raw: Any  # a usage block, or a list of chunks (openai) / (event, data) pairs (anthropic)
    expected: NormalizedUsage
    note: str = ""

    @property
    def provider(self) -> str:
        return self.cell.split("/")[0]

    @property
    def stream(self) -> bool:
        return self.cell.split("/")[1] == "stream"

    @property
    def cache(self) -> str:
        return self.cell.split("/")[2]

    @property
    def regime(self) -> str:
        return self.cell.split("/")[3]


def _openai_usage(prompt: int, completion: int, *, cached: int = 0, reasoning: int = 0) -> dict[str, Any]:
    """An OpenAI chat.completions usage block, exactly as the API writes it."""
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": reasoning,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


CASES = [
    # ---- OpenAI, whole JSON response -----------------------------------------------------------------------
    Case(
        "openai/json/none/below",
        OPENAI_MODEL,
        {
            "prompt_tokens": 1_200,
            "completion_tokens": 350,
            "total_tokens": 1_550,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 128,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        },
        NormalizedUsage(input_tokens=1_200, output_tokens=350, reasoning_tokens=128),
        "reasoning tokens are a part of completion_tokens: output stays 350",
    ),
    Case(
        "openai/json/read/below",
        OPENAI_MODEL,
        {
            "prompt_tokens": 3_500,
            "completion_tokens": 200,
            "total_tokens": 3_700,
            "prompt_tokens_details": {"cached_tokens": 2_944, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        },
        NormalizedUsage(input_tokens=3_500, output_tokens=200, cache_read_tokens=2_944),
        "cached_tokens are a part of prompt_tokens: 556 uncached",
    ),
    Case(
        "openai/json/none/above",
        OPENAI_MODEL,
        {
            "prompt_tokens": 300_000,
            "completion_tokens": 4_000,
            "total_tokens": 304_000,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 3_000,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        },
        NormalizedUsage(input_tokens=300_000, output_tokens=4_000, reasoning_tokens=3_000),
    ),
    Case(
        "openai/json/read/above",
        OPENAI_MODEL,
        {
            "prompt_tokens": 280_123,
            "completion_tokens": 512,
            "total_tokens": 280_635,
            "prompt_tokens_details": {"cached_tokens": 279_936, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 256,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        },
        NormalizedUsage(input_tokens=280_123, output_tokens=512, cache_read_tokens=279_936, reasoning_tokens=256),
        "only 187 uncached tokens, but the whole prompt is above the tier: every rate is the tier's",
    ),
    # ---- OpenAI, streamed with stream_options.include_usage --------------------------------------------------
    Case(
        "openai/stream/none/below",
        OPENAI_MODEL,
        openai_stream(OPENAI_MODEL, ANSWER_PIECES, _openai_usage(32, 149, reasoning=128)),
        NormalizedUsage(input_tokens=32, output_tokens=149, reasoning_tokens=128),
    ),
    Case(
        "openai/stream/read/below",
        OPENAI_MODEL,
        openai_stream(OPENAI_MODEL, ANSWER_PIECES, _openai_usage(9_876, 21, cached=9_728)),
        NormalizedUsage(input_tokens=9_876, output_tokens=21, cache_read_tokens=9_728),
    ),
    Case(
        "openai/stream/none/above",
        OPENAI_MODEL,
        openai_stream(OPENAI_MODEL, ANSWER_PIECES, _openai_usage(272_001, 2_021, reasoning=2_000)),
        NormalizedUsage(input_tokens=272_001, output_tokens=2_021, reasoning_tokens=2_000),
        "one token above the threshold",
    ),
    Case(
        "openai/stream/read/above",
        OPENAI_MODEL,
        openai_stream(OPENAI_MODEL, ANSWER_PIECES, _openai_usage(400_000, 21, cached=350_208)),
        NormalizedUsage(input_tokens=400_000, output_tokens=21, cache_read_tokens=350_208),
    ),
    # ---- Anthropic, whole JSON response --------------------------------------------------------------------
    Case(
        "anthropic/json/none/below",
        ANTHROPIC_MODEL,
        {
            "input_tokens": 2_048,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
            "output_tokens": 512,
            "service_tier": "standard",
        },
        NormalizedUsage(input_tokens=2_048, output_tokens=512),
    ),
    Case(
        "anthropic/json/read/below",
        ANTHROPIC_MODEL,
        {
            "input_tokens": 100,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 50_000,
            "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
            "output_tokens": 300,
            "service_tier": "standard",
        },
        NormalizedUsage(input_tokens=50_100, output_tokens=300, cache_read_tokens=50_000),
        "the trap: input_tokens=100 is only the uncached tail of a 50,100-token prompt",
    ),
    Case(
        "anthropic/json/write/below",
        ANTHROPIC_MODEL,
        {
            "input_tokens": 120,
            "cache_creation_input_tokens": 12_000,
            "cache_read_input_tokens": 0,
            "cache_creation": {"ephemeral_5m_input_tokens": 12_000, "ephemeral_1h_input_tokens": 0},
            "output_tokens": 400,
            "service_tier": "standard",
        },
        NormalizedUsage(input_tokens=12_120, output_tokens=400, cache_write_tokens=12_000),
    ),
    Case(
        "anthropic/json/read+write/below",
        ANTHROPIC_MODEL,
        {
            "input_tokens": 85,
            "cache_creation_input_tokens": 3_000,
            "cache_read_input_tokens": 40_000,
            "output_tokens": 640,
        },
        NormalizedUsage(input_tokens=43_085, output_tokens=640, cache_read_tokens=40_000, cache_write_tokens=3_000),
        "an older block without the cache_creation breakdown",
    ),
    Case(
        "anthropic/json/none/above",
        ANTHROPIC_MODEL,
        {
            "input_tokens": 210_000,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
            "output_tokens": 1_200,
            "service_tier": "standard",
        },
        NormalizedUsage(input_tokens=210_000, output_tokens=1_200),
    ),
    Case(
        "anthropic/json/read/above",
        ANTHROPIC_MODEL,
        {
            "input_tokens": 150,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 199_900,
            "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
            "output_tokens": 800,
            "service_tier": "standard",
        },
        NormalizedUsage(input_tokens=200_050, output_tokens=800, cache_read_tokens=199_900),
        "no field is above 200,000 but the prompt is: the tier applies (reading input_tokens alone would miss it)",
    ),
    Case(
        "anthropic/json/write/above",
        ANTHROPIC_MODEL,
        {
            "input_tokens": 300,
            "cache_creation_input_tokens": 205_000,
            "cache_read_input_tokens": 0,
            "cache_creation": {"ephemeral_5m_input_tokens": 205_000, "ephemeral_1h_input_tokens": 0},
            "output_tokens": 1_000,
            "service_tier": "standard",
        },
        NormalizedUsage(input_tokens=205_300, output_tokens=1_000, cache_write_tokens=205_000),
    ),
    Case(
        "anthropic/json/read+write/above",
        ANTHROPIC_MODEL,
        {
            "input_tokens": 500,
            "cache_creation_input_tokens": 10_000,
            "cache_read_input_tokens": 190_000,
            "cache_creation": {"ephemeral_5m_input_tokens": 10_000, "ephemeral_1h_input_tokens": 0},
            "output_tokens": 2_048,
            "service_tier": "standard",
        },
        NormalizedUsage(
            input_tokens=200_500, output_tokens=2_048, cache_read_tokens=190_000, cache_write_tokens=10_000
        ),
    ),
    # ---- Anthropic, streamed ---------------------------------------------------------------------------------
    Case(
        "anthropic/stream/none/below",
        ANTHROPIC_MODEL,
        anthropic_stream(a_start_usage(25), [TEXT_BLOCK], {"output_tokens": 15}),
        NormalizedUsage(input_tokens=25, output_tokens=15),
        "message_delta carries the cumulative output; message_start's output_tokens=1 is not added",
    ),
    Case(
        "anthropic/stream/read/below",
        ANTHROPIC_MODEL,
        anthropic_stream(a_start_usage(100, read=50_000), [THINKING_BLOCK, TEXT_BLOCK], {"output_tokens": 503}),
        NormalizedUsage(input_tokens=50_100, output_tokens=503, cache_read_tokens=50_000),
    ),
    Case(
        "anthropic/stream/write/below",
        ANTHROPIC_MODEL,
        anthropic_stream(
            a_start_usage(42, write_5m=9_000),
            [TEXT_BLOCK, TOOL_BLOCK],
            {
                "input_tokens": 42,
                "cache_creation_input_tokens": 9_000,
                "cache_read_input_tokens": 0,
                "output_tokens": 87,
                "server_tool_use": {"web_search_requests": 0},
            },
            stop="tool_use",
        ),
        NormalizedUsage(input_tokens=9_042, output_tokens=87, cache_write_tokens=9_000),
        "newer API: message_delta repeats the prompt counts",
    ),
    Case(
        "anthropic/stream/read+write/below",
        ANTHROPIC_MODEL,
        anthropic_stream(
            a_start_usage(7, read=30_000, write_5m=1_500, write_1h=500), [TEXT_BLOCK], {"output_tokens": 64}
        ),
        NormalizedUsage(input_tokens=32_007, output_tokens=64, cache_read_tokens=30_000, cache_write_tokens=2_000),
        "5-minute and 1-hour writes are summed",
    ),
    Case(
        "anthropic/stream/none/above",
        ANTHROPIC_MODEL,
        anthropic_stream(a_start_usage(200_001), [TEXT_BLOCK], {"output_tokens": 900}),
        NormalizedUsage(input_tokens=200_001, output_tokens=900),
        "one token above the threshold",
    ),
    Case(
        "anthropic/stream/read/above",
        ANTHROPIC_MODEL,
        anthropic_stream(a_start_usage(4, read=200_000), [THINKING_BLOCK, TEXT_BLOCK], {"output_tokens": 1_337}),
        NormalizedUsage(input_tokens=200_004, output_tokens=1_337, cache_read_tokens=200_000),
    ),
    Case(
        "anthropic/stream/write/above",
        ANTHROPIC_MODEL,
        anthropic_stream(
            a_start_usage(2_500, write_5m=240_000),
            [TEXT_BLOCK],
            {
                "input_tokens": 2_500,
                "cache_creation_input_tokens": 240_000,
                "cache_read_input_tokens": 0,
                "output_tokens": 333,
            },
        ),
        NormalizedUsage(input_tokens=242_500, output_tokens=333, cache_write_tokens=240_000),
    ),
    Case(
        "anthropic/stream/read+write/above",
        ANTHROPIC_MODEL,
        anthropic_stream(
            a_start_usage(12, read=180_000, write_5m=25_000), [TOOL_BLOCK], {"output_tokens": 48}, stop="tool_use"
        ),
        NormalizedUsage(input_tokens=205_012, output_tokens=48, cache_read_tokens=180_000, cache_write_tokens=25_000),
    ),
]


def test_the_matrix_is_complete():
    cells = {(c.provider, c.stream, c.cache, c.regime) for c in CASES}
    assert len(cells) == len(CASES), "each cell once"
    expected = set(itertools.product(["openai"], [False, True], ["none", "read"], ["below", "above"]))
    expected |= set(
        itertools.product(["anthropic"], [False, True], ["none", "read", "write", "read+write"], ["below", "above"])
    )
    assert cells == expected


def normalize(case: Case) -> NormalizedUsage:
    if not case.stream:
        return from_openai_chat(case.raw) if case.provider == "openai" else from_anthropic(case.raw)
    if case.provider == "openai":
        tracker = OpenAIStreamTracker(case.model)
        for chunk in case.raw:
            tracker.feed(chunk)
        assert tracker.saw_usage
        assert tracker.finish_reason == "stop"
        assert tracker.text == ANSWER
        return tracker.usage(PROMPT)
    tracker = AnthropicStreamTracker(case.model)
    for event, data in case.raw:
        tracker.feed(event, data)
    assert tracker.saw_usage and tracker.saw_final_usage and tracker.stopped
    assert tracker.finish_reason in ("end_turn", "tool_use")
    assert tracker.first_content_seen
    return tracker.usage(A_PROMPT, system=SYSTEM)


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.cell)
def test_golden_usage_and_list_cost(catalog, case):
    normalized = normalize(case)
    assert normalized == case.expected
    assert normalized.source == "upstream"

    cost = catalog.price(normalized.to_token_usage(), case.model, at=AT)
    assert cost.list_cost == hand_cost(catalog, case.model, case.expected)

    limit = threshold(catalog, case.model)
    if case.regime == "above":
        assert case.expected.input_tokens > limit
        assert cost.tier == f"input > {limit:,} tokens"
    else:
        assert case.expected.input_tokens <= limit
        assert cost.tier is None
    if case.cache in ("read", "read+write"):
        assert normalized.cache_read_tokens > 0
    if case.cache in ("write", "read+write"):
        assert normalized.cache_write_tokens > 0
    if case.cache == "none":
        assert normalized.cache_read_tokens == normalized.cache_write_tokens == 0


# --- the traps, spelled out -------------------------------------------------------------------------------------


def test_anthropic_trap_cache_read_comes_on_top_of_input_tokens(catalog):
    usage = from_anthropic(
        {"input_tokens": 100, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 50_000, "output_tokens": 250}
    )
    assert usage == NormalizedUsage(input_tokens=50_100, output_tokens=250, cache_read_tokens=50_000)
    p = catalog.find(ANTHROPIC_MODEL).prices_at(AT)
    expected = (
        100 * _rate(p.input_mtok, 50_100)
        + 50_000 * _rate(p.cache_read_mtok, 50_100)
        + 250 * _rate(p.output_mtok, 50_100)
    ) / 1_000_000
    assert catalog.price(usage.to_token_usage(), ANTHROPIC_MODEL, at=AT).list_cost == expected
    assert expected == Decimal("0.01905")  # $3 x 100 + $0.30 x 50,000 + $15 x 250, per million


def test_anthropic_trap_read_as_openai_is_refused():
    block = {
        "input_tokens": 100,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 50_000,
        "output_tokens": 250,
    }
    with pytest.raises(UsageBlockError, match="from_anthropic"):
        from_openai_chat(block)


def test_openai_cached_tokens_are_a_part_of_the_prompt(catalog):
    usage = from_openai_chat(_openai_usage(2_000, 100, cached=1_536))
    assert usage == NormalizedUsage(input_tokens=2_000, output_tokens=100, cache_read_tokens=1_536)
    p = catalog.find("gpt-4o").prices_at(AT)
    expected = (464 * p.input_mtok + 1_536 * p.cache_read_mtok + 100 * p.output_mtok) / 1_000_000
    assert catalog.price(usage.to_token_usage(), "gpt-4o", at=AT).list_cost == expected


def test_openai_reasoning_tokens_are_billed_as_output_once(catalog):
    usage = from_openai_chat(_openai_usage(500, 1_000, reasoning=800))
    assert usage == NormalizedUsage(input_tokens=500, output_tokens=1_000, reasoning_tokens=800)
    p = catalog.find("o3-mini").prices_at(AT)
    expected = (500 * p.input_mtok + 1_000 * p.output_mtok) / 1_000_000
    assert catalog.price(usage.to_token_usage(), "o3-mini", at=AT).list_cost == expected


@pytest.mark.parametrize(
    ("block", "expected"),
    [
        pytest.param(  # Gemini's OpenAI-compatible translation: thoughts not in completion_tokens, in total_tokens
            {
                "prompt_tokens": 20,
                "completion_tokens": 198,
                "total_tokens": 623,
                "completion_tokens_details": {"reasoning_tokens": 405},
            },
            NormalizedUsage(input_tokens=20, output_tokens=603, reasoning_tokens=405),
            id="reasoning-on-top-per-total",
        ),
        pytest.param(  # a proxy reporting only reasoning: it cannot be a part of 0 completion tokens
            {"prompt_tokens": 21, "completion_tokens": 0, "completion_tokens_details": {"reasoning_tokens": 60}},
            NormalizedUsage(input_tokens=21, output_tokens=60, reasoning_tokens=60),
            id="reasoning-above-completion-no-total",
        ),
        pytest.param(
            {
                "prompt_tokens": 21,
                "completion_tokens": 60,
                "total_tokens": 81,
                "completion_tokens_details": {"reasoning_tokens": 60},
            },
            NormalizedUsage(input_tokens=21, output_tokens=60, reasoning_tokens=60),
            id="all-reasoning-openai-convention",
        ),
        pytest.param(  # OpenAI Responses API names
            {
                "input_tokens": 5_000,
                "input_tokens_details": {"cached_tokens": 4_096},
                "output_tokens": 900,
                "output_tokens_details": {"reasoning_tokens": 640},
                "total_tokens": 5_900,
            },
            NormalizedUsage(input_tokens=5_000, output_tokens=900, cache_read_tokens=4_096, reasoning_tokens=640),
            id="responses-names",
        ),
        pytest.param(  # vLLM
            {"prompt_tokens": 17, "total_tokens": 117, "completion_tokens": 100, "prompt_tokens_details": None},
            NormalizedUsage(input_tokens=17, output_tokens=100),
            id="vllm-null-details",
        ),
        pytest.param(  # llama.cpp server (newer builds report the KV-cache hit)
            {
                "completion_tokens": 12,
                "prompt_tokens": 34,
                "total_tokens": 46,
                "prompt_tokens_details": {"cached_tokens": 30},
            },
            NormalizedUsage(input_tokens=34, output_tokens=12, cache_read_tokens=30),
            id="llama-cpp",
        ),
        pytest.param(  # Ollama's /v1 endpoint
            {"prompt_tokens": 26, "completion_tokens": 297, "total_tokens": 323},
            NormalizedUsage(input_tokens=26, output_tokens=297),
            id="ollama-no-details",
        ),
        pytest.param(  # DeepSeek: cache hits as top-level fields
            {
                "prompt_tokens": 1_500,
                "completion_tokens": 300,
                "total_tokens": 1_800,
                "prompt_cache_hit_tokens": 1_280,
                "prompt_cache_miss_tokens": 220,
                "completion_tokens_details": {"reasoning_tokens": 120},
            },
            NormalizedUsage(input_tokens=1_500, output_tokens=300, cache_read_tokens=1_280, reasoning_tokens=120),
            id="deepseek-cache-hit",
        ),
        pytest.param(
            {
                "prompt_tokens": 10,
                "completion_tokens": 5,
                "completion_tokens_details": None,
                "prompt_tokens_details": {},
            },
            NormalizedUsage(input_tokens=10, output_tokens=5),
            id="empty-and-null-details",
        ),
    ],
)
def test_openai_compatible_variants(block, expected):
    assert from_openai_chat(block) == expected


def test_embeddings_usage_and_cost(catalog):
    response = {
        "object": "list",
        "data": [{"object": "embedding", "index": 0, "embedding": [0.0023, -0.0093]}],
        "model": "text-embedding-3-small",
        "usage": {"prompt_tokens": 8, "total_tokens": 8},
    }
    usage = from_openai_embeddings(response["usage"])
    assert usage == NormalizedUsage(input_tokens=8)
    p = catalog.find("text-embedding-3-small", "openai").prices_at(AT)
    cost = catalog.price(usage.to_token_usage(), "text-embedding-3-small", "openai", at=AT)
    assert cost.list_cost == 8 * p.input_mtok / 1_000_000
    assert from_openai_embeddings({"total_tokens": 9}) == NormalizedUsage(input_tokens=9)


def test_anthropic_one_hour_cache_writes_are_summed():
    block = {
        "input_tokens": 10,
        "cache_creation_input_tokens": 3_000,
        "cache_read_input_tokens": 0,
        "cache_creation": {"ephemeral_5m_input_tokens": 1_000, "ephemeral_1h_input_tokens": 2_000},
        "output_tokens": 5,
    }
    assert from_anthropic(block) == NormalizedUsage(input_tokens=3_010, output_tokens=5, cache_write_tokens=3_000)
    del block["cache_creation_input_tokens"]  # breakdown only: its sum is the write
    assert from_anthropic(block).cache_write_tokens == 3_000


# --- malformed blocks -------------------------------------------------------------------------------------------

OK_OPENAI = {"prompt_tokens": 100, "completion_tokens": 10}
OK_ANTHROPIC = {"input_tokens": 100, "output_tokens": 10}


@pytest.mark.parametrize(
    ("parse", "block", "match"),
    [
        (from_openai_chat, None, "JSON object"),
        (from_openai_chat, [1, 2], "JSON object"),
        (from_openai_chat, "usage", "JSON object"),
        (from_openai_chat, {}, "neither prompt_tokens"),
        (from_openai_chat, {"total_tokens": 10}, "neither prompt_tokens"),
        (from_openai_chat, {"prompt_tokens": 10}, "completion_tokens is missing"),
        (from_openai_chat, {"completion_tokens": 10}, "prompt_tokens is missing"),
        (from_openai_chat, {"input_tokens": 10}, "output_tokens is missing"),
        (from_openai_chat, {**OK_OPENAI, "prompt_tokens": -1}, r"prompt_tokens must be a whole number >= 0, got -1"),
        (from_openai_chat, {**OK_OPENAI, "prompt_tokens": "100"}, "got '100'"),
        (from_openai_chat, {**OK_OPENAI, "completion_tokens": 10.5}, "got 10.5"),
        (from_openai_chat, {**OK_OPENAI, "completion_tokens": True}, "got True"),
        (from_openai_chat, {**OK_OPENAI, "total_tokens": -3}, "total_tokens"),
        (from_openai_chat, {**OK_OPENAI, "prompt_tokens_details": {"cached_tokens": 128}}, "cannot exceed"),
        (from_openai_chat, {**OK_OPENAI, "prompt_tokens_details": {"cached_tokens": -1}}, "cached_tokens"),
        (from_openai_chat, {**OK_OPENAI, "prompt_tokens_details": 5}, "prompt_tokens_details must be a JSON object"),
        (from_openai_chat, {**OK_OPENAI, "completion_tokens_details": {"reasoning_tokens": "x"}}, "reasoning_tokens"),
        (
            from_openai_chat,
            {**OK_OPENAI, "total_tokens": 110, "completion_tokens_details": {"reasoning_tokens": 11}},
            "a part cannot exceed the whole",
        ),
        (from_openai_chat, {**OK_OPENAI, "prompt_cache_hit_tokens": 101}, "cannot exceed"),
        (from_openai_chat, {"input_tokens": 100, "output_tokens": 3, "cache_read_input_tokens": 5}, "from_anthropic"),
        (from_anthropic, None, "JSON object"),
        (from_anthropic, {"output_tokens": 5}, "input_tokens is missing"),
        (from_anthropic, {"input_tokens": 5}, "output_tokens is missing"),
        (from_anthropic, {"input_tokens": 5, "output_tokens": None}, "output_tokens is missing"),
        (from_anthropic, {**OK_ANTHROPIC, "cache_read_input_tokens": -50}, "cache_read_input_tokens"),
        (from_anthropic, {**OK_ANTHROPIC, "cache_creation_input_tokens": "9"}, "cache_creation_input_tokens"),
        (
            from_anthropic,
            {**OK_ANTHROPIC, "cache_creation_input_tokens": 100, "cache_creation": {"ephemeral_5m_input_tokens": 90}},
            "disagrees",
        ),
        (from_anthropic, {**OK_ANTHROPIC, "cache_creation": [100]}, "cache_creation must be a JSON object"),
        (from_anthropic, {"prompt_tokens": 10, "completion_tokens": 5}, "from_openai_chat"),
        (from_openai_embeddings, {}, "prompt_tokens is missing"),
        (from_openai_embeddings, {"prompt_tokens": -3, "total_tokens": 3}, "prompt_tokens"),
        (from_openai_embeddings, 8, "JSON object"),
    ],
)
def test_malformed_blocks_raise_usage_block_error(parse, block, match):
    with pytest.raises(UsageBlockError, match=match) as info:
        parse(block)
    assert isinstance(info.value, MarginError)
    assert info.value.error_type == "malformed_usage"
    assert info.value.http_status == 502


# --- streams without (complete) usage: local counts -------------------------------------------------------------


def test_openai_stream_without_usage_chunk_is_counted_locally(catalog):
    tracker = OpenAIStreamTracker("gpt-4o")
    for chunk in openai_stream("gpt-4o-2024-08-06", ANSWER_PIECES, usage=None):  # include_usage not honoured
        tracker.feed(chunk)
    assert not tracker.saw_usage
    assert tracker.finish_reason == "stop"
    usage = tracker.usage(PROMPT)
    # gpt-4o counts are exact (o200k_base): 32 prompt tokens with chat overhead, 21 generated.
    assert usage == NormalizedUsage(input_tokens=32, output_tokens=21, source="local_count")
    assert usage.input_tokens == count_messages(PROMPT, "gpt-4o").tokens
    assert usage.output_tokens == count_text(ANSWER, "gpt-4o").tokens
    p = catalog.find("gpt-4o").prices_at(AT)
    expected = (32 * p.input_mtok + 21 * p.output_mtok) / 1_000_000
    assert catalog.price(usage.to_token_usage(), "gpt-4o", at=AT).list_cost == expected


def test_openai_stream_cut_after_a_few_deltas_bills_what_was_generated(catalog):
    tracker = OpenAIStreamTracker("gpt-4o")
    chunks = openai_stream("gpt-4o", ANSWER_PIECES, _openai_usage(32, 21))
    for chunk in chunks[:5]:  # role chunk + "The Madrid warehouse ships", then the client disconnects
        tracker.feed(chunk)
    assert tracker.first_content_seen and not tracker.saw_usage and tracker.finish_reason is None
    usage = tracker.usage(PROMPT)
    assert usage == NormalizedUsage(input_tokens=32, output_tokens=4, source="local_count")
    assert usage.output_tokens > 0
    p = catalog.find("gpt-4o").prices_at(AT)
    assert (
        catalog.price(usage.to_token_usage(), "gpt-4o", at=AT).list_cost
        == (32 * p.input_mtok + 4 * p.output_mtok) / 10**6
    )


def test_openai_first_content_is_not_the_role_chunk():
    tracker = OpenAIStreamTracker("gpt-4o")
    chunks = openai_stream("gpt-4o", ["Hi"], None)
    tracker.feed(chunks[0])
    assert not tracker.first_content_seen
    tracker.feed(chunks[1])
    assert tracker.first_content_seen


def test_openai_stream_tool_calls_and_reasoning_are_counted_locally():
    tracker = OpenAIStreamTracker("gpt-4o")
    call_start = {
        "index": 0,
        "id": "call_Dj8Kq",
        "type": "function",
        "function": {"name": "get_stock", "arguments": ""},
    }
    deltas = [
        {"role": "assistant", "content": None},
        {"tool_calls": [call_start]},
        {"tool_calls": [{"index": 0, "function": {"arguments": '{"isbn": '}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": '"9780141439518"}'}}]},
    ]
    for delta in deltas:
        tracker.feed(openai_chunk("gpt-4o", [{"index": 0, "delta": delta, "finish_reason": None}]))
    tracker.feed(openai_chunk("gpt-4o", [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]))
    assert tracker.first_content_seen and tracker.finish_reason == "tool_calls"
    usage = tracker.usage(PROMPT)
    # 2 tokens for the name, 10 for the arguments JSON, counted separately.
    assert usage == NormalizedUsage(input_tokens=32, output_tokens=12, source="local_count")

    # DeepSeek/vLLM reasoning_content: output and reasoning; "reasoning" sent alongside is not counted twice.
    tracker = OpenAIStreamTracker("gpt-4o")
    for delta in [{"reasoning_content": "The Madrid", "reasoning": "The Madrid"}, {"reasoning": " warehouse ships"}]:
        tracker.feed(openai_chunk("gpt-4o", [{"index": 0, "delta": delta, "finish_reason": None}]))
    tracker.feed(openai_chunk("gpt-4o", [{"index": 0, "delta": {"content": ANSWER}, "finish_reason": "stop"}]))
    usage = tracker.usage(PROMPT)
    assert usage == NormalizedUsage(input_tokens=32, output_tokens=4 + 21, reasoning_tokens=4, source="local_count")


def test_openai_stream_with_usage_in_every_chunk_keeps_the_last():
    tracker = OpenAIStreamTracker("qwen3-32b")
    for i, piece in enumerate(["Hello", " there", "!"], start=1):  # vLLM continuous_usage_stats
        usage = {"prompt_tokens": 17, "completion_tokens": i, "total_tokens": 17 + i}
        tracker.feed(
            openai_chunk("qwen3-32b", [{"index": 0, "delta": {"content": piece}, "finish_reason": None}], usage)
        )
    assert tracker.usage(PROMPT) == NormalizedUsage(input_tokens=17, output_tokens=3)


def test_openai_stream_with_malformed_usage_falls_back_to_local_count():
    tracker = OpenAIStreamTracker("gpt-4o")
    for chunk in openai_stream("gpt-4o", ANSWER_PIECES, {"prompt_tokens": -5, "completion_tokens": 21}):
        tracker.feed(chunk)
    assert tracker.saw_usage
    assert tracker.usage(PROMPT) == NormalizedUsage(input_tokens=32, output_tokens=21, source="local_count")
    assert "prompt_tokens must be a whole number" in tracker.usage_error


def test_openai_local_count_accepts_a_precounted_prompt():
    tracker = OpenAIStreamTracker("gpt-4o")
    tracker.feed(openai_chunk("gpt-4o", [{"index": 0, "delta": {"content": ANSWER}, "finish_reason": None}]))
    assert tracker.usage(PROMPT, prompt_tokens=76) == NormalizedUsage(
        input_tokens=76, output_tokens=21, source="local_count"
    )


def test_anthropic_stream_cut_after_a_few_deltas_keeps_upstream_prompt_and_counts_output(catalog):
    events = anthropic_stream(a_start_usage(100, read=50_000), [TEXT_BLOCK], {"output_tokens": 15})
    tracker = AnthropicStreamTracker(ANTHROPIC_MODEL)
    # message_start, content_block_start, ping, three text deltas: then the connection drops.
    for event, data in events[:6]:
        tracker.feed(event, data)
    assert tracker.saw_usage and not tracker.saw_final_usage and not tracker.stopped
    assert tracker.text == "- The supplier must deliver within 30 days"
    usage = tracker.usage(A_PROMPT, system=SYSTEM)
    # Prompt and cache from message_start (the trap again); output: 11 estimated tokens (o200k x 1.20).
    assert usage == NormalizedUsage(
        input_tokens=50_100, output_tokens=11, cache_read_tokens=50_000, source="local_count"
    )
    assert usage.output_tokens == count_text(tracker.text, ANTHROPIC_MODEL).tokens > 0
    p = catalog.find(ANTHROPIC_MODEL).prices_at(AT)
    expected = (
        100 * _rate(p.input_mtok, 50_100)
        + 50_000 * _rate(p.cache_read_mtok, 50_100)
        + 11 * _rate(p.output_mtok, 50_100)
    ) / 1_000_000
    assert catalog.price(usage.to_token_usage(), ANTHROPIC_MODEL, at=AT).list_cost == expected


def test_anthropic_stream_cut_right_after_message_start_bills_its_output_tokens():
    events = anthropic_stream(a_start_usage(25), [TEXT_BLOCK], None)
    tracker = AnthropicStreamTracker(ANTHROPIC_MODEL)
    tracker.feed(*events[0])
    assert not tracker.first_content_seen
    assert tracker.usage(A_PROMPT) == NormalizedUsage(input_tokens=25, output_tokens=1, source="local_count")


def test_anthropic_stream_thinking_counts_as_output_and_reasoning_when_cut():
    events = anthropic_stream(a_start_usage(30), [THINKING_BLOCK, TEXT_BLOCK], None)
    tracker = AnthropicStreamTracker(ANTHROPIC_MODEL)
    for event, data in events:
        tracker.feed(event, data)
    thinking = count_text("".join(THINKING_BLOCK[1]), ANTHROPIC_MODEL).tokens
    text = count_text("".join(TEXT_BLOCK[1]), ANTHROPIC_MODEL).tokens
    usage = tracker.usage(A_PROMPT)
    assert usage == NormalizedUsage(
        input_tokens=30, output_tokens=thinking + text, reasoning_tokens=thinking, source="local_count"
    )
    assert thinking > 0 and text > 0


def test_anthropic_stream_without_message_start_is_counted_locally():
    tracker = AnthropicStreamTracker(ANTHROPIC_MODEL)
    for event, data in anthropic_stream(a_start_usage(1), [TEXT_BLOCK], None)[1:6]:
        tracker.feed(event, data)
    usage = tracker.usage(A_PROMPT, system=SYSTEM)
    # Estimates for Claude: system + messages with chat overhead = 35, the text so far = 11.
    assert usage == NormalizedUsage(input_tokens=35, output_tokens=11, source="local_count")
    system_as_message = [{"role": "system", "content": SYSTEM}, *A_PROMPT]
    assert usage.input_tokens == count_messages(system_as_message, ANTHROPIC_MODEL).tokens
    # Without a system prompt, only the messages; a system given as text blocks counts like the string.
    assert tracker.usage(A_PROMPT).input_tokens == count_messages(A_PROMPT, ANTHROPIC_MODEL).tokens == 22
    blocks = [{"type": "text", "text": SYSTEM}]
    assert tracker.usage(A_PROMPT, system=blocks).input_tokens == 35


def test_anthropic_message_delta_repeating_larger_counts_wins():
    # With server tools, the final message_delta reports the prompt counts of the whole turn.
    events = anthropic_stream(
        a_start_usage(2_000, read=10_000),
        [TEXT_BLOCK],
        {
            "input_tokens": 7_500,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 10_000,
            "output_tokens": 310,
        },
    )
    tracker = AnthropicStreamTracker(ANTHROPIC_MODEL)
    for event, data in events:
        tracker.feed(event, data)
    assert tracker.usage(A_PROMPT) == NormalizedUsage(input_tokens=17_500, output_tokens=310, cache_read_tokens=10_000)


def test_anthropic_event_name_is_used_when_data_has_no_type():
    tracker = AnthropicStreamTracker(ANTHROPIC_MODEL)
    tracker.feed("message_start", {"message": {"usage": {"input_tokens": 9, "output_tokens": 1}}})
    tracker.feed("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": "Hi"}})
    tracker.feed("message_delta", {"delta": {"stop_reason": "max_tokens"}, "usage": {"output_tokens": 2}})
    tracker.feed("message_stop", {})
    assert tracker.finish_reason == "max_tokens" and tracker.stopped
    assert tracker.usage(A_PROMPT) == NormalizedUsage(input_tokens=9, output_tokens=2)


def test_anthropic_stream_with_malformed_usage_falls_back_to_local_count():
    tracker = AnthropicStreamTracker(ANTHROPIC_MODEL)
    tracker.feed(
        "message_start", {"type": "message_start", "message": {"usage": {"input_tokens": "lots", "output_tokens": 1}}}
    )
    tracker.feed(
        "content_block_delta",
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "text_delta", "text": "- The supplier must deliver within 30 days"},
        },
    )
    tracker.feed(
        "message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 12}}
    )
    usage = tracker.usage(A_PROMPT, system=SYSTEM)
    assert usage == NormalizedUsage(input_tokens=35, output_tokens=11, source="local_count")
    assert "input_tokens" in tracker.usage_error


# --- robustness: unexpected but well-formed events never raise ---------------------------------------------------


def test_openai_tracker_ignores_unexpected_chunks():
    tracker = OpenAIStreamTracker("gpt-4o")
    for chunk in [
        "[DONE]",
        None,
        {},
        {"choices": None, "usage": None},
        {"choices": "nope"},
        {"choices": [None, 5, "x"]},
        {"choices": [{"delta": None, "finish_reason": None}]},
        {"choices": [{"index": "0", "delta": {"content": None, "tool_calls": None, "function_call": None}}]},
        {"choices": [{"delta": {"tool_calls": [None, {"function": None}, {"index": 0, "function": {"name": 5}}]}}]},
        {"choices": [{"delta": {"audio": {"id": "audio_1", "data": "UklGR"}, "content": ""}}]},
        {"error": {"message": "The server had an error", "type": "server_error"}},
        {"object": "chat.completion.chunk.unknown", "choices": [], "usage": "n/a"},
    ]:
        tracker.feed(chunk)
    assert not tracker.saw_usage and not tracker.first_content_seen and tracker.finish_reason is None
    assert tracker.usage([]) == NormalizedUsage(input_tokens=3, output_tokens=0, source="local_count")


def test_anthropic_tracker_ignores_unexpected_events():
    tracker = AnthropicStreamTracker(ANTHROPIC_MODEL)
    for event, data in [
        ("ping", {"type": "ping"}),
        (None, {}),
        (None, "[DONE]"),
        ("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
        ("message_start", {"type": "message_start"}),
        ("message_start", {"type": "message_start", "message": None}),
        ("message_start", {"type": "message_start", "message": {"usage": None}}),
        ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": None}),
        (
            "content_block_start",
            {"type": "content_block_start", "content_block": {"type": "redacted_thinking", "data": "EmwKAhgB"}},
        ),
        ("content_block_delta", {"type": "content_block_delta", "index": 1, "delta": None}),
        (
            "content_block_delta",
            {"type": "content_block_delta", "delta": {"type": "citations_delta", "citation": {"cited_text": "x"}}},
        ),
        ("content_block_delta", {"type": "content_block_delta", "delta": {"type": "text_delta", "text": None}}),
        ("content_block_delta", {"type": "content_block_delta", "delta": {"type": "text_delta"}}),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ("future_event", {"type": "future_event", "payload": [1, 2, 3]}),
        ("message_delta", {"type": "message_delta", "delta": None, "usage": None}),
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": None}, "usage": {"output_tokens": None}}),
    ]:
        tracker.feed(event, data)
    assert not tracker.saw_usage and not tracker.saw_final_usage and not tracker.first_content_seen
    assert tracker.finish_reason is None
    assert tracker.usage(A_PROMPT) == NormalizedUsage(input_tokens=22, output_tokens=0, source="local_count")


# --- count_prompt_tokens ---------------------------------------------------------------------------------------

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_stock",
            "description": "Stock level of a book by ISBN",
            "parameters": {"type": "object", "properties": {"isbn": {"type": "string"}}, "required": ["isbn"]},
        },
    }
]


def test_count_prompt_tokens_openai_chat_with_tools():
    body = {"model": "gpt-4o", "messages": PROMPT, "tools": TOOLS, "stream": True}
    tools_json = json.dumps(TOOLS, separators=(",", ":"))
    assert count_text(tools_json, "gpt-4o").tokens == 44
    assert count_prompt_tokens("chat.completions", body, "gpt-4o") == 32 + 44
    assert count_prompt_tokens("/v1/chat/completions", body, "gpt-4o") == 76
    assert count_prompt_tokens("chat.completions", {"messages": PROMPT}, "gpt-4o") == 32


def test_count_prompt_tokens_anthropic_messages():
    body = {"model": ANTHROPIC_MODEL, "max_tokens": 1024, "system": SYSTEM, "messages": A_PROMPT}
    assert count_prompt_tokens("messages", body, ANTHROPIC_MODEL) == 35
    assert count_prompt_tokens("/v1/messages", {"messages": A_PROMPT}, ANTHROPIC_MODEL) == 22
    tools = [{"name": "get_clause", "description": "A contract clause", "input_schema": {"type": "object"}}]
    tools_tokens = count_text(json.dumps(tools, separators=(",", ":")), ANTHROPIC_MODEL).tokens
    assert count_prompt_tokens("messages", {**body, "tools": tools}, ANTHROPIC_MODEL) == 35 + tools_tokens


def test_count_prompt_tokens_embeddings():
    one = count_text("The food was delicious", "text-embedding-3-small").tokens
    assert count_prompt_tokens("embeddings", {"input": "The food was delicious"}, "text-embedding-3-small") == one
    body = {"input": ["The food was delicious", "The food was delicious"]}
    assert count_prompt_tokens("embeddings", body, "text-embedding-3-small") == 2 * one
    assert count_prompt_tokens("embeddings", {"input": [[1, 2, 3], [4, 5]]}, "text-embedding-3-small") == 5


@pytest.mark.parametrize(
    ("endpoint", "body", "match"),
    [
        ("images.generations", {"prompt": "a cat"}, "known endpoints"),
        ("chat.completions", {"model": "gpt-4o"}, "needs 'messages'"),
        ("messages", {"system": "x"}, "needs 'messages'"),
        ("messages", {"messages": "hello"}, "list of message objects"),
        ("embeddings", {"model": "x"}, "needs 'input'"),
        ("embeddings", {"input": 5}, "embeddings input"),
        ("chat.completions", ["not", "a", "body"], "JSON object"),
    ],
)
def test_count_prompt_tokens_rejects_bad_requests(endpoint, body, match):
    with pytest.raises(TokenInputError, match=match):
        count_prompt_tokens(endpoint, body, "gpt-4o")

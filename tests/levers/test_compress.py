"""Prompt compression: filler and whitespace go, protected text stays byte for byte, tokens never grow."""

from __future__ import annotations

import copy
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from margin.levers import compress_messages, compress_text, protected_spans
from margin.tokens import count_messages

MODEL = "gpt-4o"


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ("Please summarize the text below for me.", "Summarize the text below."),
        ("Could you please   translate this into French?  ", "Translate this into French?"),
        ("I would like you to write a haiku. Thanks in advance!", "Write a haiku."),
        ("Can you kindly list three colours?", "List three colours?"),
        ("Done. Kindly review it.", "Done. Review it."),
        ("It is important to note that the cache is cold.", "The cache is cold."),
        ("As an AI language model, I think so.", "I think so."),
        ("We need this in order to ship.", "We need this to ship."),
        ("Due to the fact that it rains, stay in.", "Because it rains, stay in."),
        ("Summarize it, please.", "Summarize it."),
        ("I’d like you to check this.", "Check this."),  # curly apostrophe
        ("Bitte fasse den Text zusammen, bitte.", "Fasse den Text zusammen."),
        ("Por favor, resume el texto.", "Resume el texto."),
        ("S'il vous plaît, résumez ce texte. Merci d'avance.", "Résumez ce texte."),
        ("a\n\n\n\n  b   c\t\t d   ", "a\n\n  b c d"),  # indentation kept, runs folded, blank lines capped
    ],
)
def test_examples(before, after):
    assert compress_text(before).text == after


@pytest.mark.parametrize(
    "text",
    [
        "He is eager to please the customers. It will please them.",  # "please" as a verb
        "Treat them kindly.",  # no word follows: not a leading filler
        "Treat them kindly and fairly.",  # an adverb of manner mid-sentence
        "The pleased customer",
        "unpleasant",
        "displease",  # word boundaries
        "Plain text without filler.",
    ],
)
def test_text_without_filler_is_unchanged(text):
    result = compress_text(text)
    assert (result.text, result.changes) == (text, 0)


@pytest.mark.parametrize(
    ("text", "protected"),
    [
        ("```\nplease   keep\n```\nplease do it", "```\nplease   keep\n```"),
        ("~~~\nplease   keep\n~~~ please do", "~~~\nplease   keep\n~~~"),
        ("unclosed ```\nplease   keep  ", "```\nplease   keep  "),
        ("Run `please  x` now, please.", "`please  x`"),
        ("Run ``please ` x`` now", "``please ` x``"),
        ('Sort {"note": "please   keep", "n": [1,  2]} please', '{"note": "please   keep", "n": [1,  2]}'),
        ("Rank [ 1,  2 ] please", "[ 1,  2 ]"),
        ('He said "please   keep this" loudly', '"please   keep this"'),
        ("He said “please   keep” loudly", "“please   keep”"),
        ("Il a dit « please   keep » hier", "« please   keep »"),
        ("Don't touch 'please  this' but please drop", "'please  this'"),
        ("> please   keep this quote\nPlease drop this", "> please   keep this quote"),
        ("text\n    please   indented code\nplease drop", "    please   indented code"),
        ('a stray " protects   the rest, please', '" protects   the rest, please'),
    ],
)
def test_protected_spans_survive(text, protected):
    assert protected in compress_text(text).text


def test_protected_span_detection():
    text = "x \"a\" y `b` [1,2] {bad} 'q' it's"
    # every balanced bracket group is protected, JSON or not ({bad} too): see the module docstring
    assert [text[s:e] for s, e in protected_spans(text)] == ['"a"', "`b`", "[1,2]", "{bad}", "'q'"]
    brackets = '{"k": "]"} [a} [1]'
    assert [brackets[s:e] for s, e in protected_spans(brackets)] == ['{"k": "]"}', "[1]"]
    assert protected_spans("it's the users' data") == []  # apostrophes are not quotes


def test_compress_messages_keeps_structure_and_only_touches_text():
    messages = [
        {"role": "system", "content": "Please   be brief."},
        {
            "role": "user",
            "name": "ada",
            "content": [
                {
                    "type": "text",
                    "text": "Could you please describe this image?",
                    "cache_control": {"type": "ephemeral"},
                },
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,please  please"}},
            ],
        },
        {
            "role": "assistant",
            "content": "Please   note: assistant text is left alone.",
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"q": "please  x"}'}}
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "please   tool output"},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "please   x"}]},
    ]
    original = copy.deepcopy(messages)
    result = compress_messages(messages, model=MODEL)
    assert messages == original  # input not mutated
    out = result.messages
    assert out[0] == {"role": "system", "content": "Be brief."}
    assert out[1]["name"] == "ada"
    assert out[1]["content"][0] == {
        "type": "text",
        "text": "Describe this image?",
        "cache_control": {"type": "ephemeral"},
    }
    assert out[1]["content"][1] is messages[1]["content"][1]
    assert out[2] is messages[2] and out[3] is messages[3] and out[4] is messages[4]
    assert [m["role"] for m in out] == [m["role"] for m in messages]
    assert result.tokens_before == count_messages(messages, MODEL).tokens
    assert result.tokens_after == count_messages(out, MODEL).tokens
    assert result.tokens_after < result.tokens_before
    assert result.changes == 2  # "Please   " (its trailing spaces go with it) and "Could you please "


def test_compress_messages_with_roles_and_unchanged_input():
    messages = [{"role": "assistant", "content": "Please   go."}]
    assert compress_messages(messages, model=MODEL, roles={"assistant"}).messages[0]["content"] == "Go."
    untouched = compress_messages([{"role": "user", "content": "Fine as is."}], model="claude-sonnet-4-5")
    assert (untouched.changes, untouched.tokens_before == untouched.tokens_after) == (0, True)


# --- properties --------------------------------------------------------------------------------------------
FILLER = [
    "please", "Please", "could you please", "I would like you to", "it is important to note that",
    "as an AI language model,", "Thanks in advance.", "in order to", "kindly", "bitte", "por favor",
]  # fmt: skip
WORDS = ["the", "data", "summarize", "list", "it's", "users'", "x", "42", "café", "東京", "-", "(", ")", ":", ".", ","]
SEPARATORS = [" ", "  ", "\t", "\n", "\n\n\n", " \n", ", "]

_inner = st.text(
    alphabet=st.characters(blacklist_characters="`'\"“”«»„「」『』\n\r", blacklist_categories=("Cs",)), max_size=30
)
_json_value = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=6,
)
_protected = st.one_of(
    _inner.map(lambda s: f"```\n{s}\n```"),
    st.text(
        alphabet=st.characters(blacklist_characters="`\n", blacklist_categories=("Cs",)), min_size=1, max_size=20
    ).map(lambda s: f"`{s}`"),
    st.one_of(st.lists(_json_value, max_size=3), st.dictionaries(st.text(max_size=5), _json_value, max_size=3)).map(
        lambda v: json.dumps(v, ensure_ascii=False)
    ),
    _inner.map(lambda s: f'"{s}"'),
    _inner.map(lambda s: f"“{s}”"),
    _inner.filter(lambda s: s[:1].strip() and s[-1:].strip()).map(lambda s: f"'{s}'"),
    _inner.map(lambda s: f"\n> {s}\n"),
)
_free = st.lists(st.sampled_from(FILLER + WORDS + SEPARATORS), max_size=12).map("".join)


@st.composite
def documents(draw):
    """Free text (filler, words, whitespace) with protected spans between spaces; returns (text, spans)."""
    pieces: list[str] = []
    spans: list[str] = []
    for _ in range(draw(st.integers(0, 4))):
        pieces.append(draw(_free))
        span = draw(_protected)
        spans.append(span)
        pieces.append(f" {span} ")
    pieces.append(draw(_free))
    return "".join(pieces), spans


SETTINGS = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(documents())
def test_protected_spans_are_byte_identical(doc):
    text, spans = doc
    out = compress_text(text).text
    position = 0
    for span in spans:
        found = out.find(span.strip("\n"), position)
        assert found >= 0, (text, out, span)
        position = found + len(span.strip("\n"))


@SETTINGS
@given(st.one_of(documents().map(lambda d: d[0]), st.text(max_size=200)))
def test_idempotent_and_never_more_tokens(text):
    once = compress_text(text).text
    assert compress_text(once).text == once
    messages = [{"role": "user", "content": text}, {"role": "system", "content": [{"type": "text", "text": text}]}]
    result = compress_messages(messages, model=MODEL)
    assert result.tokens_after <= result.tokens_before
    again = compress_messages(result.messages, model=MODEL)
    assert again.messages == result.messages and again.changes == 0

"""Context fitting: whole middle turns are dropped, system prompts and recent turns kept, tool pairs intact.

Token arithmetic (gpt-4o, exact): a message costs 3 + 1 (its role is one token) + its content tokens, and a
conversation adds 3. "hello" and " hello" are one token each, so "hello" x k words costs k tokens. The
placeholder note "[N earlier messages omitted to fit the context window.]" is 11 tokens, and still 11 with the
blank line that joins it to the next user message (".]\n\n" is a single token).
"""

from __future__ import annotations

import copy

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from margin.levers import fit_context, summary_request, turns, with_summary
from margin.tokens import count_messages

MODEL = "gpt-4o"


def words(k: int) -> str:
    return " ".join(["hello"] * k)


def conversation() -> list[dict]:
    # system: 10 words -> 14 tokens. Five turns of user (20 words, 24 tokens) + assistant (24 tokens) = 48.
    messages = [{"role": "system", "content": words(10)}]
    for _ in range(5):
        messages += [{"role": "user", "content": words(20)}, {"role": "assistant", "content": words(20)}]
    return messages


def test_hand_worked_token_counts():
    assert count_messages(conversation(), MODEL).tokens == 3 + 14 + 5 * 48  # 257


def test_fits_already():
    result = fit_context(conversation(), model=MODEL, max_input_tokens=257)
    assert (result.method, result.dropped, result.fits, result.tokens_after) == ("none", [], True, 257)
    assert result.messages == conversation()


def test_drops_the_fewest_oldest_middle_turns():
    # Dropping k turns leaves 3 + 14 + (5 - k) * 48 + 11 (note) = 268 - 48k tokens: k = 1 -> 220, k = 2 -> 172.
    messages = conversation()
    result = fit_context(messages, model=MODEL, max_input_tokens=200)
    assert result.method == "dropped_middle"
    assert result.dropped == [1, 2, 3, 4]
    assert (result.tokens_before, result.tokens_after, result.fits) == (257, 172, True)
    assert result.messages[0] is messages[0]
    # the note heads the next user message, so user and assistant still alternate
    note = "[4 earlier messages omitted to fit the context window.]"
    assert result.messages[1] == {"role": "user", "content": note + "\n\n" + words(20)}
    assert result.messages[2:] == messages[6:]
    assert messages[5]["content"] == words(20)  # the original is not touched


def test_keep_recent_is_a_floor_and_fits_is_false_beyond_it():
    # keep_recent=2 allows dropping at most 3 turns: 268 - 144 = 124 tokens; a budget of 100 cannot be met.
    result = fit_context(conversation(), model=MODEL, max_input_tokens=100)
    assert (result.fits, result.tokens_after, result.dropped) == (False, 124, [1, 2, 3, 4, 5, 6])
    # keep_recent=1 allows 4 turns: 268 - 192 = 76 tokens.
    result = fit_context(conversation(), model=MODEL, max_input_tokens=100, keep_recent=1)
    assert (result.fits, result.tokens_after) == (True, 76)


def test_keep_first_protects_the_opening_turn():
    # Turn 0 kept; turns 1 and 2 dropped: 268 - 96 = 172 again, but the note sits after the first turn.
    result = fit_context(conversation(), model=MODEL, max_input_tokens=200, keep_first=1)
    assert (result.dropped, result.tokens_after) == ([3, 4, 5, 6], 172)
    assert [m["role"] for m in result.messages] == [
        "system",
        "user",
        "assistant",
        "user",
        "assistant",
        "user",
        "assistant",
    ]
    assert result.messages[3]["content"].startswith("[4 earlier messages")


def test_nothing_droppable():
    messages = [{"role": "system", "content": words(50)}, {"role": "user", "content": words(50)}]
    result = fit_context(messages, model=MODEL, max_input_tokens=20)
    assert (result.method, result.fits, result.dropped) == ("none", False, [])


def test_summary_needed_reserves_room_for_the_summary():
    # Effective budget 230 - 50 = 180: two turns must go (172).
    result = fit_context(conversation(), model=MODEL, max_input_tokens=230, summarize=True, summary_max_tokens=50)
    assert (result.method, result.dropped, result.tokens_after) == ("summary_needed", [1, 2, 3, 4], 172)
    merged = with_summary(conversation(), result.dropped, "  - the user said hello a lot\n")
    assert len(merged) == len(conversation()) - 4
    assert merged[1] == {
        "role": "user",
        "content": "[Summary of 4 earlier messages, omitted to fit the context window:]\n- the user said hello a lot"
        "\n\n" + words(20),
    }
    assert merged[2:] == conversation()[6:]


def test_note_goes_into_list_content_or_stands_alone():
    messages = [
        {"role": "user", "content": words(40)},
        {"role": "assistant", "content": words(40)},
        {"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "image_url", "image_url": {"url": "u"}}]},
    ]
    result = fit_context(messages, model=MODEL, max_input_tokens=60, keep_recent=1)
    assert result.messages == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "[2 earlier messages omitted to fit the context window.]"},
                {"type": "text", "text": "hi"},
                {"type": "image_url", "image_url": {"url": "u"}},
            ],
        }
    ]
    # no user message after the gap (only possible with hand-picked indices): the note stands alone
    assert with_summary(messages, [2], "s") == [
        *messages[:2],
        {"role": "user", "content": "[Summary of 1 earlier message, omitted to fit the context window:]\ns"},
    ]


def test_tool_calls_stay_with_their_results_openai_and_anthropic():
    messages = [
        {"role": "system", "content": "s"},
        {"role": "user", "content": words(30)},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "a", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
        },
        {"role": "tool", "tool_call_id": "a", "content": words(30)},
        {"role": "assistant", "content": words(5)},
        {"role": "user", "content": words(30)},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "b", "name": "g", "input": {"q": 1}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "b", "content": words(30)}]},
        {"role": "assistant", "content": words(5)},
        {"role": "user", "content": "last"},
    ]
    assert turns(messages) == [[1, 2, 3, 4], [5, 6, 7, 8], [9]]
    result = fit_context(
        messages, model=MODEL, max_input_tokens=count_messages(messages, MODEL).tokens - 1, keep_recent=1
    )
    assert result.dropped == [1, 2, 3, 4]  # the whole first turn, its tool call and result together


def test_input_is_not_mutated_and_errors():
    messages = conversation()
    snapshot = copy.deepcopy(messages)
    fit_context(messages, model=MODEL, max_input_tokens=150)
    assert messages == snapshot
    for bad in (
        {"max_input_tokens": 0},
        {"max_input_tokens": 100, "keep_recent": 0},
        {"max_input_tokens": 100, "keep_first": -1},
    ):
        with pytest.raises(ValueError):
            fit_context(messages, model=MODEL, **bad)
    with pytest.raises(ValueError):
        fit_context(messages, model=MODEL, max_input_tokens=100, summarize=True, summary_max_tokens=100)
    with pytest.raises(ValueError):
        with_summary(messages, [99], "x")


def test_summary_request_body():
    dropped = [
        {"role": "user", "content": "What's the weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "a", "function": {"name": "weather", "arguments": '{"city":"Paris"}'}}],
        },
        {"role": "tool", "tool_call_id": "a", "content": "18C, sunny"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "b", "name": "news", "input": {"city": "Paris"}}]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "b", "content": [{"type": "text", "text": "x" * 50}]}],
        },
        {
            "role": "user",
            "content": [{"type": "text", "text": "And this?"}, {"type": "image_url", "image_url": {"url": "u"}}],
        },
    ]
    body = summary_request(dropped, model="cheap", max_tokens=100, max_chars_per_message=40)
    assert list(body) == ["model", "messages", "max_tokens", "temperature"]
    assert (body["model"], body["max_tokens"], body["temperature"]) == ("cheap", 100, 0)
    assert body["messages"][0]["role"] == "system"
    assert body["messages"][1]["content"].split("\n\n") == [
        "user: What's the weather in Paris?",
        'assistant: [called weather({"city":"Paris"})]',
        "tool result: 18C, sunny",
        'assistant: [called news({"city": "Paris"})]',
        "user: [tool result] " + "x" * 26 + " […]",  # clipped to 40 characters: 14 + 26
        "user: And this?\n[image_url]",
    ]
    assert "model" not in summary_request(dropped)


# --- properties --------------------------------------------------------------------------------------------
@st.composite
def conversations(draw):
    messages: list[dict] = []
    if draw(st.booleans()):
        messages.append({"role": "system", "content": words(draw(st.integers(1, 30)))})
    call = 0
    for _ in range(draw(st.integers(1, 7))):
        messages.append({"role": "user", "content": words(draw(st.integers(1, 40)))})
        for _ in range(draw(st.integers(0, 2))):
            call += 1
            if draw(st.booleans()):
                messages.append(
                    {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [
                            {"id": f"c{call}", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                        ],
                    }
                )
                messages.append(
                    {"role": "tool", "tool_call_id": f"c{call}", "content": words(draw(st.integers(1, 40)))}
                )
            else:
                messages.append(
                    {"role": "assistant", "content": [{"type": "tool_use", "id": f"c{call}", "name": "f", "input": {}}]}
                )
                messages.append(
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "tool_result",
                                "tool_use_id": f"c{call}",
                                "content": words(draw(st.integers(1, 40))),
                            }
                        ],
                    }
                )
        messages.append({"role": "assistant", "content": words(draw(st.integers(1, 40)))})
        if draw(st.integers(0, 5)) == 0:
            messages.append({"role": "developer", "content": words(3)})
    return messages


def _ids(messages, key):
    found = set()
    for m in messages:
        for call in m.get("tool_calls") or []:
            found.add(("call", call["id"]))
        if m.get("role") == "tool":
            found.add(("result", m["tool_call_id"]))
        if isinstance(m.get("content"), list):
            for block in m["content"]:
                if block.get("type") == "tool_use":
                    found.add(("call", block["id"]))
                if block.get("type") == "tool_result":
                    found.add(("result", block["tool_use_id"]))
    return {i for kind, i in found if kind == key}


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(conversations(), st.integers(20, 1200), st.integers(1, 3), st.integers(0, 1))
def test_fit_properties(messages, budget, keep_recent, keep_first):
    result = fit_context(messages, model=MODEL, max_input_tokens=budget, keep_recent=keep_recent, keep_first=keep_first)
    kept_at = [i for i in range(len(messages)) if i not in set(result.dropped)]
    kept = [messages[i] for i in kept_at]
    # order preserved: the result is the kept messages in order; the note heads one user message
    assert len(result.messages) == len(kept)
    noted = [j for j, (a, b) in enumerate(zip(result.messages, kept, strict=True)) if a != b]
    assert len(noted) == (1 if result.dropped else 0)
    for j in noted:
        assert (
            result.messages[j]["content"]
            == f"[{len(result.dropped)} earlier messages omitted to fit the context window.]\n\n" + kept[j]["content"]
        )
        assert kept[j]["role"] == "user" and kept_at[j] > min(result.dropped)
    # system and developer prompts always kept
    assert all(m in kept for m in messages if m["role"] in ("system", "developer"))
    # whole turns only; recent and first turns never dropped
    grouped = turns(messages)
    dropped = set(result.dropped)
    assert all(set(t) <= dropped or not (set(t) & dropped) for t in grouped)
    assert not dropped & {i for t in grouped[len(grouped) - keep_recent :] + grouped[:keep_first] for i in t}
    # every kept tool call has its result and every kept result its call
    assert _ids(result.messages, "call") == _ids(result.messages, "result")
    # the count is honest, and the budget is met whenever the kept minimum allows it
    assert result.tokens_after == count_messages(result.messages, MODEL).tokens
    assert result.fits == (result.tokens_after <= budget)
    droppable = grouped[keep_first : max(keep_first, len(grouped) - keep_recent)]
    gone = sorted(i for t in droppable for i in t)
    minimum_at = [i for i in range(len(messages)) if i not in set(gone)]
    minimum = [messages[i] for i in minimum_at]
    if gone:  # the note heads the first user message after the gap (a turn start: string content here)
        j = next(k for k, i in enumerate(minimum_at) if i > gone[0] and messages[i]["role"] == "user")
        note = f"[{len(gone)} earlier messages omitted to fit the context window.]\n\n"
        minimum[j] = {**minimum[j], "content": note + minimum[j]["content"]}
    minimum_tokens = count_messages(minimum, MODEL).tokens
    if minimum_tokens <= budget or result.tokens_before <= budget:
        assert result.fits

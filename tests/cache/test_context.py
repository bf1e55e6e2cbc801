"""What must match exactly (the fingerprint) and what is compared loosely (the semantic text)."""

from __future__ import annotations

from margin.cache import context_fingerprint, semantic_text

SYSTEM = {"role": "system", "content": "You are a helpful billing assistant."}
TOOLS = [{"type": "function", "function": {"name": "refund", "parameters": {"type": "object"}}}]


def convo(*turns: tuple[str, str]) -> list[dict]:
    return [SYSTEM, *({"role": r, "content": c} for r, c in turns)]


BASE = convo(("user", "I have a Flixora plan."), ("assistant", "It renews on the 14th."), ("user", "cancel it"))


def fp(messages=BASE, model="gpt-4o", tools=TOOLS, params=None, system=None) -> str:
    return context_fingerprint(model, messages, tools=tools, params=params or {"temperature": 0}, system=system)


def test_same_request_same_fingerprint_and_only_last_user_turn_is_embedded() -> None:
    assert fp() == fp()
    assert semantic_text(BASE) == "cancel it"


def test_last_turn_wording_is_not_in_the_fingerprint() -> None:
    other_last = [*BASE[:-1], {"role": "user", "content": "please cancel it"}]
    assert fp(other_last) == fp()
    assert semantic_text(other_last) == "please cancel it"


def test_same_words_in_a_different_context_never_share_a_partition() -> None:
    variants = [
        fp(model="gpt-4o-mini"),
        fp(params={"temperature": 0.7}),
        fp(params={"temperature": 0, "top_p": 0.5}),
        fp(params={"temperature": 0, "max_tokens": 10}),
        fp(tools=None),
        fp(tools=[{"type": "function", "function": {"name": "refund_v2", "parameters": {"type": "object"}}}]),
        fp([{"role": "system", "content": "You are a pirate."}, *BASE[1:]]),
        fp(system="Answer in French."),
        fp(
            convo(
                ("user", "I have a PulseFit membership."),
                ("assistant", "It renews on the 14th."),
                ("user", "cancel it"),
            )
        ),
        fp(convo(("user", "I have a Flixora plan."), ("assistant", "It renews on the 15th."), ("user", "cancel it"))),
        fp(convo(("user", "cancel it"))),
    ]
    base = fp()
    assert all(v != base for v in variants)
    assert len(set(variants)) == len(variants)


def test_params_that_cannot_change_the_answer_are_ignored_and_whitespace_is_normalized() -> None:
    noisy = [dict(m, content=f"  {m['content']}\n") for m in BASE]
    assert fp(noisy) == fp()
    assert fp(params={"temperature": 0, "stream": True, "user": "u-1", "metadata": {"a": 1}}) == fp()


def test_content_parts_and_key_order() -> None:
    parts = [*BASE[:-1], {"role": "user", "content": [{"type": "text", "text": "cancel it"}]}]
    assert semantic_text(parts) == "cancel it"
    reordered_tools = [{"function": {"parameters": {"type": "object"}, "name": "refund"}, "type": "function"}]
    assert fp(tools=reordered_tools) == fp()


def test_not_cacheable_when_last_turn_is_not_a_user_turn() -> None:
    tool_result = [*BASE, {"role": "assistant", "content": None, "tool_calls": [{"id": "1"}]}]
    assert semantic_text(tool_result) is None
    assert semantic_text([SYSTEM]) is None
    assert semantic_text([]) is None

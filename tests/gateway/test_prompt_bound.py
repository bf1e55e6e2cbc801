"""The prompt is priced on a byte-size bound first and tokenized only when that matters: the bound is never
below the count (property test), a roomy budget reserves on the bound without tokenizing, a tight one
tokenizes, and a bound above the input ceiling is settled by the real count."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from margin.config import MarginConfig
from margin.gateway import pipeline
from margin.gateway.config import BudgetConfig, GatewayConfig
from margin.gateway.state import build_gateway
from margin.tokens import count_messages, token_upper_bound
from margin.usage import count_prompt_tokens

text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=200)
content = st.one_of(
    text,
    st.lists(
        st.one_of(
            st.builds(lambda t: {"type": "text", "text": t}, text),
            st.builds(lambda u: {"type": "image_url", "image_url": {"url": u}}, text),
        ),
        max_size=3,
    ),
)
message = st.fixed_dictionaries(
    {"role": st.sampled_from(["system", "user", "assistant"]), "content": content},
    optional={"name": st.text("abcxyz_", min_size=1, max_size=8)},
)


@settings(max_examples=200, deadline=None)
@given(messages=st.lists(message, max_size=6), model=st.sampled_from(["gpt-4o-mini", "gpt-4", "claude-sonnet-4-6"]))
def test_the_bound_is_never_below_the_count(messages, model):
    body = {"model": model, "messages": messages}
    for raw in (orjson.dumps(body), orjson.dumps(body, option=orjson.OPT_INDENT_2)):
        assert count_prompt_tokens("chat.completions", body, model) <= token_upper_bound(len(raw), model)
        assert count_messages(messages, model).tokens <= token_upper_bound(len(raw), model)


@settings(max_examples=100, deadline=None)
@given(inputs=st.one_of(text, st.lists(text, max_size=5), st.lists(st.integers(0, 200_000), max_size=50)))
def test_the_bound_covers_embedding_inputs(inputs):
    body = {"model": "text-embedding-3-small", "input": inputs}
    raw = orjson.dumps(body)
    assert count_prompt_tokens("embeddings", body, "text-embedding-3-small") <= token_upper_bound(
        len(raw), "text-embedding-3-small"
    )


def _gateway(tmp_path, amount: str):
    config = MarginConfig(
        home=str(tmp_path),
        gateway=GatewayConfig(budgets=[BudgetConfig(name="global", scope="global", period="day", amount=amount)]),
    )
    return build_gateway(config, database=tmp_path / "ledger.db")


def _reserve(gw, body):
    principal = pipeline.Principal(key=None, key_id="k", tags={"team": "t"})
    raw = orjson.dumps(body)
    ctx = pipeline.plan_request(
        gw, wire="openai", endpoint="chat.completions", body=body, body_size=len(raw), headers={}, principal=principal
    )

    async def go():
        try:
            return await pipeline.reserve(gw, ctx, ctx.route)
        finally:
            await gw.aclose()

    return ctx, asyncio.run(go())


BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "word " * 300}], "max_tokens": 50}


def test_a_roomy_budget_reserves_on_the_bound_without_tokenizing(tmp_path):
    gw = _gateway(tmp_path, "1000")
    ctx, reserved = _reserve(gw, BODY)
    assert ctx.prompt_count is None  # never tokenized
    worst_on_bound, _, _ = ctx.route.pricer.worst_case(
        int((Decimal(ctx.prompt_bound) * gw.config.reserve_margin_exact).to_integral_value("ROUND_CEILING")),
        50,
        gw.clock(),
    )
    assert reserved.amount == worst_on_bound


def test_a_tight_budget_tokenizes_and_reserves_on_the_count(tmp_path):
    gw = _gateway(tmp_path, "0.001")  # a bound-priced worst case would take far more than 1% of it
    ctx, reserved = _reserve(gw, BODY)
    count = count_prompt_tokens("chat.completions", BODY, "gpt-4o-mini")
    assert ctx.prompt_count == count < ctx.prompt_bound
    prompt = int((Decimal(count) * gw.config.reserve_margin_exact).to_integral_value("ROUND_CEILING"))
    assert reserved.amount == ctx.route.pricer.worst_case(prompt, 50, gw.clock())[0]

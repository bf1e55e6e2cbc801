"""The official openai and anthropic SDKs against the real gateway (mock provider), streaming and not;
every request lands in the ledger with its tokens and exact cost."""

from __future__ import annotations

import json
from decimal import Decimal

import anthropic
import openai
import pytest

from margin.pricing import TokenUsage, load_catalog


@pytest.fixture(scope="module")
def key(gateway) -> str:
    return gateway.create_key("--user", "alice", "--team", "ml", "--project", "search")


def spend(gateway, *args: str) -> dict:
    return json.loads(gateway.margin("spend", "--json", *args).stdout)


def test_openai_sdk_non_streaming(gateway, key):
    client = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=key)
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Say hello to margin."}], max_tokens=50
    )
    completion = raw.parse()
    assert completion.choices[0].message.content
    assert completion.usage.completion_tokens <= 50
    cost = Decimal(raw.headers["x-margin-cost"])
    expected = load_catalog().price(
        TokenUsage(input_tokens=completion.usage.prompt_tokens, output_tokens=completion.usage.completion_tokens),
        "gpt-4o-mini",
    )
    assert cost == expected.effective_cost
    assert raw.headers["x-margin-served-model"] == "gpt-4o-mini"
    assert raw.headers["x-margin-max-tokens"] == "50"


def test_openai_sdk_streaming_with_and_without_usage(gateway, key):
    client = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=key)
    chunks = list(
        client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "Stream please."}], stream=True
        )
    )
    assert any(c.choices and c.choices[0].delta.content for c in chunks)
    assert all(c.usage is None for c in chunks)  # the client did not ask for usage: stripped
    chunks = list(
        client.chat.completions.create(
            model="gpt-4o",
            messages=[{"role": "user", "content": "Stream please."}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_anthropic_sdk_non_streaming_and_streaming(gateway, key):
    client = anthropic.Anthropic(base_url=gateway.base_url, api_key=key)
    message = client.messages.create(
        model="claude-sonnet-4-6", max_tokens=64, messages=[{"role": "user", "content": "Hello Claude"}]
    )
    assert message.content[0].text
    assert message.usage.output_tokens <= 64
    with client.messages.stream(
        model="claude-haiku-4-5", max_tokens=64, messages=[{"role": "user", "content": "Stream to me"}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text and final.usage.output_tokens > 0


def test_embeddings_and_models(gateway, key):
    client = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=key)
    result = client.embeddings.create(model="text-embedding-3-small", input=["one", "two"])
    assert len(result.data) == 2 and result.usage.prompt_tokens > 0
    names = {m.id for m in client.models.list()}
    assert {"gpt-4o-mini", "claude-sonnet-4-6"} <= names


def test_errors_are_openai_and_anthropic_shaped(gateway, key):
    client = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=key, max_retries=0)
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    assert "not served by this gateway" in str(info.value)
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=gateway.base_url + "/v1", api_key="mk-wrong", max_retries=0).chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}]
        )
    aclient = anthropic.Anthropic(base_url=gateway.base_url, api_key=key, max_retries=0)
    with pytest.raises(anthropic.NotFoundError) as ainfo:
        aclient.messages.create(model="nope", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert ainfo.value.body["type"] == "error"


def test_ledger_has_every_request_with_tags(gateway, key):
    client = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=key)
    before = spend(gateway, "--by", "team")
    client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "ledger?"}],
        extra_headers={"X-Margin-Tags": "feature=ledger-test"},
    )
    after = spend(gateway, "--by", "team")
    row_before = next((r for r in before["rows"] if r["group"] == "ml"), {"requests": 0})
    row_after = next(r for r in after["rows"] if r["group"] == "ml")
    assert row_after["requests"] == row_before["requests"] + 1
    features = spend(gateway, "--by", "feature")
    assert any(r["group"] == "ledger-test" for r in features["rows"])

"""The gateway's fast price cards must price exactly like genai-prices, on any usage."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from genai_prices import types as gp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from margin.pricing import TokenUsage, load_catalog
from margin.pricing.fast import build_price_card

AT = datetime(2026, 11, 20, 12, tzinfo=UTC)
CATALOG = load_catalog()
ENTRIES = [e for e in CATALOG.entries() if not e.custom]


@st.composite
def usages(draw):
    total = draw(st.integers(min_value=0, max_value=2_000_000))
    cached = draw(st.integers(min_value=0, max_value=total))
    written = draw(st.integers(min_value=0, max_value=total - cached))
    output = draw(st.integers(min_value=0, max_value=200_000))
    return TokenUsage(input_tokens=total, output_tokens=output, cache_read_tokens=cached, cache_write_tokens=written)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(index=st.integers(min_value=0, max_value=len(ENTRIES) - 1), usage=usages())
def test_card_equals_genai_prices_on_any_usage(index, usage):
    entry = ENTRIES[index]
    prices = entry.prices_at(AT)
    card = build_price_card(entry.model, prices, AT.date())
    if card is None:
        return  # this model keeps the general path
    expected = prices.calc_price(usage.to_genai())
    got_input, got_output = card.list_cost(usage)
    assert (got_input, got_output) == (expected["input_price"], expected["output_price"])
    assert got_input + got_output == expected["total_price"]


def test_most_models_get_a_card_and_fees_per_request_do_not():
    built = [build_price_card(e.model, e.prices_at(AT), AT.date()) is not None for e in ENTRIES[:800]]
    assert sum(built) > len(built) * 0.6
    fee = gp.ModelPrice(input_mtok=gp.Decimal(1), output_mtok=gp.Decimal(2), requests_kcount=gp.Decimal(5))
    model = gp.ModelInfo(id="fee", match=gp.ClauseEquals(equals="fee"), prices=fee)
    assert build_price_card(model, fee, AT.date()) is None


@pytest.mark.parametrize("model", ["gpt-4o", "claude-sonnet-4-5", "gemini-2.5-pro"])
def test_catalog_price_uses_a_card_for_common_models(model):
    cost = CATALOG.price(TokenUsage(input_tokens=300_000, output_tokens=10, cache_read_tokens=1000), model, at=AT)
    entry = CATALOG.find(model)
    assert CATALOG._cards[(entry.key, False, AT.date(), False)] is not None
    expected = entry.prices_at(AT).calc_price(cost.usage.to_genai())
    assert cost.list_cost == expected["total_price"]

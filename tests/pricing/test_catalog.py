from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import genai_prices
import pytest
from genai_prices import types as gp

from margin.config import CustomModel, Discount, PricesConfig
from margin.errors import CatalogError, UnknownModelError
from margin.pricing import (
    Catalog,
    PriceData,
    PriceSource,
    TokenUsage,
    UsageError,
    install_data_file,
    load_catalog,
    load_price_data,
)

NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


# A sample across providers, with cached reads, cache writes, and prompts above a tier threshold.
SAMPLES = [
    ("gpt-4o", "openai", TokenUsage(input_tokens=2000, output_tokens=500)),
    ("gpt-4o", "openai", TokenUsage(input_tokens=12_345, output_tokens=678, cache_read_tokens=10_000)),
    ("gpt-4o-mini", "openai", TokenUsage(input_tokens=1, output_tokens=1)),
    (
        "claude-sonnet-4-5",
        "anthropic",
        TokenUsage(input_tokens=5000, output_tokens=800, cache_read_tokens=3000, cache_write_tokens=1000),
    ),
    ("claude-sonnet-4-5", "anthropic", TokenUsage(input_tokens=200_000, output_tokens=1000)),
    ("claude-sonnet-4-5", "anthropic", TokenUsage(input_tokens=200_001, output_tokens=1000, cache_read_tokens=50_000)),
    ("claude-haiku-5-5", "anthropic", TokenUsage(input_tokens=150_000, output_tokens=4096)),
    ("gemini-2.5-pro", "google", TokenUsage(input_tokens=300_000, output_tokens=2000, cache_read_tokens=100_000)),
    ("gemini-2.5-flash", "google", TokenUsage(input_tokens=7777, output_tokens=3333)),
    ("mistral-large-latest", "mistral", TokenUsage(input_tokens=4000, output_tokens=1000)),
]


@pytest.mark.parametrize(("model", "provider", "usage"), SAMPLES)
def test_list_cost_equals_genai_prices_to_the_cent(catalog, model, provider, usage):
    ours = catalog.price(usage, model, provider, at=NOW)
    theirs = genai_prices.calc_price(usage.to_genai(), model, provider_id=provider, genai_request_timestamp=NOW)
    cent = Decimal("0.01")
    assert ours.list_cost.quantize(cent) == theirs.total_price.quantize(cent)
    # Stronger than the cent: margin does not round at all.
    assert ours.list_cost == theirs.total_price
    assert ours.input_cost + ours.output_cost == ours.list_cost
    assert ours.effective_cost == ours.list_cost  # no discount configured


def _mtok(value):
    return value.base if isinstance(value, gp.TieredPrices) else value


def test_cached_tokens_priced_at_cache_rate_by_hand(catalog):
    usage = TokenUsage(input_tokens=12_345, output_tokens=678, cache_read_tokens=10_000)
    prices = catalog.find("gpt-4o").prices_at(NOW)
    expected = (
        Decimal(12_345 - 10_000) * _mtok(prices.input_mtok)
        + Decimal(10_000) * _mtok(prices.cache_read_mtok)
        + Decimal(678) * _mtok(prices.output_mtok)
    ) / 1_000_000
    assert catalog.price(usage, "gpt-4o", at=NOW).list_cost == expected


def test_tier_applies_to_every_token_above_threshold(catalog):
    entry = catalog.find("claude-sonnet-4-5")
    prices = entry.prices_at(NOW)
    tiered_input = prices.input_mtok
    assert isinstance(tiered_input, gp.TieredPrices)
    threshold = tiered_input.tiers[0].start

    def by_hand(input_tokens, output_tokens, tier_index):
        def rate(value):
            return value.tiers[tier_index].price if tier_index is not None else value.base

        return (
            Decimal(input_tokens) * rate(prices.input_mtok) + Decimal(output_tokens) * rate(prices.output_mtok)
        ) / 10**6

    at = catalog.price(TokenUsage(input_tokens=threshold, output_tokens=100), "claude-sonnet-4-5", at=NOW)
    above = catalog.price(TokenUsage(input_tokens=threshold + 1, output_tokens=100), "claude-sonnet-4-5", at=NOW)
    assert at.tier is None
    assert at.list_cost == by_hand(threshold, 100, None)
    assert above.tier == f"input > {threshold:,} tokens"
    assert above.list_cost == by_hand(threshold + 1, 100, 0)
    assert above.list_cost > at.list_cost * 2 - Decimal("0.01")  # the cliff: roughly double, not +1 token


def test_date_conditional_prices_follow_the_request_date(catalog):
    # Find a model whose price changed on a known date and price on both sides of it.
    for entry in catalog.entries():
        prices = entry.model.prices
        if isinstance(prices, list) and len(prices) >= 2 and isinstance(prices[-1].constraint, gp.StartDateConstraint):
            change = prices[-1].constraint.start_date
            before_prices = prices[-2].prices
            after_prices = prices[-1].prices
            if _mtok(before_prices.input_mtok) != _mtok(after_prices.input_mtok):
                break
    else:
        pytest.skip("no date-conditional model in this price data")
    # 50,000 tokens stays below every tier threshold in the data, so the base price applies.
    usage = TokenUsage(input_tokens=50_000, output_tokens=0)
    before = datetime.combine(change - timedelta(days=1), datetime.min.time(), tzinfo=UTC)
    after = datetime.combine(change, datetime.min.time(), tzinfo=UTC)
    cost_before = catalog.price(usage, entry.model.id, entry.provider.id, at=before)
    cost_after = catalog.price(usage, entry.model.id, entry.provider.id, at=after)
    assert cost_before.list_cost == 50_000 * _mtok(before_prices.input_mtok) / 10**6
    assert cost_after.list_cost == 50_000 * _mtok(after_prices.input_mtok) / 10**6
    assert cost_before.list_cost != cost_after.list_cost


def test_provider_prefix_and_case_are_accepted(catalog):
    assert catalog.find("openai/gpt-4o").key == "openai/gpt-4o"
    assert catalog.find("GPT-4o").model.id == "gpt-4o"


def test_unknown_model_suggests_close_names(catalog):
    with pytest.raises(UnknownModelError) as info:
        catalog.find("gpt-4o-mimi")
    assert "gpt-4o-mini" in info.value.suggestions
    assert "gpt-4o-mimi" in str(info.value)
    assert "margin prices list" in str(info.value)


def test_unknown_provider_lists_known(catalog):
    with pytest.raises(CatalogError, match=r"unknown provider 'nope'.*openai"):
        catalog.find("gpt-4o", "nope")


def _catalog(**prices_config) -> Catalog:
    return Catalog.from_data(load_price_data_for_tests(), PricesConfig(**prices_config))


def load_price_data_for_tests() -> PriceData:
    base = load_catalog()
    return PriceData(base._providers, base.source)


def test_negotiated_discount_model_beats_provider():
    catalog = _catalog(
        discounts=[Discount(provider="openai", percent=Decimal(20)), Discount(model="gpt-4o-mini", percent=Decimal(35))]
    )
    usage = TokenUsage(input_tokens=10_000, output_tokens=2_000)
    four_o = catalog.price(usage, "gpt-4o", at=NOW)
    mini = catalog.price(usage, "gpt-4o-mini", at=NOW)
    claude = catalog.price(usage, "claude-sonnet-4-5", at=NOW)
    assert four_o.effective_cost == four_o.list_cost * Decimal("0.80")
    assert mini.effective_cost == mini.list_cost * Decimal("0.65")
    assert claude.effective_cost == claude.list_cost
    assert catalog.rate("gpt-4o").discount == Decimal("0.2")


def test_custom_model_is_priced_from_config():
    custom = CustomModel(
        id="llama-70b-selfhosted",
        provider="self-hosted",
        input_mtok=Decimal("0.4"),
        output_mtok=Decimal("0.6"),
        cache_read_mtok=Decimal("0.1"),
        prices_checked=date(2026, 11, 1),
    )
    catalog = _catalog(custom_models=[custom])
    usage = TokenUsage(input_tokens=3000, output_tokens=1000, cache_read_tokens=1000)
    cost = catalog.price(usage, "llama-70b-selfhosted", at=NOW)
    assert (
        cost.list_cost
        == (Decimal(2000) * Decimal("0.4") + Decimal(1000) * Decimal("0.1") + Decimal(1000) * Decimal("0.6")) / 10**6
    )
    assert cost.provider == "self-hosted"
    assert cost.source.name == "margin.yaml custom model"
    assert cost.source.prices_checked == date(2026, 11, 1)
    assert catalog.find("self-hosted/llama-70b-selfhosted").custom
    assert any(e.custom for e in catalog.entries(search="selfhosted"))


def test_custom_model_overrides_catalog_model_of_same_id():
    catalog = _catalog(
        custom_models=[CustomModel(id="gpt-4o", provider="openai", input_mtok=Decimal(1), output_mtok=Decimal(2))]
    )
    cost = catalog.price(TokenUsage(input_tokens=1_000_000, output_tokens=1_000_000), "gpt-4o", at=NOW)
    assert cost.list_cost == Decimal(3)


def test_batch_uses_catalog_batch_price_when_present():
    catalog = _catalog()
    usage = TokenUsage(input_tokens=10_000, output_tokens=1_000)
    entry = catalog.find("claude-sonnet-4-5")
    assert entry.has_batch_price()
    batch = catalog.price(usage, "claude-sonnet-4-5", at=NOW, batch=True)
    expected = genai_prices.calc_price(
        usage.to_genai(),
        "claude-sonnet-4-5",
        provider_id="anthropic",
        genai_request_timestamp=NOW,
        price_context={"processing": "batch"},
    )
    assert batch.list_cost == expected.total_price
    assert batch.batch


def test_batch_falls_back_to_configured_discount_or_fails_clearly():
    usage = TokenUsage(input_tokens=10_000, output_tokens=1_000)
    catalog = _catalog(
        custom_models=[CustomModel(id="m1", provider="acme", input_mtok=Decimal(2), output_mtok=Decimal(4))],
        batch_discounts={"acme": Decimal(40)},
    )
    full = catalog.price(usage, "m1", at=NOW)
    batch = catalog.price(usage, "m1", at=NOW, batch=True)
    assert batch.list_cost == full.list_cost * Decimal("0.6")
    none_configured = _catalog(
        custom_models=[CustomModel(id="m1", provider="acme", input_mtok=Decimal(2), output_mtok=Decimal(4))],
        batch_discounts={},
    )
    with pytest.raises(CatalogError, match=r"batch_discounts\.acme"):
        none_configured.price(usage, "m1", batch=True)


def test_usage_validation():
    with pytest.raises(UsageError, match="exceed input_tokens"):
        TokenUsage(input_tokens=100, cache_read_tokens=80, cache_write_tokens=30)
    with pytest.raises(UsageError, match="output_tokens"):
        TokenUsage(input_tokens=1, output_tokens=-1)


def test_staleness_warning_uses_configured_age():
    old = PriceData([], PriceSource(name="test data", prices_checked=date(2026, 1, 1)))
    today = date(2026, 4, 15)  # 104 days later
    assert Catalog.from_data(old, PricesConfig()).staleness_warning(today) is not None
    assert "max_age_days=90" in Catalog.from_data(old, PricesConfig()).staleness_warning(today)
    assert Catalog.from_data(old, PricesConfig(max_age_days=120)).staleness_warning(today) is None
    undated = PriceData([], PriceSource(name="x", prices_checked=None))
    assert "no known check date" in Catalog.from_data(undated, PricesConfig()).staleness_warning(today)


def test_bundled_data_has_a_date_and_many_providers(catalog):
    assert catalog.source.name.startswith("genai-prices ")
    assert catalog.source.prices_checked is not None
    assert len(catalog.provider_ids()) >= 40
    cost = catalog.price(TokenUsage(input_tokens=1, output_tokens=1), "gpt-4o")
    assert cost.source == catalog.source


def _data_file(tmp_path, models):
    raw = [
        {
            "id": "acme",
            "name": "Acme AI",
            "api_pattern": "https://api\\.acme\\.test",
            "model_match": {"starts_with": "acme"},
            "models": models,
        }
    ]
    path = tmp_path / "data.json"
    path.write_text(json.dumps(raw))
    return path


def test_update_from_file_installs_new_data(tmp_path):
    home = tmp_path / "home"
    path = _data_file(
        tmp_path,
        [
            {
                "id": "acme-1",
                "match": {"equals": "acme-1"},
                "price_comments": "checked 2026-10-02",
                "prices": {"input_mtok": 1.5, "output_mtok": 6},
            }
        ],
    )
    data = install_data_file(path, home, today=date(2026, 11, 1))
    assert data.source.prices_checked == date(2026, 10, 2)
    assert data.source.name.startswith("price file data.json")
    catalog = Catalog.from_data(load_price_data(home, today=date(2026, 11, 1)), PricesConfig())
    cost = catalog.price(TokenUsage(input_tokens=1_000_000, output_tokens=1_000_000), "acme-1", at=NOW)
    assert cost.list_cost == Decimal("7.5")
    assert cost.source.name.startswith("price file")


def test_update_rejects_invalid_file_and_keeps_current_data(tmp_path):
    home = tmp_path / "home"
    good = _data_file(
        tmp_path, [{"id": "acme-1", "match": {"equals": "acme-1"}, "prices": {"input_mtok": 1, "output_mtok": 2}}]
    )
    install_data_file(good, home)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"not": "a list"}))
    with pytest.raises(CatalogError, match="JSON array of providers"):
        install_data_file(bad, home)
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps([{"id": "x"}]))
    with pytest.raises(CatalogError, match="does not match the genai-prices schema"):
        install_data_file(broken, home)
    # The earlier good file is still the one in use.
    catalog = Catalog.from_data(load_price_data(home), PricesConfig())
    assert catalog.find("acme-1").model.id == "acme-1"

"""The price catalog: genai-prices data plus the user's overrides (custom models, negotiated discounts,
batch discounts). Looks models up, explains unknown ones, and prices usages. Pure once constructed."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal

from genai_prices import types as gp
from rapidfuzz import fuzz, process

from ..config import CustomModel, Discount, PricesConfig
from ..errors import CatalogError, UnknownModelError
from ._data import PriceData, PriceSource
from .cost import Cost, TokenUsage
from .fast import PriceCard, build_price_card, day_of
from .rates import ModelRate

__all__ = ["Catalog", "CatalogEntry"]

_HUNDRED = Decimal(100)
_BATCH_CONTEXT = {"processing": "batch"}


@dataclass(frozen=True)
class CatalogEntry:
    """One priced model: its genai-prices description, its provider, and where the price came from."""

    provider: gp.Provider
    model: gp.ModelInfo
    source: PriceSource
    custom: bool = False

    @property
    def key(self) -> str:
        return f"{self.provider.id}/{self.model.id}"

    def prices_at(self, at: datetime, *, batch: bool = False) -> gp.ModelPrice:
        context = _BATCH_CONTEXT if batch else None
        return self.model.get_prices(at, context)

    def has_batch_price(self) -> bool:
        return any(v.when == _BATCH_CONTEXT for v in self.model.price_variants or ())


class Catalog:
    """Look up and price models. Construct with :meth:`from_data`; the data is never mutated."""

    def __init__(self, data: PriceData, prices: PricesConfig) -> None:
        self._providers = data.providers
        self.source = data.source
        self._config = prices
        self._custom: dict[str, CatalogEntry] = {}
        self._custom_entries = [_custom_entry(custom) for custom in prices.custom_models]
        for custom, entry in zip(prices.custom_models, self._custom_entries, strict=True):
            self._custom[custom.id.lower()] = entry
            self._custom[f"{custom.provider}/{custom.id}".lower()] = entry
        self._snapshot = _Snapshot(self._providers)
        # Memo of fast price cards per (model, day, batch); filled lazily, never changes a result.
        self._cards: dict[tuple[str, bool, date, bool], PriceCard | None] = {}

    @classmethod
    def from_data(cls, data: PriceData, prices: PricesConfig | None = None) -> Catalog:
        return cls(data, prices or PricesConfig())

    # -- freshness ---------------------------------------------------------------------------------

    def age_days(self, today: date | None = None) -> int | None:
        checked = self.source.prices_checked
        if checked is None:
            return None
        return ((today or datetime.now(UTC).date()) - checked).days

    def staleness_warning(self, today: date | None = None) -> str | None:
        age = self.age_days(today)
        limit = self._config.max_age_days
        if age is None:
            return f"the price data has no known check date; verify prices before relying on them ({self.source.name})"
        if age > limit:
            return (
                f"the price data was last checked {age} days ago ({self.source.prices_checked}), more than "
                f"prices.max_age_days={limit}; get a newer genai-prices data file and run "
                "`margin prices update --from FILE`, or upgrade the genai-prices package"
            )
        return None

    # -- lookup ------------------------------------------------------------------------------------

    def find(self, model: str, provider: str | None = None) -> CatalogEntry:
        """The entry for ``model`` (optionally ``provider/model``), custom models first."""
        ref = model.strip()
        if not ref:
            raise CatalogError("the model name is empty; pass a model id such as gpt-4o")
        if provider is None and (custom := self._custom.get(ref.lower())):
            return custom
        if provider is not None and (custom := self._custom.get(f"{provider}/{ref}".lower())):
            return custom
        if provider is None and "/" in ref:
            maybe_provider, rest = ref.split("/", 1)
            if gp_provider := self._snapshot.provider_by_id(maybe_provider):
                found = self._match(rest, gp_provider)
                if found is not None:
                    return found
        if provider is not None:
            gp_provider = self._snapshot.provider_by_id(provider)
            if gp_provider is None:
                known = ", ".join(sorted(p.id for p in self._providers))
                raise CatalogError(f"unknown provider {provider!r}; known providers: {known}")
            found = self._match(ref, gp_provider)
        else:
            found = self._match_any(ref)
        if found is None:
            raise UnknownModelError(model, self.suggest(ref, provider), provider=provider)
        return found

    def _match(self, ref: str, provider: gp.Provider) -> CatalogEntry | None:
        model = provider.find_model(ref, all_providers=self._providers)
        return CatalogEntry(provider, model, self.source) if model is not None else None

    def _match_any(self, ref: str) -> CatalogEntry | None:
        try:
            provider, model = self._snapshot.find_provider_model(ref)
        except LookupError:
            # The model's name did not identify a provider (e.g. a bare open-weight name): try each.
            for provider in self._providers:
                if (found := self._match(ref, provider)) is not None:
                    return found
            return None
        return CatalogEntry(provider, model, self.source)

    def suggest(self, ref: str, provider: str | None = None, limit: int = 5) -> list[str]:
        """Close model ids, best first, for an error message."""
        choices = sorted({entry.model.id for entry in self.entries(provider=provider)})
        matches = process.extract(ref.lower(), choices, scorer=fuzz.WRatio, limit=limit, score_cutoff=60)
        return [match[0] for match in matches]

    def entries(self, *, provider: str | None = None, search: str | None = None) -> Iterator[CatalogEntry]:
        """Every model, custom ones first, optionally filtered by provider id and a search text."""
        needle = search.lower() if search else None
        catalog = (CatalogEntry(p, m, self.source) for p in self._providers for m in p.models)
        for entry in (*self._custom_entries, *catalog):
            if provider is not None and entry.provider.id != provider.lower():
                continue
            if needle and needle not in entry.model.id.lower() and needle not in (entry.model.name or "").lower():
                continue
            yield entry

    def provider_ids(self) -> list[str]:
        return sorted(p.id for p in self._providers)

    # -- pricing -----------------------------------------------------------------------------------

    def _card(self, entry: CatalogEntry, prices: gp.ModelPrice, at: datetime, batch: bool) -> PriceCard | None:
        """The model's per-token price card for the day of ``at`` (memoized; None: use genai-prices)."""
        memo_key = (entry.key, entry.custom, day_of(at), batch)
        if memo_key not in self._cards:
            self._cards[memo_key] = build_price_card(entry.model, prices, day_of(at))
        return self._cards[memo_key]

    def discount_for(self, entry: CatalogEntry) -> Decimal:
        """Negotiated discount as a fraction (0.2 = 20% off); the model's beats its provider's."""
        return _discount(self._config.discounts, entry) / _HUNDRED

    def rate(self, model: str, provider: str | None = None, *, at: datetime | None = None) -> ModelRate:
        """Flat per-1M prices (below any context tier) for planning."""
        entry = self.find(model, provider)
        prices = entry.prices_at(at or datetime.now(UTC))
        input_price = _base(prices.input_mtok)
        output_price = _base(prices.output_mtok)
        if input_price is None or output_price is None:
            raise CatalogError(
                f"{entry.key} has no per-token input/output price in the catalog (it is priced by "
                f"{prices}); add a custom model with input_mtok and output_mtok in margin.yaml"
            )
        return ModelRate(
            model=entry.model.id,
            provider=entry.provider.id,
            input_per_mtok=input_price,
            output_per_mtok=output_price,
            cached_input_per_mtok=_base(prices.cache_read_mtok),
            cache_write_per_mtok=_base(prices.cache_write_mtok),
            source=entry.source.name,
            prices_checked=entry.source.prices_checked,
            discount=self.discount_for(entry),
        )

    def price(
        self,
        usage: TokenUsage,
        model: str,
        provider: str | None = None,
        *,
        at: datetime | None = None,
        batch: bool = False,
    ) -> Cost:
        """Price one usage at the prices in force at ``at`` (default now).

        The list cost is exactly what genai-prices computes for the same usage, tiers and dates included;
        with ``batch`` the catalog's batch price is used, or the configured batch discount of the provider.
        """
        entry = self.find(model, provider)
        at = at or datetime.now(UTC)
        batch_from_catalog = batch and entry.has_batch_price()
        prices = entry.prices_at(at, batch=batch_from_catalog)
        card = self._card(entry, prices, at, batch_from_catalog)
        if card is not None:
            input_cost, output_cost = card.list_cost(usage)
            list_cost = input_cost + output_cost
        else:
            try:
                calc = prices.calc_price(usage.to_genai())
            except ValueError as exc:
                raise CatalogError(f"cannot price {entry.key}: {exc}") from None
            input_cost, output_cost = calc["input_price"], calc["output_price"]
            list_cost = calc["total_price"]
        if batch and not batch_from_catalog:
            batch_pct = self._config.batch_discounts.get(entry.provider.id)
            if batch_pct is None:
                raise CatalogError(
                    f"{entry.key} has no batch price in the catalog and no batch discount is configured for "
                    f"provider {entry.provider.id!r}; set prices.batch_discounts.{entry.provider.id} in margin.yaml"
                )
            keep = 1 - batch_pct / _HUNDRED
            input_cost, output_cost, list_cost = input_cost * keep, output_cost * keep, list_cost * keep
        discount = self.discount_for(entry)
        return Cost(
            model=entry.model.id,
            provider=entry.provider.id,
            usage=usage,
            input_cost=input_cost,
            output_cost=output_cost,
            list_cost=list_cost,
            effective_cost=list_cost * (1 - discount),
            discount=discount,
            batch=batch,
            tier=_tier_applied(prices, usage.input_tokens),
            source=entry.source,
            priced_at=at,
        )


class _Snapshot:
    """genai-prices' model matching over our provider list, without touching its process-wide snapshot."""

    def __init__(self, providers: list[gp.Provider]) -> None:
        from genai_prices.data_snapshot import DataSnapshot

        self._inner = DataSnapshot(providers=providers, from_auto_update=False)

    def find_provider_model(self, ref: str) -> tuple[gp.Provider, gp.ModelInfo]:
        return self._inner.find_provider_model(ref, None, None, None)

    def provider_by_id(self, provider_id: str) -> gp.Provider | None:
        from genai_prices.data_snapshot import find_provider_by_id

        return find_provider_by_id(self._inner.providers, provider_id)


def _custom_entry(custom: CustomModel) -> CatalogEntry:
    prices = gp.ModelPrice(
        input_mtok=custom.input_mtok,
        output_mtok=custom.output_mtok,
        cache_read_mtok=custom.cache_read_mtok,
        cache_write_mtok=custom.cache_write_mtok,
    )
    model = gp.ModelInfo(
        id=custom.id,
        match=gp.ClauseEquals(equals=custom.id),
        name=custom.name or custom.id,
        context_window=custom.context_window,
        prices=prices,
    )
    provider = gp.Provider(id=custom.provider, name=custom.provider, api_pattern="", models=[model])
    source = PriceSource(name="margin.yaml custom model", prices_checked=custom.prices_checked)
    return CatalogEntry(provider, model, source, custom=True)


def _discount(discounts: list[Discount], entry: CatalogEntry) -> Decimal:
    model_ids = {entry.model.id.lower(), entry.key.lower()}
    for d in discounts:
        if d.model is not None and d.model.lower() in model_ids:
            return d.percent
    for d in discounts:
        if d.provider is not None and d.provider.lower() == entry.provider.id:
            return d.percent
    return Decimal(0)


def _base(price: Decimal | gp.TieredPrices | None) -> Decimal | None:
    if isinstance(price, gp.TieredPrices):
        return price.base
    return price


def _tier_applied(prices: gp.ModelPrice, input_tokens: int) -> str | None:
    """genai-prices' rule: a tier applies to ALL tokens once the prompt exceeds its start (a cliff)."""
    starts = [
        tier.start
        for value in vars(prices).values()
        if isinstance(value, gp.TieredPrices)
        for tier in value.tiers
        if input_tokens > tier.start
    ]
    return f"input > {max(starts):,} tokens" if starts else None

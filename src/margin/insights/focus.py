"""FOCUS export: the ledger's LLM spend as FinOps FOCUS 1.2 cost-and-usage rows (CSV or Parquet).

Target: **FOCUS 1.2** (FinOps Open Cost and Usage Specification, ratified 2025). Every FOCUS 1.2 column is
present, in the specification's alphabetical order, followed by margin's ``x_`` custom columns (the
specification's prefix for provider-defined columns). See docs/insights-focus.md for the full mapping.

Rows. :func:`focus_rows` turns ledger events (``usage_events`` rows) into one row per (event, token type)
with tokens > 0. The token types are the SKUs of an LLM API, ``SkuId = {provider}/{model}/{type}``:

* ``input``: uncached prompt tokens (``input_tokens - cache_read_tokens - cache_write_tokens``: the ledger's
  ``input_tokens`` counts the whole prompt);
* ``cached-input``: cache reads; ``cache-write``: cache writes;
* ``output``: output tokens, reasoning included (reasoning is billed as output; the reasoning part is in
  ``x_ReasoningTokens`` on that row).

Costs. The costs recorded in the ledger are the truth: each event's ``list_cost`` and ``effective_cost`` are
split over its SKU rows in proportion to the catalog cost of each token type (tokens x the catalog's price at
the event's time, context tier included), by the largest-remainder method in whole nano-dollars (1e-9 USD);
a sub-nano residue (recorded costs may carry more digits) goes to the heaviest row. So the rows of one event
add up EXACTLY to the event, and the export to ``SUM(effective_cost)`` / ``SUM(list_cost)`` of the period.
When the catalog does not know the model, the split is by token counts and the unit prices are null.
``BilledCost = EffectiveCost = ContractedCost``: pay-as-you-go API usage has no commitment to amortize, so
what is invoiced is the effective (negotiated) cost. ``ListUnitPrice`` / ``ContractedUnitPrice`` are the
catalog's per-1M-token prices (``ContractedUnitPrice`` after the configured negotiated discount); they
reproduce ``ListCost`` / ``ContractedCost`` up to the nano-dollar split whenever the ledger priced the event
with the same catalog.

Units. ``ConsumedUnit = "Tokens"`` and ``ConsumedQuantity`` is the token count; providers quote per million
tokens, so ``PricingUnit = "1000000 Tokens"`` (FOCUS UnitFormat ``<unit-quantity> <plural-units>``; "1M" is not
an allowed unit quantity) and ``PricingQuantity = tokens / 1,000,000`` (exact).

Statuses. ``ok``, ``upstream_error`` and ``client_abort`` events export their token rows (an error that
consumed nothing and cost nothing yields no row). A ``cached`` hit (served by margin's cache, ``provider =
"cache"``) is one row, ``SkuId = cache/{model}/cache-hit``, all costs 0, the tokens the answer carried as
ConsumedQuantity and what it would have cost in ``x_AvoidedCost``. ``rejected`` events consumed nothing
and are skipped. Any event with a non-zero recorded cost is always exported, whatever its status (a cost
without tokens becomes one ``{provider}/{model}/request`` row), so totals never drift.

Null columns and why: ``AvailabilityZone``, ``RegionId``, ``RegionName`` (provider APIs are global endpoints;
the ledger has no region); ``BillingAccountType`` (a single kind of billing account); ``CapacityReservation*``
and ``CommitmentDiscount*`` (no reservations or commitments on pay-as-you-go API usage); ``ChargeClass``
(null unless the row is a correction, and margin emits none); ``InvoiceId`` (margin meters requests, it does
not see the provider's invoice); ``PricingCurrency*`` (pricing and billing currency are the same);
``SkuPriceDetails`` (the price is fully described by SkuPriceId and the unit price); ``SubAccount*`` when the
request had no virtual key; unit prices and ``SkuPriceId`` when the catalog does not know the model.

Time. ``ChargePeriodStart``/``End`` are the UTC hour in which the event finished (the ledger bills by
``finished_at``), or the UTC day with ``aggregate="day"``; ``BillingPeriodStart``/``End`` the calendar month.
With ``aggregate="day"`` rows are grouped by day, SkuId and tag set: amounts and quantities are summed
exactly, and any other column that differs within a group (request ids, status, key) is null.

Pure except :func:`write_csv` and :func:`write_parquet` (pyarrow, optional: ``pip install pyarrow``).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Context, Decimal, Inexact, InvalidOperation
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

from margin.errors import MarginError

__all__ = [
    "DECIMAL_COLUMNS",
    "FOCUS_COLUMNS",
    "FOCUS_VERSION",
    "PARQUET_DECIMAL_SCALE",
    "X_COLUMNS",
    "FocusError",
    "focus_rows",
    "row_totals",
    "split_exact",
    "write_csv",
    "write_parquet",
]

FOCUS_VERSION = "1.2"

FOCUS_COLUMNS: tuple[str, ...] = (
    "AvailabilityZone",
    "BilledCost",
    "BillingAccountId",
    "BillingAccountName",
    "BillingAccountType",
    "BillingCurrency",
    "BillingPeriodEnd",
    "BillingPeriodStart",
    "CapacityReservationId",
    "CapacityReservationStatus",
    "ChargeCategory",
    "ChargeClass",
    "ChargeDescription",
    "ChargeFrequency",
    "ChargePeriodEnd",
    "ChargePeriodStart",
    "CommitmentDiscountCategory",
    "CommitmentDiscountId",
    "CommitmentDiscountName",
    "CommitmentDiscountQuantity",
    "CommitmentDiscountStatus",
    "CommitmentDiscountType",
    "CommitmentDiscountUnit",
    "ConsumedQuantity",
    "ConsumedUnit",
    "ContractedCost",
    "ContractedUnitPrice",
    "EffectiveCost",
    "InvoiceId",
    "InvoiceIssuerName",
    "ListCost",
    "ListUnitPrice",
    "PricingCategory",
    "PricingCurrency",
    "PricingCurrencyContractedUnitPrice",
    "PricingCurrencyEffectiveCost",
    "PricingCurrencyListUnitPrice",
    "PricingQuantity",
    "PricingUnit",
    "ProviderName",
    "PublisherName",
    "RegionId",
    "RegionName",
    "ResourceId",
    "ResourceName",
    "ResourceType",
    "ServiceCategory",
    "ServiceName",
    "ServiceSubcategory",
    "SkuId",
    "SkuMeter",
    "SkuPriceDetails",
    "SkuPriceId",
    "SubAccountId",
    "SubAccountName",
    "SubAccountType",
    "Tags",
)

X_COLUMNS: tuple[str, ...] = (
    "x_AvoidedCost",
    "x_CacheDecision",
    "x_EventCount",
    "x_EventId",
    "x_Feature",
    "x_KeyId",
    "x_PriceSource",
    "x_Project",
    "x_ReasoningTokens",
    "x_RequestId",
    "x_RequestedModel",
    "x_Route",
    "x_ServedModel",
    "x_Status",
    "x_Team",
    "x_TokenType",
)

COLUMNS: tuple[str, ...] = FOCUS_COLUMNS + X_COLUMNS

DECIMAL_COLUMNS = frozenset(
    {
        "BilledCost",
        "CommitmentDiscountQuantity",
        "ConsumedQuantity",
        "ContractedCost",
        "ContractedUnitPrice",
        "EffectiveCost",
        "ListCost",
        "ListUnitPrice",
        "PricingCurrencyContractedUnitPrice",
        "PricingCurrencyEffectiveCost",
        "PricingCurrencyListUnitPrice",
        "PricingQuantity",
        "x_AvoidedCost",
    }
)
DATETIME_COLUMNS = frozenset({"BillingPeriodEnd", "BillingPeriodStart", "ChargePeriodEnd", "ChargePeriodStart"})
INTEGER_COLUMNS = frozenset({"x_EventCount", "x_ReasoningTokens"})
# Summed when rows are aggregated; every other column is kept when equal across the group, else null.
_SUMMED = ("BilledCost", "ConsumedQuantity", "ContractedCost", "EffectiveCost", "ListCost", "PricingQuantity")
_SUMMED_X = ("x_AvoidedCost", "x_EventCount", "x_ReasoningTokens")

# Parquet decimals: decimal128(38, 18). 18 fractional digits hold any per-token cost (sub-nano prices times
# percentage discounts) and 20 integer digits any bill; writing refuses a value that would be rounded.
PARQUET_DECIMAL_PRECISION = 38
PARQUET_DECIMAL_SCALE = 18

NANO = Decimal("1e-9")
MILLION = Decimal(1_000_000)
PRICING_UNIT = "1000000 Tokens"
# Exact arithmetic: any operation that would round raises instead.
_EXACT = Context(prec=400, traps=[Inexact, InvalidOperation])

Aggregate = Literal["none", "day"]

# (token type, SkuMeter, description words, genai-prices price attribute)
_TOKEN_TYPES: tuple[tuple[str, str, str, str], ...] = (
    ("input", "Input Tokens", "input tokens", "input_mtok"),
    ("cached-input", "Cached Input Tokens", "cached input tokens", "cache_read_mtok"),
    ("cache-write", "Cache Write Tokens", "cache write tokens", "cache_write_mtok"),
    ("output", "Output Tokens", "output tokens", "output_mtok"),
)
_FALLBACK_ATTR = {"cache_read_mtok": "input_mtok", "cache_write_mtok": "input_mtok"}

_SERVICE_NAMES = {
    "anthropic": "Claude API",
    "openai": "OpenAI API",
    "google": "Gemini API",
    "mistral": "Mistral AI API",
    "deepseek": "DeepSeek API",
    "x-ai": "xAI API",
    "cohere": "Cohere API",
    "groq": "GroqCloud",
    "aws": "Amazon Bedrock",
    "azure": "Azure OpenAI Service",
}
_PROVIDER_NAMES = {"x-ai": "xAI", "aws": "Amazon Web Services", "azure": "Microsoft Azure"}
CACHE_PROVIDER = "cache"


class FocusError(MarginError):
    """A FOCUS export that cannot be written exactly (missing pyarrow, a value a column cannot hold)."""

    exit_code = 2


# ---------------------------------------------------------------------------------------------------------
# Events
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Event:
    event_id: str | None
    request_id: str | None
    finished_at: datetime
    status: str
    provider: str | None
    served_model: str | None
    requested_model: str | None
    key_id: str | None
    tags: dict[str, str]
    input_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    output_tokens: int
    reasoning_tokens: int
    list_cost: Decimal
    effective_cost: Decimal
    avoided_cost: Decimal
    route: str | None
    cache: str | None
    price_source: str | None


def _get(event: Any, name: str, default: Any = None) -> Any:
    if isinstance(event, Mapping):
        return event.get(name, default)
    return getattr(event, name, default)


def _money(value: Any, what: str) -> Decimal:
    if value is None or value == "":
        return Decimal(0)
    if isinstance(value, float | bool):
        raise FocusError(f"{what} must be exact (Decimal or text), got {type(value).__name__} {value!r}")
    try:
        amount = Decimal(value)
    except (InvalidOperation, TypeError, ValueError):
        raise FocusError(f"{what} is not an amount: {value!r}") from None
    if not amount.is_finite():
        raise FocusError(f"{what} is not a finite amount: {value!r}")
    return amount


def _when(value: Any) -> datetime:
    when = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC)


def _event(raw: Any) -> _Event:
    tags = _get(raw, "tags") or {}
    if isinstance(tags, str):
        tags = json.loads(tags)
    return _Event(
        event_id=_get(raw, "event_id"),
        request_id=_get(raw, "request_id"),
        finished_at=_when(_get(raw, "finished_at")),
        status=str(_get(raw, "status") or "ok"),
        provider=_get(raw, "provider"),
        served_model=_get(raw, "served_model"),
        requested_model=_get(raw, "requested_model"),
        key_id=_get(raw, "key_id"),
        tags={str(k): str(v) for k, v in dict(tags).items()},
        input_tokens=int(_get(raw, "input_tokens") or 0),
        cache_read_tokens=int(_get(raw, "cache_read_tokens") or 0),
        cache_write_tokens=int(_get(raw, "cache_write_tokens") or 0),
        output_tokens=int(_get(raw, "output_tokens") or 0),
        reasoning_tokens=int(_get(raw, "reasoning_tokens") or 0),
        list_cost=_money(_get(raw, "list_cost"), "list_cost"),
        effective_cost=_money(_get(raw, "effective_cost"), "effective_cost"),
        avoided_cost=_money(_get(raw, "avoided_cost"), "avoided_cost"),
        route=_get(raw, "route"),
        cache=_get(raw, "cache"),
        price_source=_get(raw, "price_source"),
    )


# ---------------------------------------------------------------------------------------------------------
# Prices
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Prices:
    """What the catalog says about one model on one day (None: the catalog does not know it)."""

    provider_name: str
    model: str
    rates: dict[str, Any] | None  # genai-prices attribute -> Decimal | TieredPrices | None
    discount: Decimal


def _rate_at(value: Any, input_tokens: int) -> tuple[Decimal | None, int | None]:
    """(price per 1M tokens, tier start or None) under genai-prices' cliff rule: the highest tier whose start
    the whole prompt exceeds applies to all tokens."""
    if value is None:
        return None, None
    tiers = getattr(value, "tiers", None)
    if tiers is None:
        return Decimal(value), None
    price, start_used = Decimal(value.base), None
    for tier in sorted(tiers, key=lambda t: t.start):
        if input_tokens > tier.start:
            price, start_used = Decimal(tier.price), tier.start
    return price, start_used


class _PriceBook:
    def __init__(self, catalog: Any) -> None:
        self._catalog = catalog
        self._memo: dict[tuple[str | None, str, Any], _Prices] = {}

    def lookup(self, provider: str | None, model: str, at: datetime) -> _Prices:
        key = (provider, model, at.date())
        if key not in self._memo:
            self._memo[key] = self._lookup(provider, model, at)
        return self._memo[key]

    def _lookup(self, provider: str | None, model: str, at: datetime) -> _Prices:
        fallback = _Prices(_PROVIDER_NAMES.get(provider or "", provider or "unknown"), model, None, Decimal(0))
        if self._catalog is None or not model:
            return fallback
        try:
            try:
                entry = self._catalog.find(model, provider)
            except MarginError:
                entry = self._catalog.find(model)  # a provider id the catalog spells differently
            prices = entry.prices_at(at)
            discount = Decimal(self._catalog.discount_for(entry))
        except (MarginError, LookupError, ValueError, TypeError, AttributeError):
            return fallback
        rates = {attr: getattr(prices, attr, None) for _, _, _, attr in _TOKEN_TYPES}
        name = _PROVIDER_NAMES.get(provider or "", getattr(entry.provider, "name", None) or provider or "unknown")
        return _Prices(name, entry.model.id, rates, discount)


# ---------------------------------------------------------------------------------------------------------
# Exact splitting
# ---------------------------------------------------------------------------------------------------------


def split_exact(total: Decimal, weights: Sequence[Decimal | int], quantum: Decimal = NANO) -> list[Decimal]:
    """``total`` split in proportion to ``weights``, in whole ``quantum``s by the largest-remainder method
    (ties to the earlier weight); a residue smaller than the quantum goes to the heaviest weight. The parts
    add up to ``total`` exactly. All-zero weights split evenly."""
    if not weights:
        raise ValueError("nothing to split over")
    if any(w < 0 for w in weights):
        raise ValueError("weights must be >= 0")
    fractions = [Fraction(w) for w in weights]
    if not any(fractions):
        fractions = [Fraction(1)] * len(weights)
    if total == 0:
        return [Decimal(0)] * len(weights)
    sign = -1 if total < 0 else 1
    amount = abs(total)
    quanta = int(Fraction(amount) / Fraction(quantum))  # floor: both are > 0
    residue = _EXACT.subtract(amount, _EXACT.multiply(Decimal(quanta), quantum))
    weight_sum = sum(fractions)
    quotas = [quanta * f / weight_sum for f in fractions]
    floors = [int(q) for q in quotas]  # quotas are >= 0: int() floors
    missing = quanta - sum(floors)
    order = sorted(range(len(quotas)), key=lambda i: (-(quotas[i] - floors[i]), i))
    for i in order[:missing]:
        floors[i] += 1
    heaviest = max(range(len(fractions)), key=lambda i: (fractions[i], -i))
    parts = [_EXACT.multiply(Decimal(n), quantum) for n in floors]
    parts[heaviest] = _EXACT.add(parts[heaviest], residue)
    return [p if sign > 0 else -p for p in parts]


def _add(a: Decimal, b: Decimal) -> Decimal:
    return _EXACT.add(a, b)


# ---------------------------------------------------------------------------------------------------------
# Rows
# ---------------------------------------------------------------------------------------------------------


def _month(when: datetime) -> tuple[datetime, datetime]:
    start = when.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
    return start, end


def _tags_json(tags: Mapping[str, str]) -> str:
    return json.dumps(dict(tags), ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def _service_name(provider: str | None, provider_name: str) -> str:
    if provider == CACHE_PROVIDER:
        return "margin Cache"
    return _SERVICE_NAMES.get(provider or "", f"{provider_name} API")


def _base_row(event: _Event, billing_account: str, currency: str, sub_accounts: Mapping[str, str]) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(COLUMNS)
    hour = event.finished_at.replace(minute=0, second=0, microsecond=0)
    period_start, period_end = _month(event.finished_at)
    row.update(
        BillingAccountId=billing_account,
        BillingAccountName=billing_account,
        BillingCurrency=currency,
        BillingPeriodStart=period_start,
        BillingPeriodEnd=period_end,
        ChargeCategory="Usage",
        ChargeFrequency="Usage-Based",
        ChargePeriodStart=hour,
        ChargePeriodEnd=hour + timedelta(hours=1),
        ConsumedUnit="Tokens",
        PricingCategory="Standard",
        PricingUnit=PRICING_UNIT,
        ServiceCategory="AI and Machine Learning",
        ServiceSubcategory="Generative AI",
        ResourceType="Model",
        Tags=_tags_json(event.tags),
        x_CacheDecision=event.cache,
        x_EventCount=1,
        x_EventId=event.event_id,
        x_Feature=event.tags.get("feature"),
        x_KeyId=event.key_id,
        x_PriceSource=event.price_source,
        x_Project=event.tags.get("project"),
        x_ReasoningTokens=0,
        x_RequestId=event.request_id,
        x_RequestedModel=event.requested_model,
        x_Route=event.route,
        x_ServedModel=event.served_model,
        x_Status=event.status,
        x_Team=event.tags.get("team"),
    )
    if event.key_id:
        row.update(
            SubAccountId=event.key_id,
            SubAccountName=sub_accounts.get(event.key_id, event.key_id),
            SubAccountType="Virtual Key",
        )
    return row


def _event_rows(
    event: _Event,
    book: _PriceBook,
    billing_account: str,
    currency: str,
    sub_accounts: Mapping[str, str],
) -> list[dict[str, Any]]:
    has_cost = bool(event.list_cost or event.effective_cost)
    if event.status == "rejected" and not has_cost and not event.avoided_cost:
        return []
    model = event.served_model or event.requested_model or "unknown"
    provider = event.provider or "unknown"
    base = _base_row(event, billing_account, currency, sub_accounts)

    if provider == CACHE_PROVIDER and not has_cost:
        tokens = event.input_tokens + event.output_tokens
        sku = f"{CACHE_PROVIDER}/{model}/cache-hit"
        base.update(
            BilledCost=Decimal(0),
            ChargeDescription=f"{model} answer served from margin's cache ({tokens:,} tokens, no upstream call)",
            ConsumedQuantity=Decimal(tokens),
            ContractedCost=Decimal(0),
            ContractedUnitPrice=Decimal(0),
            EffectiveCost=Decimal(0),
            InvoiceIssuerName="margin",
            ListCost=Decimal(0),
            ListUnitPrice=Decimal(0),
            PricingQuantity=_EXACT.divide(Decimal(tokens), MILLION),
            ProviderName="margin",
            PublisherName="margin",
            ResourceId=f"{CACHE_PROVIDER}/{model}",
            ResourceName=model,
            ServiceName=_service_name(CACHE_PROVIDER, "margin"),
            SkuId=sku,
            SkuMeter="Cache Hits",
            SkuPriceId=f"{sku}/free",
            x_AvoidedCost=event.avoided_cost,
            x_ReasoningTokens=event.reasoning_tokens,
            x_TokenType="cache-hit",
        )
        return [base]

    prices = book.lookup(None if provider == "unknown" else provider, model, event.finished_at)
    counts = {
        "input": max(event.input_tokens - event.cache_read_tokens - event.cache_write_tokens, 0),
        "cached-input": event.cache_read_tokens,
        "cache-write": event.cache_write_tokens,
        "output": event.output_tokens,
    }
    parts: list[tuple[str, str, str, int, Decimal | None, int | None]] = []
    for token_type, meter, words, attr in _TOKEN_TYPES:
        tokens = counts[token_type]
        if tokens <= 0:
            continue
        price = tier = None
        if prices.rates is not None:
            value = prices.rates.get(attr)
            if value is None and attr in _FALLBACK_ATTR:
                value = prices.rates.get(_FALLBACK_ATTR[attr])
            price, tier = _rate_at(value, event.input_tokens)
        parts.append((token_type, meter, words, tokens, price, tier))
    if not parts and not has_cost and not event.avoided_cost:
        return []

    service = _service_name(provider, prices.provider_name)
    base.update(
        InvoiceIssuerName=prices.provider_name,
        ProviderName=prices.provider_name,
        PublisherName=prices.provider_name,
        ResourceId=f"{provider}/{model}",
        ResourceName=model,
        ServiceName=service,
    )
    if not parts:  # a cost without tokens (a per-request fee, a usage the provider did not report)
        sku = f"{provider}/{model}/request"
        row = dict(base)
        row.update(
            BilledCost=event.effective_cost,
            ChargeDescription=f"{model} request without reported tokens ({service})",
            ConsumedQuantity=Decimal(0),
            ContractedCost=event.effective_cost,
            EffectiveCost=event.effective_cost,
            ListCost=event.list_cost,
            PricingQuantity=Decimal(0),
            SkuId=sku,
            SkuMeter="Requests",
            x_AvoidedCost=event.avoided_cost,
            x_TokenType="request",
        )
        return [row]

    priced = all(p[4] is not None for p in parts)
    weights = [Decimal(p[3]) * p[4] for p in parts] if priced else [Decimal(p[3]) for p in parts]  # type: ignore[operator]
    if not any(weights):
        weights = [Decimal(p[3]) for p in parts]
    list_parts = split_exact(event.list_cost, weights)
    effective_parts = split_exact(event.effective_cost, weights)
    keep = _EXACT.subtract(Decimal(1), prices.discount)
    rows = []
    for index, ((token_type, meter, words, tokens, price, tier), list_cost, effective_cost) in enumerate(
        zip(parts, list_parts, effective_parts, strict=True)
    ):
        sku = f"{provider}/{model}/{token_type}"
        row = dict(base)
        row.update(
            BilledCost=effective_cost,
            ChargeDescription=f"{model} {words} ({service})",
            ConsumedQuantity=Decimal(tokens),
            ContractedCost=effective_cost,
            ContractedUnitPrice=None if price is None else _EXACT.multiply(price, keep),
            EffectiveCost=effective_cost,
            ListCost=list_cost,
            ListUnitPrice=price,
            PricingQuantity=_EXACT.divide(Decimal(tokens), MILLION),
            SkuId=sku,
            SkuMeter=meter,
            SkuPriceId=None if price is None else f"{sku}/{'base' if tier is None else f'above-{tier}'}",
            x_AvoidedCost=event.avoided_cost if index == 0 else Decimal(0),
            x_ReasoningTokens=event.reasoning_tokens if token_type == "output" else 0,
            x_TokenType=token_type,
        )
        rows.append(row)
    return rows


def focus_rows(
    events: Iterable[Mapping[str, Any] | Any],
    *,
    catalog: Any = None,
    billing_account: str = "margin",
    currency: str = "USD",
    aggregate: Aggregate = "none",
    sub_account_names: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """FOCUS 1.2 rows of ledger events (``usage_events`` rows as mappings, or UsageEvent objects).

    ``catalog`` (a :class:`margin.pricing.Catalog`) weighs the split of each event's recorded costs over its
    token types and gives the unit prices; without it the split is by token counts. ``aggregate="day"``
    groups rows by UTC day, SkuId and tag set. ``sub_account_names`` maps key ids to display names.
    Amounts are Decimals, times UTC datetimes, Tags a JSON object string; see the module docstring."""
    if aggregate not in ("none", "day"):
        raise FocusError(f"aggregate must be 'none' or 'day', got {aggregate!r}")
    book = _PriceBook(catalog)
    names = sub_account_names or {}
    rows: list[dict[str, Any]] = []
    for raw in events:
        rows.extend(_event_rows(_event(raw), book, billing_account, currency, names))
    if aggregate == "day":
        rows = _aggregate_by_day(rows)
    return rows


def _aggregate_by_day(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    groups: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:
        day = row["ChargePeriodStart"].replace(hour=0)
        key = (day, row["SkuId"], row["Tags"])
        merged = groups.get(key)
        if merged is None:
            merged = dict(row)
            merged["ChargePeriodStart"] = day
            merged["ChargePeriodEnd"] = day + timedelta(days=1)
            groups[key] = merged
            continue
        for column in _SUMMED + _SUMMED_X:
            if merged[column] is None or row[column] is None:
                merged[column] = merged[column] if row[column] is None else row[column]
            elif column in INTEGER_COLUMNS:
                merged[column] += row[column]
            else:
                merged[column] = _add(merged[column], row[column])
        for column in COLUMNS:
            if column in _SUMMED or column in _SUMMED_X or column in ("ChargePeriodStart", "ChargePeriodEnd"):
                continue
            if merged[column] != row[column]:
                merged[column] = None
    for merged in groups.values():
        if merged["ChargeDescription"] is None:
            merged["ChargeDescription"] = f"{merged['SkuMeter'] or merged['SkuId']} ({merged['SkuId']})"
    return sorted(groups.values(), key=lambda r: (r["ChargePeriodStart"], r["SkuId"], r["Tags"]))


def row_totals(rows: Iterable[Mapping[str, Any]]) -> dict[str, Decimal]:
    """Exact sums of the cost columns (and x_AvoidedCost) of FOCUS rows."""
    totals = {name: Decimal(0) for name in ("BilledCost", "ContractedCost", "EffectiveCost", "ListCost")}
    totals["x_AvoidedCost"] = Decimal(0)
    for row in rows:
        for name in totals:
            if row.get(name) is not None:
                totals[name] = _add(totals[name], Decimal(row[name]))
    return totals


# ---------------------------------------------------------------------------------------------------------
# Writers
# ---------------------------------------------------------------------------------------------------------


def _columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    extra = sorted({c for row in rows for c in row} - set(COLUMNS))
    return [*COLUMNS, *extra]


def format_datetime(value: datetime) -> str:
    """FOCUS DateTime: ISO 8601 in UTC with a Z suffix."""
    value = value.astimezone(UTC)
    text = value.strftime("%Y-%m-%dT%H:%M:%S")
    if value.microsecond:
        text += f".{value.microsecond:06d}"
    return text + "Z"


def csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        return format_datetime(value)
    return str(value)


def write_csv(rows: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
    """FOCUS rows as UTF-8 CSV: a header of column ids, nulls as empty cells, exact decimals (no exponent),
    times as ISO 8601 UTC (``2026-11-23T19:00:00Z``)."""
    path = Path(path)
    columns = _columns(rows)
    with path.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            writer.writerow([csv_cell(row.get(c)) for c in columns])
    return path


def _pyarrow() -> Any:
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise FocusError(
            "writing Parquet needs pyarrow, which is not installed: run `pip install pyarrow` "
            "(or export CSV with --format csv)"
        ) from None
    return pyarrow


def parquet_schema() -> Any:
    """The Arrow schema of the FOCUS columns: decimal128(38, 18) amounts and quantities, UTC microsecond
    timestamps, int64 counts, strings otherwise."""
    pa = _pyarrow()
    decimal = pa.decimal128(PARQUET_DECIMAL_PRECISION, PARQUET_DECIMAL_SCALE)
    fields = []
    for column in COLUMNS:
        if column in DECIMAL_COLUMNS:
            kind = decimal
        elif column in DATETIME_COLUMNS:
            kind = pa.timestamp("us", tz="UTC")
        elif column in INTEGER_COLUMNS:
            kind = pa.int64()
        else:
            kind = pa.string()
        fields.append(pa.field(column, kind, nullable=True))
    return pa.schema(fields, metadata={"focus_version": FOCUS_VERSION, "generator": "margin"})


_SCALE = Decimal(1).scaleb(-PARQUET_DECIMAL_SCALE)
_MAX_DECIMAL = Decimal(10) ** (PARQUET_DECIMAL_PRECISION - PARQUET_DECIMAL_SCALE)


def _fits(value: Decimal, column: str) -> Decimal:
    if abs(value) >= _MAX_DECIMAL or value.quantize(_SCALE, context=Context(prec=80)) != value:
        raise FocusError(
            f"{column} = {value} cannot be stored exactly as decimal128({PARQUET_DECIMAL_PRECISION}, "
            f"{PARQUET_DECIMAL_SCALE}); export CSV (--format csv), which keeps every digit"
        )
    return value


def write_parquet(rows: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
    """FOCUS rows as Parquet (schema :func:`parquet_schema`, file metadata ``focus_version``). Amounts are
    decimal128(38, 18) so query engines sum them exactly; a value that would be rounded is refused."""
    pa = _pyarrow()
    schema = parquet_schema()
    extra = [c for c in _columns(rows) if c not in COLUMNS]
    if extra:
        schema = pa.schema([*schema, *(pa.field(c, pa.string()) for c in extra)], metadata=schema.metadata)
    data: dict[str, list[Any]] = {}
    for column in schema.names:
        values = [row.get(column) for row in rows]
        if column in DECIMAL_COLUMNS:
            values = [None if v is None else _fits(Decimal(v), column) for v in values]
        elif column in extra:
            values = [None if v is None else csv_cell(v) for v in values]
        data[column] = values
    table = pa.Table.from_pydict(data, schema=schema)
    path = Path(path)
    pa.parquet.write_table(table, path)
    return path

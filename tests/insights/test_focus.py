"""FOCUS 1.2 export: rows from a real SQLite ledger add up exactly to the ledger, one SKU per token type,
the FOCUS columns present and typed, CSV and Parquet round trips, daily aggregation, the CLI command."""

from __future__ import annotations

import asyncio
import csv
import json
import random
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from margin.cli._common import State
from margin.cli.export import export_app, read_events
from margin.config import Discount, PricesConfig
from margin.insights.focus import (
    COLUMNS,
    DATETIME_COLUMNS,
    DECIMAL_COLUMNS,
    FOCUS_COLUMNS,
    FocusError,
    csv_cell,
    focus_rows,
    row_totals,
    split_exact,
    write_csv,
    write_parquet,
)
from margin.pricing import Catalog, TokenUsage, load_price_data
from margin.store.sqlite import SQLiteLedger
from margin.usage import UsageEvent

NOV = datetime(2026, 11, 23, 19, 5, 7, tzinfo=UTC)
MANDATORY = (
    "BilledCost BillingAccountId BillingAccountName BillingCurrency BillingPeriodEnd BillingPeriodStart "
    "ChargeCategory ChargeClass ChargeDescription ChargeFrequency ChargePeriodEnd ChargePeriodStart "
    "ConsumedQuantity ConsumedUnit ContractedCost ContractedUnitPrice EffectiveCost InvoiceIssuerName ListCost "
    "ListUnitPrice PricingCategory PricingQuantity PricingUnit ProviderName PublisherName RegionId RegionName "
    "ResourceId ResourceName ResourceType ServiceCategory ServiceName ServiceSubcategory SkuId SkuPriceId "
    "SubAccountId SubAccountName Tags CommitmentDiscountId CommitmentDiscountStatus CapacityReservationId"
).split()


@pytest.fixture(scope="module")
def catalog(tmp_path_factory) -> Catalog:
    data = load_price_data(tmp_path_factory.mktemp("home"))
    return Catalog.from_data(data, PricesConfig(discounts=[Discount(provider="anthropic", percent=D(10))]))


def _event(n: int, when: datetime, status: str = "ok", **kw) -> UsageEvent:
    values = dict(
        event_id=f"e{n}",
        request_id=f"r{n}",
        attempt=0,
        started_at=when - timedelta(seconds=2),
        finished_at=when,
        status=status,
        endpoint="chat.completions",
        requested_model=kw.get("served_model") or "gpt-4o",
        usage_source="upstream",
    )
    values.update(kw)
    return UsageEvent(**values)


def _events(catalog: Catalog) -> list[UsageEvent]:
    oa_usage = TokenUsage(input_tokens=12_000, cache_read_tokens=4_096, output_tokens=700)
    oa = catalog.price(oa_usage, "gpt-4o", "openai", at=NOV)
    an_usage = TokenUsage(input_tokens=9_000, cache_read_tokens=2_000, cache_write_tokens=5_000, output_tokens=900)
    an = catalog.price(an_usage, "claude-sonnet-4-5", "anthropic", at=NOV)
    team = {"team": "search", "project": "rag", "feature": "answer"}
    return [
        _event(1, NOV, provider="openai", served_model="gpt-4o", key_id="k1", tags=team, input_tokens=12_000,
               cache_read_tokens=4_096, output_tokens=700, reasoning_tokens=0, list_cost=oa.list_cost,
               effective_cost=oa.effective_cost, price_source="genai-prices", route="default"),
        _event(2, NOV + timedelta(minutes=30), provider="anthropic", served_model="claude-sonnet-4-5", key_id="k2",
               tags={"team": "support"}, input_tokens=9_000, cache_read_tokens=2_000, cache_write_tokens=5_000,
               output_tokens=900, reasoning_tokens=300, list_cost=an.list_cost, effective_cost=an.effective_cost),
        # a cache hit: no upstream call, costs 0, what it avoided recorded
        _event(3, NOV + timedelta(hours=1), "cached", provider="cache", served_model="gpt-4o", key_id="k1",
               tags=team, input_tokens=12_000, output_tokens=700, avoided_cost=D("0.0255"), cache="hit",
               price_source="cache"),
        _event(4, NOV + timedelta(hours=2), "rejected", key_id="k1", tags=team),
        # an upstream error that consumed a prompt (recorded cost with more digits than a nano-dollar)
        _event(5, NOV + timedelta(hours=3), "upstream_error", provider="openai", served_model="gpt-4o",
               tags=team, input_tokens=333, output_tokens=7, list_cost=D("0.00090249876543"),
               effective_cost=D("0.00090249876543")),
        _event(6, NOV + timedelta(hours=3), "upstream_error", provider="openai", served_model="gpt-4o", tags=team),
        # a model the catalog does not know: split by tokens, unit prices null
        _event(7, NOV + timedelta(days=1), provider="acme", served_model="acme-llm-1", tags={"team": "search"},
               input_tokens=1_000, output_tokens=3_000, list_cost=D("0.004"), effective_cost=D("0.004")),
        # the same OpenAI usage again the same day: aggregation merges it with e1
        _event(8, NOV + timedelta(hours=4), provider="openai", served_model="gpt-4o", key_id="k1", tags=team,
               input_tokens=12_000, cache_read_tokens=4_096, output_tokens=700, list_cost=oa.list_cost,
               effective_cost=oa.effective_cost),
        # another month: outside the period
        _event(9, NOV + timedelta(days=20), provider="openai", served_model="gpt-4o", input_tokens=10,
               output_tokens=1, list_cost=D("0.000035"), effective_cost=D("0.000035")),
    ]  # fmt: skip


@pytest.fixture(scope="module")
def ledger_path(tmp_path_factory, catalog) -> Path:
    path = tmp_path_factory.mktemp("ledger") / "ledger.db"

    async def write() -> None:
        ledger = SQLiteLedger(path)
        for event in _events(catalog):
            await ledger.write_event(event)
        await ledger.aclose()

    asyncio.run(write())
    return path


NOV_START, DEC_START = datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def events(ledger_path) -> list[dict]:
    return read_events(ledger_path, NOV_START, DEC_START)


@pytest.fixture(scope="module")
def rows(events, catalog) -> list[dict]:
    return focus_rows(events, catalog=catalog)


def _ledger_totals(path: Path) -> tuple[D, D]:
    ledger = SQLiteLedger(path)
    try:
        (total,) = ledger.spend(NOV_START, DEC_START)
    finally:
        ledger.close()
    return total.effective_cost, total.list_cost


# ------------------------------------------------------------------------------------------------ totals


def test_rows_add_up_exactly_to_the_ledger(rows, events, ledger_path):
    effective, list_cost = _ledger_totals(ledger_path)
    totals = row_totals(rows)
    assert totals["EffectiveCost"] == effective and totals["ListCost"] == list_cost
    assert totals["BilledCost"] == effective and totals["ContractedCost"] == effective
    assert totals["x_AvoidedCost"] == D("0.0255")
    # and event by event
    for event in events:
        mine = [r for r in rows if r["x_EventId"] == event["event_id"]]
        assert sum((r["EffectiveCost"] for r in mine), D(0)) == D(event["effective_cost"])
        assert sum((r["ListCost"] for r in mine), D(0)) == D(event["list_cost"])


def test_discounted_anthropic_split_keeps_list_and_effective_exact(rows, catalog):
    mine = {r["x_TokenType"]: r for r in rows if r["x_EventId"] == "e2"}
    assert set(mine) == {"input", "cached-input", "cache-write", "output"}
    for row in mine.values():
        # the ledger priced with the same catalog: unit price x quantity reproduces the split cost
        assert row["ListUnitPrice"] * row["PricingQuantity"] == row["ListCost"]
        assert row["ContractedUnitPrice"] == row["ListUnitPrice"] * D("0.9")
        assert row["ContractedUnitPrice"] * row["PricingQuantity"] == row["EffectiveCost"]
    assert mine["input"]["ConsumedQuantity"] == 2_000  # 9,000 - 2,000 read - 5,000 written
    assert mine["output"]["x_ReasoningTokens"] == 300 and mine["input"]["x_ReasoningTokens"] == 0


def test_sub_nano_residue_stays_exact(rows):
    mine = [r for r in rows if r["x_EventId"] == "e5"]
    assert [r["x_TokenType"] for r in mine] == ["input", "output"]
    assert sum((r["EffectiveCost"] for r in mine), D(0)) == D("0.00090249876543")
    assert all(r["x_Status"] == "upstream_error" for r in mine)


def test_split_exact_adds_up_and_is_proportional():
    rng = random.Random(7)
    for _ in range(300):
        weights = [D(rng.randint(0, 10**6)) / 1000 for _ in range(rng.randint(1, 4))]
        total = D(rng.randint(-(10**12), 10**12)).scaleb(-rng.randint(0, 15))
        parts = split_exact(total, weights)
        assert sum(parts, D(0)) == total
        if any(weights) and total > 0:
            for part, weight in zip(parts, weights, strict=True):
                exact = total * weight / sum(weights)
                assert abs(part - exact) <= D("1e-9") + (total - total.quantize(D("1e-9"), rounding="ROUND_FLOOR"))
    assert split_exact(D("0.000000010"), [1, 1, 1]) == [D("4E-9"), D("3E-9"), D("3E-9")]
    assert split_exact(D(0), [1, 2]) == [D(0), D(0)]


# ------------------------------------------------------------------------------------------------ SKUs


def test_one_sku_per_token_type(rows):
    skus = {(r["x_EventId"], r["SkuId"]) for r in rows}
    assert len(skus) == len(rows)  # never two rows of one event for one SKU
    by_event: dict[str, list[str]] = {}
    for row in rows:
        by_event.setdefault(row["x_EventId"], []).append(row["SkuId"])
    assert by_event["e1"] == ["openai/gpt-4o/input", "openai/gpt-4o/cached-input", "openai/gpt-4o/output"]
    assert by_event["e2"] == [
        "anthropic/claude-sonnet-4-5/input",
        "anthropic/claude-sonnet-4-5/cached-input",
        "anthropic/claude-sonnet-4-5/cache-write",
        "anthropic/claude-sonnet-4-5/output",
    ]
    assert by_event["e3"] == ["cache/gpt-4o/cache-hit"]
    assert "e4" not in by_event and "e6" not in by_event  # rejected; an error that consumed nothing
    assert "e9" not in by_event  # another month


def test_cache_hit_row_costs_nothing_and_carries_the_avoided_cost(rows):
    (hit,) = [r for r in rows if r["x_EventId"] == "e3"]
    assert hit["EffectiveCost"] == hit["ListCost"] == hit["BilledCost"] == 0
    assert hit["x_AvoidedCost"] == D("0.0255") and hit["x_CacheDecision"] == "hit"
    assert hit["ConsumedQuantity"] == 12_700 and hit["ProviderName"] == "margin" and hit["x_Status"] == "cached"


def test_unknown_model_is_split_by_tokens_without_unit_prices(rows):
    mine = {r["x_TokenType"]: r for r in rows if r["x_EventId"] == "e7"}
    assert mine["input"]["EffectiveCost"] == D("0.001") and mine["output"]["EffectiveCost"] == D("0.003")
    assert mine["input"]["ListUnitPrice"] is None and mine["input"]["SkuPriceId"] is None
    assert mine["input"]["ServiceName"] == "acme API"


# ------------------------------------------------------------------------------------------------ columns


def test_focus_columns_present_ordered_and_typed(rows):
    assert list(FOCUS_COLUMNS) == sorted(FOCUS_COLUMNS)  # the specification's alphabetical order
    for column in MANDATORY:
        assert column in FOCUS_COLUMNS
    for row in rows:
        assert list(row) == list(COLUMNS)
        for column in DECIMAL_COLUMNS:
            assert row[column] is None or isinstance(row[column], D), column
        for column in DATETIME_COLUMNS:
            assert isinstance(row[column], datetime) and row[column].utcoffset() == timedelta(0), column
        assert row["ChargePeriodStart"] < row["ChargePeriodEnd"]
        assert row["BillingPeriodStart"] == NOV_START and row["BillingPeriodEnd"] == DEC_START
        assert row["ChargeCategory"] == "Usage" and row["ChargeClass"] is None
        assert row["ChargeFrequency"] == "Usage-Based" and row["PricingCategory"] == "Standard"
        assert row["ServiceCategory"] == "AI and Machine Learning" and row["ServiceSubcategory"] == "Generative AI"
        assert row["ConsumedUnit"] == "Tokens" and row["PricingUnit"] == "1000000 Tokens"
        assert row["PricingQuantity"] * 1_000_000 == row["ConsumedQuantity"]
        assert row["BillingCurrency"] == "USD" and row["BillingAccountId"] == "margin"
        assert row["BilledCost"] == row["EffectiveCost"] == row["ContractedCost"]
        assert isinstance(json.loads(row["Tags"]), dict)
        assert row["CommitmentDiscountId"] is None and row["RegionId"] is None and row["InvoiceId"] is None
        for column in ("ProviderName", "PublisherName", "InvoiceIssuerName", "ServiceName", "SkuId", "ResourceId"):
            assert isinstance(row[column], str) and row[column], column


def test_provider_service_and_x_columns(rows):
    first = rows[0]
    assert first["ProviderName"] == "OpenAI" and first["ServiceName"] == "OpenAI API"
    assert first["ListUnitPrice"] == D("2.5") and first["SkuPriceId"] == "openai/gpt-4o/input/base"
    assert json.loads(first["Tags"]) == {"feature": "answer", "project": "rag", "team": "search"}
    assert (first["x_Team"], first["x_Project"], first["x_Feature"]) == ("search", "rag", "answer")
    assert (first["x_KeyId"], first["SubAccountId"], first["SubAccountType"]) == ("k1", "k1", "Virtual Key")
    assert first["x_RequestId"] == "r1" and first["x_RequestedModel"] == first["x_ServedModel"] == "gpt-4o"
    assert first["ChargePeriodStart"] == datetime(2026, 11, 23, 19, tzinfo=UTC)
    anthropic = next(r for r in rows if r["x_EventId"] == "e2")
    assert anthropic["ProviderName"] == "Anthropic" and anthropic["ServiceName"] == "Claude API"


# ------------------------------------------------------------------------------------------------ aggregation


def test_daily_aggregation_sums_exactly(events, rows, catalog):
    daily = focus_rows(events, catalog=catalog, aggregate="day")
    assert len(daily) < len(rows)
    assert row_totals(daily) == row_totals(rows)
    for column in ("ConsumedQuantity", "PricingQuantity"):
        assert sum(r[column] for r in daily) == sum(r[column] for r in rows)
    assert sum(r["x_EventCount"] for r in daily) == len(rows)
    merged = next(r for r in daily if r["SkuId"] == "openai/gpt-4o/cached-input")
    assert merged["x_EventCount"] == 2 and merged["ConsumedQuantity"] == 2 * 4_096
    assert merged["x_RequestId"] is None and merged["x_KeyId"] == "k1"  # differs -> null; equal -> kept
    assert merged["ChargePeriodStart"] == datetime(2026, 11, 23, tzinfo=UTC)
    assert merged["ChargePeriodEnd"] == datetime(2026, 11, 24, tzinfo=UTC)
    assert len({(r["ChargePeriodStart"], r["SkuId"], r["Tags"]) for r in daily}) == len(daily)
    with pytest.raises(FocusError):
        focus_rows(events, aggregate="week")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------ files


def test_csv_round_trip(rows, tmp_path):
    path = write_csv(rows, tmp_path / "focus.csv")
    with path.open(newline="", encoding="utf-8") as stream:
        back = list(csv.DictReader(stream))
    assert list(back[0]) == list(COLUMNS)
    assert back == [{c: csv_cell(r[c]) for c in COLUMNS} for r in rows]
    assert sum(D(r["EffectiveCost"]) for r in back) == row_totals(rows)["EffectiveCost"]
    assert back[0]["ChargePeriodStart"] == "2026-11-23T19:00:00Z"
    assert "E" not in "".join(r["ListCost"] for r in back)  # no exponent notation


def test_parquet_round_trip(rows, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    import pyarrow as pa

    path = write_parquet(rows, tmp_path / "focus.parquet")
    table = pq.read_table(path)
    assert table.schema.names == list(COLUMNS)
    assert table.schema.field("EffectiveCost").type == pa.decimal128(38, 18)
    assert table.schema.field("ChargePeriodStart").type == pa.timestamp("us", tz="UTC")
    assert table.schema.metadata[b"focus_version"] == b"1.2"
    back = table.to_pylist()
    assert back == rows  # Decimal equality is by value; datetimes come back UTC-aware


def test_parquet_refuses_to_round(rows, tmp_path):
    pytest.importorskip("pyarrow")
    bad = [dict(rows[0], EffectiveCost=D("1e-19"))]
    with pytest.raises(FocusError, match="csv"):
        write_parquet(bad, tmp_path / "bad.parquet")


def test_missing_pyarrow_is_a_clear_error(rows, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(FocusError, match="pip install pyarrow"):
        write_parquet(rows, tmp_path / "x.parquet")


# ------------------------------------------------------------------------------------------------ CLI


def _cli() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def root(ctx: typer.Context) -> None:
        ctx.obj = State()

    app.add_typer(export_app, name="export")
    return app


def test_cli_exports_csv_and_parquet(ledger_path, tmp_path, monkeypatch):
    home = tmp_path / "margin-home"
    home.mkdir(exist_ok=True)
    (home / "ledger.db").write_bytes(ledger_path.read_bytes())
    Path("margin.yaml").write_text("prices:\n  discounts:\n    - provider: anthropic\n      percent: 10\n")
    effective, list_cost = _ledger_totals(home / "ledger.db")
    runner = CliRunner()
    result = runner.invoke(_cli(), ["export", "focus", "--period", "2026-11", "--out", "f.csv"])
    assert result.exit_code == 0, result.output
    assert "rows from 8 events" in result.output and str(effective) in result.output
    with open("f.csv", newline="") as stream:
        back = list(csv.DictReader(stream))
    assert sum(D(r["EffectiveCost"]) for r in back) == effective
    assert sum(D(r["ListCost"]) for r in back) == list_cost
    if "pyarrow" in sys.modules or _has_pyarrow():
        result = runner.invoke(_cli(), ["export", "focus", "--period", "2026-11", "--format", "parquet"])
        assert result.exit_code == 0, result.output
        assert Path("focus-2026-11.parquet").exists()
    result = runner.invoke(_cli(), ["export", "focus", "--since", "2026-11-24", "--until", "2026-12-01", "-o", "d.csv"])
    assert result.exit_code == 0 and "rows from 1 events" in result.output
    assert runner.invoke(_cli(), ["export", "focus", "--period", "2026-13"]).exit_code == 2
    assert runner.invoke(_cli(), ["export", "focus", "--format", "xlsx"]).exit_code == 2


def _has_pyarrow() -> bool:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return False
    return True

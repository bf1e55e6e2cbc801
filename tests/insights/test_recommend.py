"""Recommendations on synthetic ledgers whose answers are computed by hand (in the comments)."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest

from margin.config import PricesConfig
from margin.insights.recommend import (
    Recommendation,
    cache_candidates,
    catalog_pricer,
    cheaper_model,
    context_bloat,
    max_tokens_issues,
    monthly,
    recommend,
    self_hosting,
)
from margin.pricing import Catalog, TokenUsage, load_price_data
from margin.usage import UsageEvent

AT = datetime(2026, 11, 1, tzinfo=UTC)
START = datetime(2026, 11, 1, tzinfo=UTC)
PERIOD = 10  # days observed: every saving is observed x 30 / 10 = observed x 3


@pytest.fixture(scope="module")
def catalog(tmp_path_factory) -> Catalog:
    return Catalog.from_data(load_price_data(tmp_path_factory.mktemp("home")), PricesConfig())


def flat_price(model: str, usage: TokenUsage) -> D:
    """$1 per 1M input tokens, $2 per 1M output, whatever the model: easy sums by hand."""
    return (D(usage.input_tokens) + 2 * D(usage.output_tokens)) / 1_000_000


_counter = iter(range(10**9))


def row(**kw) -> dict:
    """A ledger row as read from SQLite (JSON text, Decimal text), answered by default."""
    n = next(_counter)
    values = {
        "event_id": f"e{n:07d}",
        "request_id": f"r{n:07d}",
        "attempt": 0,
        "finished_at": (START + timedelta(seconds=n % 800_000)).isoformat(),
        "status": "ok",
        "endpoint": "chat.completions",
        "requested_model": "gpt-4o-mini",
        "served_model": "gpt-4o-mini",
        "provider": "openai",
        "tags": "{}",
        "task_id": None,
        "input_tokens": 800,
        "cache_read_tokens": 0,
        "cache_write_tokens": 0,
        "output_tokens": 200,
        "effective_cost": "0.01",
        "avoided_cost": "0",
        "max_tokens": 1000,
        "route": "chat",
        "cache": None,
        "decisions": "{}",
    }
    values.update(kw)
    for key in ("tags", "decisions"):
        if isinstance(values[key], dict):
            values[key] = json.dumps(values[key])
    return values


def clean_ledger() -> list[dict]:
    """Four routes of ordinary traffic on the cheap model, capped sensibly, no cache, similar prompts."""
    rows = []
    for route in ("chat", "search", "summarize", "support"):
        for i in range(60):
            rows.append(row(route=route, input_tokens=700 + 10 * i, output_tokens=100 + i, max_tokens=1000))
    return rows


# --- scaling ------------------------------------------------------------------------------------------------


def test_monthly_scaling_is_exact_and_never_negative():
    assert monthly(D("2.115"), 10) == D("6.345000")
    assert monthly(D("1"), 7) == D("4.285714")  # 30 / 7 = 4.2857142..., half-even to micro-dollars
    assert monthly(D("-5"), 10) == D("0")
    with pytest.raises(ValueError):
        monthly(D(1), 0)


# --- cheaper model ------------------------------------------------------------------------------------------


def test_cheaper_model_saving_from_catalog_prices(catalog):
    price = catalog_pricer(catalog, AT)
    # The hand computation below relies on these list prices (USD per 1M tokens).
    assert catalog.rate("gpt-4o", at=AT).input_per_mtok == D("2.5")
    assert catalog.rate("gpt-4o", at=AT).output_per_mtok == D("10")
    assert catalog.rate("gpt-4o-mini", at=AT).input_per_mtok == D("0.15")
    assert catalog.rate("gpt-4o-mini", at=AT).output_per_mtok == D("0.6")
    rows = [
        row(served_model="gpt-4o", input_tokens=500, output_tokens=100, effective_cost="0.00225") for _ in range(1000)
    ]
    # Not simple: a long prompt, a long answer, tools per the routing signals, an error.
    rows += [row(served_model="gpt-4o", input_tokens=5_000, output_tokens=100) for _ in range(100)]
    rows += [row(served_model="gpt-4o", input_tokens=500, output_tokens=2_000) for _ in range(100)]
    rows += [
        row(served_model="gpt-4o", input_tokens=500, output_tokens=100, decisions={"signals": {"tools": 1.0}})
        for _ in range(50)
    ]
    rows += [row(served_model="gpt-4o", status="upstream_error", input_tokens=0, output_tokens=0) for _ in range(10)]
    # Per simple request: gpt-4o 500 x 2.5/1M + 100 x 10/1M = 0.00125 + 0.001 = 0.00225
    #                     gpt-4o-mini 500 x 0.15/1M + 100 x 0.6/1M = 0.000075 + 0.00006 = 0.000135
    # 1,000 requests: (0.00225 - 0.000135) x 1000 = 2.115 in 10 days -> 2.115 x 30 / 10 = 6.345 per month.
    (rec,) = cheaper_model(
        rows, price=price, period_days=PERIOD, cheap_model="gpt-4o-mini", expensive_models=["gpt-4o"]
    )
    assert rec.kind == "cheaper_model"
    assert rec.estimated_monthly_saving == D("6.345000")
    assert rec.evidence["requests"] == 1000
    assert rec.evidence["model_requests"] == 1250
    assert rec.evidence["share_of_model_requests"] == "0.8000"
    assert D(rec.evidence["cost_now"]) == D("2.25")
    assert D(rec.evidence["cost_on_cheap_model"]) == D("0.135")
    assert rec.evidence["input_tokens"] == 500_000 and rec.evidence["output_tokens"] == 100_000
    assert rec.confidence == "medium"  # no routing signals: tools judged by size only


def test_cheaper_model_with_signals_is_high_confidence_and_skips_complex_tier():
    simple = {"routing": "tier", "tier": "simple", "signals": {"tools": 0.0, "length": 0.1}}
    rows = [row(served_model="big", input_tokens=400, output_tokens=100, decisions=simple) for _ in range(30)]
    rows += [row(served_model="big", input_tokens=400, output_tokens=100, decisions={**simple, "tier": "complex"})]

    def price(model: str, usage: TokenUsage) -> D:
        return flat_price(model, usage) * (10 if model == "big" else 1)

    # Per request flat cost (400 + 200) / 1M = 0.0006; "big" costs 10x: saving 0.0054 x 30 = 0.162, x 3 = 0.486.
    (rec,) = cheaper_model(rows, price=price, period_days=PERIOD, cheap_model="small", expensive_models={"big"})
    assert rec.estimated_monthly_saving == D("0.486000")
    assert rec.confidence == "high"
    assert rec.evidence["requests"] == 30


def test_cheaper_model_needs_enough_requests_and_a_real_difference():
    rows = [row(served_model="big", input_tokens=100, output_tokens=10) for _ in range(19)]
    assert cheaper_model(rows, price=flat_price, period_days=PERIOD, cheap_model="s", expensive_models=["big"]) == []
    rows += [row(served_model="big", input_tokens=100, output_tokens=10)]
    # Same price on both models: nothing to save, no recommendation.
    assert cheaper_model(rows, price=flat_price, period_days=PERIOD, cheap_model="s", expensive_models=["big"]) == []


# --- cache --------------------------------------------------------------------------------------------------


def test_exact_repeats_by_prompt_hash():
    rows = [row(route="faq", effective_cost="0.01") for _ in range(10)]
    hashes = {r["event_id"]: h for r, h in zip(rows, "AAAABBBCDE", strict=True)}
    # A x4 -> 3 repeats, B x3 -> 2 repeats, C, D, E unique: 5 repeats x $0.01 = 0.05 -> x 3 = 0.15.
    (rec,) = cache_candidates(rows, period_days=PERIOD, prompt_hashes=hashes)
    assert rec.kind == "cache_repeats"
    assert rec.estimated_monthly_saving == D("0.150000")
    assert rec.evidence["repeat_requests"] == 5
    assert rec.evidence["distinct_prompts"] == 5
    assert rec.evidence["repeat_cost_share"] == "0.5000"
    assert rec.confidence == "high"
    # Fewer repeats than min_repeats: nothing.
    assert cache_candidates(rows, period_days=PERIOD, prompt_hashes=hashes, min_repeats=6) == []


def test_repeats_respect_the_cache_ttl():
    t0 = START
    times = [t0, t0 + timedelta(seconds=30), t0 + timedelta(seconds=200), t0 + timedelta(seconds=220)]
    rows = [row(route="faq", finished_at=t.isoformat(), effective_cost="1") for t in times]
    hashes = {r["event_id"]: "same" for r in rows}
    # TTL 60 s: the first fills (t=0), t=30 is served, t=200 refills, t=220 is served: 2 repeats -> $2 x 3 = 6.
    (rec,) = cache_candidates(rows, period_days=PERIOD, prompt_hashes=hashes, ttl_seconds=60, min_repeats=1)
    assert rec.evidence["repeat_requests"] == 2
    assert rec.estimated_monthly_saving == D("6.000000")


def test_cache_hit_rate_extrapolated_to_uncached_traffic_without_hashes():
    rows = [row(route="chat", cache="hit", status="cached", effective_cost="0", avoided_cost="0.02") for _ in range(30)]
    rows += [row(route="chat", cache="miss", effective_cost="0.02") for _ in range(70)]
    rows += [row(route="chat", cache=None, effective_cost="0.02") for _ in range(50)]
    rows += [row(route="chat", cache="bypass", effective_cost="0.02") for _ in range(5)]
    # Hit rate 30 / (30 + 70) = 0.3; uncached cost 50 x 0.02 = 1.00; 0.3 x 1.00 = 0.30 -> x 3 = 0.90.
    (rec,) = cache_candidates(rows, period_days=PERIOD)
    assert rec.kind == "cache_extend"
    assert rec.estimated_monthly_saving == D("0.900000")
    assert rec.evidence["hit_rate"] == "0.3000"
    assert rec.evidence["bypassed_requests"] == 5
    assert D(rec.evidence["avoided_cost"]) == D("0.60")
    assert rec.confidence == "low"


def test_no_cache_anywhere_means_no_cache_recommendation():
    # Repeats among uncached requests are invisible without prompt hashes: no guess is made.
    assert cache_candidates(clean_ledger(), period_days=PERIOD) == []


# --- context bloat ------------------------------------------------------------------------------------------


def test_route_far_above_its_peers():
    rows = [row(route=r, input_tokens=1_000, output_tokens=100) for r in ("a", "b", "c") for _ in range(20)]
    rows += [row(route="rag", input_tokens=8_000, output_tokens=100) for _ in range(20)]
    # Peers' medians 1000, 1000, 1000 -> 1000; rag's 8000 > 3 x 1000. Trim 7000 tokens x 20 = 140,000 tokens
    # x $1/1M = 0.14 -> x 3 = 0.42.
    (rec,) = context_bloat(rows, price=flat_price, period_days=PERIOD)
    assert rec.evidence["route"] == "rag" and rec.evidence["reason"] == "above_peers"
    assert rec.evidence["peer_median_prompt_tokens"] == 1_000
    assert rec.evidence["trimmed_tokens"] == 140_000
    assert rec.estimated_monthly_saving == D("0.420000")


def test_prompt_growth_across_a_task_by_feature_tag():
    rows = []
    for task in range(5):
        for step, tokens in enumerate((1_000, 2_000, 3_000, 4_000)):
            when = (START + timedelta(hours=task, minutes=step)).isoformat()
            rows.append(
                row(
                    task_id=f"t{task}",
                    finished_at=when,
                    input_tokens=tokens,
                    output_tokens=50,
                    tags={"feature": "agent"},
                )
            )
    # Each task grows 4000 / 1000 = 4x >= 2x. The feature's median prompt (nearest rank, 10th of 20) is 2000:
    # trimming 3000 -> 2000 (5 calls) and 4000 -> 2000 (5 calls) = 15,000 tokens x $1/1M = 0.015 -> x 3 = 0.045.
    (rec,) = context_bloat(rows, price=flat_price, period_days=PERIOD, group_by="feature")
    assert rec.evidence["feature"] == "agent" and rec.evidence["reason"] == "growth"
    assert rec.evidence["median_task_growth"] == "4.00"
    assert rec.evidence["target_prompt_tokens"] == 2_000
    assert rec.estimated_monthly_saving == D("0.045000")


# --- max_tokens ---------------------------------------------------------------------------------------------


def test_outputs_hitting_the_cap():
    rows = [row(route="gen", max_tokens=500, output_tokens=480) for _ in range(90)]
    rows += [row(route="gen", max_tokens=500, output_tokens=500, effective_cost="0.01") for _ in range(10)]
    # 10 / 100 = 10% hit the cap; their cost 10 x 0.01 = 0.10 -> x 3 = 0.30.
    recs = max_tokens_issues(rows, price=flat_price, period_days=PERIOD)
    (rec,) = [r for r in recs if r.kind == "max_tokens_capped"]
    assert rec.evidence["capped_share"] == "0.1000"
    assert rec.estimated_monthly_saving == D("0.300000")


def test_default_cap_reserves_far_more_than_used():
    rows = [row(route="bot", max_tokens=4096, input_tokens=100, output_tokens=100) for _ in range(30)]
    # Worst case per request reserves 4096 output tokens, 3996 more than used: 3996 x $2/1M = 0.007992;
    # x 30 requests = 0.23976 -> x 3 = 0.71928 reserved-but-unused per month; spend saving 0.
    (rec,) = max_tokens_issues(rows, price=flat_price, period_days=PERIOD, default_max_tokens=4096)
    assert rec.kind == "max_tokens_loose"
    assert rec.evidence["default_cap_requests"] == 30
    assert rec.evidence["reserved_unused_per_month"] == "0.719280"
    assert rec.evidence["suggested_max_tokens"] == 120  # p99 100 x 1.2
    assert rec.estimated_monthly_saving == D("0")


# --- self-hosting -------------------------------------------------------------------------------------------


def test_idle_self_hosted_capacity():
    # 240 GPU hours at $2 = $480 in 10 days; 20% used, target 70%: keep 2/7 of the hours,
    # saving 480 x 5/7 = 342.857142857... -> x 3 = 1028.571429 (micro-dollars, half-even).
    (rec,) = self_hosting([], period_days=PERIOD, gpu_hourly=D(2), gpu_hours=240, utilization=D("0.2"))
    assert rec.kind == "self_hosting_idle"
    assert rec.estimated_monthly_saving == D("1028.571429")
    assert rec.confidence == "medium"
    # Estimated from tokens: 240 h x 10,000 tokens/h = 2.4M capacity; 1.2M served = 50%: not idle.
    rows = [row(provider="vllm", input_tokens=1_000, output_tokens=200) for _ in range(1_000)]
    assert (
        self_hosting(
            rows,
            period_days=PERIOD,
            gpu_hourly=D(2),
            gpu_hours=240,
            tokens_per_gpu_hour=10_000,
            self_hosted_providers={"vllm"},
        )
        == []
    )
    # 5M capacity per hour: 1.2M / (240 x 50,000) = 10%: idle, estimated (low).
    (est,) = self_hosting(
        rows,
        period_days=PERIOD,
        gpu_hourly=D(2),
        gpu_hours=240,
        tokens_per_gpu_hour=50_000,
        self_hosted_providers={"vllm"},
    )
    assert est.evidence["utilization"] == "0.1000" and est.confidence == "low"


def test_api_volume_past_breakeven():
    rows = [row(provider="openai", input_tokens=800, output_tokens=200, effective_cost="0.01") for _ in range(1_000)]
    # 1M tokens in 10 days = 3M per month, break-even 1M; API cost 10 x (1 - 1M / 3M) = 6.666... -> x 3 = 20.
    (rec,) = self_hosting(rows, period_days=PERIOD, gpu_hourly=D(0), gpu_hours=0, breakeven_tokens_per_month=1_000_000)
    assert rec.kind == "self_hosting_breakeven"
    assert rec.estimated_monthly_saving == D("20.000000")
    assert rec.evidence["api_tokens_per_month"] == "3000000"
    assert (
        self_hosting(rows, period_days=PERIOD, gpu_hourly=D(0), gpu_hours=0, breakeven_tokens_per_month=4_000_000) == []
    )


# --- all ----------------------------------------------------------------------------------------------------


def messy_ledger() -> list[dict]:
    rows = [row(served_model="gpt-4o", input_tokens=500, output_tokens=100) for _ in range(100)]
    rows += [row(route=r, input_tokens=1_000) for r in ("a", "b", "c") for _ in range(20)]
    rows += [row(route="rag", input_tokens=9_000) for _ in range(20)]
    rows += [row(route="gen", max_tokens=300, output_tokens=300) for _ in range(20)]
    return rows


def test_clean_ledger_has_no_recommendations(catalog):
    recs = recommend(
        clean_ledger(),
        price=catalog_pricer(catalog, AT),
        period_days=PERIOD,
        cheap_model="gpt-4o-mini",
        expensive_models=["gpt-4o"],
        prompt_hashes={r["event_id"]: r["event_id"] for r in clean_ledger()},
        default_max_tokens=4096,
        gpu_hourly=D(2),
        gpu_hours=240,
        utilization=D("0.75"),
        breakeven_tokens_per_month=10**12,
    )
    assert recs == []


def test_recommend_sorts_by_saving_and_is_deterministic(catalog):
    price = catalog_pricer(catalog, AT)
    rows = messy_ledger()
    kwargs = dict(price=price, period_days=PERIOD, cheap_model="gpt-4o-mini", expensive_models=["gpt-4o"])
    first = recommend(rows, **kwargs)
    # route "chat": caps of 1000 against a p99 output of 100 (10x) is also flagged, with no dollar saving.
    assert {r.kind for r in first} == {"cheaper_model", "context_bloat", "max_tokens_capped", "max_tokens_loose"}
    assert first[-1].kind == "max_tokens_loose"
    savings = [r.estimated_monthly_saving for r in first]
    assert savings == sorted(savings, reverse=True)
    assert all(isinstance(r, Recommendation) and r.estimated_monthly_saving >= 0 for r in first)
    shuffled = rows[:]
    random.Random(7).shuffle(shuffled)
    assert recommend(shuffled, **kwargs) == first
    assert json.dumps([r.evidence for r in first], sort_keys=True)  # evidence is JSON-ready


def test_usage_events_are_accepted_like_rows():
    events = [
        UsageEvent(
            event_id=f"u{i}",
            request_id=f"u{i}",
            attempt=0,
            started_at=START,
            finished_at=START + timedelta(minutes=i),
            status="ok",
            endpoint="chat.completions",
            requested_model="big",
            served_model="big",
            input_tokens=400,
            output_tokens=100,
            effective_cost=D("0.006"),
            route="chat",
            max_tokens=1000,
        )
        for i in range(25)
    ]

    def price(model: str, usage: TokenUsage) -> D:
        return flat_price(model, usage) * (10 if model == "big" else 1)

    (rec,) = cheaper_model(events, price=price, period_days=PERIOD, cheap_model="small", expensive_models=["big"])
    # 25 x 0.0054 = 0.135 -> x 3 = 0.405.
    assert rec.estimated_monthly_saving == D("0.405000")


def test_recommend_parses_once_and_answers_as_each_rule_on_the_raw_rows(catalog):
    """recommend() parses the rows once and hands the parsed rows to every rule: the answers must be exactly
    what each rule gives on the raw rows (ledger mappings, and the same rows as UsageEvents)."""
    price = catalog_pricer(catalog, AT)
    rows = messy_ledger() + [row(route="faq", input_tokens=600) for _ in range(30)]
    hashes = {r["event_id"]: ("same" if r["route"] == "faq" else r["event_id"]) for r in rows}
    events = [
        UsageEvent(
            event_id=r["event_id"],
            request_id=r["request_id"],
            attempt=0,
            started_at=datetime.fromisoformat(r["finished_at"]),
            finished_at=datetime.fromisoformat(r["finished_at"]),
            status="ok",
            endpoint="chat.completions",
            requested_model=r["requested_model"],
            served_model=r["served_model"],
            provider=r["provider"],
            input_tokens=r["input_tokens"],
            output_tokens=r["output_tokens"],
            effective_cost=D(r["effective_cost"]),
            route=r["route"],
            max_tokens=r["max_tokens"],
        )
        for r in rows
    ]
    for data in (rows, events):
        kw = dict(price=price, period_days=PERIOD)
        expected = (
            cheaper_model(data, **kw, cheap_model="gpt-4o-mini", expensive_models=["gpt-4o"])
            + cache_candidates(data, period_days=PERIOD, prompt_hashes=hashes)
            + context_bloat(data, **kw)
            + max_tokens_issues(data, **kw, default_max_tokens=4096)
            + self_hosting(data, period_days=PERIOD, gpu_hourly=D(0), gpu_hours=0, breakeven_tokens_per_month=1_000)
        )
        found = recommend(
            data,
            **kw,
            cheap_model="gpt-4o-mini",
            expensive_models=["gpt-4o"],
            prompt_hashes=hashes,
            default_max_tokens=4096,
            breakeven_tokens_per_month=1_000,
        )
        assert found == sorted(expected, key=lambda r: (-r.estimated_monthly_saving, r.kind, r.title))
        assert {r.kind for r in found} >= {"cheaper_model", "cache_repeats", "context_bloat", "max_tokens_capped"}

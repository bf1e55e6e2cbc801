"""The gateway's assembled parts, built once from config: model routes with their providers and pricers,
the ledger, the budget counters and the key cache. Passed explicitly to the request pipeline; nothing here
is a module-level global."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from ..cache._exact import ExactCache
from ..config import CustomModel, MarginConfig, margin_home
from ..errors import ConfigError
from ..keys import hash_key, parse_budget
from ..levers import TrainedRouter
from ..policy.budgets import AppliedBudget, budget_spend, counter_name, period_start
from ..policy.counters import CounterSeed, CounterStore, MemoryCounters, period_end
from ..pricing import Catalog, Cost, TokenUsage, load_price_data
from ..redact import RedactionRule, rules_from_config
from ..store.base import MeteringLedger, SpendRow, VirtualKey
from ..store.location import ledger_location, open_ledger
from ..tokens import encoding_for_model
from ..usage import UsageEvent
from .backends.memory import LocalBreakers, LocalExactCache, LocalRateLimits
from .config import BudgetConfig, GatewayConfig, ModelRouteConfig, ProviderConfig
from .metrics import GatewayMetrics
from .providers.anthropic import AnthropicProvider
from .providers.base import Provider
from .providers.mock import MockProvider
from .providers.openai import OpenAIProvider
from .telemetry import SpanEmitter, build_emitter

__all__ = [
    "Gateway",
    "ModelRoute",
    "RoutePricer",
    "build_gateway",
    "key_budget_rules",
    "rebuild_breakers",
    "rebuild_counters",
]

log = logging.getLogger("margin.gateway")

_MILLION = 1_000_000


@dataclass(frozen=True)
class RoutePricer:
    """Prices usages of one route: the catalog entry it resolved to at start-up (or the route's override)."""

    catalog: Catalog
    model: str
    provider: str

    def price(self, usage: TokenUsage, at: datetime) -> Cost:
        return self.catalog.price(usage, self.model, self.provider, at=at)

    def worst_case(self, prompt_tokens: int, max_tokens: int, at: datetime) -> tuple[Decimal, Decimal, Decimal]:
        """(worst-case effective cost, input cost, output price per token) for a prompt size. Pricing the
        prompt once with no output and once with a million output tokens gives the output rate that
        applies at THIS prompt size, context tiers included."""
        base = self.price(TokenUsage(input_tokens=prompt_tokens), at).effective_cost
        with_output = self.price(TokenUsage(input_tokens=prompt_tokens, output_tokens=_MILLION), at).effective_cost
        per_token = (with_output - base) / _MILLION
        return base + per_token * max_tokens, base, per_token

    @property
    def source(self) -> str:
        return self.catalog.find(self.model, self.provider).source.describe()


@dataclass(frozen=True)
class ModelRoute:
    name: str
    provider: Provider
    upstream_model: str
    pricer: RoutePricer
    fallbacks: tuple[str, ...]
    max_tokens_cap: int | None
    # Whether margin counts this model's prompts exactly (an OpenAI encoding) or estimates them; picks the
    # safety margin of the worst-case reservation.
    exact_prompt_count: bool = False


@dataclass
class Gateway:
    config: GatewayConfig
    catalog: Catalog
    routes: dict[str, ModelRoute]
    providers: dict[str, Provider]
    ledger: MeteringLedger
    # Budget counters, rate limits, spend breakers and the exact cache: in this process, or in Redis
    # (gateway.redis_url) shared by several instances; the same async interfaces either way.
    counters: CounterStore
    master_key: str | None
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    rate_limiter: Any = field(default_factory=LocalRateLimits)
    breaker: Any = field(default_factory=LocalBreakers)
    # key hash -> (key, fetched at monotonic seconds); keys are re-read after KEY_CACHE_SECONDS so a
    # revocation takes effect quickly without a database read on every request.
    _key_cache: dict[str, tuple[VirtualKey | None, float]] = field(default_factory=dict)
    # Answers of deterministic requests on lever routes with a cache policy (see gateway/caching.py).
    exact_cache: Any = field(default_factory=LocalExactCache)
    # One semantic cache per lever route that has one (each has its own threshold); one embedder shared.
    semantic_caches: dict[str, Any] = field(default_factory=dict)
    # With Redis: the semantic caches' entries shared by every instance (backends/redis_semantic.py): stores,
    # feedback and clears go through it; lookups stay on the local caches above. None in one process.
    semantic_shared: Any = None
    background_tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    # Context-lever summaries by the content of the turns they replace (insertion order = eviction order).
    summary_cache: dict[str, str] = field(default_factory=dict)
    # Learned routers (margin router train) by lever route name; loaded, with their report, at start-up.
    learned_routers: dict[str, TrainedRouter] = field(default_factory=dict)
    metrics: GatewayMetrics = field(default_factory=GatewayMetrics)
    # The anomaly watch (insights.alerts); None when disabled.
    alerts: Any = None
    # insights.alerts whether or not the watch runs: its thresholds are also what the dashboard's alerts page uses.
    alert_rules: Any = None
    # OpenTelemetry spans (gateway.otel); None when disabled.
    spans: SpanEmitter | None = None
    # Compiled redaction rules when gateway.prompt_retention is on; None when off (only hashes are kept).
    retention_rules: tuple[RedactionRule, ...] | None = None
    # The Redis connection when gateway.redis_url is set (its health: outages, alerts, failure mode).
    redis: Any = None

    def observe(self, event: UsageEvent) -> None:
        """After an event is recorded: Prometheus counters, and a span when tracing is on."""
        self.metrics.observe(event)
        if self.spans is not None:
            self.spans.emit(event)

    KEY_CACHE_SECONDS = 5.0

    async def lookup_key(self, secret: str) -> VirtualKey | None:
        digest = hash_key(secret)
        cached = self._key_cache.get(digest)
        now = time.monotonic()
        if cached is not None and now - cached[1] < self.KEY_CACHE_SECONDS:
            return cached[0]
        # A database read: off the event loop.
        key = await asyncio.to_thread(self.ledger.get_key_by_hash, digest)
        self._key_cache[digest] = (key, now)
        return key

    def forget_cached_keys(self) -> None:
        """Drop cached key lookups (after a revocation through the admin API)."""
        self._key_cache.clear()

    async def start(self) -> None:
        """On the event loop, before serving: connect the shared backends and apply the start-up rebuild."""
        if self.redis is not None:
            await self.counters.start()  # type: ignore[attr-defined]
            await self.breaker.apply_rebuild()  # breaker windows from the ledger, where no instance keeps one
            if self.semantic_shared is not None:
                await self.semantic_shared.start()  # the live entries, before the first request
            await self.redis.health.flush_alerts()

    async def aclose(self) -> None:
        if self.redis is not None:
            if self.semantic_shared is not None:
                await self.semantic_shared.aclose()
            await self.counters.aclose()  # type: ignore[attr-defined]
            await self.redis.aclose()
        if self.spans is not None:
            await asyncio.to_thread(self.spans.shutdown)  # flushes the spans still batched
        for provider in self.providers.values():
            await provider.aclose()
        await self.ledger.aclose()


def _provider(config: ProviderConfig) -> Provider:
    api_key = os.environ.get(config.api_key_env) if config.api_key_env else None
    if config.api_key_env and not api_key and config.type != "mock":
        raise ConfigError(
            f"provider {config.name!r}: environment variable {config.api_key_env} is not set; export the API key "
            "or remove api_key_env for an upstream that needs none"
        )
    if config.type == "mock":
        return MockProvider(
            config.name,
            latency_ms=config.latency_ms,
            ms_per_token=config.ms_per_token,
            fault_rates=config.fault_rates or None,
        )
    if config.type == "anthropic":
        return AnthropicProvider(
            config.name,
            base_url=config.base_url or "https://api.anthropic.com",
            api_key=api_key,
            timeout=config.timeout_s,
            connect_timeout=config.connect_timeout_s,
            max_connections=config.max_connections,
        )
    if config.type == "openai_compatible" and not config.base_url:
        raise ConfigError(f"provider {config.name!r}: openai_compatible needs base_url")
    return OpenAIProvider(
        config.name,
        base_url=config.base_url or "https://api.openai.com/v1",
        api_key=api_key,
        timeout=config.timeout_s,
        connect_timeout=config.connect_timeout_s,
        max_connections=config.max_connections,
    )


def _route_overrides(models: list[ModelRouteConfig]) -> list[CustomModel]:
    """Routes with explicit prices become custom catalog models named ``route:NAME``."""
    return [
        CustomModel(
            id=f"route:{m.name}",
            provider="gateway-route",
            input_mtok=m.price.input_mtok,
            output_mtok=m.price.output_mtok,
            cache_read_mtok=m.price.cache_read_mtok,
            cache_write_mtok=m.price.cache_write_mtok,
        )
        for m in models
        if m.price.input_mtok is not None and m.price.output_mtok is not None
    ]


def build_gateway(
    config: MarginConfig, *, database: Path | str | None = None, providers: dict[str, Provider] | None = None
) -> Gateway:
    """Assemble the gateway. ``providers`` replaces configured providers by name (tests inject fakes)."""
    gw = config.gateway
    prices = config.prices.model_copy(
        update={"custom_models": [*config.prices.custom_models, *_route_overrides(gw.models)]}
    )
    catalog = Catalog.from_data(load_price_data(margin_home(config)), prices)
    built: dict[str, Provider] = {
        p.name: _provider(p) for p in gw.providers if not providers or p.name not in providers
    }
    built.update(providers or {})
    routes: dict[str, ModelRoute] = {}
    for m in gw.models:
        upstream = m.upstream_model or m.name
        if m.price.input_mtok is not None:
            pricer = RoutePricer(catalog, f"route:{m.name}", "gateway-route")
        else:
            entry = catalog.find(m.price.catalog_model or upstream, m.price.catalog_provider)
            pricer = RoutePricer(catalog, entry.model.id, entry.provider.id)
        routes[m.name] = ModelRoute(
            name=m.name,
            provider=built[m.provider],
            upstream_model=upstream,
            pricer=pricer,
            fallbacks=tuple(m.fallbacks),
            max_tokens_cap=m.max_tokens_cap,
            exact_prompt_count=encoding_for_model(upstream) is not None,
        )
    # Everything that can refuse the configuration loads before the ledger opens.
    learned_routers = {
        lever.name: TrainedRouter.load(lever.routing.learned)
        for lever in gw.levers
        if lever.routing is not None and lever.routing.learned
    }
    semantic_caches = _semantic_caches(gw)
    spans = build_emitter(gw.otel)
    # gateway.database (or ``database``): a SQLite path / sqlite:/// URL, or postgresql://... (store/location.py).
    # The SQLite-only options are dropped for PostgreSQL, whose reservations are committed rows.
    ledger = open_ledger(
        ledger_location(config, database),
        synchronous=gw.ledger_synchronous,
        reservation_journal=True,
        commit_delay_ms=gw.ledger_commit_delay_ms,
    )
    master = os.environ.get(gw.master_key_env) or None
    gateway = Gateway(
        config=gw,
        catalog=catalog,
        routes=routes,
        providers=built,
        ledger=ledger,
        counters=MemoryCounters(),
        master_key=master,
        exact_cache=LocalExactCache(ExactCache(max_entries=gw.cache_max_entries, max_bytes=gw.cache_max_bytes)),
    )
    gateway.semantic_caches = semantic_caches
    if gw.redis_url:
        _use_redis(gateway)
    gateway.alerts = config.insights.alerts if config.insights.alerts.enabled else None
    gateway.alert_rules = config.insights.alerts
    gateway.retention_rules = redaction_rules(gw.prompt_retention)
    gateway.spans = spans
    gateway.learned_routers = learned_routers
    rebuild_counters(gateway)
    rebuild_breakers(gateway)
    return gateway


def _use_redis(gateway: Gateway) -> None:
    """Budget counters, rate limits, breakers, the exact cache and the semantic caches' entries in Redis
    (gateway.redis_url)."""
    try:
        import redis  # noqa: F401
    except ImportError:
        raise ConfigError(
            "gateway.redis_url is set but the Redis client is not installed: pip install 'margin[redis]'"
        ) from None
    from .backends._redis import RedisBackend
    from .backends.redis_cache import RedisExactCache
    from .backends.redis_counters import RedisCounters
    from .backends.redis_limits import RedisBreakers, RedisRateLimits

    gw = gateway.config
    password = None
    if gw.redis_password_env:
        password = os.environ.get(gw.redis_password_env)
        if not password:
            raise ConfigError(
                f"gateway.redis_password_env names {gw.redis_password_env}, which is not set; export the Redis "
                "password there or remove redis_password_env"
            )
    backend = RedisBackend(
        gw.redis_url or "",
        prefix=gw.redis_prefix,
        timeout_s=gw.redis_timeout_ms / 1000,
        password=password,
        failure_mode=gw.redis_failure,
        counts=gateway.metrics.backend,
    )
    ledger = gateway.ledger

    async def write_alert(kind: str, message: str, data: dict[str, Any]) -> None:
        await ledger.write_alert(kind, message, scope="backend:redis", data=data)

    backend.health.alert_sink = write_alert

    async def seed_spend(budget: AppliedBudget, now: datetime) -> Decimal:
        await ledger.flush()  # this process's settled events count
        return await asyncio.to_thread(ledger_spend, ledger, budget.rule, budget.scope_value, now)

    gateway.redis = backend
    gateway.counters = RedisCounters(
        backend, seed_spend=seed_spend, reservation_ttl_s=gw.redis_reservation_ttl_s, clock=gateway.clock
    )
    gateway.rate_limiter = RedisRateLimits(backend, fallback=gateway.rate_limiter)
    gateway.breaker = RedisBreakers(backend, fallback=gateway.breaker)
    gateway.exact_cache = RedisExactCache(backend)
    if gateway.semantic_caches:
        from .backends.redis_semantic import RedisSemanticCaches

        gateway.semantic_shared = RedisSemanticCaches(backend, gateway.semantic_caches)


def ledger_spend(ledger: MeteringLedger, rule: BudgetConfig, value: str, now: datetime) -> Decimal:
    """One budget counter's spend in its period containing ``now``, from the ledger (exact nano sums)."""
    since = period_start(rule.period, now)
    scope = rule.scope
    if scope == "global":
        return ledger.sum_effective_cost(since)
    if scope == "key":
        return ledger.sum_effective_cost(since, key_id=value)
    if scope == "model":
        return ledger.sum_effective_cost(since, served_model=value)
    return ledger.sum_effective_cost(since, tags={scope.removeprefix("tag:"): value})


def _semantic_caches(gw: GatewayConfig) -> dict[str, Any]:
    """The semantic caches of the lever routes that ask for one. The embedding model loads here, at start-up,
    not on the first request (and not at all when no route uses it)."""
    wanted = [lever for lever in gw.levers if lever.cache and lever.cache.semantic and lever.cache.semantic.enabled]
    if not wanted:
        return {}
    from ..cache import MiniLMEmbedder, SemanticCache

    embedder = MiniLMEmbedder()
    return {
        lever.name: SemanticCache(
            embedder,
            threshold=lever.cache.semantic.threshold,  # type: ignore[union-attr]
            verifier=lever.cache.semantic.verifier,  # type: ignore[union-attr]
            max_entries=lever.cache.semantic.max_entries,  # type: ignore[union-attr]
            ttl_seconds=lever.cache.ttl_seconds,  # type: ignore[union-attr]
        )
        for lever in wanted
    }


def redaction_rules(config: Any) -> tuple[RedactionRule, ...] | None:
    """The compiled rules of a PromptRetentionConfig, or None when retention is off."""
    if not config.enabled:
        return None
    return rules_from_config(config.redact, defaults=config.redact_defaults)


def key_budget_rules(key: VirtualKey | None) -> list[BudgetConfig]:
    """A key created with ``--budget 5/day`` carries its own budget (none for the master key)."""
    if key is None or not key.budget:
        return []
    amount, period = parse_budget(key.budget)
    return [BudgetConfig(name=f"key-{key.prefix}", scope="key", value=key.key_id, period=period, amount=amount)]


def rebuild_counters(gateway: Gateway) -> None:
    """After a restart: charge open reservations at their worst case (they become ledger events), then load
    each budget's spend in its current period from the ledger, so counters are never lower than the truth.
    In Redis, shared with running instances, a counter is only RAISED to the ledger's figure (never added
    to), after the reservations just charged are charged there too (see backends/redis_counters.py)."""
    now = gateway.clock()
    charged = gateway.ledger.reconcile_open_reservations(now)
    # Keys' own budgets too: a restart must not hand a key a fresh allowance.
    key_rules = [rule for key in gateway.ledger.list_keys() if key.revoked_at is None for rule in key_budget_rules(key)]
    rules = [*gateway.config.budgets, *key_rules]

    def spend(since: datetime, group_by: str | None) -> list[SpendRow]:
        totals = gateway.ledger.effective_cost_by(since, group_by)
        zero = Decimal(0)
        return [
            SpendRow(
                group=group,
                requests=0,
                input_tokens=0,
                cache_read_tokens=0,
                cache_write_tokens=0,
                output_tokens=0,
                list_cost=zero,
                effective_cost=cost,
            )
            for group, cost in totals.items()
        ]

    seeds = [
        CounterSeed(counter_name(rule, value, now), spent, period_end(rule.period, now))
        for rule, value, spent in budget_spend(rules, spend, now)
    ]
    gateway.counters.rebuild(seeds, [e.reservation_id for e in charged if e.reservation_id])


# A breaker's one-hour window is refilled from the ledger in buckets of this length.
_BREAKER_BUCKET = timedelta(minutes=5)


def rebuild_breakers(gateway: Gateway) -> None:
    """After a restart: refill each spend breaker's one-hour window from the ledger, so that restarting the
    gateway does not reset a runaway scope. The last hour is read in 5-minute buckets, each recorded at its
    end, so spend leaves the window no earlier than it would have. A breaker found over its limit opens
    again (cool-down counted from the bucket that crossed it) and is logged. (In Redis a window that already
    exists, kept by running instances, is left as it is.)"""
    if not gateway.config.breakers:
        return
    wall = gateway.clock()
    buckets = int(timedelta(hours=1) / _BREAKER_BUCKET)
    for rule in gateway.config.breakers:
        group_by = None if rule.scope == "global" else rule.scope
        windows: dict[str, list[tuple[float, Decimal]]] = {}
        for i in range(buckets):
            start = wall - timedelta(hours=1) + i * _BREAKER_BUCKET
            end = start + _BREAKER_BUCKET
            for row in gateway.ledger.spend(start, end, group_by):
                value = "*" if rule.scope == "global" else row.group
                if value is None or (rule.value is not None and value != rule.value) or not row.effective_cost:
                    continue
                windows.setdefault(value, []).append(((wall - end).total_seconds(), row.effective_cost))
        limit = rule.expected_hourly * rule.multiple
        for value, spend in windows.items():
            if gateway.breaker.rebuild(rule.name, value, spend, limit=limit, cooldown_s=rule.cooldown_minutes * 60):
                log.warning(
                    "spend breaker %s is open again after the restart for %s=%s: last-hour spend above %s USD",
                    rule.name,
                    rule.scope,
                    value,
                    limit,
                )

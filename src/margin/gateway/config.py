"""The gateway's configuration (the ``gateway:`` section of margin.yaml), with documented defaults.

With no config at all, the gateway runs on embedded defaults: the SQLite ledger in ``$MARGIN_HOME``, the
built-in ``mock`` provider serving a few public model names priced from the catalog, no API keys needed.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .levers_config import LeverRoute

__all__ = [
    "BreakerConfig",
    "BudgetConfig",
    "GatewayConfig",
    "ModelRouteConfig",
    "ProviderConfig",
    "RateLimitConfig",
    "RetryConfig",
    "TagPolicyConfig",
]

Money = Annotated[Decimal, Field(ge=0, allow_inf_nan=False)]
Ratio = Annotated[Decimal, Field(gt=0, allow_inf_nan=False)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProviderConfig(_Strict):
    """An upstream. ``type`` picks the implementation; API keys come from the environment variable
    named by ``api_key_env`` (never from the config file itself)."""

    name: str = Field(min_length=1)
    type: Literal["mock", "openai", "openai_compatible", "anthropic"]
    base_url: str | None = None
    api_key_env: str | None = None
    timeout_s: float = Field(default=60.0, gt=0)
    connect_timeout_s: float = Field(default=5.0, gt=0)
    max_connections: int = Field(default=100, gt=0)
    # mock only
    latency_ms: int = Field(default=0, ge=0)
    ms_per_token: float = Field(default=0, ge=0)
    fault_rates: dict[str, float] = Field(default_factory=dict)


class PriceOverride(_Strict):
    """Explicit prices (USD per 1M tokens) for a route; otherwise the catalog prices ``catalog_model``
    (default: the upstream model)."""

    input_mtok: Money | None = None
    output_mtok: Money | None = None
    cache_read_mtok: Money | None = None
    cache_write_mtok: Money | None = None
    catalog_model: str | None = None
    catalog_provider: str | None = None

    @model_validator(mode="after")
    def _complete(self) -> PriceOverride:
        explicit = (self.input_mtok, self.output_mtok)
        if any(v is not None for v in explicit) and not all(v is not None for v in explicit):
            raise ValueError("price needs both input_mtok and output_mtok (or neither, to use the catalog)")
        return self


class ModelRouteConfig(_Strict):
    """A public model name clients ask for, and what serves it."""

    name: str = Field(min_length=1)
    provider: str
    upstream_model: str | None = None  # default: the public name
    price: PriceOverride = Field(default_factory=PriceOverride)
    fallbacks: list[str] = Field(default_factory=list)
    max_tokens_cap: int | None = Field(default=None, gt=0)


class BudgetConfig(_Strict):
    """A spend budget. ``scope`` is ``global``, ``key``, ``user``, ``team``, ``project``, ``model`` (the
    upstream model that serves the request) or ``tag:NAME``; ``value`` selects one (e.g. team ``ml``);
    without ``value`` the budget applies to each scope value separately (every team gets its own
    counter). Thresholds are fractions of ``amount``: warn and review add response headers, ``block``
    is the hard cap that spend can never exceed."""

    name: str = Field(min_length=1)
    scope: str = "global"
    value: str | None = None
    period: Literal["request", "hour", "day", "month"] = "day"
    amount: Money
    warn: Ratio = Decimal("0.75")
    review: Ratio = Decimal("0.90")
    block: Ratio = Decimal("1.10")

    @model_validator(mode="after")
    def _ordered(self) -> BudgetConfig:
        if not (self.warn <= self.review <= self.block):
            raise ValueError("budget thresholds must satisfy warn <= review <= block")
        kinds = {"global", "key", "user", "team", "project", "model"}
        if self.scope not in kinds and not (self.scope.startswith("tag:") and len(self.scope) > 4):
            raise ValueError(f"budget scope must be one of {sorted(kinds)} or tag:NAME, got {self.scope!r}")
        return self


class RateLimitConfig(_Strict):
    """Requests and tokens per minute for a scope (``global``, ``key``, ``user``, ``team``, ``project`` or
    ``tag:NAME``); without ``value`` each scope value gets its own limit. Over the limit: HTTP 429 with
    Retry-After. Tokens are the prompt at admission plus the output once known."""

    name: str = Field(min_length=1)
    scope: str = "key"
    value: str | None = None
    requests_per_minute: int | None = Field(default=None, gt=0)
    tokens_per_minute: int | None = Field(default=None, gt=0)


class BreakerConfig(_Strict):
    """Spend circuit breaker: when a scope's spend in the last hour exceeds ``multiple`` x
    ``expected_hourly`` (USD), its new requests are refused for ``cooldown_minutes`` (or until an admin
    reset) and an alert is written to the ledger."""

    name: str = Field(min_length=1)
    scope: str = "global"
    value: str | None = None
    expected_hourly: Money
    multiple: Ratio = Decimal(3)
    cooldown_minutes: float = Field(default=30, gt=0)


class RetryConfig(_Strict):
    max_retries: int = Field(default=2, ge=0, le=10)
    base_delay_ms: int = Field(default=100, ge=0)
    max_delay_ms: int = Field(default=2000, ge=0)


class TagPolicyConfig(_Strict):
    enabled: bool = False
    required: list[str] = Field(default_factory=lambda: ["team", "project", "environment", "cost_center"])


def _default_providers() -> list[ProviderConfig]:
    return [ProviderConfig(name="mock", type="mock")]


def _default_models() -> list[ModelRouteConfig]:
    # Public names served by the mock provider and priced from the catalog under the same name, so the
    # demo's costs are real list prices.
    names = ["gpt-4o-mini", "gpt-4o", "claude-sonnet-4-6", "claude-haiku-4-5", "text-embedding-3-small"]
    return [ModelRouteConfig(name=n, provider="mock") for n in names]


class OtelConfig(_Strict):
    """OpenTelemetry spans per metered call (gateway/telemetry.py); needs margin's ``otel`` extra. ``endpoint``
    is the OTLP/HTTP traces URL (default: the exporter's own default, or OTEL_EXPORTER_OTLP_* variables)."""

    enabled: bool = False
    exporter: Literal["otlp", "console"] = "otlp"
    endpoint: str | None = None
    service_name: str = "margin-gateway"


class PromptRetentionConfig(_Strict):
    """Opt-in retention of request bodies (``retained_prompts`` in the ledger), for near-duplicate analysis and
    replay with the text. Off by default: without it margin keeps only each request's hash. Every string in a
    body is redacted first (margin.redact: secrets, emails, card numbers, IBANs, SSNs, phone numbers, IPv4
    addresses, plus ``redact``, a map of rule name to regular expression); bodies of more than ``max_chars``
    characters after redaction are not kept. Rows older than ``days`` are purged at start-up and every hour."""

    enabled: bool = False
    days: int = Field(default=30, ge=1, le=3650)
    redact_defaults: bool = True
    redact: dict[str, str] = Field(default_factory=dict)
    max_chars: int = Field(default=200_000, gt=0)

    @model_validator(mode="after")
    def _patterns(self) -> PromptRetentionConfig:
        from ..redact import rules_from_config

        rules_from_config(self.redact, defaults=False)  # raises ValueError naming a pattern that does not compile
        return self


class GatewayConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=4000, gt=0, lt=65536)
    # Path of the SQLite ledger; default $MARGIN_HOME/ledger.db.
    database: str | None = None
    # Name of the environment variable holding the master key (protects the admin API).
    master_key_env: str = "MARGIN_MASTER_KEY"
    # Name of the environment variable holding the read-only dashboard key: it opens /dashboard (as the master
    # key does) and nothing else, so it can be shared with people who should see spend but not manage keys.
    dashboard_key_env: str = "MARGIN_DASHBOARD_KEY"
    providers: list[ProviderConfig] = Field(default_factory=_default_providers)
    models: list[ModelRouteConfig] = Field(default_factory=_default_models)
    budgets: list[BudgetConfig] = Field(default_factory=list)
    rate_limits: list[RateLimitConfig] = Field(default_factory=list)
    breakers: list[BreakerConfig] = Field(default_factory=list)
    retries: RetryConfig = Field(default_factory=RetryConfig)
    tag_policy: TagPolicyConfig = Field(default_factory=TagPolicyConfig)
    prompt_retention: PromptRetentionConfig = Field(default_factory=PromptRetentionConfig)
    # max_tokens when the request sets none, and the hard cap on any request's max_tokens.
    default_max_tokens: int = Field(default=4096, gt=0)
    max_tokens_cap: int = Field(default=32768, gt=0)
    # Largest prompt accepted, in tokens (counted locally); bigger prompts get HTTP 413.
    max_input_tokens: int = Field(default=1_000_000, gt=0)
    # Largest request body accepted, in bytes.
    max_body_bytes: int = Field(default=20 * 1024 * 1024, gt=0)
    # Seconds a client has to send a proxied request's whole body once its headers arrived: a client that
    # trickles it (or stalls) gets HTTP 408 instead of holding a connection and a task indefinitely.
    body_timeout_s: float = Field(default=30, gt=0)
    # Safety margin on the locally counted prompt when reserving the worst case: exact counts (OpenAI
    # encodings) can still differ by the chat template; estimates (other families) by more.
    reserve_margin_exact: Ratio = Decimal("1.02")
    reserve_margin_estimate: Ratio = Decimal("1.25")
    # false (default): a response leaves once its usage event is QUEUED for the ledger; the request's
    # reservation stays open (durable) until the event commits, so a crash in between charges the request at
    # its reserved worst case. true: every response waits for its event's commit (~0.2 ms more per request at
    # one connection); a crash then never replaces a served request's event by its worst case.
    wait_for_ledger_commit: bool = False
    # SQLite's PRAGMA synchronous for the ledger: NORMAL survives a killed process, FULL also a power loss
    # (one fsync per group commit; reservations are then committed rows instead of journal lines).
    ledger_synchronous: Literal["NORMAL", "FULL"] = "NORMAL"
    # How long the ledger's writer lingers before committing events nobody waits for, so one commit carries
    # several requests' events even at low concurrency (they become visible to readers that much later).
    ledger_commit_delay_ms: float = Field(default=5.0, ge=0, le=1000)
    otel: OtelConfig = Field(default_factory=OtelConfig)
    # true: GET /metrics answers without the master key (for a Prometheus on a trusted internal network).
    metrics_open: bool = False
    # Cost-reduction levers per lever route (see levers_config.py and docs/savings.md); none by default.
    levers: list[LeverRoute] = Field(default_factory=list)
    # The exact cache's bounds (all lever routes share it): entries and bytes of cached bodies.
    cache_max_entries: int = Field(default=10_000, gt=0)
    cache_max_bytes: int = Field(default=256 * 1024 * 1024, gt=0)
    # Shared state for several gateway instances (docs/deploy.md): budget counters, rate limits, spend breakers
    # and the exact cache in Redis or Valkey (redis://, rediss:// or unix:// URL). Unset: in this process.
    redis_url: str | None = None
    # Environment variable holding the Redis password (keeps it out of the config file); optional.
    redis_password_env: str | None = None
    # When Redis is unreachable: "closed" refuses requests a budget applies to (503 budget_backend_unavailable),
    # "open" serves them with budgets unenforced. Both alert (ledger, log at ERROR) and count in /metrics.
    redis_failure: Literal["closed", "open"] = "closed"
    # Key prefix, so several deployments can share one Redis (every key carries it as a hash tag: {margin}:...).
    redis_prefix: str = Field(default="margin", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    # Socket timeout of one Redis command; a command slower than this counts as Redis being unreachable.
    redis_timeout_ms: int = Field(default=500, gt=0, le=60_000)
    # A reservation not settled within this long (its instance died) is charged at its worst case, as the
    # ledger charges it at the next start-up.
    redis_reservation_ttl_s: int = Field(default=900, ge=10, le=86_400)

    @model_validator(mode="after")
    def _references(self) -> GatewayConfig:
        if self.redis_url is not None and not self.redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(
                f"gateway.redis_url must be a redis://, rediss:// or unix:// URL (e.g. redis://127.0.0.1:6379/0), "
                f"got {self.redis_url.split('@')[-1]!r}"
            )
        providers = {p.name for p in self.providers}
        if len(providers) != len(self.providers):
            raise ValueError("gateway.providers: provider names must be unique")
        names = [m.name for m in self.models]
        if len(set(names)) != len(names):
            raise ValueError("gateway.models: model names must be unique")
        for model in self.models:
            if model.provider not in providers:
                raise ValueError(f"gateway.models.{model.name}: unknown provider {model.provider!r}")
            for fallback in model.fallbacks:
                if fallback not in names:
                    raise ValueError(f"gateway.models.{model.name}: fallback {fallback!r} is not a configured model")
        lever_names = [lever.name for lever in self.levers]
        if len(set(lever_names)) != len(lever_names):
            raise ValueError("gateway.levers: lever route names must be unique")
        for lever in self.levers:
            if lever.routing is not None:
                targets = [lever.routing.pin] if lever.routing.pin else list(lever.routing.tiers.values())
                for target in targets:
                    if target not in names:
                        raise ValueError(f"gateway.levers.{lever.name}.routing: {target!r} is not a configured model")
            if lever.context is not None and lever.context.summary_model not in (None, *names):
                raise ValueError(
                    f"gateway.levers.{lever.name}.context: summary_model {lever.context.summary_model!r} "
                    "is not a configured model"
                )
        if self.default_max_tokens > self.max_tokens_cap:
            raise ValueError("gateway.default_max_tokens must not exceed gateway.max_tokens_cap")
        return self

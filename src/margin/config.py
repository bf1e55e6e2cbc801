"""Typed configuration, loaded from YAML, with documented defaults.

The config file is found, in order: the ``--config`` option, the ``MARGIN_CONFIG`` environment variable,
``./margin.yaml`` when it exists. With none, every default below applies (no file is needed).
Only :func:`load_config` touches the file system; the models themselves are plain data.
"""

from __future__ import annotations

import os
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .errors import ConfigError
from .gateway.config import GatewayConfig

__all__ = [
    "CustomModel",
    "Discount",
    "MarginConfig",
    "PricesConfig",
    "TokensConfig",
    "load_config",
    "margin_home",
]

Price = Annotated[Decimal, Field(ge=0, allow_inf_nan=False)]
Percent = Annotated[Decimal, Field(ge=0, le=100, allow_inf_nan=False)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CustomModel(_Strict):
    """A model the catalog does not know (self-hosted, fine-tuned) or whose list price you override.

    Prices are USD per 1M tokens. A custom model with the same id as a catalog model replaces it.
    """

    id: str = Field(min_length=1)
    provider: str = "custom"
    name: str | None = None
    input_mtok: Price
    output_mtok: Price
    cache_read_mtok: Price | None = None
    cache_write_mtok: Price | None = None
    context_window: int | None = Field(default=None, gt=0)
    # When you last checked this price; shown with every cost priced from it.
    prices_checked: date | None = None


class Discount(_Strict):
    """A negotiated discount: ``percent`` off list for one ``model`` or a whole ``provider``.

    The most specific discount applies: a model's beats its provider's. Discounts turn list cost into
    effective cost; list cost is always reported too.
    """

    provider: str | None = None
    model: str | None = None
    percent: Percent

    @model_validator(mode="after")
    def _one_target(self) -> Discount:
        if (self.provider is None) == (self.model is None):
            raise ValueError("a discount needs exactly one of `provider` or `model`")
        return self


class PricesConfig(_Strict):
    # Warn when the price data is older than this many days.
    max_age_days: int = Field(default=90, gt=0)
    custom_models: list[CustomModel] = Field(default_factory=list)
    discounts: list[Discount] = Field(default_factory=list)
    # Batch-API discount in percent per provider, used when the catalog has no batch price for a model.
    batch_discounts: dict[str, Percent] = Field(
        default_factory=lambda: {"openai": Decimal(50), "anthropic": Decimal(50)}
    )


class TokensConfig(_Strict):
    # The seeds' rule of thumb: 1,000 tokens are about 750 words.
    words_per_token: Decimal = Field(default=Decimal("0.75"), gt=0, allow_inf_nan=False)
    # Multipliers on the o200k_base count for families without a public tokenizer, e.g. {anthropic: 1.2}.
    family_factors: dict[str, Decimal] = Field(default_factory=dict)


class AllocationRuleConfig(_Strict):
    """How shared costs of one ``category`` are split (see docs/insights.md): ``proportional`` by ``basis``
    (tokens, requests, gpu_seconds, cost), ``activity`` by ``activity_rates``, or ``even``."""

    category: str
    method: Literal["proportional", "activity", "even"] = "proportional"
    basis: Literal["tokens", "requests", "gpu_seconds", "cost"] = "tokens"
    activity_rates: dict[str, Decimal] = Field(default_factory=dict)
    among: list[str] | None = None


class SharedCostConfig(_Strict):
    """A shared cost entered in the config for a period (``YYYY-MM``); ``margin costs add`` stores others."""

    name: str
    category: str
    amount: Decimal = Field(ge=0, allow_inf_nan=False)
    period: str = Field(pattern=r"^\d{4}-\d{2}$")


class SelfHostedConfig(_Strict):
    """Self-hosted capacity behind a gateway provider, for utilization and cost per GPU-hour in reports and the
    idle-capacity recommendation: ``gpus`` paid ``gpu_hourly`` USD each, around the clock, each serving at most
    ``tokens_per_gpu_hour`` tokens (input + output) at full load (measure it, or take the planner's figure)."""

    provider: str = Field(min_length=1)
    gpus: int = Field(ge=1)
    gpu_hourly: Decimal = Field(ge=0, allow_inf_nan=False)
    tokens_per_gpu_hour: int = Field(gt=0)


class AlertSinkConfig(_Strict):
    """Where alerts go: ``log`` (the margin.alerts logger), ``webhook`` (JSON POST) or ``slack`` (an incoming
    webhook). A URL is a secret: it is read from the environment variable named by ``url_env``."""

    type: Literal["log", "webhook", "slack"]
    url_env: str | None = None


class AlertsConfig(_Strict):
    """The anomaly watch the gateway runs every ``interval_seconds`` (or ``margin alerts check``); each alert is
    sent once (deduplicated by rule, scope and window) to every sink. Rules, overall and per team:

    * spend spike: an hour's spend above ``spike_multiple`` x the trailing day's hourly average (and at least
      ``min_hourly_cost`` USD);
    * cost per request jump: an hour's cost per request above ``cost_per_request_multiple`` x the trailing day's
      (at least ``min_hourly_requests`` requests in the hour and in the day, and ``min_hourly_cost``);
    * fallback rate rise: the last complete UTC day's fallback rate above ``fallback_multiple`` x the 7 days
      before and at least ``fallback_min_increase`` higher (``fallback_min_requests`` in each window);
    * dominance shift: a model or key that held under ``dominance_prior_share`` of the 7 days before and over
      ``dominance_share`` of the last complete UTC day's spend (at least ``min_hourly_cost`` that day);
    * budget thresholds: each gateway budget (and key budget) at its warn, review and block fractions, once per
      budget, scope value and period."""

    enabled: bool = False
    interval_seconds: float = Field(default=300, gt=0)
    spike_multiple: Decimal = Field(default=Decimal(3), gt=0, allow_inf_nan=False)
    min_hourly_cost: Decimal = Field(default=Decimal(1), ge=0, allow_inf_nan=False)
    cost_per_request_multiple: Decimal = Field(default=Decimal(2), gt=0, allow_inf_nan=False)
    min_hourly_requests: int = Field(default=20, ge=1)
    fallback_multiple: Decimal = Field(default=Decimal(2), gt=0, allow_inf_nan=False)
    fallback_min_increase: Decimal = Field(default=Decimal("0.05"), ge=0, le=1, allow_inf_nan=False)
    fallback_min_requests: int = Field(default=100, ge=1)
    dominance_share: Decimal = Field(default=Decimal("0.5"), gt=0, le=1, allow_inf_nan=False)
    dominance_prior_share: Decimal = Field(default=Decimal("0.2"), ge=0, le=1, allow_inf_nan=False)
    budget_thresholds: bool = True
    sinks: list[AlertSinkConfig] = Field(default_factory=lambda: [AlertSinkConfig(type="log")])


class InsightsConfig(_Strict):
    # Tags every request should carry, for the coverage figures of reports.
    required_tags: list[str] = Field(default_factory=lambda: ["team", "project", "environment", "cost_center"])
    # Allocation rule per shared-cost category; a category without one is split proportionally by tokens.
    allocation_rules: list[AllocationRuleConfig] = Field(default_factory=list)
    shared_costs: list[SharedCostConfig] = Field(default_factory=list)
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)
    self_hosted: list[SelfHostedConfig] = Field(default_factory=list)


class MarginConfig(_Strict):
    prices: PricesConfig = Field(default_factory=PricesConfig)
    tokens: TokensConfig = Field(default_factory=TokensConfig)
    gateway: GatewayConfig = Field(default_factory=GatewayConfig)
    insights: InsightsConfig = Field(default_factory=InsightsConfig)
    # Where margin keeps its own files (an updated price data file, later the ledger).
    home: Path | None = None


def margin_home(config: MarginConfig | None = None) -> Path:
    """Directory for margin's state: ``home`` from config, else ``$MARGIN_HOME``, else ``~/.local/share/margin``."""
    if config is not None and config.home is not None:
        return config.home
    env = os.environ.get("MARGIN_HOME")
    if env:
        return Path(env)
    return Path.home() / ".local" / "share" / "margin"


def load_config(path: str | Path | None = None) -> MarginConfig:
    """Load and validate the config file (see the module docstring for where it is looked for)."""
    if path is None:
        env = os.environ.get("MARGIN_CONFIG")
        if env:
            path = env
        elif Path("margin.yaml").is_file():
            path = "margin.yaml"
    if path is None:
        return MarginConfig()
    file = Path(path)
    try:
        raw: Any = yaml.safe_load(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {file} does not exist; pass an existing file or omit --config") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {file}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {file} is not valid YAML: {exc}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {file} must contain a mapping at the top level")
    try:
        return MarginConfig.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top level)'}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"invalid config file {file}: {problems}") from None

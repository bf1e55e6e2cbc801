"""One pass of the anomaly watch: every rule of :mod:`margin.insights.anomaly` over the ledger (whole ledger and
per team), fresh alerts to the sinks, outcomes back to the ledger. The edges call :func:`check_once` on a
schedule (the gateway's background loop) or on demand (``margin alerts check``).

Hourly rules (spend spikes, cost per request jumps) judge the hours of the last two days as they arrive. Daily
rules (fallback rate rise, dominance shift) judge the last complete UTC day against the seven days before it:
a day is long enough for a rate or a share to mean something, and a fixed window alerts once, not every pass.
Budget thresholds judge each budget's current period. Deduplication (by rule, scope, window and subject)
makes repeated passes send nothing twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from ..policy.budgets import budget_spend, period_start
from .alerts import AlertDispatcher, AlertOutcome, record, seen_keys
from .anomaly import (
    Anomaly,
    HourlySpend,
    budget_crossings,
    cost_per_request_jump,
    dominance_shift,
    fallback_rate_rise,
    spend_spikes,
)

__all__ = [
    "BudgetSpend",
    "DailyShares",
    "build_dispatcher",
    "check_once",
    "find_anomalies",
    "hourly_rows",
]

DAY = timedelta(days=1)
# The hourly rules need a trailing day before the hour they judge: two days of history cover the last day.
HOURLY_LOOKBACK = timedelta(hours=48)
# The daily rules compare the last complete day with the seven before it.
BASELINE_DAYS = 7


def hourly_rows(rows: Iterable[Sequence[Any]]) -> list[HourlySpend]:
    """Ledger rows ``(hour 'YYYY-MM-DDTHH', team or None, cost, events, fallback events)`` as
    :class:`HourlySpend`, scope ``global`` for the whole ledger and ``team=NAME`` per team."""
    return [
        HourlySpend(datetime.fromisoformat(hour + ":00:00+00:00"), f"team={team}" if team else "global", cost, n, fb)
        for hour, team, cost, n, fb in rows
    ]


@dataclass(frozen=True)
class DailyShares:
    """Spend per subject (``dimension`` model or key) in the baseline days and in the last complete day."""

    dimension: str
    before: Mapping[str, Decimal]
    now: Mapping[str, Decimal]


@dataclass(frozen=True, kw_only=True)
class BudgetSpend:
    """One budget's spend for one scope value in its current period ``[start, end)``."""

    label: str
    cap: Decimal
    spent: Decimal
    thresholds: tuple[Decimal, ...]
    start: datetime
    end: datetime


def day_bounds(now: datetime) -> tuple[datetime, datetime]:
    """The last complete UTC day before ``now``: ``[start, end)``."""
    end = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return end - DAY, end


def find_anomalies(
    hourly: Sequence[HourlySpend],
    settings: Any,
    *,
    now: datetime,
    shares: Sequence[DailyShares] = (),
    budgets: Sequence[BudgetSpend] = (),
) -> list[Anomaly]:
    """Every rule over what the edge read. Pure. ``settings`` is an :class:`~margin.config.AlertsConfig`."""
    found = spend_spikes(hourly, multiple=settings.spike_multiple, min_cost=settings.min_hourly_cost)
    found += cost_per_request_jump(
        hourly,
        multiple=settings.cost_per_request_multiple,
        min_requests=settings.min_hourly_requests,
        min_cost=settings.min_hourly_cost,
    )
    day_start, day_end = day_bounds(now)
    found += fallback_rate_rise(
        hourly,
        now=day_end,
        window_hours=24,
        baseline_hours=24 * BASELINE_DAYS,
        multiple=settings.fallback_multiple,
        min_increase=settings.fallback_min_increase,
        min_requests=settings.fallback_min_requests,
    )
    for subject in shares:
        found += dominance_shift(
            subject.before,
            subject.now,
            scope="global",
            window_start=day_start,
            window_end=day_end,
            min_share=settings.dominance_share,
            max_prior_share=settings.dominance_prior_share,
            dimension=subject.dimension,
            min_cost=settings.min_hourly_cost,
        )
    for budget in budgets:
        found += budget_crossings(
            Decimal(0),
            budget.spent,
            budget.cap,
            budget.thresholds,
            scope=budget.label,
            window_start=budget.start,
            window_end=budget.end,
        )
    return found


def _period_end(period: str, start: datetime) -> datetime:
    if period == "hour":
        return start + timedelta(hours=1)
    if period == "day":
        return start + DAY
    return (start.replace(day=28) + timedelta(days=4)).replace(day=1)  # the first of the next month


def _budget_levels(rules: Iterable[Any], ledger: Any, now: datetime) -> list[BudgetSpend]:
    levels = []
    for rule, value, spent in budget_spend(rules, lambda since, by: ledger.spend(since, None, by), now):
        start = period_start(rule.period, now)
        scope = "global" if rule.scope == "global" else f"{rule.scope}={value}"
        levels.append(
            BudgetSpend(
                label=f"budget {rule.name} ({scope}, per {rule.period})",
                cap=rule.amount,
                spent=spent,
                thresholds=(rule.warn, rule.review, rule.block),
                start=start,
                end=_period_end(rule.period, start),
            )
        )
    return levels


def _read(ledger: Any, settings: Any, budget_rules: Sequence[Any], now: datetime) -> list[Anomaly]:
    """The reads one pass needs (synchronous; run in a thread), then the rules."""
    day_start, day_end = day_bounds(now)
    since = min(now - HOURLY_LOOKBACK, day_start - BASELINE_DAYS * DAY)
    until = now + timedelta(hours=1)
    rows = ledger.hourly_spend(since, until, None) + ledger.hourly_spend(since, until, "team")
    base_start = day_start - BASELINE_DAYS * DAY

    def by(group: str, lo: datetime, hi: datetime) -> dict[str, Decimal]:
        return {r.group: r.effective_cost for r in ledger.spend(lo, hi, group) if r.group is not None}

    shares = [DailyShares(dim, by(dim, base_start, day_start), by(dim, day_start, day_end)) for dim in ("model", "key")]
    budgets = _budget_levels(budget_rules, ledger, now) if settings.budget_thresholds else []
    return find_anomalies(hourly_rows(rows), settings, now=now, shares=shares, budgets=budgets)


async def check_once(
    ledger: Any,
    dispatcher: AlertDispatcher,
    settings: Any,
    *,
    budget_rules: Sequence[Any] = (),
    now: datetime | None = None,
) -> list[AlertOutcome]:
    """Evaluate every rule, send what is new, store each outcome as an alert. Reads run in a thread.
    ``budget_rules`` are the budgets to watch (gateway budgets and keys' own budgets)."""
    now = now or datetime.now(UTC)
    found = await asyncio.to_thread(_read, ledger, settings, budget_rules, now)
    if not found:
        return []
    seen = seen_keys(await asyncio.to_thread(ledger.alerts, limit=5000))
    outcomes = await dispatcher.dispatch(found, seen)
    await record(ledger, outcomes)
    return outcomes


def build_dispatcher(config: Any, *, transport: Any = None) -> AlertDispatcher:
    """The dispatcher of ``insights.alerts`` (an :class:`~margin.config.AlertsConfig`): URLs from the
    environment; a sink whose variable is unset is an error that names it."""
    import os

    from ..config import ConfigError
    from .alerts import LogSink, SlackSink, WebhookSink

    sinks: list[Any] = []
    for sink in config.sinks:
        if sink.type == "log":
            sinks.append(LogSink())
            continue
        url = os.environ.get(sink.url_env or "")
        if not url:
            raise ConfigError(
                f"insights.alerts: the {sink.type} sink needs its URL in the environment variable named by url_env "
                f"({sink.url_env or 'not set'})"
            )
        sinks.append(WebhookSink(url=url) if sink.type == "webhook" else SlackSink(webhook_url=url))
    return AlertDispatcher(sinks, transport=transport)

"""Operating figures of a period, from its usage events: cost per request and per user, prompt tokens by route,
fallbacks and what they cost, cache hits and what they saved, retries, rejections by reason, and self-hosted
GPU utilization. Pure: the edge reads the events and passes them in.

Definitions (a *request* is one ``request_id``; every attempt of it is one event):

* **answered requests**: requests with an ``ok`` or ``cached`` event. **Cost per request** = the cost of every
  event of the period (failed attempts and escalations included: they were paid to get the answers) / answered
  requests. **Cost per user** groups the same by the ``user`` tag (``(no user)`` without one).
* **prompt tokens by route**: input tokens of ``ok`` events per route, nearest-rank p50 and p95, and the max.
* **fallback**: a request with an attempt on another route than its first (``fallback_from`` set: a provider
  fallback or a cascade escalation). **Fallback rate** = fallback requests / answered requests. **Fallback
  cost** = what those requests spent on every event but their answer: the seeds' hidden multiplier.
* **cache**: hits are ``cached`` events; lookups are events with a cache decision ``hit`` or ``miss``.
  **Realized savings** = the avoided cost the hits recorded (the upstream call at the prices of the day).
* **retries**: attempts beyond the first of each request on the same route; **upstream errors** by type.
* **rejections**: ``rejected`` events by reason (their error code: budget_exceeded, rate_limit_exceeded, ...).
* **self-hosted**: for each configured provider, utilization = tokens served / (GPU-hours x tokens per GPU-hour
  at full load), and the effective cost per used GPU-hour = GPU cost / (GPU-hours x utilization).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, localcontext
from typing import Any

from ..money import MONEY_CONTEXT
from ..usage import UsageEvent

__all__ = ["GpuPool", "OperationsReport", "gpu_pools", "operations", "paid_hours", "percentile"]

ZERO = Decimal(0)
NO_USER = "(no user)"


def percentile(sorted_values: Sequence[int], q: float) -> int:
    """Nearest-rank percentile (``q`` in (0, 1]) of values sorted ascending: the smallest value with at least
    ``q`` of the values at or below it. Raises on an empty sequence."""
    if not sorted_values:
        raise ValueError("no values")
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[rank - 1]


@dataclass(frozen=True, kw_only=True)
class GpuPool:
    """Self-hosted capacity behind one provider: ``gpus`` paid ``gpu_hourly`` USD each for ``hours`` in the
    period, serving at most ``tokens_per_gpu_hour`` (input + output) each at full load."""

    provider: str
    gpus: int
    gpu_hourly: Decimal
    hours: Decimal
    tokens_per_gpu_hour: int


def paid_hours(start: datetime, end: datetime, now: datetime) -> Decimal:
    """Hours of ``[start, end)`` that have passed at ``now`` (whole seconds): what capacity was paid for so far."""
    seconds = max(0, int((min(end, now) - start).total_seconds()))
    return Decimal(seconds) / Decimal(3600)


def gpu_pools(self_hosted: Iterable[Any], hours: Decimal) -> list[GpuPool]:
    """``insights.self_hosted`` entries (:class:`~margin.config.SelfHostedConfig`) paid for ``hours``."""
    return [
        GpuPool(
            provider=p.provider,
            gpus=p.gpus,
            gpu_hourly=p.gpu_hourly,
            hours=hours,
            tokens_per_gpu_hour=p.tokens_per_gpu_hour,
        )
        for p in self_hosted
    ]


def _ratio(part: Decimal | int, whole: Decimal | int) -> Decimal | None:
    if not whole:
        return None
    with localcontext(MONEY_CONTEXT):
        return Decimal(part) / Decimal(whole)


@dataclass(kw_only=True)
class OperationsReport:
    events: int = 0
    answered_requests: int = 0
    total_cost: Decimal = ZERO
    cost_per_request: Decimal | None = None
    users: list[dict[str, Any]] = field(default_factory=list)
    prompt_tokens_by_route: list[dict[str, Any]] = field(default_factory=list)
    fallback_requests: int = 0
    fallback_rate: Decimal | None = None
    fallback_cost: Decimal = ZERO
    cache_lookups: int = 0
    cache_hits: int = 0
    cache_hit_rate: Decimal | None = None
    realized_savings: Decimal = ZERO
    retried_requests: int = 0
    retries: int = 0
    upstream_errors: dict[str, int] = field(default_factory=dict)
    rejections: dict[str, int] = field(default_factory=dict)
    self_hosted: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return dict(vars(self))


def _requests(events: Iterable[UsageEvent]) -> dict[str, list[UsageEvent]]:
    by_request: dict[str, list[UsageEvent]] = defaultdict(list)
    for event in events:
        by_request[event.request_id].append(event)
    for attempts in by_request.values():
        attempts.sort(key=lambda e: e.attempt)
    return by_request


def _answered(attempts: Sequence[UsageEvent]) -> UsageEvent | None:
    """The event that answered the request (the last ok or cached one), if any."""
    for event in reversed(attempts):
        if event.status in ("ok", "cached") and event.error_type != "cascade_escalated":
            return event
    return None


def _users(by_request: dict[str, list[UsageEvent]]) -> list[dict[str, Any]]:
    cost: dict[str, Decimal] = defaultdict(lambda: ZERO)
    answered: Counter[str] = Counter()
    for attempts in by_request.values():
        user = attempts[0].tags.get("user") or NO_USER
        cost[user] += sum((e.effective_cost for e in attempts), ZERO)
        answered[user] += _answered(attempts) is not None
    rows = [
        {
            "user": user,
            "answered_requests": answered[user],
            "cost": cost[user],
            "cost_per_request": _ratio(cost[user], answered[user]),
        }
        for user in cost
    ]
    return sorted(rows, key=lambda r: (-r["cost"], r["user"]))


def _prompts(events: Sequence[UsageEvent]) -> list[dict[str, Any]]:
    tokens: dict[str, list[int]] = defaultdict(list)
    for event in events:
        if event.status == "ok":
            tokens[event.route or event.served_model or event.requested_model].append(event.input_tokens)
    rows = []
    for route, values in tokens.items():
        values.sort()
        rows.append(
            {
                "route": route,
                "requests": len(values),
                "p50": percentile(values, 0.5),
                "p95": percentile(values, 0.95),
                "max": values[-1],
            }
        )
    return sorted(rows, key=lambda r: (-r["requests"], r["route"]))


def _self_hosted(events: Sequence[UsageEvent], pools: Sequence[GpuPool]) -> list[dict[str, Any]]:
    rows = []
    for pool in pools:
        served = sum(
            e.input_tokens + e.output_tokens for e in events if e.provider == pool.provider and e.status == "ok"
        )
        with localcontext(MONEY_CONTEXT):
            gpu_hours = pool.hours * pool.gpus
            cost = gpu_hours * pool.gpu_hourly
            utilization = _ratio(served, gpu_hours * pool.tokens_per_gpu_hour) if pool.tokens_per_gpu_hour else None
            used_hours = gpu_hours * utilization if utilization is not None else None
            rows.append(
                {
                    "provider": pool.provider,
                    "gpu_hours": gpu_hours,
                    "gpu_cost": cost,
                    "tokens_served": served,
                    "utilization": utilization,
                    "cost_per_gpu_hour": pool.gpu_hourly,
                    "effective_cost_per_used_gpu_hour": cost / used_hours if used_hours else None,
                    "cost_per_million_tokens": cost * 1_000_000 / served if served else None,
                }
            )
    return rows


def operations(events: Iterable[UsageEvent], *, gpu_pools: Sequence[GpuPool] = ()) -> OperationsReport:
    """The period's operating figures (see the module docstring for each definition)."""
    events = list(events)
    by_request = _requests(events)
    report = OperationsReport(events=len(events))
    with localcontext(MONEY_CONTEXT):
        report.total_cost = sum((e.effective_cost for e in events), ZERO)
        for attempts in by_request.values():
            answer = _answered(attempts)
            report.answered_requests += answer is not None
            if any(e.fallback_from is not None for e in attempts):
                report.fallback_requests += 1
                report.fallback_cost += sum((e.effective_cost for e in attempts if e is not answer), ZERO)
            routes: Counter[str | None] = Counter(e.route for e in attempts if e.status != "rejected")
            extra = sum(n - 1 for n in routes.values())
            report.retries += extra
            report.retried_requests += extra > 0
        for event in events:
            if event.status == "cached":
                report.cache_hits += 1
                report.realized_savings += event.avoided_cost
            if event.cache in ("hit", "miss"):
                report.cache_lookups += 1
            if event.status == "rejected":
                reason = event.error_type or "unknown"
                report.rejections[reason] = report.rejections.get(reason, 0) + 1
            elif event.status == "upstream_error":
                kind = event.error_type or "unknown"
                report.upstream_errors[kind] = report.upstream_errors.get(kind, 0) + 1
    report.cost_per_request = _ratio(report.total_cost, report.answered_requests)
    report.fallback_rate = _ratio(report.fallback_requests, report.answered_requests)
    report.cache_hit_rate = _ratio(report.cache_hits, report.cache_lookups)
    report.users = _users(by_request)
    report.prompt_tokens_by_route = _prompts(events)
    report.self_hosted = _self_hosted(events, gpu_pools)
    report.rejections = dict(sorted(report.rejections.items(), key=lambda kv: (-kv[1], kv[0])))
    report.upstream_errors = dict(sorted(report.upstream_errors.items(), key=lambda kv: (-kv[1], kv[0])))
    return report

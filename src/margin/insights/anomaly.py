"""Cost anomaly rules over hourly ledger aggregates, and alert deduplication. Pure: no I/O, time passed in.

Input rows are ``(hour_start, scope, cost, requests, fallback_requests)`` (:class:`HourlySpend` or any 5-tuple):
the spend of one scope in the UTC hour starting at ``hour_start`` (minutes, seconds and microseconds zero; a
naive datetime is read as UTC). Rows for the same scope and hour are summed; an hour with no row spent nothing
and served no request. Every rule returns :class:`Anomaly` records, oldest first, one scope after another.

The rules (exact definitions; thresholds compare with "more than" unless stated):

* :func:`spend_spikes`: an hour whose cost is more than ``multiple`` (3) times the trailing day's hourly
  average, i.e. ``sum(cost of the 24 hours before it) / 24``. The hour itself is excluded, hours without rows count
  as zero, and hours at least ``min_cost`` ($1) only are considered. An hour is judged only when its whole
  trailing window lies inside the data (``hour - 24 h >= history_start``, by default the earliest row of the
  input), so the first day of a ledger never alerts for lack of history. With a zero baseline any hour of at
  least ``min_cost`` fires (ratio None).
* :func:`cost_per_request_jump`: an hour whose cost per request is more than ``multiple`` (2) times the trailing
  day's, ``sum(cost) / sum(requests)`` over the 24 hours before it. Needs ``min_requests`` (20) in the hour and
  in the trailing day, and ``min_cost`` in the hour; same history rule as spikes.
* :func:`fallback_rate_rise`: the fallback rate ``sum(fallback_requests) / sum(requests)`` of the window
  ``[now - window_hours, now)`` against the ``baseline_hours`` before it. Fires when the current rate is more than
  ``multiple`` (2) times the baseline rate *and* at least ``min_increase`` (5 points) above it, with at least
  ``min_requests`` (100) in each window.
* :func:`budget_crossings`: each threshold ``t`` (75%, 90%, 110% of the cap) with
  ``spent_before < t x cap <= spent_after``: a threshold is crossed when it is reached, as in the gateway.
* :func:`dominance_shift`: a model or key (a *subject*) whose share of the scope's spend was below
  ``max_prior_share`` (20%) and is now more than ``min_share`` (50%). Shares are computed from the mappings given,
  so spend amounts and fractions both work; a subject missing before had share 0. No alert without prior spend
  (nothing to compare with) or when the current spend is under ``min_cost``.

Deduplication: every anomaly carries ``dedup_key = rule + ":" + sha256(rule, scope, window start, window end,
subject)[:24]``; the values measured are not part of it, so re-running a rule on the same data, or on data that
has grown since, yields the same key for the same event. :func:`dedupe` drops anomalies whose key was seen.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, localcontext
from typing import NamedTuple

from ..money import MONEY_CONTEXT, format_usd

__all__ = [
    "Anomaly",
    "HourlySpend",
    "budget_crossings",
    "cost_per_request_jump",
    "dedup_key",
    "dedupe",
    "dominance_shift",
    "fallback_rate_rise",
    "spend_spikes",
]

ZERO = Decimal(0)
HOUR = timedelta(hours=1)


class HourlySpend(NamedTuple):
    """One scope's spend in one UTC hour."""

    hour_start: datetime
    scope: str
    cost: Decimal
    requests: int = 0
    fallback_requests: int = 0


@dataclass(frozen=True, kw_only=True)
class Anomaly:
    """One alert. ``value`` and ``baseline`` are in the rule's unit (USD, USD per request, a rate or a share)."""

    rule: str
    scope: str
    window_start: datetime
    window_end: datetime
    value: Decimal
    baseline: Decimal
    ratio: Decimal | None  # value / baseline, None when the baseline is zero
    message: str
    dedup_key: str
    subject: str = ""  # what inside the scope: "threshold:0.9", "model:gpt-4o"; empty for whole-scope rules


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _ratio(value: Decimal | float | str) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(str(value))


def _pct(value: Decimal) -> str:
    return f"{value * 100:.1f}%"


def dedup_key(rule: str, scope: str, window_start: datetime, window_end: datetime, subject: str = "") -> str:
    """A stable key for one rule firing on one scope, window and subject (never on the measured values)."""
    parts = [rule, scope, _utc(window_start).isoformat(), _utc(window_end).isoformat(), subject]
    digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:24]
    return f"{rule}:{digest}"


def _anomaly(
    rule: str,
    scope: str,
    start: datetime,
    end: datetime,
    value: Decimal,
    baseline: Decimal,
    message: str,
    subject: str = "",
) -> Anomaly:
    with localcontext(MONEY_CONTEXT):
        ratio = value / baseline if baseline != 0 else None
    return Anomaly(
        rule=rule,
        scope=scope,
        window_start=start,
        window_end=end,
        value=value,
        baseline=baseline,
        ratio=ratio,
        message=message,
        dedup_key=dedup_key(rule, scope, start, end, subject),
        subject=subject,
    )


Row = HourlySpend | tuple[datetime, str, Decimal, int, int]


class _Hour(NamedTuple):
    cost: Decimal
    requests: int
    fallback: int


def _by_scope(rows: Iterable[Row]) -> dict[str, dict[datetime, _Hour]]:
    """Rows -> {scope: {hour_start: summed hour}}, validating hour alignment."""
    out: dict[str, dict[datetime, _Hour]] = defaultdict(dict)
    with localcontext(MONEY_CONTEXT):
        for hour_start, scope, cost, requests, fallback in rows:
            hour = _utc(hour_start)
            if hour.minute or hour.second or hour.microsecond:
                raise ValueError(f"hour_start {hour_start} is not the start of an hour")
            prev = out[scope].get(hour, _Hour(ZERO, 0, 0))
            out[scope][hour] = _Hour(prev.cost + cost, prev.requests + requests, prev.fallback + fallback)
    return dict(out)


def _history_start(series: Mapping[str, Mapping[datetime, _Hour]], history_start: datetime | None) -> datetime | None:
    if history_start is not None:
        return _utc(history_start)
    return min((h for hours in series.values() for h in hours), default=None)


def _trailing(hours: Mapping[datetime, _Hour], hour: datetime, trailing_hours: int) -> tuple[Decimal, int]:
    """Summed cost and requests of the ``trailing_hours`` hours before ``hour`` (missing hours are zero)."""
    cost, requests = ZERO, 0
    for i in range(1, trailing_hours + 1):
        row = hours.get(hour - i * HOUR)
        if row is not None:
            cost += row.cost
            requests += row.requests
    return cost, requests


def _judged_hours(
    hourly: Iterable[Row], trailing_hours: int, history_start: datetime | None
) -> Iterator[tuple[str, Mapping[datetime, _Hour], datetime, _Hour]]:
    """(scope, its hours, hour, row) for every hour, per scope in time order, that has ``trailing_hours`` of
    history before it (hours before the history's start cannot be judged): the scaffold of the hourly rules."""
    if trailing_hours < 1:
        raise ValueError("trailing_hours must be at least 1")
    series = _by_scope(hourly)
    start = _history_start(series, history_start)
    if start is None:
        return
    for scope, hours in series.items():
        for hour in sorted(hours):
            if hour - trailing_hours * HOUR >= start:
                yield scope, hours, hour, hours[hour]


def spend_spikes(
    hourly: Iterable[Row],
    *,
    multiple: Decimal | float | str = 3,
    trailing_hours: int = 24,
    min_cost: Decimal = Decimal(1),
    history_start: datetime | None = None,
) -> list[Anomaly]:
    """Hours whose cost is more than ``multiple`` x the trailing ``trailing_hours`` hours' hourly average."""
    k = _ratio(multiple)
    found: list[Anomaly] = []
    with localcontext(MONEY_CONTEXT):
        for scope, hours, hour, row in _judged_hours(hourly, trailing_hours, history_start):
            if row.cost < min_cost or row.cost <= 0:
                continue
            total, _ = _trailing(hours, hour, trailing_hours)
            baseline = total / trailing_hours
            if row.cost > k * baseline:
                times = f"{row.cost / baseline:.1f}x" if baseline else "from nothing"
                message = (
                    f"{scope}: spent {format_usd(row.cost)} in the hour from {hour:%Y-%m-%d %H:00} UTC, {times} "
                    f"the previous {trailing_hours} h average of {format_usd(baseline)}/h"
                )
                found.append(_anomaly("spend_spike", scope, hour, hour + HOUR, row.cost, baseline, message))
    return found


def cost_per_request_jump(
    hourly: Iterable[Row],
    *,
    multiple: Decimal | float | str = 2,
    trailing_hours: int = 24,
    min_requests: int = 20,
    min_cost: Decimal = Decimal(1),
    history_start: datetime | None = None,
) -> list[Anomaly]:
    """Hours whose cost per request is more than ``multiple`` x the trailing hours' cost per request."""
    k = _ratio(multiple)
    found: list[Anomaly] = []
    with localcontext(MONEY_CONTEXT):
        for scope, hours, hour, row in _judged_hours(hourly, trailing_hours, history_start):
            if row.requests < max(min_requests, 1) or row.cost < min_cost:
                continue
            cost, requests = _trailing(hours, hour, trailing_hours)
            if requests < max(min_requests, 1):
                continue
            per_request = row.cost / row.requests
            baseline = cost / requests
            if per_request > k * baseline:
                message = (
                    f"{scope}: {format_usd(per_request)} per request in the hour from {hour:%Y-%m-%d %H:00} UTC "
                    f"against {format_usd(baseline)} over the previous {trailing_hours} h"
                )
                found.append(
                    _anomaly("cost_per_request_jump", scope, hour, hour + HOUR, per_request, baseline, message)
                )
    return found


def fallback_rate_rise(
    hourly: Iterable[Row],
    *,
    now: datetime,
    window_hours: int = 24,
    baseline_hours: int = 168,
    multiple: Decimal | float | str = 2,
    min_increase: Decimal | float | str = Decimal("0.05"),
    min_requests: int = 100,
) -> list[Anomaly]:
    """Scopes whose fallback rate over ``[now - window_hours, now)`` rose against the ``baseline_hours`` before.

    The dedup window is the current window, so evaluating at the same ``now`` (e.g. each UTC midnight) repeats no
    alert; evaluating a sliding window every hour makes one alert per hour while the rise lasts.
    """
    if window_hours < 1 or baseline_hours < 1:
        raise ValueError("window_hours and baseline_hours must be at least 1")
    k, rise = _ratio(multiple), _ratio(min_increase)
    end = _utc(now)
    if end.minute or end.second or end.microsecond:
        raise ValueError("now must be the start of an hour")
    window_start = end - window_hours * HOUR
    baseline_start = window_start - baseline_hours * HOUR
    found: list[Anomaly] = []
    with localcontext(MONEY_CONTEXT):
        for scope, hours in _by_scope(hourly).items():
            cur_req = cur_fb = base_req = base_fb = 0
            for hour, row in hours.items():
                if window_start <= hour < end:
                    cur_req += row.requests
                    cur_fb += row.fallback
                elif baseline_start <= hour < window_start:
                    base_req += row.requests
                    base_fb += row.fallback
            if cur_req < max(min_requests, 1) or base_req < max(min_requests, 1):
                continue
            rate, base_rate = Decimal(cur_fb) / cur_req, Decimal(base_fb) / base_req
            if rate > k * base_rate and rate - base_rate >= rise:
                message = (
                    f"{scope}: fallback rate {_pct(rate)} over the last {window_hours} h "
                    f"against {_pct(base_rate)} over the {baseline_hours} h before"
                )
                found.append(_anomaly("fallback_rate_rise", scope, window_start, end, rate, base_rate, message))
    return found


def budget_crossings(
    spent_before: Decimal,
    spent_after: Decimal,
    cap: Decimal,
    thresholds: Sequence[Decimal | float | str] = (Decimal("0.75"), Decimal("0.9"), Decimal("1.1")),
    *,
    scope: str,
    window_start: datetime,
    window_end: datetime,
) -> list[Anomaly]:
    """Thresholds (fractions of ``cap``) reached by moving from ``spent_before`` to ``spent_after``.

    ``window_start``/``window_end`` is the budget's period (e.g. the month), so each threshold alerts once per
    period. ``value`` is ``spent_after``, ``baseline`` the threshold amount, ``ratio`` their quotient.
    """
    if cap <= 0:
        raise ValueError("cap must be positive")
    start, end = _utc(window_start), _utc(window_end)
    found: list[Anomaly] = []
    with localcontext(MONEY_CONTEXT):
        for t in sorted(_ratio(t) for t in thresholds):
            line = t * cap
            if spent_before < line <= spent_after:
                label = f"{t.normalize():f}"
                message = (
                    f"{scope}: spend {format_usd(spent_after)} reached {_pct(t)} of the {format_usd(cap)} budget "
                    f"({format_usd(line)})"
                )
                found.append(
                    _anomaly("budget_threshold", scope, start, end, spent_after, line, message, f"threshold:{label}")
                )
    return found


def _shares(amounts: Mapping[str, Decimal]) -> tuple[Decimal, dict[str, Decimal]]:
    total = sum(amounts.values(), ZERO)
    if total <= 0:
        return total, {}
    return total, {name: amount / total for name, amount in amounts.items()}


def dominance_shift(
    shares_before: Mapping[str, Decimal],
    shares_now: Mapping[str, Decimal],
    *,
    scope: str,
    window_start: datetime,
    window_end: datetime,
    min_share: Decimal | float | str = Decimal("0.5"),
    max_prior_share: Decimal | float | str = Decimal("0.2"),
    dimension: str = "model",
    min_cost: Decimal = ZERO,
) -> list[Anomaly]:
    """Subjects (models or keys) that were under ``max_prior_share`` of spend and now hold more than ``min_share``.

    The mappings give spend (or shares) per subject for the earlier period and for the window
    ``[window_start, window_end)``; ``dimension`` names the kind of subject in messages and dedup keys.
    """
    dominant, prior = _ratio(min_share), _ratio(max_prior_share)
    start, end = _utc(window_start), _utc(window_end)
    found: list[Anomaly] = []
    with localcontext(MONEY_CONTEXT):
        total_before, before = _shares(shares_before)
        total_now, now = _shares(shares_now)
        if total_before <= 0 or total_now <= 0 or total_now < min_cost:
            return found
        for name in sorted(now):
            share, was = now[name], before.get(name, ZERO)
            if share > dominant and was < prior:
                message = f"{scope}: {dimension} {name} now takes {_pct(share)} of spend, up from {_pct(was)}"
                found.append(_anomaly("dominance_shift", scope, start, end, share, was, message, f"{dimension}:{name}"))
    return found


def dedupe(anomalies: Iterable[Anomaly], seen_keys: Iterable[str] = ()) -> list[Anomaly]:
    """The anomalies whose ``dedup_key`` is neither in ``seen_keys`` nor earlier in ``anomalies`` (order kept).

    Pure: ``seen_keys`` is not modified; the caller records the keys of what it sends.
    """
    seen = set(seen_keys)
    fresh: list[Anomaly] = []
    for anomaly in anomalies:
        if anomaly.dedup_key not in seen:
            seen.add(anomaly.dedup_key)
            fresh.append(anomaly)
    return fresh

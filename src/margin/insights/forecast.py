"""Month-end spend forecasts, budget run-out dates and budget status for one scope. Pure: no I/O, time passed in.

Input is the spend of one scope (a team, a key, a project...) per UTC day, ``daily: Mapping[date, Decimal]``.
A day missing from the mapping spent nothing. The mapping's earliest day is taken as the start of the scope's
history: days before it are *unknown*, not zero, so a scope that started ten days ago is forecast from ten days.

The current day is partial. :func:`month_end_forecast` takes ``now: datetime`` (UTC; a naive datetime is read as
UTC) and handles today explicitly:

* today's recorded spend counts in ``spent_to_date`` as it is;
* today is never used to estimate the burn rate or the weekday factors (only full days are);
* the rest of today is projected as ``base_rate x factor(today) x remaining fraction of today``, where the
  remaining fraction is ``(midnight - now) / 24 h``. Intra-day spend is assumed uniform.

The model, with ``L = lookback_days`` (28) and ``R = rate_days`` (7):

1. **Lookback window**: the full days ``[today - L, today - 1]``, shortened to start at the scope's first day.
2. **Weekday factors** ``f[w]``: each weekday's mean spend over the window divided by the mean of the seven
   weekday means (so the factors average exactly 1; with a window of whole weeks this is the plain mean of the
   window). Needs at least 14 full days (every weekday seen twice); otherwise flat (all 1), ``method="flat"``.
3. **Base rate** (spend of an average day): ``sum(x_d) / sum(f[w(d)])`` over the last ``R`` full days, i.e. the
   recent spend with its weekday mix divided out. With flat factors it is the mean of the last ``R`` days; over
   seven consecutive days with factors from whole weeks it is also exactly their mean.
4. **Projection**: ``projected_total = spent_to_date + sum over remaining days of base_rate x f[w(d)]`` (today
   weighted by its remaining fraction).
5. **Interval (10%-90%)**: daily residuals over the window are ``x_d - f[w(d)] x m`` (``m`` the mean of the
   weekday means, so each residual is the day minus its weekday's mean; flat: minus the window mean), scaled by
   ``sqrt(n / (n - p))`` for the ``p`` means fitted from ``n`` days (7 seasonal, 1 flat). Their empirical 10% and
   90% quantiles (linear interpolation) ``q10 <= 0 <= q90`` are summed over the ``H`` remaining days (fractional)
   as if daily errors were independent, plus the error of the base rate itself, which is shared by all of
   them: ``scale = sqrt(H + H^2 / R)``, ``low = projected + q10 x scale``, ``high = projected + q90 x scale``.
   ``low`` is never below ``spent_to_date`` (spend cannot be undone) and the interval always contains
   ``projected_total``.

With no full day of history the forecast is ``spent_to_date`` with ``method="no_history"``.

Known limitation: there is no trend term. A steadily rising series is followed with a lag of about ``R / 2`` days
(the base rate is a recent mean, not a 28-day mean), and a trend inside the lookback leaks a little into the
weekday factors.
"""

from __future__ import annotations

import calendar
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, localcontext
from typing import Literal

from ..money import MONEY_CONTEXT

__all__ = [
    "FLAT_FACTORS",
    "BudgetState",
    "Forecast",
    "budget_status",
    "month_end_forecast",
    "runout_date",
    "weekday_factors",
]

ZERO = Decimal(0)
ONE = Decimal(1)
DAY_MICROS = Decimal(86_400_000_000)
FLAT_FACTORS: tuple[Decimal, ...] = (ONE,) * 7
MIN_SEASONAL_DAYS = 14  # two full weeks: every weekday seen at least twice
BudgetState = Literal["on_track", "approaching", "over", "over_hard_limit"]
Method = Literal["seasonal", "flat", "no_history"]


@dataclass(frozen=True, kw_only=True)
class Forecast:
    """A month-end forecast for one scope. All amounts in USD."""

    spent_to_date: Decimal  # spend from the 1st of the month through today's partial day
    projected_total: Decimal  # spent_to_date + projected rest of the month
    low: Decimal  # 10% bound of the month total, never below spent_to_date
    high: Decimal  # 90% bound of the month total
    method: Method
    by_weekday_factors: tuple[Decimal, ...]  # Monday first, 7 values averaging 1 (all 1 when flat)
    base_rate: Decimal  # spend of an average day (factor 1) at the current rate
    remaining_days: Decimal  # days still to come this month, today's remaining fraction included
    history_days: int  # full days the forecast was fitted on
    as_of: date  # the UTC day of ``now``
    today_remaining: Decimal  # fraction of today still to come (0..1)

    def runout(self, cap: Decimal, *, horizon_days: int = 366) -> date | None:
        """The day a budget of ``cap`` runs out at this forecast's rate and weekday pattern (see :func:`runout_date`).

        Counts from ``spent_to_date``, so ``cap`` is a monthly budget; the walk may continue past month end.
        """
        return runout_date(
            self.spent_to_date,
            cap,
            self.base_rate,
            today=self.as_of,
            factors=self.by_weekday_factors,
            today_remaining=self.today_remaining,
            horizon_days=horizon_days,
        )


def _utc(now: datetime) -> datetime:
    return now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)


def _ratio(value: Decimal | float | str) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(str(value))


def _quantile(sorted_values: Sequence[Decimal], q: Decimal) -> Decimal:
    """Empirical quantile with linear interpolation between order statistics (numpy's default)."""
    n = len(sorted_values)
    if n == 1:
        return sorted_values[0]
    pos = q * (n - 1)
    lo = int(pos)
    hi = min(lo + 1, n - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def _weekday_means(window: Mapping[date, Decimal]) -> list[Decimal] | None:
    """Mean spend per weekday (Monday first), or None when a weekday has no day in the window."""
    with localcontext(MONEY_CONTEXT):
        sums = [ZERO] * 7
        counts = [0] * 7
        for d, x in window.items():
            sums[d.weekday()] += x
            counts[d.weekday()] += 1
        if min(counts) == 0:
            return None
        return [s / c for s, c in zip(sums, counts, strict=True)]


def weekday_factors(window: Mapping[date, Decimal]) -> tuple[Decimal, ...] | None:
    """Weekday factors (Monday first) from full days of spend, or None when under two weeks of days.

    ``f[w] = mean(spend on weekday w) / mean(the seven weekday means)``; all factors are 1 when nothing was spent.
    """
    if len(window) < MIN_SEASONAL_DAYS:
        return None
    means = _weekday_means(window)
    if means is None:
        return None
    with localcontext(MONEY_CONTEXT):
        overall = sum(means, ZERO) / 7
        if overall == 0:
            return FLAT_FACTORS
        return tuple(m / overall for m in means)


def month_end_forecast(
    daily: Mapping[date, Decimal],
    now: datetime,
    *,
    lookback_days: int = 28,
    rate_days: int = 7,
) -> Forecast:
    """Forecast this month's total spend for one scope (see the module docstring for the exact model)."""
    if lookback_days < 1 or rate_days < 1:
        raise ValueError("lookback_days and rate_days must be at least 1")
    now = _utc(now)
    today = now.date()
    month_start = today.replace(day=1)
    month_end = today.replace(day=calendar.monthrange(today.year, today.month)[1])
    midnight = datetime.combine(today + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
    today_remaining = Decimal((midnight - now) // timedelta(microseconds=1)) / DAY_MICROS

    with localcontext(MONEY_CONTEXT):
        spent = sum((x for d, x in daily.items() if month_start <= d <= today), ZERO)
        first_day = min((d for d in daily if d <= today), default=today)
        window_start = max(today - timedelta(days=lookback_days), first_day)
        window = {
            window_start + timedelta(days=i): daily.get(window_start + timedelta(days=i), ZERO)
            for i in range((today - window_start).days)
        }
        later_days = [today + timedelta(days=i) for i in range(1, (month_end - today).days + 1)]
        remaining = today_remaining + len(later_days)
        if not window:
            return Forecast(
                spent_to_date=spent,
                projected_total=spent,
                low=spent,
                high=spent,
                method="no_history",
                by_weekday_factors=FLAT_FACTORS,
                base_rate=ZERO,
                remaining_days=remaining,
                history_days=0,
                as_of=today,
                today_remaining=today_remaining,
            )

        seasonal = weekday_factors(window)
        factors = seasonal if seasonal is not None else FLAT_FACTORS
        method: Method = "seasonal" if seasonal is not None else "flat"

        recent = sorted(window)[-rate_days:]
        factor_sum = sum((factors[d.weekday()] for d in recent), ZERO)
        base = sum((window[d] for d in recent), ZERO) / factor_sum if factor_sum > 0 else ZERO

        rest = base * factors[today.weekday()] * today_remaining
        rest += sum((base * factors[d.weekday()] for d in later_days), ZERO)
        projected = spent + rest

        # Residuals: each day minus its weekday's mean (flat: minus the window mean), corrected for fitted means.
        n = len(window)
        fitted = 7 if seasonal is not None else 1
        if seasonal is not None:
            means = _weekday_means(window)
            residuals = [x - means[d.weekday()] for d, x in window.items()]
        else:
            mean = sum(window.values(), ZERO) / n
            residuals = [x - mean for x in window.values()]
        if n > fitted:
            dof = (Decimal(n) / (n - fitted)).sqrt()
            ordered = sorted(r * dof for r in residuals)
            q10 = min(_quantile(ordered, Decimal("0.1")), ZERO)
            q90 = max(_quantile(ordered, Decimal("0.9")), ZERO)
        else:
            q10 = q90 = ZERO
        scale = (remaining + remaining * remaining / len(recent)).sqrt() if remaining > 0 else ZERO
        low = max(projected + q10 * scale, spent)
        high = max(projected + q90 * scale, projected)

    return Forecast(
        spent_to_date=spent,
        projected_total=projected,
        low=low,
        high=high,
        method=method,
        by_weekday_factors=factors,
        base_rate=base,
        remaining_days=remaining,
        history_days=n,
        as_of=today,
        today_remaining=today_remaining,
    )


def runout_date(
    spent: Decimal,
    cap: Decimal,
    daily_rate: Decimal,
    *,
    today: date,
    factors: Sequence[Decimal] = FLAT_FACTORS,
    today_remaining: Decimal = ONE,
    horizon_days: int = 366,
) -> date | None:
    """The UTC day on which cumulative spend reaches ``cap`` at the current rate, or None within the horizon.

    ``spent`` is the spend so far (today's partial day included). Day ``d`` adds ``daily_rate x factors[weekday]``;
    today adds only ``today_remaining`` (0..1) of that. The budget runs out on the first day whose running total
    *reaches* the cap (``>=``, as the gateway's thresholds do). Returns ``today`` when ``spent >= cap`` already,
    None when the rate is zero or the cap is not reached within ``horizon_days`` after today.
    Use ``forecast.base_rate``, ``forecast.by_weekday_factors`` and the remaining fraction of today from a
    :class:`Forecast`, or a flat rate of your own.
    """
    if len(factors) != 7:
        raise ValueError("factors must hold 7 values, Monday first")
    with localcontext(MONEY_CONTEXT):
        total = spent
        if total >= cap:
            return today
        if daily_rate <= 0:
            return None
        total += daily_rate * factors[today.weekday()] * today_remaining
        if total >= cap:
            return today
        for i in range(1, horizon_days + 1):
            day = today + timedelta(days=i)
            total += daily_rate * factors[day.weekday()]
            if total >= cap:
                return day
    return None


def budget_status(
    spent: Decimal,
    projected: Decimal,
    cap: Decimal,
    *,
    warn: Decimal | float | str = Decimal("0.75"),
    review: Decimal | float | str = Decimal("0.9"),
    block: Decimal | float | str = Decimal("1.1"),
) -> BudgetState:
    """Where a monthly budget of ``cap`` stands, from spend so far and the projected month total.

    Thresholds are *reached* at equality (``>=``), like the gateway's budget policy. In order:

    * ``over_hard_limit``: ``spent >= block x cap`` (110%): the gateway blocks new requests.
    * ``over``: ``spent >= cap``: the budget is spent.
    * ``approaching``: ``spent >= warn x cap`` (75% used), or ``projected >= review x cap`` (the month is on course
      to reach the 90% review level at the current rate).
    * ``on_track``: otherwise.

    The projection only ever raises the status to ``approaching``; ``over`` and ``over_hard_limit`` describe money
    actually spent. A projection below ``spent`` is read as ``spent``. A cap of zero is ``over_hard_limit``.
    """
    warn_r, review_r, block_r = _ratio(warn), _ratio(review), _ratio(block)
    if not warn_r <= review_r <= ONE <= block_r:
        raise ValueError("thresholds must satisfy warn <= review <= 1 <= block")
    if cap < 0:
        raise ValueError("cap must not be negative")
    with localcontext(MONEY_CONTEXT):
        projected = max(projected, spent)
        if spent >= block_r * cap:
            return "over_hard_limit"
        if spent >= cap:
            return "over"
        if spent >= warn_r * cap or projected >= review_r * cap:
            return "approaching"
    return "on_track"

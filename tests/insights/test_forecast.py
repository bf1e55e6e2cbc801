"""Month-end forecasts, run-out dates and budget status, on generated daily ledgers with known patterns."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from margin.insights.forecast import (
    FLAT_FACTORS,
    budget_status,
    month_end_forecast,
    runout_date,
    weekday_factors,
)

D = Decimal
EPS = D("1e-20")  # the tests compute in the default 28-digit context; margin in 50 digits
# Monday..Sunday; averages exactly 1.
PATTERN = (D("1.3"), D("1.2"), D("1.1"), D("1.0"), D("1.0"), D("0.7"), D("0.7"))
# March 2024: the 15th is a Friday, the month has 31 days.
MID_MARCH = datetime(2024, 3, 15, tzinfo=UTC)


def days(start: date, end: date) -> list[date]:
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


def close(a: Decimal, b: Decimal | int | str, eps: Decimal = EPS) -> bool:
    return abs(a - D(b)) <= eps


def generate(seed: int, start: date, end: date, *, level=100.0, noise=0.15, slope=0.0) -> dict[date, Decimal]:
    """Seeded daily spend: level (+ slope per day) x weekday pattern x (1 + gaussian noise), in cents."""
    rng = random.Random(seed)
    out = {}
    for i, d in enumerate(days(start, end)):
        x = (level + slope * i) * float(PATTERN[d.weekday()]) * max(0.0, 1 + rng.gauss(0, noise))
        out[d] = D(str(round(x, 2)))
    return out


def observe(full: dict[date, Decimal], now: datetime) -> dict[date, Decimal]:
    """What the ledger shows at ``now``: full days before today, and today's spend pro rata."""
    today = now.date()
    elapsed = D((now - datetime.combine(today, datetime.min.time(), tzinfo=UTC)).seconds) / 86400
    seen = {d: x for d, x in full.items() if d < today}
    seen[today] = (full[today] * elapsed).quantize(D("0.01"))
    return seen


# --- hand-computed forecasts ---


def test_flat_series_at_midnight():
    daily = {d: D(10) for d in days(date(2024, 2, 1), date(2024, 3, 14))}
    f = month_end_forecast(daily, MID_MARCH)
    assert f.spent_to_date == 140  # March 1..14
    assert f.base_rate == 10
    assert f.remaining_days == 17  # all of the 15th, then 16..31
    assert f.projected_total == 310
    assert f.low == f.high == 310  # no residual spread
    assert f.method == "seasonal" and f.by_weekday_factors == FLAT_FACTORS
    assert f.history_days == 28


def test_partial_day_is_scaled_not_used_for_the_rate():
    daily = {d: D(10) for d in days(date(2024, 2, 1), date(2024, 3, 14))}
    daily[date(2024, 3, 15)] = D("2.5")  # a quarter of the day gone, a quarter of the spend
    f = month_end_forecast(daily, datetime(2024, 3, 15, 6, tzinfo=UTC))
    assert f.spent_to_date == D("142.5")
    assert f.today_remaining == D("0.75")
    assert f.remaining_days == D("16.75")
    assert f.base_rate == 10  # today's partial 2.5 did not drag the rate down
    assert f.projected_total == 310  # 142.5 + 10 x 0.75 + 16 x 10


def test_missing_days_are_zero_and_weekends_get_a_zero_factor():
    # Spend on weekdays only; weekends are absent from the mapping.
    daily = {d: D(10) for d in days(date(2024, 2, 1), date(2024, 3, 14)) if d.weekday() < 5}
    f = month_end_forecast(daily, MID_MARCH)
    assert f.method == "seasonal"
    assert all(close(x, "1.4") for x in f.by_weekday_factors[:5])  # 10 / (50 / 7)
    assert f.by_weekday_factors[5:] == (0, 0)
    assert close(f.base_rate, D(50) / 7)
    assert f.spent_to_date == 100  # 10 weekdays in March 1..14
    assert close(f.projected_total, 210)  # 11 weekdays left: 15, 18-22, 25-29


def test_short_history_is_flat_and_uses_recent_days():
    # 13 days, rising by 10 a day: under two weeks, so no weekday factors.
    start = date(2024, 3, 2)
    daily = {d: D(100 + 10 * i) for i, d in enumerate(days(start, date(2024, 3, 14)))}
    f = month_end_forecast(daily, MID_MARCH)
    assert f.method == "flat" and f.by_weekday_factors == FLAT_FACTORS
    assert f.history_days == 13  # the window starts at the scope's first day, not 28 days back
    assert f.base_rate == 190  # mean of the last 7 days: 160..220
    assert f.spent_to_date == sum(100 + 10 * i for i in range(13))  # 2080
    assert f.projected_total == 2080 + 17 * 190
    assert f.low >= f.spent_to_date and f.low <= f.projected_total <= f.high


def test_no_history_projects_only_what_is_spent():
    f = month_end_forecast({date(2024, 3, 15): D(4)}, datetime(2024, 3, 15, 12, tzinfo=UTC))
    assert f.method == "no_history"
    assert f.spent_to_date == f.projected_total == f.low == f.high == 4


def test_naive_now_is_utc_and_future_rows_are_ignored():
    daily = {d: D(10) for d in days(date(2024, 2, 1), date(2024, 3, 31))}
    aware = month_end_forecast(daily, MID_MARCH)
    naive = month_end_forecast(daily, MID_MARCH.replace(tzinfo=None))
    assert aware == naive
    assert aware.spent_to_date == 150  # the 15th's row counts as today's spend so far; 16..31 do not


# --- seasonality ---


def test_factors_recover_the_pattern_exactly_without_noise():
    daily = {d: 100 * PATTERN[d.weekday()] for d in days(date(2024, 2, 16), date(2024, 3, 14))}
    factors = weekday_factors(daily)
    assert factors is not None
    assert all(close(f, p) for f, p in zip(factors, PATTERN, strict=True))
    f = month_end_forecast(daily, MID_MARCH)
    assert close(f.base_rate, 100)
    expected_rest = sum(100 * PATTERN[d.weekday()] for d in days(date(2024, 3, 15), date(2024, 3, 31)))
    assert close(f.projected_total, f.spent_to_date + expected_rest)
    assert f.low == f.high == f.projected_total  # a perfect fit leaves no residuals


@pytest.mark.parametrize("seed", range(5))
def test_factors_recover_the_pattern_from_noisy_data(seed):
    daily = generate(seed, date(2024, 1, 18), date(2024, 3, 14), noise=0.1)
    f = month_end_forecast(daily, MID_MARCH, lookback_days=56)
    assert f.method == "seasonal"
    for got, want in zip(f.by_weekday_factors, PATTERN, strict=True):
        assert abs(got - want) < D("0.1")
    assert close(sum(f.by_weekday_factors, D(0)) / 7, 1)


def test_weekday_factors_need_two_weeks():
    assert weekday_factors({d: D(1) for d in days(date(2024, 3, 1), date(2024, 3, 13))}) is None
    assert weekday_factors({d: D(1) for d in days(date(2024, 3, 1), date(2024, 3, 14))}) == FLAT_FACTORS


# --- interval on stationary generated series ---


@pytest.mark.parametrize("now", [datetime(2024, 3, 15, 12, tzinfo=UTC), datetime(2024, 3, 24, 18, tzinfo=UTC)])
def test_stationary_series_true_total_inside_the_interval(now):
    covered, errors = 0, []
    for seed in range(100):
        full = generate(seed, date(2024, 2, 1), date(2024, 3, 31))
        true_total = sum(x for d, x in full.items() if d.month == 3)
        f = month_end_forecast(observe(full, now), now)
        assert f.spent_to_date <= f.low <= f.projected_total <= f.high
        covered += f.low <= true_total <= f.high
        errors.append(abs(f.projected_total - true_total) / true_total)
    # A 10%-90% interval: about 80 of 100 seeds (binomial sd 4), and close on average.
    assert 68 <= covered <= 92
    assert sum(errors) / len(errors) < D("0.04")


def test_interval_never_below_spent_on_the_last_day():
    full = generate(3, date(2024, 2, 1), date(2024, 3, 31), noise=0.6)
    now = datetime(2024, 3, 31, 23, tzinfo=UTC)
    f = month_end_forecast(observe(full, now), now)
    assert f.spent_to_date <= f.low <= f.projected_total <= f.high
    assert f.remaining_days == f.today_remaining == D(1) / 24


def test_rising_series_follows_the_recent_rate():
    # +3/day linear trend: the base rate is the last week's level, well above the 28-day mean.
    daily = generate(11, date(2024, 2, 1), date(2024, 3, 14), noise=0.05, slope=3.0)
    f = month_end_forecast(daily, MID_MARCH)
    window = [daily[d] for d in days(date(2024, 2, 16), date(2024, 3, 14))]
    assert f.base_rate > sum(window) / len(window) * D("1.1")


# --- run-out dates ---


def test_runout_flat_rate_by_hand():
    today = date(2024, 3, 10)
    # 60 left at 10/day; today counts in full: 10 (10th) .. 60 (15th).
    assert runout_date(D(40), D(100), D(10), today=today) == date(2024, 3, 15)
    # Only half of today left: 5 today, then 10/day: 55 on the 15th, 65 on the 16th.
    assert runout_date(D(40), D(100), D(10), today=today, today_remaining=D("0.5")) == date(2024, 3, 16)
    # Reaching the cap exactly is running out.
    assert runout_date(D(90), D(100), D(10), today=today) == date(2024, 3, 10)
    assert runout_date(D(90), D(100), D(10), today=today, today_remaining=D(0)) == date(2024, 3, 11)


def test_runout_with_weekday_factors_by_hand():
    factors = (D("1.4"),) * 5 + (D(0), D(0))  # weekdays only
    # Friday 2024-03-15, 35 left at 10 x 1.4 = 14 per weekday: Fri 14, (weekend 0), Mon 28, Tue 42.
    assert runout_date(D(65), D(100), D(10), today=date(2024, 3, 15), factors=factors) == date(2024, 3, 19)


def test_runout_edge_cases():
    today = date(2024, 3, 10)
    assert runout_date(D(120), D(100), D(10), today=today) == today  # already exhausted
    assert runout_date(D(40), D(100), D(0), today=today) is None  # nothing is being spent
    assert runout_date(D(0), D(10_000), D(1), today=today, horizon_days=30) is None  # beyond the horizon
    with pytest.raises(ValueError):
        runout_date(D(0), D(1), D(1), today=today, factors=(D(1),))


def test_forecast_runout_uses_its_rate_and_today():
    daily = {d: D(10) for d in days(date(2024, 2, 1), date(2024, 3, 14))}
    f = month_end_forecast(daily, MID_MARCH)
    assert f.runout(D(250)) == date(2024, 3, 25)  # 140 spent, 110 left: 15th..25th
    assert f.runout(D(140)) == date(2024, 3, 15)
    assert f.runout(D(400)) == date(2024, 4, 9)  # past month end: 260 left = 26 days from the 15th


# --- budget status ---


@pytest.mark.parametrize(
    ("spent", "projected", "expected"),
    [
        ("0", "0", "on_track"),
        ("74.99", "74.99", "on_track"),
        ("75", "75", "approaching"),  # warn reached exactly
        ("50", "89.99", "on_track"),
        ("50", "90", "approaching"),  # projection reaches the review level exactly
        ("50", "500", "approaching"),  # a projection never makes it "over"
        ("99.99", "99.99", "approaching"),
        ("100", "100", "over"),
        ("109.99", "120", "over"),
        ("110", "110", "over_hard_limit"),
        ("150", "0", "over_hard_limit"),  # projection below spend reads as spend
    ],
)
def test_budget_status_boundaries(spent, projected, expected):
    assert budget_status(D(spent), D(projected), D(100)) == expected


def test_budget_status_custom_thresholds_and_validation():
    assert budget_status(D(79), D(79), D(100), warn=0.8) == "on_track"
    assert budget_status(D(80), D(80), D(100), warn=0.8) == "approaching"
    assert budget_status(D(120), D(120), D(100), block="1.2") == "over_hard_limit"
    assert budget_status(D(0), D(0), D(0)) == "over_hard_limit"  # a zero budget allows nothing
    with pytest.raises(ValueError):
        budget_status(D(1), D(1), D(100), warn=0.95, review=0.9)
    with pytest.raises(ValueError):
        budget_status(D(1), D(1), D(100), block=0.9)

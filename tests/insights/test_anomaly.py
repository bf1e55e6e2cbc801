"""Anomaly rules on generated hourly ledgers with known injected spikes, and on crafted inputs."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from margin.insights.anomaly import (
    HourlySpend,
    budget_crossings,
    cost_per_request_jump,
    dedup_key,
    dedupe,
    dominance_shift,
    fallback_rate_rise,
    spend_spikes,
)

D = Decimal
H = timedelta(hours=1)
T0 = datetime(2024, 3, 4, tzinfo=UTC)  # a Monday
EPS = D("1e-20")  # the tests divide in the default 28-digit context
MONTH = (datetime(2024, 3, 1, tzinfo=UTC), datetime(2024, 4, 1, tzinfo=UTC))


def generate(
    seed: int, *, scope: str = "team:ml", hours: int = 21 * 24, spikes: dict[int, float] | None = None
) -> list[HourlySpend]:
    """Seeded hourly spend: $2 x diurnal curve (0.5..1.5) x weekend dip (0.8) x linear trend (+50% over the
    period) x uniform noise (+-20%), at about 1 cent per request with 3% fallbacks; ``spikes`` adds extra dollars
    at given hour indexes (priced 10x per request, as a runaway prompt would be)."""
    rng = random.Random(seed)
    rows = []
    for i in range(hours):
        hour = T0 + i * H
        diurnal = 1 + 0.5 * math.sin(2 * math.pi * (hour.hour - 9) / 24)
        weekly = 0.8 if hour.weekday() >= 5 else 1.0
        trend = 1 + 0.5 * i / hours
        cost = 2.0 * diurnal * weekly * trend * rng.uniform(0.8, 1.2)
        requests = max(1, round(cost / 0.01))
        extra = (spikes or {}).get(i, 0.0)
        requests += round(extra / 0.1)
        rows.append(HourlySpend(hour, scope, D(str(round(cost + extra, 4))), requests, round(requests * 0.03)))
    return rows


def hours_of(anomalies) -> set[int]:
    return {int((a.window_start - T0) / H) for a in anomalies}


def flat(n: int, cost: str, *, scope: str = "s", start: datetime = T0, requests: int = 100) -> list[HourlySpend]:
    return [HourlySpend(start + i * H, scope, D(cost), requests, 0) for i in range(n)]


# --- spend spikes ---

SPIKES = {30: 25.0, 101: 18.0, 110: 30.0, 250: 22.0, 251: 20.0, 400: 40.0}


@pytest.mark.parametrize("seed", range(3))
def test_spike_rule_fires_on_exactly_the_injected_hours(seed):
    rows = generate(seed, spikes=SPIKES) + generate(seed + 100, scope="team:web")
    found = spend_spikes(rows)
    assert {a.scope for a in found} == {"team:ml"}
    assert hours_of(found) == set(SPIKES)
    for a in found:
        assert a.rule == "spend_spike" and a.window_end - a.window_start == H
        assert a.value > 3 * a.baseline and abs(a.ratio - a.value / a.baseline) < EPS


@pytest.mark.parametrize("seed", range(3))
def test_spike_rule_is_silent_on_an_unspiked_ledger(seed):
    assert spend_spikes(generate(seed)) == []


def test_spike_rule_is_silent_on_a_flat_series():
    assert spend_spikes(flat(24 * 7, "5")) == []


def test_spikes_below_min_cost_do_not_fire():
    # The spiked ledger at 1/1000 of the price: the same shape, but spikes of 2-4 cents.
    scaled = [r._replace(cost=r.cost / 1000) for r in generate(1, spikes=SPIKES)]
    assert spend_spikes(scaled) == []
    assert hours_of(spend_spikes(scaled, min_cost=D(0))) == set(SPIKES)


def test_spike_threshold_is_more_than_three_times_by_hand():
    base = flat(24, "1")
    assert spend_spikes([*base, HourlySpend(T0 + 24 * H, "s", D("3.00"), 1, 0)]) == []  # exactly 3x: not more
    [a] = spend_spikes([*base, HourlySpend(T0 + 24 * H, "s", D("3.01"), 1, 0)])
    assert (a.value, a.baseline, a.ratio) == (D("3.01"), 1, D("3.01"))
    assert a.window_start == T0 + 24 * H and a.window_end == T0 + 25 * H
    assert "3.0x" in a.message
    # The threshold is configurable.
    assert len(spend_spikes([*base, HourlySpend(T0 + 24 * H, "s", D("2.5"), 1, 0)], multiple=2)) == 1


def test_trailing_average_excludes_the_hour_and_counts_empty_hours_as_zero():
    # 12 hours at $2, then 12 hours with no rows: the trailing day's average is $1/h, not $2/h.
    rows = [*flat(12, "2"), HourlySpend(T0 + 24 * H, "s", D("3.5"), 1, 0)]
    [a] = spend_spikes(rows)
    assert a.baseline == 1 and a.ratio == D("3.5")
    # Duplicate rows for one hour are summed before judging it.
    rows = [*flat(24, "1"), HourlySpend(T0 + 24 * H, "s", D("2"), 1, 0), HourlySpend(T0 + 24 * H, "s", D("2"), 1, 0)]
    [a] = spend_spikes(rows)
    assert a.value == 4


def test_first_day_is_not_judged_without_history():
    rows = [HourlySpend(T0, "s", D(50), 1, 0), *flat(30, "1", start=T0 + H)]
    assert spend_spikes(rows) == []
    [a] = spend_spikes(rows, history_start=T0 - 24 * H)  # the ledger is known to be empty before T0
    assert a.window_start == T0 and a.baseline == 0 and a.ratio is None


def test_misaligned_hour_is_refused():
    with pytest.raises(ValueError):
        spend_spikes([HourlySpend(T0 + timedelta(minutes=5), "s", D(1), 1, 0)])


# --- cost per request ---


def test_cost_per_request_jump_by_hand():
    base = flat(24, "1")  # 1 cent per request
    [a] = cost_per_request_jump([*base, HourlySpend(T0 + 24 * H, "s", D(5), 100, 0)])
    assert (a.rule, a.value, a.baseline, a.ratio) == ("cost_per_request_jump", D("0.05"), D("0.01"), 5)
    assert cost_per_request_jump([*base, HourlySpend(T0 + 24 * H, "s", D(2), 100, 0)]) == []  # exactly 2x
    assert cost_per_request_jump([*base, HourlySpend(T0 + 24 * H, "s", D(5), 10, 0)]) == []  # too few requests
    # More traffic at the same unit price is a spend spike, not a price jump.
    volume = [*base, HourlySpend(T0 + 24 * H, "s", D(10), 1000, 0)]
    assert cost_per_request_jump(volume) == [] and len(spend_spikes(volume)) == 1


def test_cost_per_request_jump_on_the_generated_ledger():
    # Spikes are priced at 10 cents a request against about 1: the big ones lift the hour's unit cost > 2x.
    found = cost_per_request_jump(generate(0, spikes=SPIKES))
    assert hours_of(found) <= set(SPIKES) and 400 in hours_of(found)
    assert cost_per_request_jump(generate(0)) == []


# --- fallback rate ---


def fallback_ledger(current_fallbacks: int, *, baseline_fallbacks: int = 2, requests: int = 100) -> list[HourlySpend]:
    rows = [HourlySpend(T0 + i * H, "s", D(1), requests, baseline_fallbacks) for i in range(168)]
    rows += [HourlySpend(T0 + (168 + i) * H, "s", D(1), requests, current_fallbacks) for i in range(24)]
    return rows


NOW = T0 + 192 * H


def test_fallback_rate_rise_fires_on_a_real_rise():
    [a] = fallback_rate_rise(fallback_ledger(10), now=NOW)
    assert (a.value, a.baseline, a.ratio) == (D("0.1"), D("0.02"), 5)
    assert a.window_start == NOW - 24 * H and a.window_end == NOW
    assert "10.0%" in a.message and "2.0%" in a.message


@pytest.mark.parametrize(
    ("current", "baseline", "fires"),
    [
        (4, 2, False),  # 4% is exactly 2x 2% (not more), and only 2 points up
        (7, 2, True),  # 3.5x and exactly the 5-point minimum
        (8, 2, True),  # 4x and 6 points up
        (3, 0, False),  # from nothing, but only 3 points
        (5, 0, True),  # from nothing to exactly the 5-point minimum
        (12, 8, False),  # 4 points, 1.5x
        (20, 14, False),  # 6 points, but not 2x
    ],
)
def test_fallback_rate_rise_boundaries(current, baseline, fires):
    found = fallback_rate_rise(fallback_ledger(current, baseline_fallbacks=baseline), now=NOW)
    assert bool(found) == fires


def test_fallback_rate_rise_needs_enough_requests():
    assert fallback_rate_rise(fallback_ledger(10, requests=4), now=NOW) == []  # 96 requests in the window
    assert len(fallback_rate_rise(fallback_ledger(10, requests=5), now=NOW)) == 1


# --- budget thresholds ---


def test_budget_crossings():
    found = budget_crossings(D(70), D(95), D(100), scope="team:ml", window_start=MONTH[0], window_end=MONTH[1])
    assert [a.subject for a in found] == ["threshold:0.75", "threshold:0.9"]
    assert [a.baseline for a in found] == [75, 90]
    assert all(a.value == 95 and abs(a.ratio - a.value / a.baseline) < EPS for a in found)
    assert found[0].dedup_key != found[1].dedup_key


def test_budget_crossings_at_the_boundary():
    def crossed(before: str, after: str) -> list[str]:
        found = budget_crossings(D(before), D(after), D(100), scope="s", window_start=MONTH[0], window_end=MONTH[1])
        return [a.subject for a in found]

    assert crossed("74.99", "75") == ["threshold:0.75"]  # reaching a threshold crosses it
    assert crossed("75", "89.99") == []  # 75% was already reached
    assert crossed("100", "110") == ["threshold:1.1"]
    assert crossed("0", "200") == ["threshold:0.75", "threshold:0.9", "threshold:1.1"]
    assert crossed("50", "50") == []


def test_budget_crossing_key_is_per_threshold_and_period_not_amount():
    a = budget_crossings(D(70), D(80), D(100), scope="s", window_start=MONTH[0], window_end=MONTH[1])
    b = budget_crossings(D(0), D(76), D(100), (0.75,), scope="s", window_start=MONTH[0], window_end=MONTH[1])
    april = budget_crossings(D(70), D(80), D(100), scope="s", window_start=MONTH[1], window_end=MONTH[1] + 30 * 24 * H)
    assert a[0].dedup_key == b[0].dedup_key  # float 0.75 and Decimal 0.75 name the same threshold
    assert a[0].dedup_key != april[0].dedup_key
    with pytest.raises(ValueError):
        budget_crossings(D(0), D(1), D(0), scope="s", window_start=MONTH[0], window_end=MONTH[1])


# --- dominance ---


def dominance(before, now, **kw):
    return dominance_shift(before, now, scope="team:ml", window_start=T0, window_end=T0 + 24 * H, **kw)


def test_dominance_shift_on_crafted_shares():
    [a] = dominance({"gpt-4o-mini": D(90), "gpt-4o": D(10)}, {"gpt-4o-mini": D(40), "gpt-4o": D(60)})
    assert (a.subject, a.value, a.baseline, a.ratio) == ("model:gpt-4o", D("0.6"), D("0.1"), 6)
    assert "gpt-4o now takes 60.0% of spend, up from 10.0%" in a.message
    # A model that did not exist before.
    [b] = dominance({"a": D(100)}, {"a": D(30), "new": D(70)})
    assert b.subject == "model:new" and b.baseline == 0 and b.ratio is None
    # Fractions work like amounts.
    [c] = dominance({"gpt-4o-mini": D("0.9"), "gpt-4o": D("0.1")}, {"gpt-4o-mini": D("0.4"), "gpt-4o": D("0.6")})
    assert c == a  # same shares, same event, same key


def test_dominance_shift_boundaries():
    assert dominance({"a": D(90), "b": D(10)}, {"a": D(50), "b": D(50)}) == []  # exactly half: not more
    assert dominance({"a": D(80), "b": D(20)}, {"a": D(10), "b": D(90)}) == []  # was 20%: not below
    assert dominance({"a": D(100)}, {"a": D(100)}) == []  # the incumbent stays dominant
    assert dominance({}, {"a": D(5)}) == []  # no prior spend to compare with
    assert dominance({"a": D(100)}, {"a": D("0.1"), "k": D("0.9")}, min_cost=D(2)) == []  # pennies
    [k] = dominance({"k1": D(95), "k2": D(5)}, {"k1": D(30), "k2": D(70)}, dimension="key", min_share=0.6)
    assert k.subject == "key:k2"


# --- dedup ---


def test_dedup_keys_are_stable():
    rows = generate(2, spikes=SPIKES)
    first = spend_spikes(rows)
    again = spend_spikes(list(reversed(rows)))
    assert [a.dedup_key for a in first] == [a.dedup_key for a in again]
    # A ledger that grew by a day yields the same keys for the events already seen.
    grown = spend_spikes(generate(2, spikes=SPIKES, hours=22 * 24))
    assert {a.dedup_key for a in first} <= {a.dedup_key for a in grown}
    assert len({a.dedup_key for a in first}) == len(SPIKES)
    key = dedup_key("spend_spike", "team:ml", T0, T0 + H)
    assert key.startswith("spend_spike:")
    assert key == dedup_key("spend_spike", "team:ml", T0.replace(tzinfo=None), T0 + H)  # naive is UTC
    assert key != dedup_key("spend_spike", "team:web", T0, T0 + H)
    assert key != dedup_key("cost_per_request_jump", "team:ml", T0, T0 + H)


def test_dedupe_drops_seen_and_repeated_keys():
    found = spend_spikes(generate(0, spikes=SPIKES))
    seen = frozenset(a.dedup_key for a in found[:2])
    fresh = dedupe([*found, *found], seen)
    assert fresh == found[2:]
    assert dedupe(found) == found
    assert dedupe(found, {a.dedup_key for a in found}) == []

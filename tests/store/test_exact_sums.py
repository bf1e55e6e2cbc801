"""Property: on both backends, spend grouped by a tag is the exact Python Decimal sum of each group's costs, and
the budget sum is the sum of the per-event nano-dollars (rounded half-even once per event)."""

from __future__ import annotations

import asyncio
import itertools
from datetime import timedelta
from decimal import Context, Decimal, Inexact, localcontext

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from margin.store.sqlite import to_nanos

from .conftest import T0, event

costs = st.one_of(
    st.decimals(min_value=Decimal("-100"), max_value=Decimal("1000"), places=12, allow_nan=False),
    st.builds(  # up to 20 significant digits, far below a nano-dollar; at most $1e9 (the ledger's nanos cap ~$9.2e9)
        lambda digits, exponent: Decimal(f"{digits}E{exponent}"),
        st.integers(min_value=0, max_value=10**20 - 1),
        st.integers(min_value=-30, max_value=-11),
    ),
)
rows = st.lists(st.tuples(st.sampled_from(["ml", "web", "search", None]), costs), min_size=1, max_size=30)
_windows = itertools.count()


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(rows=rows)
def test_group_sums_are_the_exact_python_sums(ledger, rows):
    # One ledger for every example (a database each would be slow): each example writes into a day of its own.
    window = next(_windows)
    since = T0 + timedelta(days=window)
    until = since + timedelta(days=1)

    async def write():
        await asyncio.gather(
            *(
                ledger.write_event(
                    event(
                        f"{window}-{i}",
                        finished_at=since + timedelta(seconds=i),
                        tags={"team": team} if team else {},
                        effective_cost=cost,
                        list_cost=cost,
                    )
                )
                for i, (team, cost) in enumerate(rows)
            )
        )

    asyncio.run(write())
    expected: dict[str | None, Decimal] = {}
    with localcontext(Context(prec=400, traps=[Inexact])):  # Python's own sums, exact
        for team, cost in rows:
            expected[team] = expected.get(team, Decimal(0)) + cost
        spend = {row.group: row for row in ledger.spend(since, until, group_by="team")}
        assert {g: r.effective_cost for g, r in spend.items()} == expected
        assert {g: r.list_cost for g, r in spend.items()} == expected
        assert sum(expected.values(), Decimal(0)) == ledger.spend(since, until)[0].effective_cost
        daily = {grp: cost for _day, grp, cost in ledger.daily_spend(since, until, group_by="team")}
        assert daily == expected
    nanos = sum(to_nanos(cost) for _team, cost in rows)
    assert ledger.sum_effective_cost(since) - ledger.sum_effective_cost(until) == Decimal(nanos).scaleb(-9)


events_in_hours = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=4 * 3600 - 1),  # seconds into a four-hour window
        st.sampled_from(["ml", "web", None]),
        st.sampled_from(["chat", "search", None]),
        st.sampled_from(["gpt-4o", "gpt-4o-mini"]),
        st.sampled_from(["ok", "cached", "upstream_error"]),
        st.decimals(min_value=Decimal("0"), max_value=Decimal("5"), places=11, allow_nan=False),
    ),
    min_size=1,
    max_size=25,
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(rows=events_in_hours)
def test_budget_sums_from_the_rollups_equal_the_events(ledger, rows):
    """From a ``since`` on the hour the budget sum reads the hourly rollups; a microsecond earlier it reads the
    events (none finish in that microsecond). Both must equal the per-event nanos summed in Python, for every
    filter a budget uses."""
    window = next(_windows)
    start = T0 + timedelta(days=window)

    async def write():
        await asyncio.gather(
            *(
                ledger.write_event(
                    event(
                        f"{window}-h-{i}",
                        finished_at=start + timedelta(seconds=second),
                        tags={k: v for k, v in (("team", team), ("feature", feature)) if v},
                        served_model=model,
                        status=status,
                        effective_cost=cost,
                        list_cost=cost,
                    )
                )
                for i, (second, team, feature, model, status, cost) in enumerate(rows)
            )
        )

    asyncio.run(write())
    filters = [
        {},
        {"tags": {"team": "ml"}},
        {"tags": {"team": "web", "feature": "chat"}},
        {"served_model": "gpt-4o-mini"},
        {"tags": {"feature": "search"}, "served_model": "gpt-4o"},
    ]
    for hour in range(4):
        since = start + timedelta(hours=hour)
        for where in filters:
            want = sum(
                to_nanos(cost)
                for second, team, feature, model, _status, cost in rows
                if second >= hour * 3600
                and all({"team": team, "feature": feature}.get(k) == v for k, v in where.get("tags", {}).items())
                and where.get("served_model", model) == model
            )
            # Events of later examples' windows (later days) count too: take them out with the next window's sum.
            later = ledger.sum_effective_cost(start + timedelta(days=1), **where)
            from_rollups = ledger.sum_effective_cost(since, **where) - later
            from_events = ledger.sum_effective_cost(since - timedelta(microseconds=1), **where) - later
            assert from_rollups == from_events == Decimal(want).scaleb(-9), (hour, where)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(rows=rows, models=st.lists(st.sampled_from(["gpt-4o", "gpt-4o-mini", None]), min_size=30, max_size=30))
def test_budget_rebuild_sums_are_the_exact_spend(ledger, rows, models):
    """effective_cost_by (the counters' start-up rebuild; on SQLite from the rollups plus the exact sub-nano
    remainders) equals spend()'s exact Decimal column for every grouping a budget uses, sub-nano costs,
    exponent notation and events without the grouped field included."""
    window = next(_windows)
    since = T0 + timedelta(days=window)

    async def write():
        await asyncio.gather(
            *(
                ledger.write_event(
                    event(
                        f"{window}-r-{i}",
                        finished_at=since + timedelta(minutes=7 * i),
                        tags={"team": team, "tier": "a" if i % 2 else "b"} if team else {},
                        served_model=models[i],
                        key_id=f"k{i % 3}",
                        status="ok" if i % 4 else "cached",
                        effective_cost=cost,
                        list_cost=cost,
                    )
                )
                for i, (team, cost) in enumerate(rows)
            )
        )

    asyncio.run(write())
    for group_by in (None, "team", "model", "status", "key", "tag:tier"):
        for start in (since, since + timedelta(hours=1), since + timedelta(minutes=30)):
            want = {row.group: row.effective_cost for row in ledger.spend(start, None, group_by)}
            got = ledger.effective_cost_by(start, group_by)
            # spend() lists no group for an empty window but one total row; compare the groups with spend.
            assert {g: v for g, v in got.items() if v or g in want} == {g: v for g, v in want.items() if v or g in got}

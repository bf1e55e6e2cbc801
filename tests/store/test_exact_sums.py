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

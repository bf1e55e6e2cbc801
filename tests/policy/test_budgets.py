from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from margin.gateway.config import BudgetConfig
from margin.policy.budgets import (
    BudgetCounters,
    RequestScope,
    applicable_budgets,
    budget_status,
    max_affordable_output_tokens,
    period_key,
)

NOW = datetime(2026, 11, 23, 19, 5, tzinfo=UTC)
SCOPE = RequestScope(key_id="k1", tags={"team": "ml", "project": "search", "feature": "qa"}, model="gpt-4o-mini")


def test_period_keys_are_calendar_utc():
    assert period_key("hour", NOW) == "2026-11-23T19"
    assert period_key("day", NOW) == "2026-11-23"
    assert period_key("month", NOW) == "2026-11"


def test_applicable_budgets_by_scope_and_value():
    rules = [
        BudgetConfig(name="g", scope="global", amount=Decimal(100)),
        BudgetConfig(name="t", scope="team", value="ml", amount=Decimal(10), period="month"),
        BudgetConfig(name="other", scope="team", value="web", amount=Decimal(10)),
        BudgetConfig(name="each-project", scope="project", amount=Decimal(5)),
        BudgetConfig(name="feature", scope="tag:feature", amount=Decimal(1)),
        BudgetConfig(name="per-request", scope="key", period="request", amount=Decimal("0.5")),
    ]
    applied = {b.rule.name: b for b in applicable_budgets(rules, SCOPE, NOW)}
    assert set(applied) == {"g", "t", "each-project", "feature", "per-request"}
    assert applied["t"].counter == "t|team=ml|2026-11"
    assert applied["each-project"].counter == "each-project|project=search|2026-11-23"
    assert applied["g"].cap == Decimal(100) * Decimal("1.10")
    assert applied["per-request"].counter is None and applied["per-request"].cap == Decimal("0.5")


@pytest.mark.parametrize(
    ("spent", "status"),
    [("74.99", "ok"), ("75", "warn"), ("89.99", "warn"), ("90", "review"), ("109.99", "review"), ("110", "block")],
)
def test_escalation_thresholds_at_the_boundaries(spent, status):
    rule = BudgetConfig(name="b", amount=Decimal(100))
    assert budget_status(rule, Decimal(spent)) == status


def test_reserve_is_all_or_nothing_and_settle_replaces_reservation():
    rules = [
        BudgetConfig(name="a", amount=Decimal(10), block=Decimal(1)),
        BudgetConfig(name="b", scope="team", amount=Decimal(3), block=Decimal(1)),
    ]
    applied = applicable_budgets(rules, SCOPE, NOW)
    counters = BudgetCounters()
    held = counters.try_reserve("r1", applied, Decimal("2.5"))
    assert held is not None
    assert counters.try_reserve("r2", applied, Decimal("0.6")) is None  # team budget would overflow
    assert counters.snapshot(applied[0].counter) == (Decimal(0), Decimal("2.5"))  # nothing half-reserved
    counters.settle(held, Decimal("1.25"))
    assert counters.snapshot(applied[1].counter) == (Decimal("1.25"), Decimal(0))
    assert counters.headroom(applied) == Decimal(3) - Decimal("1.25")


def test_max_affordable_output_tokens():
    assert max_affordable_output_tokens(Decimal("0.01"), Decimal("0.004"), Decimal("0.00001")) == 600
    assert max_affordable_output_tokens(Decimal("0.001"), Decimal("0.002"), Decimal("0.00001")) == 0


@settings(max_examples=200, deadline=None)
@given(
    cap=st.decimals(min_value=Decimal("0.01"), max_value=100, places=4),
    requests=st.lists(
        st.tuples(st.decimals(min_value=0, max_value=10, places=6), st.decimals(min_value=0, max_value=1, places=3)),
        min_size=1,
        max_size=60,
    ),
)
def test_spend_never_exceeds_the_cap(cap, requests):
    """Whatever the order of reservations and settlements, spent + reserved never exceeds the cap, as long
    as every actual cost is at most its worst case (actual = worst x fraction)."""
    rules = [BudgetConfig(name="hard", amount=cap, block=Decimal(1))]
    applied = applicable_budgets(rules, SCOPE, NOW)
    counters = BudgetCounters()
    held = []
    for index, (worst, fraction) in enumerate(requests):
        reservation = counters.try_reserve(str(index), applied, worst)
        if reservation is not None:
            held.append((reservation, worst * fraction))
        spent, reserved = counters.snapshot(applied[0].counter)
        assert spent + reserved <= cap
        if index % 3 == 2 and held:  # settle some while others are in flight
            reservation, actual = held.pop(0)
            counters.settle(reservation, actual)
    for reservation, actual in held:
        counters.settle(reservation, actual)
    spent, reserved = counters.snapshot(applied[0].counter)
    assert reserved == 0
    assert spent <= cap

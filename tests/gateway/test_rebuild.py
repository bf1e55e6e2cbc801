"""After a restart, budget counters are rebuilt from the ledger, open reservations charged at their worst
case: configured budgets AND keys' own budgets, never lower than the truth."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from margin.config import MarginConfig
from margin.gateway.config import BreakerConfig, BudgetConfig, GatewayConfig
from margin.gateway.state import build_gateway, key_budget_rules
from margin.keys import new_virtual_key
from margin.policy.budgets import counter_name
from margin.store.base import Reservation
from margin.store.sqlite import SQLiteLedger
from margin.usage import UsageEvent


def test_counters_rebuilt_for_config_and_key_budgets(tmp_path):
    db = tmp_path / "ledger.db"
    now = datetime.now(UTC)
    _, key = new_virtual_key(user="u", team="ml", project=None, tags={}, budget="1/day", models=())

    async def seed() -> None:
        ledger = SQLiteLedger(db)
        await asyncio.to_thread(ledger.create_key, key)
        await ledger.write_event(
            UsageEvent(
                event_id="e1",
                request_id="r1",
                attempt=0,
                started_at=now,
                finished_at=now,
                status="ok",
                endpoint="chat.completions",
                requested_model="gpt-4o-mini",
                served_model="gpt-4o-mini",
                key_id=key.key_id,
                tags={"team": "ml"},
                list_cost=Decimal("0.4"),
                effective_cost=Decimal("0.4"),
            )
        )
        # In flight when the gateway died: charged at its worst case on restart.
        await ledger.open_reservation(
            Reservation(
                reservation_id="res1",
                request_id="r2",
                scopes=(),
                amount=Decimal("0.3"),
                created_at=now,
                key_id=key.key_id,
                tags={"team": "ml"},
                endpoint="chat.completions",
                model="gpt-4o-mini",
            )
        )
        await ledger.aclose()

    asyncio.run(seed())
    team_rule = BudgetConfig(name="teams", scope="team", period="day", amount=Decimal(10))
    gw = build_gateway(MarginConfig(gateway=GatewayConfig(budgets=[team_rule])), database=db)
    try:
        (key_rule,) = key_budget_rules(key)
        assert gw.counters.local.spent(counter_name(key_rule, key.key_id, now)) == Decimal("0.7")
        assert gw.counters.local.spent(counter_name(team_rule, "ml", now)) == Decimal("0.7")
        assert gw.ledger.open_reservations() == []
    finally:
        asyncio.run(gw.aclose())


def _spend_event(event_id: str, team: str, cost: str, finished_at: datetime) -> UsageEvent:
    return UsageEvent(
        event_id=event_id,
        request_id=event_id,
        attempt=0,
        started_at=finished_at,
        finished_at=finished_at,
        status="ok",
        endpoint="chat.completions",
        requested_model="gpt-4o-mini",
        tags={"team": team},
        list_cost=Decimal(cost),
        effective_cost=Decimal(cost),
    )


def test_spend_breakers_survive_a_restart(tmp_path):
    """A runaway team's last-hour spend is read back at start-up: its breaker is open again at once, a quiet
    team's is not, and spend older than an hour does not count."""
    db = tmp_path / "ledger.db"
    now = datetime.now(UTC)

    async def seed() -> None:
        ledger = SQLiteLedger(db)
        await ledger.write_event(_spend_event("a1", "runaway", "4", now - timedelta(minutes=40)))
        await ledger.write_event(_spend_event("a2", "runaway", "3", now - timedelta(minutes=2)))
        await ledger.write_event(_spend_event("b1", "quiet", "9", now - timedelta(hours=2)))  # too old
        await ledger.write_event(_spend_event("b2", "quiet", "1", now - timedelta(minutes=10)))
        await ledger.aclose()

    asyncio.run(seed())
    rule = BreakerConfig(name="teams", scope="team", expected_hourly=Decimal(2), multiple=Decimal(3))  # 6 USD/h
    gw = build_gateway(MarginConfig(gateway=GatewayConfig(breakers=[rule])), database=db)
    try:
        now_mono = time.monotonic()
        runaway = gw.breaker.local.check("teams", "runaway", now_mono)
        quiet = gw.breaker.local.check("teams", "quiet", now_mono)
        assert runaway.open and runaway.spent_last_hour == Decimal(7)
        assert not quiet.open and quiet.spent_last_hour == Decimal(1)
        # The 40-minute-old spend leaves the window about 20 minutes from now, not at once.
        later = gw.breaker.local.check("teams", "runaway", now_mono + 25 * 60)
        assert later.spent_last_hour == Decimal(3)
    finally:
        asyncio.run(gw.aclose())

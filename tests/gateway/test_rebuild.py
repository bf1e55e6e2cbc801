"""After a restart, budget counters are rebuilt from the ledger, open reservations charged at their worst
case: configured budgets AND keys' own budgets, never lower than the truth."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal

from margin.config import MarginConfig
from margin.gateway.config import BudgetConfig, GatewayConfig
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
        assert gw.counters.spent(counter_name(key_rule, key.key_id, now)) == Decimal("0.7")
        assert gw.counters.spent(counter_name(team_rule, "ml", now)) == Decimal("0.7")
        assert gw.ledger.open_reservations() == []
    finally:
        asyncio.run(gw.aclose())

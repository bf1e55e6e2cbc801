"""``margin keys`` and ``margin spend`` against a real SQLite ledger in MARGIN_HOME."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from margin.keys import hash_key
from margin.store.sqlite import SQLiteLedger
from margin.usage import UsageEvent

from .test_cli_prices_cost import run


def test_keys_create_list_revoke(capsys, tmp_path):
    code, out, err = run(
        capsys,
        "keys",
        "create",
        "--user",
        "ann",
        "--team",
        "ml",
        "--tag",
        "env=prod",
        "--budget",
        "5/day",
        "--models",
        "gpt-4o-mini,gpt-4o",
    )
    assert code == 0 and out.startswith("mk-")
    secret = out.strip()
    assert "not shown again" in err
    code, out, _ = run(capsys, "keys", "list", "--json")
    keys = json.loads(out)
    assert len(keys) == 1 and keys[0]["user"] == "ann" and keys[0]["models"] == ["gpt-4o-mini", "gpt-4o"]
    assert secret not in out and hash_key(secret) not in out  # never the secret, never the hash
    code, out, _ = run(capsys, "keys", "revoke", keys[0]["prefix"])
    assert code == 0
    code, out, _ = run(capsys, "keys", "list", "--json")
    assert json.loads(out)[0]["revoked_at"] is not None


def test_keys_create_rejects_bad_budget(capsys):
    code, _, err = run(capsys, "keys", "create", "--team", "x", "--budget", "five/day")
    assert code == 2 and "--budget" in err


def test_spend_groups_and_filters(capsys, tmp_path, monkeypatch):
    home = tmp_path / "margin-home"
    home.mkdir(exist_ok=True)
    now = datetime.now(UTC)

    def event(team: str, cost: str, when: datetime) -> UsageEvent:
        return UsageEvent(
            event_id=f"e-{team}-{cost}",
            request_id=f"r-{team}-{cost}",
            attempt=0,
            started_at=when,
            finished_at=when,
            status="ok",
            endpoint="chat.completions",
            requested_model="m",
            served_model="m",
            tags={"team": team},
            input_tokens=10,
            output_tokens=5,
            list_cost=Decimal(cost),
            effective_cost=Decimal(cost),
        )

    async def write() -> None:
        ledger = SQLiteLedger(home / "ledger.db")
        for e in (event("ml", "0.001", now), event("ml", "0.002", now), event("web", "0.5", now - timedelta(days=10))):
            await ledger.write_event(e)
        await ledger.aclose()

    asyncio.run(write())
    code, out, _ = run(capsys, "spend", "--by", "team", "--json")
    rows = {r["group"]: r for r in json.loads(out)["rows"]}
    assert Decimal(rows["ml"]["effective_cost"]) == Decimal("0.003") and rows["ml"]["requests"] == 2
    code, out, _ = run(capsys, "spend", "--by", "team", "--since", "7d", "--json")
    assert {r["group"] for r in json.loads(out)["rows"]} == {"ml"}
    code, _, err = run(capsys, "spend", "--by", "colour")
    assert code == 2
    code, _, err = run(capsys, "spend", "--since", "last tuesday")
    assert code == 2 and "7d" in err

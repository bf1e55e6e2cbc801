"""Fixtures of the ledger tests: a fresh ledger file per test, and event and key factories."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from margin.keys import generate_key, hash_key, key_prefix
from margin.store.base import VirtualKey
from margin.store.sqlite import SQLiteLedger
from margin.usage import UsageEvent

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def event(number: int, **fields: Any) -> UsageEvent:
    values: dict[str, Any] = {
        "event_id": f"ev-{number}",
        "request_id": f"req-{number}",
        "attempt": 0,
        "started_at": T0,
        "finished_at": T0,
        "status": "ok",
        "endpoint": "chat.completions",
        "requested_model": "gpt-4o",
        "served_model": "gpt-4o",
        "provider": "openai",
        "usage_source": "upstream",
        "input_tokens": 100,
        "output_tokens": 10,
        "list_cost": Decimal("0.00035"),
        "effective_cost": Decimal("0.00035"),
    }
    values.update(fields)
    return UsageEvent(**values)


def new_key(key_id: str, **fields) -> tuple[str, VirtualKey]:
    secret = generate_key()
    values = {
        "key_id": key_id,
        "key_hash": hash_key(secret),
        "prefix": key_prefix(secret),
        "created_at": T0,
    }
    values.update(fields)
    return secret, VirtualKey(**values)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "ledger.db"


@pytest.fixture
def ledger(db_path: Path) -> Iterator[SQLiteLedger]:
    store = SQLiteLedger(db_path)
    yield store
    store.close()

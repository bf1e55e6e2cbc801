"""Fixtures of the ledger tests: a fresh ledger per test on each backend, and event and key factories.

``ledger`` and ``open_store`` are parametrized over SQLite and PostgreSQL (a fresh database per test on the
session's throwaway server, see tests/pg_server.py), so the contract tests run on both; ``sqlite_ledger`` is
for the few tests of SQLite's own mechanics (WAL, pragmas, its file)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
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
def sqlite_ledger(db_path: Path) -> Iterator[SQLiteLedger]:
    store = SQLiteLedger(db_path)
    yield store
    store.close()


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def database(backend: str, db_path: Path, request: pytest.FixtureRequest) -> str:
    """This test's ledger database: the SQLite file's path or the PostgreSQL URL."""
    return str(db_path) if backend == "sqlite" else request.getfixturevalue("pg_database")


@pytest.fixture
def open_store(backend: str, database: str) -> Iterator[Callable[..., Any]]:
    """Open this test's ledger (the same database at every call, as a restarted gateway would); every ledger
    opened is closed at the end."""
    opened: list[Any] = []

    def open_(**options: Any) -> Any:
        if backend == "sqlite":
            store = SQLiteLedger(database, **options)
        else:
            from margin.store.postgres import PostgresLedger

            store = PostgresLedger(database, **options)
        opened.append(store)
        return store

    yield open_
    for store in opened:
        store.close()


@pytest.fixture
def ledger(open_store: Callable[..., Any]) -> Any:
    return open_store()


@pytest.fixture
def count_rows(backend: str, database: str) -> Callable[..., int]:
    """Rows of a table, counted on a connection of its own (works after the ledger is closed)."""

    def count(table: str = "usage_events") -> int:
        if backend == "sqlite":
            with sqlite3.connect(database) as conn:
                return conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
        import psycopg

        with psycopg.connect(database) as conn:
            return conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]  # type: ignore[index]

    return count

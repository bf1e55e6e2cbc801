"""Named migrations: applied once each, recorded, transactional; later ones run once."""

from __future__ import annotations

import sqlite3

import pytest

from margin.store.base import LedgerError
from margin.store.migrations import MIGRATIONS, applied_migrations, apply_migrations, split_statements
from margin.store.sqlite import SQLiteLedger

NAMES = [name for name, _ in MIGRATIONS]


def connect(path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


def test_open_applies_every_migration_once_and_records_it(db_path):
    SQLiteLedger(db_path).close()
    with connect(db_path) as conn:
        recorded = conn.execute("SELECT name, applied_at FROM migrations ORDER BY rowid").fetchall()
        assert [name for name, _ in recorded] == NAMES
        assert all(applied_at for _, applied_at in recorded)
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"usage_events", "reservations", "keys", "alerts", "migrations"} <= tables
    # Reopening is a no-op: nothing re-applied, the records are untouched.
    SQLiteLedger(db_path).close()
    with connect(db_path) as conn:
        assert conn.execute("SELECT name, applied_at FROM migrations ORDER BY rowid").fetchall() == recorded
        assert apply_migrations(conn) == []


def test_schema_has_exact_money_columns_and_indexes(db_path):
    SQLiteLedger(db_path).close()
    with connect(db_path) as conn:
        columns = {row[1]: row[2] for row in conn.execute("PRAGMA table_info(usage_events)")}
        for money in ("list_cost", "effective_cost", "reserved_cost"):
            assert columns[money] == "TEXT"
            assert columns[f"{money}_nanos"] == "INTEGER"
        index_names = conn.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'usage_events'")
        indexed = {
            conn.execute(f"PRAGMA index_info({name})").fetchone()[2]
            for (name,) in index_names.fetchall()
            if not name.startswith("sqlite_autoindex")
        }
        assert {"finished_at", "key_id", "task_id", "request_id"} <= indexed
        key_indexes = conn.execute("PRAGMA index_list(keys)").fetchall()
        unique_columns = {conn.execute(f"PRAGMA index_info({row[1]})").fetchone()[2] for row in key_indexes if row[2]}
        assert "key_hash" in unique_columns
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_migration_added_later_runs_exactly_once(db_path):
    SQLiteLedger(db_path).close()
    later = [*MIGRATIONS, ("m900_extra", "CREATE TABLE extra (x INTEGER); INSERT INTO extra VALUES (1);")]
    SQLiteLedger(db_path, migrations=later).close()
    SQLiteLedger(db_path, migrations=later).close()
    with connect(db_path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM extra").fetchone()[0] == 1
        assert applied_migrations(conn) == [*NAMES, "m900_extra"]


def test_a_failing_migration_is_rolled_back_and_not_recorded(db_path):
    SQLiteLedger(db_path).close()
    broken = [*MIGRATIONS, ("m901_broken", "CREATE TABLE half (x); INSERT INTO missing_table VALUES (1);")]
    with pytest.raises(LedgerError, match="missing_table"):
        SQLiteLedger(db_path, migrations=broken)
    with connect(db_path) as conn:
        assert "m901_broken" not in applied_migrations(conn)
        assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'half'").fetchone() is None


def test_duplicate_migration_names_are_refused(db_path):
    with connect(db_path) as conn, pytest.raises(ValueError, match="unique"):
        apply_migrations(conn, [("m1", "CREATE TABLE a (x)"), ("m1", "CREATE TABLE b (x)")])


def test_split_statements_keeps_semicolons_inside_strings_and_triggers():
    sql = """
        CREATE TABLE t (x TEXT);
        INSERT INTO t VALUES ('a;b');
        CREATE TRIGGER tr AFTER INSERT ON t BEGIN INSERT INTO t VALUES ('c'); END;
    """
    statements = split_statements(sql)
    assert len(statements) == 3
    assert "'a;b'" in statements[1]
    assert statements[2].endswith("END;")
    with pytest.raises(ValueError, match="incomplete"):
        split_statements("CREATE TABLE t (x TEXT); INSERT INTO t VALUES ('open")

"""Named schema migrations of the SQLite ledger, in the style of simonw/llm.

:data:`MIGRATIONS` is an ordered list of ``(name, SQL)``. :func:`apply_migrations` runs, in order, every
migration whose name is not yet in the ``migrations(name, applied_at)`` table, each in its own transaction
together with the row that records it, so a migration is applied exactly once even if two processes open the
ledger at the same moment (``BEGIN IMMEDIATE`` serializes them). Never edit or reorder a released
migration: append a new one.

Storage conventions (see :mod:`margin.store.sqlite`):

* times are UTC ISO-8601 text of fixed width (``2026-11-23T19:00:00.000000+00:00``), so text order is time
  order and range filters use the indexes;
* money is kept twice: the exact Decimal as text (``list_cost``) and integer nano-dollars rounded half-even
  (``list_cost_nanos``) for fast exact sums in SQL;
* ``tags`` and other structured values are JSON text (``json_extract`` works on them).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime

__all__ = ["MIGRATIONS", "Migration", "applied_migrations", "apply_migrations", "split_statements"]

Migration = tuple[str, str]

MIGRATIONS: list[Migration] = [
    (
        "m001_usage_events",
        """
        CREATE TABLE usage_events (
            event_id TEXT PRIMARY KEY,
            request_id TEXT NOT NULL,
            attempt INTEGER NOT NULL,
            started_at TEXT NOT NULL,
            finished_at TEXT NOT NULL,
            status TEXT NOT NULL,
            endpoint TEXT NOT NULL,
            requested_model TEXT NOT NULL,
            served_model TEXT,
            provider TEXT,
            key_id TEXT,
            tags TEXT NOT NULL DEFAULT '{}',
            task_id TEXT,
            input_tokens INTEGER NOT NULL DEFAULT 0,
            cache_read_tokens INTEGER NOT NULL DEFAULT 0,
            cache_write_tokens INTEGER NOT NULL DEFAULT 0,
            output_tokens INTEGER NOT NULL DEFAULT 0,
            reasoning_tokens INTEGER NOT NULL DEFAULT 0,
            usage_source TEXT NOT NULL,
            list_cost TEXT NOT NULL,
            list_cost_nanos INTEGER NOT NULL,
            effective_cost TEXT NOT NULL,
            effective_cost_nanos INTEGER NOT NULL,
            price_source TEXT,
            latency_ms INTEGER,
            ttft_ms INTEGER,
            error_type TEXT,
            error_message TEXT,
            retries INTEGER NOT NULL DEFAULT 0,
            stream INTEGER NOT NULL DEFAULT 0,
            route TEXT,
            cache TEXT,
            fallback_from TEXT,
            max_tokens INTEGER,
            reserved_cost TEXT NOT NULL DEFAULT '0',
            reserved_cost_nanos INTEGER NOT NULL DEFAULT 0
        );
        CREATE INDEX usage_events_finished_at ON usage_events(finished_at);
        CREATE INDEX usage_events_key_id ON usage_events(key_id, finished_at);
        CREATE INDEX usage_events_task_id ON usage_events(task_id);
        CREATE INDEX usage_events_request_id ON usage_events(request_id);
        """,
    ),
    (
        "m002_reservations",
        """
        CREATE TABLE reservations (
            reservation_id TEXT PRIMARY KEY,
            request_id TEXT NOT NULL,
            scopes TEXT NOT NULL,
            amount TEXT NOT NULL,
            amount_nanos INTEGER NOT NULL,
            created_at TEXT NOT NULL,
            expires_at TEXT,
            key_id TEXT,
            tags TEXT NOT NULL DEFAULT '{}',
            endpoint TEXT,
            model TEXT
        );
        CREATE INDEX reservations_expires_at ON reservations(expires_at);
        """,
    ),
    (
        "m003_keys",
        """
        CREATE TABLE keys (
            key_id TEXT PRIMARY KEY,
            key_hash TEXT NOT NULL UNIQUE,
            prefix TEXT NOT NULL,
            user TEXT,
            team TEXT,
            project TEXT,
            tags TEXT NOT NULL DEFAULT '{}',
            budget TEXT,
            models TEXT NOT NULL DEFAULT '[]',
            created_at TEXT NOT NULL,
            revoked_at TEXT
        );
        CREATE INDEX keys_prefix ON keys(prefix);
        """,
    ),
    (
        "m004_alerts",
        """
        CREATE TABLE alerts (
            alert_id TEXT PRIMARY KEY,
            created_at TEXT NOT NULL,
            kind TEXT NOT NULL,
            scope TEXT,
            message TEXT NOT NULL,
            data TEXT NOT NULL DEFAULT '{}'
        );
        CREATE INDEX alerts_created_at ON alerts(created_at);
        """,
    ),
    (
        # The reservation an event settled: start-up recovery of the reservation journal (store/journal.py)
        # matches journaled reservations against it (no index: recovery scans events by finished_at).
        "m005_usage_events_reservation_id",
        """
        ALTER TABLE usage_events ADD COLUMN reservation_id TEXT;
        """,
    ),
    (
        # Cost-reduction levers: the avoided cost of a cache hit (exact text + nano-dollars, like the other
        # money columns) and each lever's decision as JSON.
        "m006_usage_events_levers",
        """
        ALTER TABLE usage_events ADD COLUMN avoided_cost TEXT NOT NULL DEFAULT '0';
        ALTER TABLE usage_events ADD COLUMN avoided_cost_nanos INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE usage_events ADD COLUMN decisions TEXT NOT NULL DEFAULT '{}';
        """,
    ),
    (
        # Shared costs that are not per request (GPU instances, platform fees, engineering time), per month,
        # entered with `margin costs add`; allocated over teams etc. by the insights reports.
        "m007_shared_costs",
        """
        CREATE TABLE shared_costs (
            name TEXT NOT NULL,
            period TEXT NOT NULL,
            category TEXT NOT NULL,
            amount TEXT NOT NULL,
            amount_nanos INTEGER NOT NULL,
            note TEXT,
            created_at TEXT NOT NULL,
            PRIMARY KEY (name, period)
        );
        """,
    ),
    (
        # Outcomes of tasks (requests grouped by X-Margin-Task-Id), for the cost per successful task.
        "m008_task_outcomes",
        """
        CREATE TABLE task_outcomes (
            task_id TEXT PRIMARY KEY,
            outcome TEXT NOT NULL,
            note TEXT,
            key_id TEXT,
            recorded_at TEXT NOT NULL
        );
        """,
    ),
    (
        # Hourly rollups maintained as events arrive (a trigger in the same transaction as the insert), so
        # reports read thousands of rows instead of millions. ``team`` is the team tag, pulled out once at
        # write time so reports group by a column instead of parsing JSON per row. Money as integer
        # nano-dollars (the ledger's nanos columns, rounded half-even per event); the exact per-event text
        # stays in usage_events.
        "m009_rollup_hourly",
        """
        CREATE TABLE rollup_hourly (
            hour TEXT NOT NULL,
            served_model TEXT NOT NULL,
            status TEXT NOT NULL,
            tags TEXT NOT NULL,
            team TEXT,
            requests INTEGER NOT NULL,
            input_tokens INTEGER NOT NULL,
            cache_read_tokens INTEGER NOT NULL,
            cache_write_tokens INTEGER NOT NULL,
            output_tokens INTEGER NOT NULL,
            list_cost_nanos INTEGER NOT NULL,
            effective_cost_nanos INTEGER NOT NULL,
            avoided_cost_nanos INTEGER NOT NULL,
            PRIMARY KEY (hour, served_model, status, tags)
        ) WITHOUT ROWID;
        INSERT INTO rollup_hourly
            SELECT substr(finished_at, 1, 13), COALESCE(served_model, ''), status, tags,
                   json_extract(tags, '$.team'), COUNT(*),
                   SUM(input_tokens), SUM(cache_read_tokens), SUM(cache_write_tokens), SUM(output_tokens),
                   SUM(list_cost_nanos), SUM(effective_cost_nanos), SUM(avoided_cost_nanos)
            FROM usage_events GROUP BY 1, 2, 3, 4;
        CREATE TRIGGER usage_events_rollup AFTER INSERT ON usage_events BEGIN
            INSERT INTO rollup_hourly VALUES (
                substr(NEW.finished_at, 1, 13), COALESCE(NEW.served_model, ''), NEW.status, NEW.tags,
                json_extract(NEW.tags, '$.team'), 1,
                NEW.input_tokens, NEW.cache_read_tokens, NEW.cache_write_tokens, NEW.output_tokens,
                NEW.list_cost_nanos, NEW.effective_cost_nanos, NEW.avoided_cost_nanos
            )
            ON CONFLICT (hour, served_model, status, tags) DO UPDATE SET
                requests = requests + 1,
                input_tokens = input_tokens + excluded.input_tokens,
                cache_read_tokens = cache_read_tokens + excluded.cache_read_tokens,
                cache_write_tokens = cache_write_tokens + excluded.cache_write_tokens,
                output_tokens = output_tokens + excluded.output_tokens,
                list_cost_nanos = list_cost_nanos + excluded.list_cost_nanos,
                effective_cost_nanos = effective_cost_nanos + excluded.effective_cost_nanos,
                avoided_cost_nanos = avoided_cost_nanos + excluded.avoided_cost_nanos;
        END;
        """,
    ),
    (
        # Attempts on another route than the request's first (provider fallbacks, cascade escalations) counted
        # in the rollups, so the anomaly watch can compare fallback rates without scanning events.
        "m010_rollup_fallbacks",
        """
        ALTER TABLE rollup_hourly ADD COLUMN fallback_events INTEGER NOT NULL DEFAULT 0;
        UPDATE rollup_hourly SET fallback_events = f.n FROM (
            SELECT substr(finished_at, 1, 13) AS hour, COALESCE(served_model, '') AS served_model, status, tags,
                   COUNT(*) AS n
            FROM usage_events WHERE fallback_from IS NOT NULL GROUP BY 1, 2, 3, 4
        ) AS f
        WHERE rollup_hourly.hour = f.hour AND rollup_hourly.served_model = f.served_model
          AND rollup_hourly.status = f.status AND rollup_hourly.tags = f.tags;
        DROP TRIGGER usage_events_rollup;
        CREATE TRIGGER usage_events_rollup AFTER INSERT ON usage_events BEGIN
            INSERT INTO rollup_hourly VALUES (
                substr(NEW.finished_at, 1, 13), COALESCE(NEW.served_model, ''), NEW.status, NEW.tags,
                json_extract(NEW.tags, '$.team'), 1,
                NEW.input_tokens, NEW.cache_read_tokens, NEW.cache_write_tokens, NEW.output_tokens,
                NEW.list_cost_nanos, NEW.effective_cost_nanos, NEW.avoided_cost_nanos,
                NEW.fallback_from IS NOT NULL
            )
            ON CONFLICT (hour, served_model, status, tags) DO UPDATE SET
                requests = requests + 1,
                input_tokens = input_tokens + excluded.input_tokens,
                cache_read_tokens = cache_read_tokens + excluded.cache_read_tokens,
                cache_write_tokens = cache_write_tokens + excluded.cache_write_tokens,
                output_tokens = output_tokens + excluded.output_tokens,
                list_cost_nanos = list_cost_nanos + excluded.list_cost_nanos,
                effective_cost_nanos = effective_cost_nanos + excluded.effective_cost_nanos,
                avoided_cost_nanos = avoided_cost_nanos + excluded.avoided_cost_nanos,
                fallback_events = fallback_events + excluded.fallback_events;
        END;
        """,
    ),
    (
        # The request's exact-cache key on every event (repeats are countable without the text), and the
        # opt-in store of redacted request bodies (gateway.prompt_retention), purged after its retention days.
        "m011_prompt_hashes",
        """
        ALTER TABLE usage_events ADD COLUMN prompt_hash TEXT;
        CREATE TABLE retained_prompts (
            request_id TEXT PRIMARY KEY,
            prompt_hash TEXT NOT NULL,
            created_at TEXT NOT NULL,
            endpoint TEXT NOT NULL,
            model TEXT NOT NULL,
            body TEXT NOT NULL
        );
        CREATE INDEX retained_prompts_created_at ON retained_prompts (created_at);
        CREATE INDEX retained_prompts_hash ON retained_prompts (prompt_hash);
        """,
    ),
]

_MIGRATIONS_TABLE = "CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)"


def split_statements(sql: str) -> list[str]:
    """Split a script into complete statements (semicolons inside strings or triggers stay put)."""
    statements: list[str] = []
    buffer = ""
    for piece in sql.split(";"):
        buffer += piece + ";"
        if sqlite3.complete_statement(buffer):
            if buffer.strip(" \t\r\n;"):
                statements.append(buffer.strip())
            buffer = ""
    if buffer.strip(" \t\r\n;"):
        raise ValueError(f"incomplete SQL statement at the end of a migration: {buffer.strip()[:80]!r}")
    return statements


def applied_migrations(conn: sqlite3.Connection) -> list[str]:
    """Names of the migrations recorded in ``conn``'s database, in the order they were applied."""
    exists = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'migrations'").fetchone()
    if not exists:
        return []
    return [row[0] for row in conn.execute("SELECT name FROM migrations ORDER BY applied_at, rowid")]


def apply_migrations(conn: sqlite3.Connection, migrations: Sequence[Migration] = MIGRATIONS) -> list[str]:
    """Apply every migration not yet recorded; return the names applied now (empty when up to date).

    ``conn`` must be in autocommit mode (``isolation_level=None``): transactions are explicit here.
    """
    names = [name for name, _ in migrations]
    if len(set(names)) != len(names):
        raise ValueError("migration names must be unique")
    if conn.in_transaction:
        raise ValueError("apply_migrations needs a connection outside any transaction")
    conn.execute(_MIGRATIONS_TABLE)
    already = set(applied_migrations(conn))
    applied_now: list[str] = []
    for name, sql in migrations:
        if name in already:
            continue
        statements = split_statements(sql)
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Checked inside the write lock: another process may have applied it since we last looked.
            if conn.execute("SELECT 1 FROM migrations WHERE name = ?", (name,)).fetchone():
                conn.execute("ROLLBACK")
                continue
            for statement in statements:
                conn.execute(statement)
            conn.execute(
                "INSERT INTO migrations (name, applied_at) VALUES (?, ?)",
                (name, datetime.now(UTC).isoformat(timespec="microseconds")),
            )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        applied_now.append(name)
    return applied_now

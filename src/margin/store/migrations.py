"""Named schema migrations of the ledger, SQLite and PostgreSQL alike, in the style of simonw/llm.

:data:`MIGRATIONS` is ONE ordered list of ``(name, sql)``: ``sql`` is either a string run as it is on both
databases (portable SQL such as ``ALTER TABLE t ADD COLUMN c TEXT``) or :class:`Dialects` with one script per
database where they differ (types, triggers, partitioning). Appending a migration is a one-place change: add
one entry at the end. Never edit or reorder a released migration: append a new one.

Each migration whose name is not yet in the ``migrations(name, applied_at)`` table runs in its own transaction
together with the row that records it, so it is applied exactly once even when two processes open the ledger
at the same moment: on SQLite ``BEGIN IMMEDIATE`` serializes them (:func:`apply_migrations`), on PostgreSQL a
transaction-level advisory lock does (:mod:`margin.store._pg_schema`). A migration that fails is rolled back
and not recorded.

Storage conventions:

* SQLite: times are UTC ISO-8601 text of fixed width (``2026-11-23T19:00:00.000000+00:00``), so text order is
  time order and range filters use the indexes; money is kept twice: the exact Decimal as text
  (``list_cost``) and integer nano-dollars rounded half-even (``list_cost_nanos``) for fast exact sums in SQL;
  ``tags`` and other structured values are JSON text (``json_extract`` works on them).
* PostgreSQL: times are ``timestamptz``; money is ``numeric`` (exact, any scale) plus the same ``bigint``
  nano-dollars; structured values are ``jsonb`` (tags with a GIN index for containment filters);
  ``usage_events`` is partitioned by month of ``finished_at`` (retention drops whole months).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

__all__ = [
    "MIGRATIONS",
    "Dialect",
    "Dialects",
    "Migration",
    "applied_migrations",
    "apply_migrations",
    "migration_sql",
    "split_statements",
]

Dialect = Literal["sqlite", "postgres"]


@dataclass(frozen=True)
class Dialects:
    """The SQL of one migration for each database, where one script cannot serve both."""

    sqlite: str
    postgres: str


Migration = tuple[str, "str | Dialects"]

# An event's effective cost text that may not be a whole number of nano-dollars (SQLite): the condition of the
# m012 partial index, and of the queries that use it (they must repeat it word for word). Never change it.
SUB_NANO_COST = (
    "(effective_cost LIKE '%E%' OR effective_cost LIKE '%e%' "
    "OR (instr(effective_cost, '.') > 0 AND length(effective_cost) - instr(effective_cost, '.') > 9))"
)


def migration_sql(migration: Migration, dialect: Dialect) -> str:
    """The script of ``migration`` for ``dialect`` (a plain string serves both)."""
    _name, sql = migration
    if isinstance(sql, Dialects):
        return sql.sqlite if dialect == "sqlite" else sql.postgres
    return sql


def check_names(migrations: Sequence[Migration]) -> None:
    names = [name for name, _ in migrations]
    if len(set(names)) != len(names):
        raise ValueError("migration names must be unique")


MIGRATIONS: list[Migration] = [
    (
        "m001_usage_events",
        Dialects(
            sqlite="""
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
            postgres="""
        CREATE TABLE usage_events (
            event_id TEXT NOT NULL,
            request_id TEXT NOT NULL,
            attempt INTEGER NOT NULL,
            started_at TIMESTAMPTZ NOT NULL,
            finished_at TIMESTAMPTZ NOT NULL,
            status TEXT NOT NULL,
            endpoint TEXT NOT NULL,
            requested_model TEXT NOT NULL,
            served_model TEXT,
            provider TEXT,
            key_id TEXT,
            tags JSONB NOT NULL DEFAULT '{}',
            task_id TEXT,
            input_tokens BIGINT NOT NULL DEFAULT 0,
            cache_read_tokens BIGINT NOT NULL DEFAULT 0,
            cache_write_tokens BIGINT NOT NULL DEFAULT 0,
            output_tokens BIGINT NOT NULL DEFAULT 0,
            reasoning_tokens BIGINT NOT NULL DEFAULT 0,
            usage_source TEXT NOT NULL,
            list_cost NUMERIC NOT NULL,
            list_cost_nanos BIGINT NOT NULL,
            effective_cost NUMERIC NOT NULL,
            effective_cost_nanos BIGINT NOT NULL,
            price_source TEXT,
            latency_ms INTEGER,
            ttft_ms INTEGER,
            error_type TEXT,
            error_message TEXT,
            retries INTEGER NOT NULL DEFAULT 0,
            stream BOOLEAN NOT NULL DEFAULT FALSE,
            route TEXT,
            cache TEXT,
            fallback_from TEXT,
            max_tokens INTEGER,
            reserved_cost NUMERIC NOT NULL DEFAULT 0,
            reserved_cost_nanos BIGINT NOT NULL DEFAULT 0,
            -- Insertion order, the tie-break of "newest first" (SQLite's rowid).
            seq BIGSERIAL NOT NULL,
            -- A partitioned table's keys must include the partition key: event ids are unique per instant.
            PRIMARY KEY (event_id, finished_at)
        ) PARTITION BY RANGE (finished_at);
        CREATE INDEX usage_events_finished_at ON usage_events (finished_at);
        CREATE INDEX usage_events_key_id ON usage_events (key_id, finished_at);
        CREATE INDEX usage_events_task_id ON usage_events (task_id);
        CREATE INDEX usage_events_request_id ON usage_events (request_id);
        -- Tag filters (tags @> '{"team": "ml"}') use this index.
        CREATE INDEX usage_events_tags ON usage_events USING GIN (tags jsonb_path_ops);
        -- One partition per UTC month, created on demand (the ledger calls this before writing into a month
        -- it has not seen, outside its write transaction); retention detaches and drops whole months.
        CREATE FUNCTION margin_ensure_month_partition(at TIMESTAMPTZ) RETURNS TEXT LANGUAGE plpgsql AS $$
        DECLARE
            month_start TIMESTAMP := date_trunc('month', at AT TIME ZONE 'UTC');
            part_name TEXT := 'usage_events_' || to_char(month_start, 'YYYY_MM');
        BEGIN
            IF to_regclass(part_name) IS NULL THEN
                PERFORM pg_advisory_xact_lock(1835102823, 1);  -- two processes creating the same month
                BEGIN
                    EXECUTE format(
                        'CREATE TABLE %I PARTITION OF usage_events FOR VALUES FROM (%L) TO (%L)',
                        part_name,
                        month_start AT TIME ZONE 'UTC',
                        (month_start + INTERVAL '1 month') AT TIME ZONE 'UTC'
                    );
                EXCEPTION WHEN duplicate_table THEN
                    NULL;  -- created by the other process while this one waited (a cached catalog missed it)
                END;
            END IF;
            RETURN part_name;
        END
        $$;
        """,
        ),
    ),
    (
        "m002_reservations",
        Dialects(
            sqlite="""
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
            postgres="""
        CREATE TABLE reservations (
            reservation_id TEXT PRIMARY KEY,
            request_id TEXT NOT NULL,
            scopes JSONB NOT NULL,
            amount NUMERIC NOT NULL,
            amount_nanos BIGINT NOT NULL,
            created_at TIMESTAMPTZ NOT NULL,
            expires_at TIMESTAMPTZ,
            key_id TEXT,
            tags JSONB NOT NULL DEFAULT '{}',
            endpoint TEXT,
            model TEXT,
            -- The ledger instance (gateway process) that holds the reservation open; it holds an advisory lock
            -- on this number while it lives, so start-up recovery charges only reservations of gone owners.
            owner INTEGER NOT NULL DEFAULT 0
        );
        CREATE INDEX reservations_expires_at ON reservations (expires_at);
        CREATE INDEX reservations_owner ON reservations (owner);
        """,
        ),
    ),
    (
        "m003_keys",
        Dialects(
            sqlite="""
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
            postgres="""
        CREATE TABLE keys (
            key_id TEXT PRIMARY KEY,
            key_hash TEXT NOT NULL UNIQUE,
            prefix TEXT NOT NULL,
            "user" TEXT,
            team TEXT,
            project TEXT,
            tags JSONB NOT NULL DEFAULT '{}',
            budget TEXT,
            models JSONB NOT NULL DEFAULT '[]',
            created_at TIMESTAMPTZ NOT NULL,
            revoked_at TIMESTAMPTZ
        );
        CREATE INDEX keys_prefix ON keys (prefix);
        """,
        ),
    ),
    (
        "m004_alerts",
        Dialects(
            sqlite="""
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
            postgres="""
        CREATE TABLE alerts (
            alert_id TEXT PRIMARY KEY,
            created_at TIMESTAMPTZ NOT NULL,
            kind TEXT NOT NULL,
            scope TEXT,
            message TEXT NOT NULL,
            data JSONB NOT NULL DEFAULT '{}',
            seq BIGSERIAL NOT NULL
        );
        CREATE INDEX alerts_created_at ON alerts (created_at);
        """,
        ),
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
        Dialects(
            sqlite="""
        ALTER TABLE usage_events ADD COLUMN avoided_cost TEXT NOT NULL DEFAULT '0';
        ALTER TABLE usage_events ADD COLUMN avoided_cost_nanos INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE usage_events ADD COLUMN decisions TEXT NOT NULL DEFAULT '{}';
        """,
            postgres="""
        ALTER TABLE usage_events ADD COLUMN avoided_cost NUMERIC NOT NULL DEFAULT 0;
        ALTER TABLE usage_events ADD COLUMN avoided_cost_nanos BIGINT NOT NULL DEFAULT 0;
        ALTER TABLE usage_events ADD COLUMN decisions JSONB NOT NULL DEFAULT '{}';
        """,
        ),
    ),
    (
        # Shared costs that are not per request (GPU instances, platform fees, engineering time), per month,
        # entered with `margin costs add`; allocated over teams etc. by the insights reports.
        "m007_shared_costs",
        Dialects(
            sqlite="""
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
            postgres="""
        CREATE TABLE shared_costs (
            name TEXT NOT NULL,
            period TEXT NOT NULL,
            category TEXT NOT NULL,
            amount NUMERIC NOT NULL,
            amount_nanos BIGINT NOT NULL,
            note TEXT,
            created_at TIMESTAMPTZ NOT NULL,
            PRIMARY KEY (name, period)
        );
        """,
        ),
    ),
    (
        # Outcomes of tasks (requests grouped by X-Margin-Task-Id), for the cost per successful task.
        "m008_task_outcomes",
        Dialects(
            sqlite="""
        CREATE TABLE task_outcomes (
            task_id TEXT PRIMARY KEY,
            outcome TEXT NOT NULL,
            note TEXT,
            key_id TEXT,
            recorded_at TEXT NOT NULL
        );
        """,
            postgres="""
        CREATE TABLE task_outcomes (
            task_id TEXT PRIMARY KEY,
            outcome TEXT NOT NULL,
            note TEXT,
            key_id TEXT,
            recorded_at TIMESTAMPTZ NOT NULL
        );
        """,
        ),
    ),
    (
        # Hourly rollups maintained as events arrive (a trigger in the same transaction as the insert), so
        # reports read thousands of rows instead of millions. ``team`` is the team tag, pulled out once at
        # write time so reports group by a column instead of parsing JSON per row. Money as integer
        # nano-dollars (the ledger's nanos columns, rounded half-even per event); the exact per-event text
        # stays in usage_events.
        "m009_rollup_hourly",
        Dialects(
            sqlite="""
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
            postgres="""
        CREATE TABLE rollup_hourly (
            hour TIMESTAMPTZ NOT NULL,
            served_model TEXT NOT NULL,
            status TEXT NOT NULL,
            tags JSONB NOT NULL,
            team TEXT,
            requests BIGINT NOT NULL,
            input_tokens BIGINT NOT NULL,
            cache_read_tokens BIGINT NOT NULL,
            cache_write_tokens BIGINT NOT NULL,
            output_tokens BIGINT NOT NULL,
            list_cost_nanos BIGINT NOT NULL,
            effective_cost_nanos BIGINT NOT NULL,
            avoided_cost_nanos BIGINT NOT NULL,
            PRIMARY KEY (hour, served_model, status, tags)
        );
        INSERT INTO rollup_hourly
            SELECT date_trunc('hour', finished_at, 'UTC'), COALESCE(served_model, ''), status, tags,
                   tags->>'team', COUNT(*),
                   SUM(input_tokens), SUM(cache_read_tokens), SUM(cache_write_tokens), SUM(output_tokens),
                   SUM(list_cost_nanos), SUM(effective_cost_nanos), SUM(avoided_cost_nanos)
            FROM usage_events GROUP BY 1, 2, 3, 4;
        -- Once per INSERT or COPY statement, not per row: the statement's rows are summed per rollup cell and
        -- upserted in key order. ON CONFLICT DO UPDATE adds to the latest committed row, so writers in several
        -- processes never lose an increment; the key order keeps two writers' row locks from deadlocking.
        CREATE FUNCTION margin_rollup_inserted_events() RETURNS TRIGGER LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO rollup_hourly AS r
                SELECT date_trunc('hour', finished_at, 'UTC'), COALESCE(served_model, ''), status, tags,
                       tags->>'team', COUNT(*),
                       SUM(input_tokens), SUM(cache_read_tokens), SUM(cache_write_tokens), SUM(output_tokens),
                       SUM(list_cost_nanos), SUM(effective_cost_nanos), SUM(avoided_cost_nanos)
                FROM inserted GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
            ON CONFLICT (hour, served_model, status, tags) DO UPDATE SET
                requests = r.requests + excluded.requests,
                input_tokens = r.input_tokens + excluded.input_tokens,
                cache_read_tokens = r.cache_read_tokens + excluded.cache_read_tokens,
                cache_write_tokens = r.cache_write_tokens + excluded.cache_write_tokens,
                output_tokens = r.output_tokens + excluded.output_tokens,
                list_cost_nanos = r.list_cost_nanos + excluded.list_cost_nanos,
                effective_cost_nanos = r.effective_cost_nanos + excluded.effective_cost_nanos,
                avoided_cost_nanos = r.avoided_cost_nanos + excluded.avoided_cost_nanos;
            RETURN NULL;
        END
        $$;
        CREATE TRIGGER usage_events_rollup AFTER INSERT ON usage_events
            REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT EXECUTE FUNCTION margin_rollup_inserted_events();
        """,
        ),
    ),
    (
        # Attempts on another route than the request's first (provider fallbacks, cascade escalations) counted
        # in the rollups, so the anomaly watch can compare fallback rates without scanning events.
        "m010_rollup_fallbacks",
        Dialects(
            sqlite="""
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
            postgres="""
        ALTER TABLE rollup_hourly ADD COLUMN fallback_events BIGINT NOT NULL DEFAULT 0;
        UPDATE rollup_hourly AS r SET fallback_events = f.n FROM (
            SELECT date_trunc('hour', finished_at, 'UTC') AS hour, COALESCE(served_model, '') AS served_model,
                   status, tags, COUNT(*) AS n
            FROM usage_events WHERE fallback_from IS NOT NULL GROUP BY 1, 2, 3, 4
        ) AS f
        WHERE r.hour = f.hour AND r.served_model = f.served_model AND r.status = f.status AND r.tags = f.tags;
        CREATE OR REPLACE FUNCTION margin_rollup_inserted_events() RETURNS TRIGGER LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO rollup_hourly AS r
                SELECT date_trunc('hour', finished_at, 'UTC'), COALESCE(served_model, ''), status, tags,
                       tags->>'team', COUNT(*),
                       SUM(input_tokens), SUM(cache_read_tokens), SUM(cache_write_tokens), SUM(output_tokens),
                       SUM(list_cost_nanos), SUM(effective_cost_nanos), SUM(avoided_cost_nanos),
                       COUNT(*) FILTER (WHERE fallback_from IS NOT NULL)
                FROM inserted GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
            ON CONFLICT (hour, served_model, status, tags) DO UPDATE SET
                requests = r.requests + excluded.requests,
                input_tokens = r.input_tokens + excluded.input_tokens,
                cache_read_tokens = r.cache_read_tokens + excluded.cache_read_tokens,
                cache_write_tokens = r.cache_write_tokens + excluded.cache_write_tokens,
                output_tokens = r.output_tokens + excluded.output_tokens,
                list_cost_nanos = r.list_cost_nanos + excluded.list_cost_nanos,
                effective_cost_nanos = r.effective_cost_nanos + excluded.effective_cost_nanos,
                avoided_cost_nanos = r.avoided_cost_nanos + excluded.avoided_cost_nanos,
                fallback_events = r.fallback_events + excluded.fallback_events;
            RETURN NULL;
        END
        $$;
        """,
        ),
    ),
    (
        # The request's exact-cache key on every event (repeats are countable without the text), and the
        # opt-in store of redacted request bodies (gateway.prompt_retention), purged after its retention days.
        "m011_prompt_hashes",
        Dialects(
            sqlite="""
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
            postgres="""
        ALTER TABLE usage_events ADD COLUMN prompt_hash TEXT;
        CREATE TABLE retained_prompts (
            request_id TEXT PRIMARY KEY,
            prompt_hash TEXT NOT NULL,
            created_at TIMESTAMPTZ NOT NULL,
            endpoint TEXT NOT NULL,
            model TEXT NOT NULL,
            body TEXT NOT NULL
        );
        CREATE INDEX retained_prompts_created_at ON retained_prompts (created_at);
        CREATE INDEX retained_prompts_hash ON retained_prompts (prompt_hash);
        """,
        ),
    ),
    (
        # Events whose cost is not a whole number of nano-dollars (more than nine decimals, or an exponent in
        # the Decimal text): few, indexed apart, so that an exact sum can be read as the rollups' nanos plus
        # these events' sub-nano remainders (SQLiteReads.effective_cost_by) without visiting every event.
        # PostgreSQL sums its NUMERIC column in the server and needs no such index. Likewise the events that
        # belong to a task, by time: a month's task costs without walking the month's events (the tasks page).
        "m012_sub_nano_costs",
        Dialects(
            sqlite=f"""
        CREATE INDEX usage_events_sub_nano ON usage_events (finished_at) WHERE {SUB_NANO_COST};
        CREATE INDEX usage_events_task_finished ON usage_events (finished_at) WHERE task_id IS NOT NULL;
        """,
            postgres="""
        SELECT 1;
        """,
        ),
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
    check_names(migrations)
    if conn.in_transaction:
        raise ValueError("apply_migrations needs a connection outside any transaction")
    conn.execute(_MIGRATIONS_TABLE)
    already = set(applied_migrations(conn))
    applied_now: list[str] = []
    for migration in migrations:
        name = migration[0]
        if name in already:
            continue
        statements = split_statements(migration_sql(migration, "sqlite"))
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

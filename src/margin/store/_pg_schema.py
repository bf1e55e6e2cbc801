"""The PostgreSQL ledger's schema: the shared named migrations (:mod:`margin.store.migrations`) applied exactly
once under an advisory lock, and the monthly partitions of ``usage_events``."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from psycopg import AsyncConnection

from .migrations import Migration, check_names, migration_sql

# Advisory lock keys (two int4s: margin's namespace, then what is locked). Ledger owners use random numbers
# above _OWNER_MIN in the same namespace (see postgres.py), so they never collide with these.
LOCK_NAMESPACE = 1835102823  # "marg"
MIGRATION_LOCK = 0
PARTITION_LOCK = 1  # taken inside margin_ensure_month_partition (migration m001)
OWNER_MIN = 16

_MIGRATIONS_TABLE = "CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL)"


async def pg_applied_migrations(conn: AsyncConnection) -> list[str]:
    """Names of the migrations recorded in the database, in the order they were applied."""
    cur = await conn.execute("SELECT to_regclass('migrations') IS NOT NULL")
    row = await cur.fetchone()
    if not row or not row[0]:
        return []
    cur = await conn.execute("SELECT name FROM migrations ORDER BY applied_at, name")
    return [name for (name,) in await cur.fetchall()]


async def pg_apply_migrations(conn: AsyncConnection, migrations: Sequence[Migration]) -> list[str]:
    """Apply every migration not yet recorded, each in its own transaction with its record, under a
    transaction-level advisory lock (two processes starting together apply each one once: the second waits,
    then finds it recorded). ``conn`` must be in autocommit mode. Returns the names applied now."""
    check_names(migrations)
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s::int, %s::int)", (LOCK_NAMESPACE, MIGRATION_LOCK))
        await conn.execute(_MIGRATIONS_TABLE)
    already = set(await pg_applied_migrations(conn))
    applied_now: list[str] = []
    for migration in migrations:
        name = migration[0]
        if name in already:
            continue
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s::int, %s::int)", (LOCK_NAMESPACE, MIGRATION_LOCK))
            cur = await conn.execute("SELECT 1 FROM migrations WHERE name = %s", (name,))
            if await cur.fetchone():  # another process applied it while we waited for the lock
                continue
            # No parameters: the simple query protocol runs the whole script (several statements, $$ bodies).
            await conn.execute(migration_sql(migration, "postgres").encode())
            await conn.execute("INSERT INTO migrations (name, applied_at) VALUES (%s, %s)", (name, datetime.now(UTC)))
        applied_now.append(name)
    return applied_now


def month_of(at: datetime) -> tuple[int, int]:
    utc = at.astimezone(UTC)
    return utc.year, utc.month


async def ensure_month_partitions(conn: AsyncConnection, months: Sequence[tuple[int, int]]) -> None:
    """Create the ``usage_events`` partitions of these (year, month)s if missing, each in its own short
    transaction. Called OUTSIDE any write transaction: creating a partition locks the parent table, and doing
    it while holding a batch's row locks could deadlock with another process's batch."""
    for year, month in months:
        async with conn.transaction():
            await conn.execute("SELECT margin_ensure_month_partition(%s)", (datetime(year, month, 1, tzinfo=UTC),))

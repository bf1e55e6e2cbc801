"""The PostgreSQL ledger's batches: what one group commit does in its one transaction.

A batch is a list of operations in arrival order. Consecutive bulk operations (new events, new reservations,
settles) form a segment, written with one ``COPY`` per table and one ``DELETE ... = ANY(...)`` for the settled
reservations; any other operation (a key, an alert, a reconcile) runs on its own, in order, between segments.
Within a segment reservations are copied before events and settles: a settle always arrives after its
reservation's open (the gateway awaits the open before calling upstream), so this order is the arrival order
wherever it matters. One ``COPY`` per segment also means one firing of the rollup trigger, which upserts its
cells in key order (see migration m009), so two processes' batches lock rollup rows in the same order.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from psycopg import AsyncConnection

from ._rows import _EVENT_COLUMNS, _RESERVATION_COLUMNS

# An operation with its own SQL: runs inside the batch's transaction and returns the caller's result.
PgCall = Callable[[AsyncConnection], Awaitable[Any]]

_COPY_EVENTS = f"COPY usage_events ({', '.join(_EVENT_COLUMNS)}) FROM STDIN"
_COPY_RESERVATIONS = f"COPY reservations ({', '.join(_RESERVATION_COLUMNS)}, owner) FROM STDIN"


@dataclass(slots=True)
class PgOp:
    """One write: ``event`` (row), ``reservation`` (row), ``settle`` (event row + reservation id) or ``call``."""

    kind: Literal["event", "reservation", "settle", "call"]
    row: tuple[Any, ...] | None = None
    reservation_id: str | None = None
    call: PgCall | None = None


def text_row(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """A row for COPY: PostgreSQL text cannot hold NUL characters (SQLite can), so each becomes U+FFFD rather
    than failing the batch (and with it the ledger) over a model name or error message a client sent. JSON
    text escapes NUL as \\u0000, which jsonb refuses too."""
    if not any(isinstance(v, str) and ("\x00" in v or "\\u0000" in v) for v in row):
        return row
    return tuple(v.replace("\x00", "\ufffd").replace("\\u0000", "\\ufffd") if isinstance(v, str) else v for v in row)


async def _copy(conn: AsyncConnection, statement: str, rows: Sequence[tuple[Any, ...]]) -> None:
    async with conn.cursor().copy(statement) as copy:
        for row in rows:
            await copy.write_row(row)


async def _run_segment(conn: AsyncConnection, ops: Sequence[PgOp], owner: int) -> list[Any]:
    reservations = [(*op.row, owner) for op in ops if op.kind == "reservation" and op.row is not None]
    events = [op.row for op in ops if op.kind in ("event", "settle") and op.row is not None]
    settled = [op.reservation_id for op in ops if op.kind == "settle"]
    if reservations:
        await _copy(conn, _COPY_RESERVATIONS, reservations)
    if events:
        await _copy(conn, _COPY_EVENTS, events)
    deleted: set[str] = set()
    if settled:
        cur = await conn.execute(
            "DELETE FROM reservations WHERE reservation_id = ANY(%s) RETURNING reservation_id", (settled,)
        )
        deleted = {rid for (rid,) in await cur.fetchall()}
    results: list[Any] = []
    for op in ops:
        if op.kind == "settle":
            # The first settle of a reservation deleted it; a second one in the same batch found it gone.
            results.append(op.reservation_id in deleted)
            deleted.discard(op.reservation_id)  # type: ignore[arg-type]
        else:
            results.append(None)
    return results


async def run_batch(conn: AsyncConnection, ops: Sequence[PgOp], owner: int) -> list[Any]:
    """Run ``ops`` on ``conn`` (inside the caller's transaction); their results, in order."""
    results: list[Any] = []
    segment: list[PgOp] = []
    for op in ops:
        if op.kind == "call":
            if segment:
                results += await _run_segment(conn, segment, owner)
                segment = []
            assert op.call is not None
            results.append(await op.call(conn))
        else:
            segment.append(op)
    if segment:
        results += await _run_segment(conn, segment, owner)
    return results


async def replay_lost(conn: AsyncConnection, ops: Sequence[PgOp], owner: int) -> tuple[int, int]:
    """Write, exactly once, the background writes (events, settles, calls) of batches that failed because the
    connection was lost, inside the caller's transaction; returns (written, already there).

    A lost connection leaves each failed batch's commit ambiguous: it may have committed before the connection
    dropped. A settle deletes its reservation in the same transaction as it inserts its event, so a reservation
    still open proves the settle never committed: only those settles are written again (and a reservation that
    another instance reconciled meanwhile, charging its worst case, is gone too: its charge stands). An event
    without a reservation is written again when its id is not in the ledger. Calls must be idempotent (the
    background ones are: retained prompts insert ON CONFLICT DO NOTHING)."""
    settles = [op for op in ops if op.kind == "settle" and op.row is not None]
    events = [op for op in ops if op.kind == "event" and op.row is not None]
    open_ids: set[str] = set()
    if settles:
        cur = await conn.execute(
            "SELECT reservation_id FROM reservations WHERE reservation_id = ANY(%s) FOR UPDATE",
            ([op.reservation_id for op in settles],),
        )
        open_ids = {rid for (rid,) in await cur.fetchall()}
    present: set[str] = set()
    if events:
        cur = await conn.execute(
            "SELECT event_id FROM usage_events WHERE event_id = ANY(%s)", ([op.row[0] for op in events],)
        )
        present = {eid for (eid,) in await cur.fetchall()}
    redo = [op for op in settles if op.reservation_id in open_ids] + [op for op in events if op.row[0] not in present]
    if redo:
        await _run_segment(conn, redo, owner)
    for op in ops:
        if op.kind == "call" and op.call is not None:
            await op.call(conn)
    return len(redo), len(settles) + len(events) - len(redo)

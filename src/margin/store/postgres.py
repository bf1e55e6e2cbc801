"""The PostgreSQL ledger: the SQLite ledger's contract on a shared server, for several gateway instances.

Install with ``pip install 'margin[postgres]'`` (psycopg 3 and psycopg-pool); select with
``gateway.database: postgresql://USER@HOST/DB`` (see :mod:`margin.store.location`).

Write path: the same as :class:`~margin.store.sqlite.SQLiteLedger`'s, with the writer thread replaced by one
writer TASK on the ledger's own event loop (a daemon thread; the gateway's loop, the CLI and tests may each
be elsewhere, and the ledger must open and be read before the gateway's loop exists). Callers take one of
``queue_size`` slots (backpressure), hand their operation over with ``call_soon_threadsafe`` and await a
future. The writer takes the first operation, drains what else is queued (at most ``batch_max``), runs the
batch in ONE transaction (one COPY per table, see :mod:`margin.store._pg_writer`), commits, and only then
resolves every caller: group commit, and nobody learns of a write before its commit. Connections come from
an ``AsyncConnectionPool`` (checked on checkout, so connections broken by a server restart while idle are
replaced instead of failing a batch); reads (sync methods) run on pooled connections on the same loop.

Durability is the server's: a commit is acknowledged once PostgreSQL has it (``synchronous_commit=on``, its
default: flushed to the server's WAL). Reservations are committed rows in ``reservations`` (not the SQLite
ledger's per-process journal file: with several gateway instances the journal on one machine cannot be the
source of truth). Each ledger instance holds a session advisory lock on a random ``owner`` number for its
lifetime and stamps its reservations with it; start-up recovery charges only reservations whose owner's lock
is free (that process is gone), so one instance starting never charges another's live requests.

Failure: a write that fails is never swallowed. The batch is rolled back (a deadlock or serialization failure
is retried first, nothing having been committed), each caller gets a LedgerError, the failure is logged at
ERROR, and the ledger enters its failed state: every later write raises LedgerError at once and the gateway
answers 503 instead of serving unmetered. When the cause is the connection (server down, restarted, network
gone, no connection within ``pool_timeout``), a probe retries every ``recovery_interval_s`` and the ledger
leaves its failed state as soon as PostgreSQL answers again (the pool reconnects); nothing acknowledged was
lost, since nothing is acknowledged before its commit. Any other failure (a constraint violated, a disk full)
stays until restart, as on SQLite.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import logging
import re
import secrets
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
import psycopg.errors
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from ..ids import new_id
from ..keys import hash_key
from ..usage import UsageEvent
from ._pg_reads import _SELECT_RESERVATION, PG_KEY_COLUMNS, PostgresReads, reservation_from_pg
from ._pg_schema import (
    LOCK_NAMESPACE,
    OWNER_MIN,
    ensure_month_partitions,
    month_of,
    pg_apply_migrations,
)
from ._pg_writer import PgCall, PgOp, replay_lost, run_batch, text_row
from ._queue import _STOP, _Item, _resolve_async, _running_loop, _Slots
from ._rows import _RESERVATION_ID_AT, _event_row, _key_row, _money, _reservation_row, _ts, reconciled_event
from .base import LedgerError, Reservation, VirtualKey
from .location import redact_url
from .migrations import MIGRATIONS, Migration

__all__ = ["PostgresLedger"]

_log = logging.getLogger(__name__)

TASK_OUTCOMES = ("success", "failure")
_RETRIED = (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure)
_MARGIN_PARAMETERS = ("pool_size", "pool_timeout")


def _connection_lost(exc: BaseException) -> bool:
    """A failure of reaching the server (recovers when it is back), not of the data or the server's state."""
    if isinstance(exc, PoolTimeout):
        return True
    if not isinstance(exc, psycopg.OperationalError):
        return False
    state = getattr(exc, "sqlstate", None)
    return state is None or state.startswith("08") or state in ("57P01", "57P02", "57P03")


def _split_url(url: str) -> tuple[str, dict[str, str]]:
    """(libpq URL, margin's own parameters taken out of its query)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    ours = {k: v for k, v in query if k in _MARGIN_PARAMETERS}
    rest = urlencode([(k, v) for k, v in query if k not in _MARGIN_PARAMETERS])
    return urlunsplit((parts.scheme, parts.netloc, parts.path, rest, parts.fragment)), ours


class PostgresLedger(PostgresReads):
    """The gateway's ledger on PostgreSQL (see the module docstring).

    ``pool_size`` bounds the connections (the writer uses one at a time; reads share the rest);
    ``pool_timeout`` is how long an operation waits for a connection before the ledger reports PostgreSQL
    unreachable. ``queue_size``, ``batch_max`` and ``commit_delay_ms`` are the SQLite ledger's. Both pool
    settings can also come from the URL's query (``?pool_size=16&pool_timeout=2``). ``on_batch(connection,
    batch_size)`` (sync or async) runs inside each batch's transaction before COMMIT, for tests.
    """

    def __init__(
        self,
        url: str,
        *,
        pool_size: int | None = None,
        pool_timeout: float | None = None,
        queue_size: int = 10_000,
        batch_max: int = 256,
        commit_delay_ms: float = 0.0,
        recovery_interval_s: float = 0.5,
        migrations: Sequence[Migration] = MIGRATIONS,
        on_batch: Callable[[AsyncConnection, int], Any] | None = None,
    ) -> None:
        conninfo, ours = _split_url(url)
        try:
            size = int(pool_size if pool_size is not None else ours.get("pool_size", 8))
            timeout = float(pool_timeout if pool_timeout is not None else ours.get("pool_timeout", 5.0))
        except ValueError:
            raise ValueError(f"pool_size must be an integer and pool_timeout a number of seconds, in {url!r}") from None
        if size < 2:
            raise ValueError("pool_size must be at least 2 (the writer and one reader)")
        if queue_size < 1 or batch_max < 1:
            raise ValueError("queue_size and batch_max must be at least 1")
        if commit_delay_ms < 0:
            raise ValueError("commit_delay_ms must be >= 0")
        self.url = redact_url(url)
        self._conninfo = conninfo
        self._pool_size, self._pool_timeout = size, timeout
        self._batch_max = batch_max
        self._commit_delay = commit_delay_ms / 1000
        self._recovery_interval = recovery_interval_s
        self._on_batch = on_batch
        self._slots = _Slots(queue_size)
        self._submit_lock = threading.Lock()
        self._closed = False
        self._failure: LedgerError | None = None
        self._failed_at: datetime | None = None
        self._recoverable = False
        # Writes refused, or failed with their caller waiting, during the current outage (the recovery alert).
        self._refused = 0
        self._known_months: set[tuple[int, int]] = set()
        self._owner = OWNER_MIN + secrets.randbelow(2**31 - 1 - OWNER_MIN)
        self._owner_conn: AsyncConnection | None = None
        self._held = 0
        self._lost: list[PgOp] = []  # background writes of batches lost with the connection, replayed on recovery
        self.commit_count = 0
        self.committed_items = 0
        self.max_batch = 0
        self.retried_batches = 0  # batches run again after a deadlock or serialization failure

        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="margin-ledger-pg", daemon=True)
        self._thread.start()
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._pool: AsyncConnectionPool | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        try:
            self._on_loop(self._open(migrations))
        except BaseException as exc:
            self._on_loop(self._close_connections())
            self._stop_loop()
            if isinstance(exc, psycopg.Error):
                raise LedgerError(
                    f"cannot open the PostgreSQL ledger at {self.url}: {type(exc).__name__}: {exc}".rstrip()
                    + " (is the server running and the URL in gateway.database right?)",
                    cause=exc,
                ) from exc
            raise

    # -- the ledger's loop --------------------------------------------------------------------------------------

    def _on_loop(self, coro: Coroutine[Any, Any, Any]) -> Any:
        """Run ``coro`` on the ledger's loop and wait for it (from any other thread)."""
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("the ledger's own loop cannot wait on itself")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def _stop_loop(self) -> None:
        if self._loop.is_closed():
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    async def _configure(self, conn: AsyncConnection) -> None:
        await conn.execute("SET TIME ZONE 'UTC'")  # times come back in UTC, and day/hour text is UTC's

    async def _connect(self) -> AsyncConnection:
        conn = await AsyncConnection.connect(
            self._conninfo, autocommit=True, connect_timeout=max(1, round(self._pool_timeout))
        )
        await self._configure(conn)
        return conn

    async def _open(self, migrations: Sequence[Migration]) -> None:
        # Fail fast with the server's own message (a wrong password, a missing database) instead of a pool
        # timeout: one direct connection first, which then keeps this instance's owner lock.
        self._owner_conn = await self._connect()
        await pg_apply_migrations(self._owner_conn, migrations)
        await self._owner_conn.execute("SELECT pg_advisory_lock(%s::int, %s::int)", (LOCK_NAMESPACE, self._owner))
        now = datetime.now(UTC)
        # This month and the next are created now, so the first writes of a new month need no DDL.
        months = sorted({month_of(now), month_of(now.replace(day=1) + timedelta(days=32))})
        await ensure_month_partitions(self._owner_conn, months)
        self._known_months.update(months)
        self._pool = AsyncConnectionPool(
            self._conninfo,
            min_size=1,
            max_size=self._pool_size,
            kwargs={"autocommit": True},
            configure=self._configure,
            check=AsyncConnectionPool.check_connection,
            timeout=self._pool_timeout,
            name="margin-ledger",
            open=False,
        )
        await self._pool.open(wait=True, timeout=self._pool_timeout)
        self._tasks = [
            asyncio.create_task(self._writer(), name="margin-ledger-writer"),
            asyncio.create_task(self._keep_owner_lock(), name="margin-ledger-owner"),
        ]

    async def _keep_owner_lock(self) -> None:
        """Re-take the owner lock after the server restarted (the session holding it ended). Until then, another
        instance starting could charge this one's open reservations at their worst case: an overcharge, the safe
        direction, and only while the server was away."""
        while True:
            await asyncio.sleep(5)
            try:
                assert self._owner_conn is not None
                await self._owner_conn.execute("SELECT 1")
            except psycopg.Error:
                with contextlib.suppress(psycopg.Error, OSError):
                    await self._owner_conn.close()  # type: ignore[union-attr]
                    self._owner_conn = await self._connect()
                    await self._owner_conn.execute(
                        "SELECT pg_advisory_lock(%s::int, %s::int)", (LOCK_NAMESPACE, self._owner)
                    )
                    _log.warning("ledger %s: reconnected; owner lock %d held again", self.url, self._owner)

    async def _close_connections(self) -> None:
        for task in self._tasks:
            if task.get_name() != "margin-ledger-writer":
                task.cancel()
        if self._pool is not None:
            await self._pool.close()
        if self._owner_conn is not None:
            await self._owner_conn.close()

    # -- state ----------------------------------------------------------------------------------------------------

    @property
    def failed(self) -> LedgerError | None:
        """The error that put the ledger in its failed state, or None while it is healthy."""
        return self._failure

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def in_flight(self) -> int:
        return self._slots.in_flight

    @property
    def max_in_flight(self) -> int:
        return self._slots.max_in_flight

    @property
    def reservations_held(self) -> int:
        """Reservations this instance opened and has not settled (in memory: no database read)."""
        return self._held

    @property
    def owner(self) -> int:
        """The number this instance stamps its reservations with (and holds an advisory lock on)."""
        return self._owner

    def describe(self) -> str:
        return f"postgres {self.url}"

    def _check_usable(self) -> None:
        if self._failure is not None:
            self._refused += 1
            raise self._failed_error()
        if self._closed:
            raise LedgerError(f"the ledger at {self.url} is closed")

    def _failed_error(self) -> LedgerError:
        assert self._failure is not None
        until = "until PostgreSQL is reachable again" if self._recoverable else "until restarted"
        return LedgerError(
            f"the ledger at {self.url} failed at {self._failed_at:%Y-%m-%d %H:%M:%S} UTC and accepts no writes "
            f"{until}: {self._failure.cause or self._failure.message}",
            cause=self._failure.cause,
        )

    def _stash_lost(self, batch: list[_Item]) -> None:
        """Keep a failed batch's background writes (no caller waits for them: their responses are gone) to write
        them, exactly once, when the connection is back (:func:`replay_lost`). Only after a lost connection: any
        other failure keeps the ledger failed until restart, when reconciliation charges open reservations."""
        if self._recoverable:
            self._lost += [item.op for item in batch if item.future is None]  # type: ignore[misc]

    def _fail(self, exc: BaseException, batch_size: int) -> None:
        if self._failure is not None:
            return
        self._failed_at = datetime.now(UTC)
        self._recoverable = _connection_lost(exc)
        self._failure = LedgerError(
            f"ledger write failed, {batch_size} write(s) not recorded: {type(exc).__name__}: {exc}", cause=exc
        )
        _log.error(
            "ledger %s: write failed (%s: %s); %d write(s) rolled back; the ledger refuses writes %s",
            self.url,
            type(exc).__name__,
            exc,
            batch_size,
            "until PostgreSQL is reachable again" if self._recoverable else "until restarted",
            exc_info=exc,
        )
        if self._recoverable and not self._closed:
            self._tasks.append(asyncio.create_task(self._recover(), name="margin-ledger-recovery"))

    async def _recover(self) -> None:
        """Probe the server until it answers, then leave the failed state (connection failures only)."""
        assert self._pool is not None
        while self._failure is not None and not self._closed:
            await asyncio.sleep(self._recovery_interval)
            written = found = 0
            try:
                # Until nothing is left: the writer may stash more while a replay awaits the server.
                while self._lost:
                    lost = self._lost
                    async with self._pool.connection(timeout=self._pool_timeout) as conn:
                        async with conn.transaction():
                            done = await replay_lost(conn, lost, self._owner)
                    self._lost = self._lost[len(lost) :]
                    written, found = written + done[0], found + done[1]
                async with self._pool.connection(timeout=self._pool_timeout) as conn:
                    await conn.execute("SELECT 1")
            except (psycopg.Error, OSError):
                continue
            _log.warning(
                "ledger %s: PostgreSQL answers again; %d lost write(s) recorded, %d had committed; accepting writes",
                self.url,
                written,
                found,
            )
            self._failure = None
            await self._alert_recovered(written)

    async def _alert_recovered(self, replayed: int) -> None:
        """The outage, in the ledger's own alerts (``GET /v1/margin/alerts``, the dashboard): while it lasted
        nothing could be recorded, not even an alert, so it is written now."""
        failed_at, now = self._failed_at or datetime.now(UTC), datetime.now(UTC)
        refused, self._refused = self._refused, 0
        seconds = (now - failed_at).total_seconds()
        message = (
            f"the ledger ({self.describe()}) was unreachable for {seconds:.1f} s from {failed_at:%Y-%m-%d %H:%M:%S} "
            f"UTC: {refused} write(s) refused meanwhile (their requests got 503 ledger_unavailable, never served "
            f"unmetered); {replayed} write(s) cut off by the outage recorded now"
        )
        data = {"failed_at": failed_at.isoformat(), "seconds": round(seconds, 3), "refused_writes": refused}
        try:
            await self.write_alert("ledger_recovered", message, scope="ledger", data={**data, "replayed": replayed})
        except LedgerError as exc:  # failed again at once: the next recovery reports it
            _log.error("ledger %s: could not record the recovery alert: %s", self.url, exc)

    # -- submitting writes ----------------------------------------------------------------------------------------

    def _enqueue(self, item: _Item) -> None:
        with self._submit_lock:
            if self._closed:
                raise LedgerError(f"the ledger at {self.url} is closed")
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)

    async def _submit(self, op: PgOp) -> Any:
        self._check_usable()
        loop = asyncio.get_running_loop()
        await self._slots.acquire()
        future: asyncio.Future[Any] = loop.create_future()
        try:
            self._check_usable()
            self._enqueue(_Item(op, loop, future))  # type: ignore[arg-type]
        except BaseException:
            self._slots.release(1)
            raise
        return await future

    async def _submit_background(self, op: PgOp, after_commit: Callable[[], None] | None = None) -> None:
        self._check_usable()
        await self._slots.acquire()
        try:
            self._check_usable()
            self._enqueue(_Item(op, None, None, after_commit))  # type: ignore[arg-type]
        except BaseException:
            self._slots.release(1)
            raise

    def _submit_sync(self, op: PgOp) -> Any:
        self._check_usable()
        if threading.current_thread() is self._thread:
            raise RuntimeError("the ledger's writer cannot wait on its own queue")
        if _running_loop() is not None:
            raise RuntimeError(
                "PostgresLedger's synchronous writes block; on an event loop call them via asyncio.to_thread(...)"
            )
        self._slots.acquire_sync()
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        try:
            self._check_usable()
            self._enqueue(_Item(op, None, future))  # type: ignore[arg-type]
        except BaseException:
            self._slots.release(1)
            raise
        return future.result()

    def _call_sync(self, call: PgCall) -> Any:
        return self._submit_sync(PgOp("call", call=call))

    # -- the writer task ------------------------------------------------------------------------------------------

    async def _writer(self) -> None:
        try:
            while True:
                first = await self._queue.get()
                if first is _STOP:
                    break
                batch: list[_Item] = [first]
                stop = False
                if self._commit_delay > 0 and first.future is None:
                    await asyncio.sleep(self._commit_delay)  # see SQLiteLedger: one commit for a few ms of writes
                while len(batch) < self._batch_max:
                    try:
                        item = self._queue.get_nowait()
                    except asyncio.QueueEmpty:
                        break
                    if item is _STOP:
                        stop = True
                        break
                    batch.append(item)
                await self._run_batch(batch)
                if stop:
                    break
        except BaseException as exc:  # a bug in the loop itself: fail closed rather than hang callers
            self._fail(exc, 0)
            while not self._queue.empty():
                item = self._queue.get_nowait()
                if item is not _STOP:
                    self._finish([item], None)

    async def _run_batch(self, batch: list[_Item]) -> None:
        if self._failure is not None:
            self._stash_lost(batch)  # queued before the failure was seen: their callers are gone too
            self._finish(batch, None)
            return
        assert self._pool is not None
        ops: list[PgOp] = [item.op for item in batch]  # type: ignore[misc]
        # finished_at is UTC ISO text (the row's fifth column): its first 7 characters are the month.
        months = {
            (int(op.row[4][:4]), int(op.row[4][5:7])) for op in ops if op.kind in ("event", "settle") and op.row
        } - self._known_months
        for attempt in range(4):
            try:
                async with self._pool.connection() as conn:
                    if months:  # outside the batch's transaction (see ensure_month_partitions)
                        await ensure_month_partitions(conn, sorted(months))
                        self._known_months |= months
                    async with conn.transaction():
                        results = await run_batch(conn, ops, self._owner)
                        if self._on_batch is not None:
                            hooked = self._on_batch(conn, len(batch))
                            if isinstance(hooked, Awaitable):
                                await hooked
                break
            except _RETRIED as exc:
                if attempt == 3:
                    self._fail(exc, len(batch))
                    self._stash_lost(batch)
                    self._finish(batch, None)
                    return
                self.retried_batches += 1
                _log.warning("ledger %s: %s; batch of %d retried", self.url, type(exc).__name__, len(batch))
            except BaseException as exc:
                self._fail(exc, len(batch))
                self._stash_lost(batch)
                self._finish(batch, None)
                return
        self.commit_count += 1
        self.committed_items += len(batch)
        self.max_batch = max(self.max_batch, len(batch))
        for op, result in zip(ops, results, strict=True):
            if op.kind == "reservation":
                self._held += 1
            elif op.kind == "settle" and result:
                self._held = max(0, self._held - 1)
        self._finish(batch, results)

    def _finish(self, batch: list[_Item], results: list[Any] | None) -> None:
        """Free the batch's slots, then resolve every caller (``results`` None: the batch failed)."""
        self._slots.release(len(batch))
        if results is None:  # the callers waiting for these writes are told they failed (their requests: 503)
            self._refused += sum(1 for item in batch if item.future is not None)
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Any, BaseException | None]]] = {}
        for index, item in enumerate(batch):
            error = self._failed_error() if results is None else None
            result = None if results is None else results[index]
            if item.future is None:
                if error is None and item.after_commit is not None:
                    try:
                        item.after_commit()
                    except Exception:
                        _log.exception("ledger %s: after-commit hook failed", self.url)
                continue
            if item.loop is None:
                future = item.future
                assert isinstance(future, concurrent.futures.Future)
                if error is not None:
                    future.set_exception(error)
                else:
                    future.set_result(result)
            else:
                by_loop.setdefault(item.loop, []).append((item.future, result, error))  # type: ignore[arg-type]
        for loop, resolutions in by_loop.items():
            if loop is self._loop:
                _resolve_async(resolutions)
                continue
            with contextlib.suppress(RuntimeError):  # that loop is closed: its callers are gone
                loop.call_soon_threadsafe(_resolve_async, resolutions)

    # -- reads --------------------------------------------------------------------------------------------------

    def _fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        if self._closed:
            raise LedgerError(f"the ledger at {self.url} is closed")
        return self._on_loop(self._afetch(sql, params))

    async def _afetch(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        assert self._pool is not None
        try:
            async with self._pool.connection() as conn:
                cur = await conn.execute(sql, params)  # type: ignore[arg-type]
                return await cur.fetchall()
        except psycopg.Error as exc:
            raise LedgerError(f"cannot read the ledger at {self.url}: {type(exc).__name__}: {exc}", cause=exc) from exc

    # -- async writes (the gateway) -----------------------------------------------------------------------------

    async def write_event(self, event: UsageEvent, *, wait: bool = True) -> None:
        """Record one usage event; returns once committed (``wait=False``: once queued, see :meth:`settle`)."""
        op = PgOp("event", _pg_event_row(event))
        if not wait:
            await self._submit_background(op)
            return
        await self._submit(op)

    async def open_reservation(self, reservation: Reservation) -> None:
        """Record an open reservation; returns once committed (a row every gateway instance sees)."""
        await self._submit(PgOp("reservation", text_row(_reservation_row(reservation))))

    async def settle(self, event: UsageEvent, reservation_id: str, *, wait: bool = True) -> bool | None:
        """Write ``event`` (stamped with ``reservation_id``) and delete that reservation in one transaction; True
        if it was still open. ``wait=False`` returns once queued (None); the reservation stays open until the
        event commits, so a crash in between charges the worst case (see :meth:`SQLiteLedger.settle`)."""
        row = _pg_event_row(event)
        if event.reservation_id != reservation_id:
            row = (*row[:_RESERVATION_ID_AT], reservation_id, *row[_RESERVATION_ID_AT + 1 :])
        op = PgOp("settle", row, reservation_id)
        if not wait:
            await self._submit_background(op)
            return None
        return bool(await self._submit(op))

    async def flush(self) -> None:
        """Return once every write queued before this call is committed."""

        async def nothing(conn: AsyncConnection) -> None:
            return None

        await self._submit(PgOp("call", call=nothing))

    async def write_alert(
        self,
        kind: str,
        message: str,
        *,
        scope: str | None = None,
        data: Mapping[str, Any] | None = None,
        created_at: datetime | None = None,
    ) -> str:
        """Record an alert; returns its id once committed."""
        alert_id = new_id()
        row = text_row(
            (
                alert_id,
                _ts(created_at or datetime.now(UTC), "created_at"),
                kind,
                scope,
                message,
                json.dumps(dict(data or {}), ensure_ascii=False, sort_keys=True, default=str),
            )
        )

        async def insert(conn: AsyncConnection) -> None:
            await conn.execute(
                "INSERT INTO alerts (alert_id, created_at, kind, scope, message, data) VALUES (%s, %s, %s, %s, %s, %s)",
                row,
            )

        await self._submit(PgOp("call", call=insert))
        return alert_id

    async def retain_prompt(
        self, request_id: str, prompt_hash: str, created_at: datetime, endpoint: str, model: str, body: str
    ) -> None:
        """Queue one redacted request body (JSON text) for retained_prompts; returns once queued."""
        _ts(created_at, "created_at")
        row = text_row((request_id, prompt_hash, created_at, endpoint, model, body))

        async def insert(conn: AsyncConnection) -> None:
            await conn.execute(
                "INSERT INTO retained_prompts (request_id, prompt_hash, created_at, endpoint, model, body) "
                "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (request_id) DO NOTHING",
                row,
            )

        await self._submit_background(PgOp("call", call=insert))

    def purge_retained_prompts(self, before: datetime) -> int:
        """Delete retained bodies created before ``before``; returns how many."""
        _ts(before, "before")

        async def delete(conn: AsyncConnection) -> int:
            cur = await conn.execute("DELETE FROM retained_prompts WHERE created_at < %s", (before,))
            return cur.rowcount

        return int(self._call_sync(delete))

    # -- sync writes (the CLI; the gateway calls them in a thread) -------------------------------------------------

    def create_key(self, key: VirtualKey) -> None:
        """Store a virtual key. ValueError if its id or hash already exists (the ledger stays healthy)."""
        row = text_row(_key_row(key))
        placeholders = ", ".join(["%s"] * len(row))

        async def insert(conn: AsyncConnection) -> bool:
            cur = await conn.execute(
                f"INSERT INTO keys ({PG_KEY_COLUMNS}) VALUES ({placeholders}) ON CONFLICT DO NOTHING",  # type: ignore[arg-type]
                row,
            )
            return cur.rowcount > 0

        if not self._call_sync(insert):
            raise ValueError(f"a key with id {key.key_id!r} or the same key hash already exists")

    def revoke_key(self, key_id_or_prefix: str, *, now: datetime | None = None) -> bool:
        """Revoke the key with this id, display prefix (or the key itself); see :meth:`SQLiteLedger.revoke_key`."""
        revoked_at = now or datetime.now(UTC)
        _ts(revoked_at, "now")
        needle = key_id_or_prefix

        async def revoke(conn: AsyncConnection) -> bool | list[str]:
            cur = await conn.execute(
                "SELECT key_id, revoked_at FROM keys WHERE key_id = %s OR key_hash = %s", (needle, hash_key(needle))
            )
            rows = await cur.fetchall()
            if not rows:
                cur = await conn.execute("SELECT key_id, revoked_at FROM keys WHERE prefix = %s", (needle,))
                rows = await cur.fetchall()
            if len(rows) > 1:
                return sorted(row[0] for row in rows)
            if not rows or rows[0][1] is not None:
                return False
            await conn.execute("UPDATE keys SET revoked_at = %s WHERE key_id = %s", (revoked_at, rows[0][0]))
            return True

        outcome = self._call_sync(revoke)
        if isinstance(outcome, list):
            raise ValueError(f"{needle!r} matches {len(outcome)} keys ({', '.join(outcome)}); pass a key id")
        return bool(outcome)

    def set_task_outcome(
        self, task_id: str, outcome: str, *, note: str | None = None, key_id: str | None = None
    ) -> None:
        """Record (or replace) a task's outcome: ``success`` or ``failure``."""
        if outcome not in TASK_OUTCOMES:
            raise ValueError(f"outcome must be one of {', '.join(TASK_OUTCOMES)}, got {outcome!r}")
        if not task_id or len(task_id) > 200:
            raise ValueError("task_id must be 1-200 characters")
        row = text_row((task_id, outcome, note, key_id, datetime.now(UTC)))

        async def upsert(conn: AsyncConnection) -> None:
            await conn.execute(
                "INSERT INTO task_outcomes (task_id, outcome, note, key_id, recorded_at) VALUES (%s, %s, %s, %s, %s) "
                "ON CONFLICT (task_id) DO UPDATE SET outcome = excluded.outcome, note = excluded.note, "
                "key_id = excluded.key_id, recorded_at = excluded.recorded_at",
                row,
            )

        self._call_sync(upsert)

    def add_shared_cost(self, name: str, period: str, category: str, amount: Decimal, note: str | None = None) -> None:
        """Record (or replace) a shared cost for a month (``YYYY-MM``)."""
        if not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", period):
            raise ValueError(f"period must be a month like 2026-11, got {period!r}")
        _text, nanos = _money(amount, "amount")
        row = text_row((name, period, category, amount, nanos, note, datetime.now(UTC)))

        async def upsert(conn: AsyncConnection) -> None:
            await conn.execute(
                "INSERT INTO shared_costs (name, period, category, amount, amount_nanos, note, created_at) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (name, period) DO UPDATE SET "
                "category = excluded.category, amount = excluded.amount, amount_nanos = excluded.amount_nanos, "
                "note = excluded.note, created_at = excluded.created_at",
                row,
            )

        self._call_sync(upsert)

    def remove_shared_cost(self, name: str, period: str) -> bool:
        async def delete(conn: AsyncConnection) -> bool:
            cur = await conn.execute("DELETE FROM shared_costs WHERE name = %s AND period = %s", (name, period))
            return cur.rowcount > 0

        return bool(self._call_sync(delete))

    # -- recovery -------------------------------------------------------------------------------------------------

    def reconcile_open_reservations(self, now: datetime, *, only_expired: bool = False) -> list[UsageEvent]:
        """Turn open reservations whose gateway is gone into charged usage events, in one transaction.

        As :meth:`SQLiteLedger.reconcile_open_reservations` (each becomes an ``upstream_error`` event with
        ``error_type = gateway_crash`` at its reserved worst case: overcharging by design), except for which
        reservations: those whose owner's advisory lock is free (its ledger instance ended: process killed,
        or closed) are charged; those of live instances, this one included, are left to their owners.
        ``only_expired`` charges the reservations whose ``expires_at`` has passed instead, whoever owns them.
        """
        stamp = datetime.fromisoformat(_ts(now, "now"))

        async def reconcile(conn: AsyncConnection) -> list[UsageEvent]:
            if only_expired:
                cur = await conn.execute(
                    f"{_SELECT_RESERVATION} WHERE expires_at IS NOT NULL AND expires_at <= %s FOR UPDATE", (stamp,)
                )
            else:
                # A transaction-level try-lock succeeds only when no session holds the owner's lock; it is
                # released at commit. Evaluated per distinct owner, never for this instance's own number.
                cur = await conn.execute(
                    f"{_SELECT_RESERVATION} WHERE owner IN (SELECT o FROM (SELECT DISTINCT owner AS o "
                    "FROM reservations WHERE owner <> %s::int) owners WHERE pg_try_advisory_xact_lock(%s::int, o)) "
                    "FOR UPDATE",
                    (self._owner, LOCK_NAMESPACE),
                )
            reservations = [reservation_from_pg(row) for row in await cur.fetchall()]
            events = [reconciled_event(res, stamp) for res in reservations]
            if events:
                await run_batch(conn, [PgOp("event", _pg_event_row(e)) for e in events], self._owner)
                charged = [r.reservation_id for r in reservations]
                await conn.execute("DELETE FROM reservations WHERE reservation_id = ANY(%s)", (charged,))
            return events

        stale_months = {month_of(stamp)} - self._known_months
        if stale_months:
            self._on_loop(self._ensure_months(stale_months))
        events: list[UsageEvent] = self._call_sync(reconcile)
        if events:
            _log.warning(
                "ledger %s: charged %d open reservation(s) at their worst case after an unclean stop",
                self.url,
                len(events),
            )
        return events

    async def _ensure_months(self, months: set[tuple[int, int]]) -> None:
        assert self._pool is not None
        async with self._pool.connection() as conn:
            await ensure_month_partitions(conn, sorted(months))
        self._known_months |= months

    # -- lifecycle ------------------------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop accepting writes, commit everything already queued, stop the writer, close the connections (the
        owner lock goes with its session). Idempotent. Blocks: on an event loop use :meth:`aclose`."""
        with self._submit_lock:
            if self._closed:
                first_close = False
            else:
                self._closed = first_close = True
                self._loop.call_soon_threadsafe(self._queue.put_nowait, _STOP)
        if not first_close:
            while self._thread.is_alive():  # another thread is closing: wait for it
                time.sleep(0.01)
            return
        with contextlib.suppress(Exception):
            self._on_loop(self._drain_and_close())
        self._stop_loop()

    async def _drain_and_close(self) -> None:
        writer = next((t for t in self._tasks if t.get_name() == "margin-ledger-writer"), None)
        if writer is not None:
            await writer
        await self._close_connections()

    async def aclose(self) -> None:
        """:meth:`close` without blocking the event loop."""
        await asyncio.to_thread(self.close)

    def __enter__(self) -> PostgresLedger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> PostgresLedger:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        state = "failed" if self._failure else ("closed" if self._closed else "open")
        return f"PostgresLedger({self.url!r}, {state})"


def _pg_event_row(event: UsageEvent) -> tuple[Any, ...]:
    """The SQLite ledger's validated row (ValueError/TypeError before anything is queued), sent as COPY text:
    PostgreSQL parses its Decimal text into numeric, its ISO times into timestamptz, its JSON into jsonb."""
    return text_row(_event_row(event))

"""The embedded ledger: one SQLite file, one writer thread, group commit.

Write path (the style of simonw/datasette: one writer thread per database, fed by a queue). The gateway
awaits :meth:`SQLiteLedger.write_event` and friends on its event loop. Each call encodes its row on the
caller's side (bad input raises ValueError there, before anything is queued), takes one of ``queue_size``
slots (when all are taken the coroutine waits: that is the backpressure; the event loop thread never blocks
on the queue), puts the item on a :class:`queue.Queue` and awaits a future. The writer thread takes the first
item, drains whatever else is queued without waiting (a batch of at most ``batch_max`` items), runs them all
in ONE transaction, commits, and only then frees their slots and resolves every item's future (one
``call_soon_threadsafe`` per event loop per batch). That is the group commit: the cost of a commit is shared
by every writer waiting at that moment, so throughput rises with concurrency while each caller still learns
only about committed data. Cancelling an awaiting task does not cancel its write.

Synchronous methods (keys, reconcile, reads) are for the CLI and for threads. The writing ones go through the
same writer thread and refuse to run on an event loop thread (RuntimeError: use ``asyncio.to_thread``).

Durability: WAL with ``synchronous=NORMAL`` (the default) means a commit has been handed to the operating
system before the awaiting call returns, so a committed row survives a crash or ``kill -9`` of the process.
It does not survive a power loss or kernel crash (the WAL is fsynced only at checkpoints); pass
``synchronous="FULL"`` for that, at the cost of one fsync per group commit.

Failure: a write that fails (disk full, constraint violated, I/O error) is never swallowed. The whole batch
is rolled back, each of its callers gets a :class:`~margin.store.base.LedgerError` carrying the cause, the
failure is logged at ERROR, and the ledger enters its failed state: every later write raises LedgerError at
once, so the gateway refuses requests (fails closed) instead of serving them unmetered. Restart to recover.

Reads (spend, events, keys) run on their own connections (WAL lets readers run beside the writer).
Times must be timezone-aware; they are stored as fixed-width UTC ISO text and come back in UTC (equal to
what was written). Money is stored exactly (Decimal text) and as integer nano-dollars rounded half-even.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import logging
import os
import queue
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, get_args

from ..config import MarginConfig
from ..errors import ConfigError
from ..ids import new_id
from ..keys import hash_key
from ..usage import UsageEvent
from ._queue import _STOP, _execute, _Item, _Op, _resolve_async, _running_loop, _Slots
from ._rows import (
    _INSERT_ALERT,
    _INSERT_EVENT,
    _INSERT_KEY,
    _INSERT_RESERVATION,
    _RESERVATION_ID_AT,
    _SELECT_KEY,
    _SELECT_RESERVATION,
    NANOS_PER_USD,
    _DecimalSum,
    _event_row,
    _key_from_row,
    _key_row,
    _money,
    _reservation_from_row,
    _reservation_row,
    _ts,
    from_nanos,
    reconciled_event,
    to_nanos,
)
from ._sqlite_reads import SQLiteReads
from .base import LedgerError, Reservation, SyncMode, VirtualKey
from .journal import ReservationJournal, recover_journals
from .location import ledger_location
from .migrations import MIGRATIONS, Migration, apply_migrations

__all__ = ["NANOS_PER_USD", "SQLiteLedger", "default_ledger_path", "from_nanos", "to_nanos"]

_log = logging.getLogger(__name__)

_READ_POOL_SIZE = 4
TASK_OUTCOMES = ("success", "failure")


def default_ledger_path(config: MarginConfig | None = None) -> Path:
    """Where the SQLite ledger file is: ``gateway.database`` from the config (a path or ``sqlite:///PATH``), else
    ``$MARGIN_HOME/ledger.db`` (see :func:`margin.config.margin_home`). ConfigError when ``gateway.database``
    is a PostgreSQL URL: the caller reads the SQLite file itself (open_ledger serves both backends)."""
    location = ledger_location(config)
    if location.path is None:
        raise ConfigError(
            f"this command reads the SQLite ledger file directly, and gateway.database is {location.describe()}: "
            "it supports only the SQLite ledger for now (run it with a config whose gateway.database is a file)"
        )
    return location.path


# ---------------------------------------------------------------------------------------------------------
# The ledger
# ---------------------------------------------------------------------------------------------------------


class SQLiteLedger(SQLiteReads):
    """The gateway's ledger on one SQLite file (see the module docstring for the write path and durability).

    ``queue_size`` bounds the writes in flight (queued or being committed); ``batch_max`` bounds the writes
    committed together. ``commit_delay_ms``: when a batch starts with a background write (nobody awaits its
    commit, see :meth:`settle`), the writer waits that long before committing, so that one commit carries
    the writes of a few ms even at low concurrency (0: commit at once). ``synchronous`` is SQLite's
    ``PRAGMA synchronous``: ``NORMAL`` survives a process kill, ``FULL`` also a power loss.
    ``reservation_journal``: open reservations go to an append-only journal file instead of a committed
    row (see :mod:`margin.store.journal`; only with ``NORMAL``). ``migrations`` and ``on_batch`` exist for
    tests and instrumentation: ``on_batch(connection, batch_size)`` runs on the writer thread inside each
    batch's transaction, just
    before COMMIT (raising there fails the batch).
    """

    def __init__(
        self,
        path: Path | str,
        *,
        queue_size: int = 10_000,
        batch_max: int = 256,
        synchronous: SyncMode = "NORMAL",
        busy_timeout_ms: int = 5_000,
        migrations: Sequence[Migration] = MIGRATIONS,
        on_batch: Callable[[sqlite3.Connection, int], None] | None = None,
        reservation_journal: bool = False,
        commit_delay_ms: float = 0.0,
    ) -> None:
        if str(path) == ":memory:" or str(path).startswith("file:"):
            raise ValueError("the ledger needs a file path (readers and the writer use separate connections)")
        if queue_size < 1 or batch_max < 1:
            raise ValueError("queue_size and batch_max must be at least 1")
        if synchronous not in get_args(SyncMode):
            raise ValueError(f"synchronous must be one of {', '.join(get_args(SyncMode))}, got {synchronous!r}")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._synchronous = synchronous
        self._busy_timeout_ms = int(busy_timeout_ms)
        self._batch_max = batch_max
        if commit_delay_ms < 0:
            raise ValueError("commit_delay_ms must be >= 0")
        self._commit_delay = commit_delay_ms / 1000
        self._on_batch = on_batch
        # Bounded: the slots admit at most queue_size items, plus room for the stop sentinel, so put_nowait
        # never finds it full; waiting happens on the slots, where a coroutine can wait without blocking.
        self._queue: queue.Queue[_Item | object] = queue.Queue(maxsize=queue_size + 1)
        self._slots = _Slots(queue_size)
        self._submit_lock = threading.Lock()
        self._closed = False
        self._failure: LedgerError | None = None
        self._failed_at: datetime | None = None
        self._read_pool: list[sqlite3.Connection] = []
        self._read_lock = threading.Lock()
        self.commit_count = 0  # committed transactions (group commits), for tests and metrics
        self.committed_items = 0  # writes committed
        self.max_batch = 0  # the largest batch committed

        try:
            self._conn = self._connect()
        except sqlite3.Error as exc:
            raise LedgerError(f"cannot open the ledger at {self.path}: {exc}", cause=exc) from exc
        try:
            journal = self._conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(journal).lower() != "wal":
                raise LedgerError(f"cannot put {self.path} in WAL mode (journal_mode is {journal})")
            apply_migrations(self._conn, migrations)
            # Only with synchronous=NORMAL: the journal's durability class (see store/journal.py) is NORMAL's.
            self._journal: ReservationJournal | None = None
            if reservation_journal and synchronous == "NORMAL":
                self._recover_journals()
                self._journal = ReservationJournal(self.path)
        except BaseException as exc:
            self._conn.close()
            if isinstance(exc, sqlite3.Error):
                raise LedgerError(f"cannot open the ledger at {self.path}: {exc}", cause=exc) from exc
            raise
        self._thread = threading.Thread(target=self._writer, name=f"margin-ledger-writer:{self.path.name}")
        self._thread.daemon = True
        self._thread.start()

    def _recover_journals(self) -> None:
        """Journaled reservations of gateway processes that are gone become open reservations in the ledger
        (unless their event was committed), before this process writes anything. Idempotent: a crash midway
        recovers the same files again, and INSERT OR IGNORE plus the event check keep each charge single."""
        found, paths, fds = recover_journals(self.path)
        try:
            if found:
                since = _ts(min(r.created_at for r in found), "created_at")
                settled = {
                    rid
                    for (rid,) in self._conn.execute(
                        "SELECT reservation_id FROM usage_events WHERE finished_at >= ? AND reservation_id IS NOT NULL",
                        (since,),
                    )
                }
                missing = [r for r in found if r.reservation_id not in settled]
                self._conn.execute("BEGIN IMMEDIATE")
                self._conn.executemany(
                    _INSERT_RESERVATION.replace("INSERT", "INSERT OR IGNORE", 1),
                    [_reservation_row(r) for r in missing],
                )
                self._conn.execute("COMMIT")
                if missing:
                    _log.warning(
                        "ledger %s: %d journaled reservation(s) of a stopped gateway were never settled; they "
                        "are charged at their worst case",
                        self.path,
                        len(missing),
                    )
            for path in paths:
                path.unlink(missing_ok=True)
        finally:
            for fd in fds:
                os.close(fd)

    # -- connections ------------------------------------------------------------------------------------------

    def _connect(self, *, read_only: bool = False) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout={self._busy_timeout_ms}")
        conn.execute(f"PRAGMA synchronous={self._synchronous}")
        conn.execute("PRAGMA foreign_keys=ON")
        if read_only:
            conn.execute("PRAGMA query_only=ON")
            conn.create_aggregate("margin_decimal_sum", 1, _DecimalSum)
        return conn

    @contextlib.contextmanager
    def _reader(self) -> Iterator[sqlite3.Connection]:
        with self._read_lock:
            conn = self._read_pool.pop() if self._read_pool else None
        if conn is None:
            conn = self._connect(read_only=True)
        try:
            yield conn
        finally:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            with self._read_lock:
                if not self._closed and len(self._read_pool) < _READ_POOL_SIZE:
                    self._read_pool.append(conn)
                    conn = None
            if conn is not None:
                conn.close()

    # -- state ------------------------------------------------------------------------------------------------

    @property
    def failed(self) -> LedgerError | None:
        """The error that put the ledger in its failed state, or None while it is healthy."""
        return self._failure

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def in_flight(self) -> int:
        """Writes queued or being committed now."""
        return self._slots.in_flight

    @property
    def max_in_flight(self) -> int:
        """The most writes ever in flight at once (never above ``queue_size``)."""
        return self._slots.max_in_flight

    @property
    def journal_open_count(self) -> int:
        """Reservations open in this process's journal (in memory: no database read)."""
        return len(self._journal.open_reservations()) if self._journal is not None else 0

    @property
    def reservations_held(self) -> int:
        """Reservations this process holds open in its journal (0 without one: they are then ledger rows)."""
        return self.journal_open_count

    def describe(self) -> str:
        return str(self.path)

    def _check_usable(self) -> None:
        if self._failure is not None:
            raise self._failed_error()
        if self._closed:
            raise LedgerError(f"the ledger at {self.path} is closed")

    def _failed_error(self) -> LedgerError:
        assert self._failure is not None
        return LedgerError(
            f"the ledger at {self.path} failed at {self._failed_at:%Y-%m-%d %H:%M:%S} UTC and accepts no writes "
            f"until restarted: {self._failure.cause or self._failure.message}",
            cause=self._failure.cause,
        )

    # -- submitting writes ------------------------------------------------------------------------------------

    def _enqueue(self, item: _Item) -> None:
        with self._submit_lock:
            if self._closed:
                raise LedgerError(f"the ledger at {self.path} is closed")
            self._queue.put_nowait(item)

    async def _submit(self, op: _Op) -> Any:
        self._check_usable()
        loop = asyncio.get_running_loop()
        await self._slots.acquire()
        future: asyncio.Future[Any] = loop.create_future()
        try:
            self._check_usable()
            self._enqueue(_Item(op, loop, future))
        except BaseException:
            self._slots.release(1)
            raise
        return await future

    async def _submit_background(self, op: _Op, after_commit: Callable[[], None] | None) -> None:
        """Queue ``op`` without waiting for its commit (only for a free slot: the backpressure stays). A failure
        is not returned to anyone: it puts the ledger in its failed state, logged at ERROR, and every later
        write raises; ``after_commit`` runs only if the commit succeeded."""
        self._check_usable()
        await self._slots.acquire()
        try:
            self._check_usable()
            self._enqueue(_Item(op, None, None, after_commit))
        except BaseException:
            self._slots.release(1)
            raise

    def _submit_sync(self, op: _Op) -> Any:
        self._check_usable()
        if threading.current_thread() is self._thread:
            raise RuntimeError("the ledger's writer thread cannot wait on its own queue")
        if _running_loop() is not None:
            # Blocking here would stall the loop, and could deadlock it: a freed slot goes to the coroutines
            # waiting on this very loop first.
            raise RuntimeError(
                "SQLiteLedger's synchronous writes block; on an event loop call them via asyncio.to_thread(...)"
            )
        self._slots.acquire_sync()
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        try:
            self._check_usable()
            self._enqueue(_Item(op, None, future))
        except BaseException:
            self._slots.release(1)
            raise
        return future.result()

    # -- the writer thread --------------------------------------------------------------------------------------

    def _writer(self) -> None:
        try:
            while True:
                first = self._queue.get()
                if first is _STOP:
                    break
                batch: list[_Item] = [first]  # type: ignore[list-item]
                stop = False
                if self._commit_delay > 0 and first.future is None:  # type: ignore[union-attr]
                    # Nobody waits on a background write: linger so that one commit carries the writes of
                    # the next few ms (sleeping, not waiting on the queue, so puts meanwhile wake nobody).
                    time.sleep(self._commit_delay)
                while len(batch) < self._batch_max:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is _STOP:
                        stop = True
                        break
                    batch.append(item)  # type: ignore[arg-type]
                self._run_batch(batch)
                if stop:
                    break
        except BaseException as exc:  # a bug in the loop itself: fail closed rather than hang callers
            self._fail(exc, 0)
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is not _STOP:
                    self._finish([item], None)  # type: ignore[list-item]
        finally:
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()

    def _run_batch(self, batch: list[_Item]) -> None:
        if self._failure is not None:
            self._finish(batch, None)
            return
        conn = self._conn
        results: list[Any] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for item in batch:
                results.append(item.op(conn))
            if self._on_batch is not None:
                self._on_batch(conn, len(batch))
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    _log.exception("ledger rollback failed")
            self._fail(exc, len(batch))
            self._finish(batch, None)
            return
        self.commit_count += 1
        self.committed_items += len(batch)
        self.max_batch = max(self.max_batch, len(batch))
        self._finish(batch, results)

    def _fail(self, exc: BaseException, batch_size: int) -> None:
        if self._failure is None:
            self._failed_at = datetime.now(UTC)
            self._failure = LedgerError(
                f"ledger write failed, {batch_size} write(s) not recorded: {type(exc).__name__}: {exc}", cause=exc
            )
            _log.error(
                "ledger %s: write failed (%s: %s); %d write(s) rolled back; the ledger now refuses writes",
                self.path,
                type(exc).__name__,
                exc,
                batch_size,
                exc_info=exc,
            )

    def _finish(self, batch: list[_Item], results: list[Any] | None) -> None:
        """Free the batch's slots, then resolve every item (``results`` None: the batch failed). Slots first,
        so that a caller whose await has returned no longer counts as in flight."""
        self._slots.release(len(batch))
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Any, BaseException | None]]] = {}
        for index, item in enumerate(batch):
            error = self._failed_error() if results is None else None
            result = None if results is None else results[index]
            if item.future is None:
                if error is None and item.after_commit is not None:
                    try:
                        item.after_commit()
                    except Exception:  # bookkeeping only: the write itself is committed
                        _log.exception("ledger %s: after-commit hook failed", self.path)
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
            with contextlib.suppress(RuntimeError):  # loop closed: its callers are gone
                loop.call_soon_threadsafe(_resolve_async, resolutions)

    # -- async writes (the gateway) ------------------------------------------------------------------------------

    async def write_event(self, event: UsageEvent, *, wait: bool = True) -> None:
        """Record one usage event; returns once committed (``wait=False``: once queued, for events that hold
        no reservation and cost nothing, such as cache hits; a failed commit is loud, see :meth:`settle`)."""
        row = _event_row(event)
        if not wait:
            await self._submit_background(_execute(_INSERT_EVENT, row), None)
            return
        await self._submit(_execute(_INSERT_EVENT, row))

    async def open_reservation(self, reservation: Reservation) -> None:
        """Record an open reservation (write-ahead, before the upstream call); returns once it would survive
        a crash of the process: appended to the reservation journal when the ledger has one (see
        store/journal.py), else committed as a row."""
        if self._journal is not None:
            self._check_usable()
            self._journal.append(reservation)
            return
        row = _reservation_row(reservation)
        await self._submit(_execute(_INSERT_RESERVATION, row))

    async def settle(self, event: UsageEvent, reservation_id: str, *, wait: bool = True) -> bool | None:
        """Write ``event`` (stamped with ``reservation_id``) and delete reservation ``reservation_id`` in the
        same transaction. With ``wait`` (the default) returns once committed: True if the reservation was
        still open (False: already settled or reconciled).

        ``wait=False`` returns once the write is queued (None). The reservation stays open, in the journal
        or as a row, until the event is committed, so a crash before the commit charges the request at its
        reserved worst case: nothing is lost, at worst overcharged. A failed commit is loud (the ledger's
        failed state); the reservation then stays open for the next start-up to charge."""
        row = _event_row(event)
        if event.reservation_id != reservation_id:
            row = (*row[:_RESERVATION_ID_AT], reservation_id, *row[_RESERVATION_ID_AT + 1 :])

        def op(conn: sqlite3.Connection) -> bool:
            conn.execute(_INSERT_EVENT, row)
            return conn.execute("DELETE FROM reservations WHERE reservation_id = ?", (reservation_id,)).rowcount > 0

        journal = self._journal
        if not wait:
            await self._submit_background(op, (lambda: journal.settled(reservation_id)) if journal else None)
            return None
        deleted = bool(await self._submit(op))
        if journal is not None:
            return journal.settled(reservation_id) or deleted
        return deleted

    async def flush(self) -> None:
        """Return once every write queued before this call is committed (the queue is first in, first out
        and batches commit in order), e.g. before reading the ledger right after traffic."""
        await self._submit(lambda conn: None)

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
        row = (
            alert_id,
            _ts(created_at or datetime.now(UTC), "created_at"),
            kind,
            scope,
            message,
            json.dumps(dict(data or {}), ensure_ascii=False, sort_keys=True, default=str),
        )
        await self._submit(_execute(_INSERT_ALERT, row))
        return alert_id

    # -- keys (sync; the CLI) -------------------------------------------------------------------------------------

    def create_key(self, key: VirtualKey) -> None:
        """Store a virtual key. ValueError if its id or hash already exists (the ledger stays healthy)."""
        row = _key_row(key)

        def op(conn: sqlite3.Connection) -> bool:
            clash = conn.execute(
                "SELECT 1 FROM keys WHERE key_id = ? OR key_hash = ?", (key.key_id, key.key_hash)
            ).fetchone()
            if clash:
                return False
            conn.execute(_INSERT_KEY, row)
            return True

        if not self._submit_sync(op):
            raise ValueError(f"a key with id {key.key_id!r} or the same key hash already exists")

    def get_key_by_hash(self, key_hash: str) -> VirtualKey | None:
        with self._reader() as conn:
            row = conn.execute(f"{_SELECT_KEY} WHERE key_hash = ?", (key_hash,)).fetchone()
        return None if row is None else _key_from_row(row)

    def list_keys(self, *, include_revoked: bool = True) -> list[VirtualKey]:
        where = "" if include_revoked else " WHERE revoked_at IS NULL"
        with self._reader() as conn:
            rows = conn.execute(f"{_SELECT_KEY}{where} ORDER BY created_at, key_id").fetchall()
        return [_key_from_row(row) for row in rows]

    def revoke_key(self, key_id_or_prefix: str, *, now: datetime | None = None) -> bool:
        """Revoke the key with this id, display prefix (or the key itself). True if a key was revoked now;
        False if none matches or it was already revoked. ValueError if a prefix matches several keys."""
        revoked_at = _ts(now or datetime.now(UTC), "now")
        needle = key_id_or_prefix

        def op(conn: sqlite3.Connection) -> bool | list[str]:
            rows = conn.execute(
                "SELECT key_id, revoked_at FROM keys WHERE key_id = ? OR key_hash = ?", (needle, hash_key(needle))
            ).fetchall()
            if not rows:
                rows = conn.execute("SELECT key_id, revoked_at FROM keys WHERE prefix = ?", (needle,)).fetchall()
            if len(rows) > 1:
                return sorted(row[0] for row in rows)
            if not rows or rows[0][1] is not None:
                return False
            conn.execute("UPDATE keys SET revoked_at = ? WHERE key_id = ?", (revoked_at, rows[0][0]))
            return True

        outcome = self._submit_sync(op)
        if isinstance(outcome, list):
            raise ValueError(f"{needle!r} matches {len(outcome)} keys ({', '.join(outcome)}); pass a key id")
        return bool(outcome)

    # -- reads -----------------------------------------------------------------------------------------------------

    # -- insights (sync; the CLI and reports) -------------------------------------------------------------------

    def add_shared_cost(self, name: str, period: str, category: str, amount: Decimal, note: str | None = None) -> None:
        """Record (or replace) a shared cost for a month (``YYYY-MM``)."""
        if not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", period):
            raise ValueError(f"period must be a month like 2026-11, got {period!r}")
        text, nanos = _money(amount, "amount")
        row = (name, period, category, text, nanos, note, _ts(datetime.now(UTC), "created_at"))
        self._submit_sync(_execute("INSERT OR REPLACE INTO shared_costs VALUES (?, ?, ?, ?, ?, ?, ?)", row))

    def remove_shared_cost(self, name: str, period: str) -> bool:
        def op(conn: sqlite3.Connection) -> bool:
            return conn.execute("DELETE FROM shared_costs WHERE name = ? AND period = ?", (name, period)).rowcount > 0

        return bool(self._submit_sync(op))

    # -- retained prompts (gateway.prompt_retention; opt-in) -----------------------------------------------------

    async def retain_prompt(
        self, request_id: str, prompt_hash: str, created_at: datetime, endpoint: str, model: str, body: str
    ) -> None:
        """Queue one redacted request body (JSON text) for the retained-prompts table; returns once queued (a
        failed commit puts the ledger in its failed state, like any write)."""
        row = (request_id, prompt_hash, _ts(created_at, "created_at"), endpoint, model, body)
        await self._submit_background(
            _execute("INSERT OR IGNORE INTO retained_prompts VALUES (?, ?, ?, ?, ?, ?)", row), None
        )

    def purge_retained_prompts(self, before: datetime) -> int:
        """Delete retained bodies created before ``before``; returns how many."""
        cutoff = _ts(before, "before")

        def op(conn: sqlite3.Connection) -> int:
            return conn.execute("DELETE FROM retained_prompts WHERE created_at < ?", (cutoff,)).rowcount

        return int(self._submit_sync(op))

    # -- tasks ------------------------------------------------------------------------------------------------------

    def set_task_outcome(
        self, task_id: str, outcome: str, *, note: str | None = None, key_id: str | None = None
    ) -> None:
        """Record (or replace) a task's outcome: ``success`` or ``failure`` (sync; async callers use a thread)."""
        if outcome not in TASK_OUTCOMES:
            raise ValueError(f"outcome must be one of {', '.join(TASK_OUTCOMES)}, got {outcome!r}")
        if not task_id or len(task_id) > 200:
            raise ValueError("task_id must be 1-200 characters")
        row = (task_id, outcome, note, key_id, _ts(datetime.now(UTC), "recorded_at"))
        self._submit_sync(_execute("INSERT OR REPLACE INTO task_outcomes VALUES (?, ?, ?, ?, ?)", row))

    # -- recovery --------------------------------------------------------------------------------------------------

    def reconcile_open_reservations(self, now: datetime, *, only_expired: bool = False) -> list[UsageEvent]:
        """After a crash: turn every open reservation into a charged usage event, in one transaction.

        A reservation still open at start-up belongs to a request whose outcome the ledger never learned
        (the gateway died mid-call; the provider may well have billed it). Each becomes an event with status
        ``upstream_error``, error_type ``gateway_crash`` and list_cost = effective_cost = the reserved
        worst-case amount, carrying the reservation's key, tags and model, and the reservation is deleted in
        the same transaction. This OVERCHARGES BY DESIGN: budgets rebuilt from the ledger are never lower than
        the truth, so a crash can never be used to overspend. ``only_expired`` limits it to reservations whose
        ``expires_at`` has passed (for several gateway processes sharing one ledger).
        """
        stamp = _ts(now, "now")

        def op(conn: sqlite3.Connection) -> list[UsageEvent]:
            sql = _SELECT_RESERVATION
            params: tuple[Any, ...] = ()
            if only_expired:
                sql += " WHERE expires_at IS NOT NULL AND expires_at <= ?"
                params = (stamp,)
            reservations = [_reservation_from_row(row) for row in conn.execute(sql, params).fetchall()]
            events = []
            for res in reservations:
                event = reconciled_event(res, datetime.fromisoformat(stamp))
                conn.execute(_INSERT_EVENT, _event_row(event))
                conn.execute("DELETE FROM reservations WHERE reservation_id = ?", (res.reservation_id,))
                events.append(event)
            return events

        events: list[UsageEvent] = self._submit_sync(op)
        if events:
            _log.warning(
                "ledger %s: charged %d open reservation(s) at their worst case after an unclean stop",
                self.path,
                len(events),
            )
        return events

    # -- lifecycle ------------------------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop accepting writes, commit everything already queued, stop the writer thread and close the
        connections. Idempotent. Blocks: on an event loop use :meth:`aclose`."""
        with self._submit_lock:
            if not self._closed:
                self._closed = True
                self._queue.put_nowait(_STOP)
        if threading.current_thread() is not self._thread:
            self._thread.join()
        if self._journal is not None:
            self._journal.close()
        with self._read_lock:
            pool, self._read_pool = self._read_pool, []
        for conn in pool:
            conn.close()

    async def aclose(self) -> None:
        """:meth:`close` without blocking the event loop."""
        await asyncio.to_thread(self.close)

    def __enter__(self) -> SQLiteLedger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> SQLiteLedger:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        state = "failed" if self._failure else ("closed" if self._closed else "open")
        return f"SQLiteLedger({str(self.path)!r}, {state})"

"""The SQLite ledger's write queue plumbing: items, the bounded slots that give backpressure to threads and
event loops alike, and how results travel back to awaiting coroutines (see :mod:`margin.store.sqlite`)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import sqlite3
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# An operation runs on the writer thread, inside the batch's transaction, and returns the caller's result.
_Op = Callable[[sqlite3.Connection], Any]


@dataclass(slots=True)
class _Item:
    op: _Op
    loop: asyncio.AbstractEventLoop | None  # None: a synchronous caller waiting on a concurrent future
    future: asyncio.Future[Any] | concurrent.futures.Future[Any] | None  # None: nobody waits (background)
    after_commit: Callable[[], None] | None = None  # run on the writer thread once the item is committed


class _Slots:
    """A counting semaphore shared by threads and event loops: ``capacity`` items may be in flight (queued or
    being written). Coroutines wait on futures of their own loop (never blocking it); threads wait on a
    condition. A freed slot goes to the longest-waiting coroutine first."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._free = capacity
        self._waiters: deque[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = deque()
        self.max_in_flight = 0

    @property
    def in_flight(self) -> int:
        return self.capacity - self._free

    def _took_one(self) -> None:
        self._free -= 1
        in_flight = self.capacity - self._free
        if in_flight > self.max_in_flight:
            self.max_in_flight = in_flight

    async def acquire(self) -> None:
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._free > 0 and not self._waiters:
                self._took_one()
                return
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiters.append((loop, waiter))
        try:
            await waiter  # resolved by _wake, which hands over a slot without freeing it
        except asyncio.CancelledError:
            with self._lock:
                try:
                    self._waiters.remove((loop, waiter))
                    still_queued = True
                except ValueError:
                    still_queued = False
            # Already popped by release(): if the slot reached us (the task was cancelled just after the
            # hand-over), give it back; if the waiter was cancelled before _wake ran, _wake passes it on.
            if not still_queued and waiter.done() and not waiter.cancelled():
                self.release(1)
            raise

    def acquire_sync(self) -> None:
        with self._cond:
            while self._free <= 0:
                self._cond.wait()
            self._took_one()

    def release(self, count: int) -> None:
        wakes: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
        with self._lock:
            for _ in range(count):
                if self._waiters:
                    loop, waiter = self._waiters.popleft()
                    wakes.setdefault(loop, []).append(waiter)
                else:
                    self._free += 1
            if self._free > 0:
                self._cond.notify(self._free)
        for loop, waiters in wakes.items():
            try:
                loop.call_soon_threadsafe(self._wake, waiters)
            except RuntimeError:  # that loop is closed: nobody waits there any more
                self.release(len(waiters))

    def _wake(self, waiters: list[asyncio.Future[None]]) -> None:
        unused = 0
        for waiter in waiters:
            if waiter.done():  # cancelled while the hand-over was on its way
                unused += 1
            else:
                waiter.set_result(None)
        if unused:
            self.release(unused)


def _resolve_async(results: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for future, result, error in results:
        if future.done():  # the awaiting task was cancelled; the write happened (or failed) regardless
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)


def _execute(sql: str, params: tuple[Any, ...]) -> _Op:
    def op(conn: sqlite3.Connection) -> None:
        conn.execute(sql, params)

    return op


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


_STOP = object()

"""The write path: group commit, backpressure, fail-closed errors, draining close."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time

import pytest

from margin.store.base import LedgerError
from margin.store.sqlite import SQLiteLedger

from .conftest import event, new_key


def test_group_commit_2000_concurrent_writes(ledger, count_rows):
    async def main():
        await asyncio.gather(*(ledger.write_event(event(i)) for i in range(2000)))

    asyncio.run(main())
    assert count_rows() == 2000 and len({e.event_id for e in ledger.events(limit=5000)}) == 2000
    assert ledger.committed_items == 2000
    # Writers waiting together share commits: far fewer transactions than writes.
    assert ledger.commit_count <= 200, ledger.commit_count
    assert 1 < ledger.max_batch <= 256


def test_batches_never_exceed_batch_max(open_store):
    sizes: list[int] = []
    with open_store(batch_max=7, on_batch=lambda conn, n: sizes.append(n)) as ledger:

        async def main():
            await asyncio.gather(*(ledger.write_event(event(i)) for i in range(300)))

        asyncio.run(main())
    assert sum(sizes) == 300 and max(sizes) == 7


def test_backpressure_bounds_the_writes_in_flight_without_blocking_the_loop(open_store, count_rows):
    seen: list[int] = []

    def slow(conn, batch_size):
        seen.append(ledger.in_flight)
        time.sleep(0.005)

    ledger = open_store(queue_size=4, on_batch=slow)
    ticks = 0

    async def heartbeat(stop: asyncio.Event):
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            await asyncio.sleep(0.001)

    async def main():
        stop = asyncio.Event()
        beat = asyncio.create_task(heartbeat(stop))
        await asyncio.gather(*(ledger.write_event(event(i)) for i in range(200)))
        stop.set()
        await beat

    asyncio.run(main())
    ledger.close()
    assert count_rows() == 200
    assert ledger.max_in_flight == 4
    assert max(seen) <= 4
    assert ledger.max_batch <= 4
    assert ticks > 20  # the event loop kept running while 196 writers waited for a slot


def test_cancelled_waiters_give_their_slots_back(open_store, count_rows):
    gate = threading.Event()
    ledger = open_store(queue_size=2, on_batch=lambda conn, n: gate.wait(5))

    async def main():
        tasks = [asyncio.create_task(ledger.write_event(event(i))) for i in range(20)]
        await asyncio.sleep(0.05)
        assert ledger.in_flight == 2
        for task in tasks[2:12]:  # cancel ten that wait for a slot
            task.cancel()
        await asyncio.sleep(0)
        gate.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        return results

    results = asyncio.run(main())
    cancelled = [r for r in results if isinstance(r, asyncio.CancelledError)]
    assert len(cancelled) == 10
    assert all(r is None for r in results if not isinstance(r, BaseException))
    assert ledger.in_flight == 0
    ledger.close()
    assert count_rows() == 10


def test_sync_callers_from_other_threads_share_the_writer(ledger, count_rows):
    def create(n: int):
        ledger.create_key(new_key(f"k{n}")[1])

    async def main():
        threads = [threading.Thread(target=create, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        await asyncio.gather(*(ledger.write_event(event(i)) for i in range(500)))
        for thread in threads:
            thread.join()

    asyncio.run(main())
    assert count_rows() == 500
    assert len(ledger.list_keys()) == 8


# -- failure ---------------------------------------------------------------------------------------------------


def test_a_constraint_error_fails_the_batch_and_then_every_write_fast(ledger, backend, count_rows, caplog):
    caplog.set_level(logging.ERROR, logger="margin.store")

    async def main():
        await ledger.write_event(event(1))
        results = await asyncio.gather(ledger.write_event(event(1)), return_exceptions=True)
        return results

    (error,) = asyncio.run(main())
    assert isinstance(error, LedgerError)
    if backend == "sqlite":
        assert isinstance(error.cause, sqlite3.IntegrityError)
    else:
        import psycopg.errors

        assert isinstance(error.cause, psycopg.errors.UniqueViolation)
    assert error.__cause__ is error.cause
    assert ledger.failed is not None
    assert any(record.levelno == logging.ERROR and "write failed" in record.getMessage() for record in caplog.records)

    commits = ledger.commit_count
    started = time.perf_counter()
    with pytest.raises(LedgerError, match="accepts no writes until restarted"):
        asyncio.run(ledger.write_event(event(2)))
    with pytest.raises(LedgerError):
        ledger.reconcile_open_reservations(event(2).finished_at)
    assert time.perf_counter() - started < 0.5
    assert ledger.commit_count == commits
    assert count_rows() == 1
    assert len(ledger.events()) == 1  # reads still work: the gateway can report, not meter


def test_every_write_of_the_failing_batch_and_queued_behind_it_gets_the_error(open_store, count_rows):
    gate = threading.Event()
    calls = 0

    def hook(conn, batch_size):
        nonlocal calls
        calls += 1
        if calls == 1:
            gate.wait(5)  # hold the first batch so that the others queue up behind it
        elif calls == 2:
            raise OSError("disk I/O error")  # any error inside the transaction, on either backend

    ledger = open_store(batch_max=10, on_batch=hook)

    async def main():
        first = asyncio.create_task(ledger.write_event(event(0)))
        await asyncio.sleep(0.05)
        rest = [asyncio.create_task(ledger.write_event(event(i))) for i in range(1, 40)]
        await asyncio.sleep(0.01)
        gate.set()
        return await asyncio.gather(first, *rest, return_exceptions=True)

    results = asyncio.run(main())
    assert results[0] is None
    assert all(isinstance(r, LedgerError) for r in results[1:])
    assert "disk I/O error" in str(results[1])
    assert ledger.in_flight == 0
    ledger.close()
    assert count_rows() == 1


def test_a_full_disk_fails_closed(db_path):  # SQLite's own mechanics (its page limit)
    def cap_the_file(conn, batch_size):
        # SQLite's own page limit stands in for a full disk: the next writes that need pages get SQLITE_FULL.
        conn.execute("PRAGMA max_page_count = 1")

    ledger = SQLiteLedger(db_path, on_batch=cap_the_file)

    async def main():
        await ledger.write_event(event(0))
        big = [event(i, error_message="x" * 20_000) for i in range(1, 30)]
        return await asyncio.gather(*(ledger.write_event(e) for e in big), return_exceptions=True)

    results = asyncio.run(main())
    errors = [r for r in results if isinstance(r, LedgerError)]
    assert errors and "full" in str(errors[0].cause)
    with pytest.raises(LedgerError):
        asyncio.run(ledger.write_event(event(99)))
    ledger.close()


def test_a_read_only_database_fails_the_writes(db_path):  # SQLite's own mechanics (query_only)
    def turn_read_only(conn, batch_size):
        # What a disk remounted read-only looks like to the writer: the batches after this one cannot write.
        conn.execute("PRAGMA query_only = ON")

    ledger = SQLiteLedger(db_path, on_batch=turn_read_only)
    asyncio.run(ledger.write_event(event(1)))
    with pytest.raises(LedgerError, match=r"readonly|read-only|query_only"):
        asyncio.run(ledger.write_event(event(2)))
    assert ledger.failed is not None
    ledger.close()
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM usage_events").fetchone()[0] == 1


# -- close -----------------------------------------------------------------------------------------------------


def test_aclose_drains_every_queued_write(open_store, count_rows):
    ledger = open_store(batch_max=8, on_batch=lambda conn, n: time.sleep(0.002))

    async def main():
        tasks = [asyncio.create_task(ledger.write_event(event(i))) for i in range(300)]
        await asyncio.sleep(0)  # every task has queued its write; few have been committed
        assert ledger.in_flight > 100
        await ledger.aclose()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        with pytest.raises(LedgerError, match="closed"):
            await ledger.write_event(event(1000))
        await ledger.aclose()  # idempotent
        return results

    results = asyncio.run(main())
    assert results == [None] * 300
    ledger.close()
    assert count_rows() == 300
    assert ledger.closed and not ledger._thread.is_alive()  # the writer thread (SQLite) or the loop's (PostgreSQL)


def test_close_from_a_thread_while_writers_wait_for_slots(open_store, count_rows):
    ledger = open_store(queue_size=3, on_batch=lambda conn, n: time.sleep(0.001))

    async def main():
        tasks = [asyncio.create_task(ledger.write_event(event(i))) for i in range(50)]
        await asyncio.sleep(0.003)
        closer = threading.Thread(target=ledger.close)
        closer.start()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        closer.join()
        return results

    results = asyncio.run(main())
    written = [r for r in results if r is None]
    refused = [r for r in results if isinstance(r, LedgerError)]
    assert len(written) + len(refused) == 50 and refused  # none hangs; the late ones are refused
    assert all("closed" in str(r) for r in refused)
    assert count_rows() == len(written)


def test_sync_writes_refuse_to_block_an_event_loop(ledger):
    async def main():
        with pytest.raises(RuntimeError, match=r"asyncio\.to_thread"):
            ledger.create_key(new_key("k1")[1])
        await asyncio.to_thread(ledger.create_key, new_key("k2")[1])

    asyncio.run(main())
    assert [key.key_id for key in ledger.list_keys()] == ["k2"]


@pytest.mark.parametrize(("mode", "level"), [("NORMAL", 1), ("FULL", 2), ("EXTRA", 3)])
def test_synchronous_mode_is_configurable(db_path, mode, level):  # SQLite's PRAGMA synchronous
    levels: list[int] = []
    with SQLiteLedger(
        db_path,
        synchronous=mode,
        on_batch=lambda conn, n: levels.append(conn.execute("PRAGMA synchronous").fetchone()[0]),
    ) as ledger:
        asyncio.run(ledger.write_event(event(1)))
    assert levels == [level]


def test_bad_settings_are_refused(db_path):
    with pytest.raises(ValueError, match="synchronous"):
        SQLiteLedger(db_path, synchronous="SOMETIMES")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least 1"):
        SQLiteLedger(db_path, queue_size=0)

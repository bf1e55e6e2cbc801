"""The reservation journal: append-only write-ahead records of open reservations, settled by the ledger's
events, recovered at start-up when their process is gone, never double-charged."""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from margin.store.base import LedgerError, Reservation
from margin.store.journal import ReservationJournal, decode_reservation, encode_reservation, recover_journals
from margin.store.sqlite import SQLiteLedger
from margin.usage import UsageEvent

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def reservation(rid: str, amount: str = "0.25", **extra) -> Reservation:
    return Reservation(
        reservation_id=rid,
        request_id="req-" + rid,
        scopes=("global:*:day:2026-11-23",),
        amount=Decimal(amount),
        created_at=NOW,
        key_id="k1",
        tags={"team": "ml", "feature": "é"},
        endpoint="chat.completions",
        model="gpt-4o-mini",
        **extra,
    )


def event(rid: str, cost: str = "0.01") -> UsageEvent:
    return UsageEvent(
        event_id="ev-" + rid,
        request_id="req-" + rid,
        attempt=0,
        started_at=NOW,
        finished_at=NOW + timedelta(seconds=1),
        status="ok",
        endpoint="chat.completions",
        requested_model="gpt-4o-mini",
        key_id="k1",
        tags={"team": "ml"},
        list_cost=Decimal(cost),
        effective_cost=Decimal(cost),
    )


def journal_files(db):
    return sorted(db.parent.glob(f"{db.name}-reservations-*.jsonl"))


def crash(ledger: SQLiteLedger) -> None:
    """What kill -9 leaves: the journal's files, unlocked (the process's descriptors are gone)."""
    journal = ledger._journal
    assert journal is not None
    for segment in {id(s): s for s in [*journal._segments.values(), journal._active] if s}.values():
        os.close(segment.fd)
    journal._closed = True
    journal._segments.clear()
    journal._active = None
    ledger.close()


def test_a_record_round_trips_exactly():
    res = reservation("a", "0.000123456789", expires_at=NOW + timedelta(minutes=5))
    assert decode_reservation(encode_reservation(res)) == res
    with pytest.raises(ValueError):
        decode_reservation(b'{"reservation_id": "x"')  # torn line
    with pytest.raises(ValueError):
        encode_reservation(reservation("b", "NaN"))


def test_settled_segments_are_deleted_and_close_cleans_up(tmp_path):
    db = tmp_path / "ledger.db"
    size = len(encode_reservation(reservation("r0")))
    journal = ReservationJournal(db, segment_bytes=2 * size)  # two records per segment
    for i in range(6):
        journal.append(reservation(f"r{i}"))
    assert len(journal_files(db)) >= 3
    assert {r.reservation_id for r in journal.open_reservations()} == {f"r{i}" for i in range(6)}
    for i in range(5):
        assert journal.settled(f"r{i}")
    assert not journal.settled("r0")  # already settled
    assert len(journal_files(db)) == 1  # only the active segment, which still holds r5
    journal.settled("r5")
    journal.close()
    assert journal_files(db) == []
    with pytest.raises(LedgerError):
        journal.append(reservation("late"))


def test_unsettled_reservations_of_a_dead_process_are_charged_once(tmp_path):
    db = tmp_path / "ledger.db"

    async def run() -> SQLiteLedger:
        ledger = SQLiteLedger(db, reservation_journal=True)
        for rid in ("done", "inflight1", "inflight2"):
            await ledger.open_reservation(reservation(rid))
        assert await ledger.settle(event("done"), "done")
        assert {r.reservation_id for r in ledger.open_reservations()} == {"inflight1", "inflight2"}
        return ledger

    crash(asyncio.run(run()))
    assert journal_files(db)  # left behind by the "dead" process

    with open(journal_files(db)[0], "ab") as f:
        f.write(b'{"reservation_id": "torn", "amo')  # a power loss mid-line: skipped

    ledger = SQLiteLedger(db, reservation_journal=True)  # start-up recovers the orphaned files
    assert journal_files(db) == []
    assert sorted(r.reservation_id for r in ledger.open_reservations()) == ["inflight1", "inflight2"]
    charged = ledger.reconcile_open_reservations(NOW + timedelta(minutes=1))
    assert sorted(e.reservation_id for e in charged) == ["inflight1", "inflight2"]
    assert all(e.effective_cost == Decimal("0.25") and e.error_type == "gateway_crash" for e in charged)
    events = ledger.events()
    assert len(events) == 3 and sum(e.effective_cost for e in events) == Decimal("0.51")
    ledger.close()

    # Opening again recovers nothing more and charges nothing twice.
    again = SQLiteLedger(db, reservation_journal=True)
    assert again.open_reservations() == [] and again.reconcile_open_reservations(NOW) == []
    assert len(again.events()) == 3
    again.close()


def test_a_live_process_journal_is_not_recovered_by_another(tmp_path):
    db = tmp_path / "ledger.db"

    async def run() -> None:
        live = SQLiteLedger(db, reservation_journal=True)
        await live.open_reservation(reservation("mine"))
        other = SQLiteLedger(db, reservation_journal=True)  # e.g. a second gateway on the same file
        assert other.open_reservations() == []  # the live one's lock keeps its files out
        assert journal_files(db)
        found, _, fds = recover_journals(db)
        assert found == [] and fds == []
        await other.aclose()
        assert await live.settle(event("mine"), "mine")
        await live.aclose()

    asyncio.run(run())
    assert journal_files(db) == []


def test_full_synchronous_mode_keeps_reservations_in_the_database(tmp_path):
    db = tmp_path / "ledger.db"

    async def run() -> None:
        ledger = SQLiteLedger(db, reservation_journal=True, synchronous="FULL")
        await ledger.open_reservation(reservation("r"))
        assert journal_files(db) == []
        assert [r.reservation_id for r in ledger.open_reservations()] == ["r"]
        await ledger.aclose()

    asyncio.run(run())


def test_a_background_settle_releases_the_reservation_only_after_its_commit(tmp_path):
    db = tmp_path / "ledger.db"

    async def run() -> None:
        ledger = SQLiteLedger(db, reservation_journal=True)
        await ledger.open_reservation(reservation("bg"))
        assert await ledger.settle(event("bg"), "bg", wait=False) is None
        await ledger.flush()
        assert ledger.open_reservations() == []
        assert [e.reservation_id for e in ledger.events()] == ["bg"]
        await ledger.aclose()

    asyncio.run(run())
    assert journal_files(db) == []


def test_a_failed_background_commit_keeps_the_reservation_for_the_next_start(tmp_path):
    db = tmp_path / "ledger.db"
    fail = {"on": False}

    def on_batch(conn, size):
        if fail["on"]:
            raise OSError("disk full (simulated)")

    async def run() -> None:
        ledger = SQLiteLedger(db, reservation_journal=True, on_batch=on_batch)
        await ledger.open_reservation(reservation("lost", "0.5"))
        fail["on"] = True
        await ledger.settle(event("lost"), "lost", wait=False)
        with pytest.raises(LedgerError):
            await ledger.flush()  # the ledger is now failed: loud, and every later write refuses
        with pytest.raises(LedgerError):
            await ledger.open_reservation(reservation("next"))
        assert [r.reservation_id for r in ledger.open_reservations()] == ["lost"]
        await ledger.aclose()

    asyncio.run(run())
    assert journal_files(db)  # kept: the event never committed
    restarted = SQLiteLedger(db, reservation_journal=True)
    charged = restarted.reconcile_open_reservations(NOW + timedelta(minutes=1))
    assert [(e.reservation_id, e.effective_cost) for e in charged] == [("lost", Decimal("0.5"))]
    restarted.close()

"""The reservation journal: write-ahead records of open budget reservations in append-only files.

Why not a ledger row: a request may reach its upstream only once its worst-case reservation would survive a
crash of the gateway (so that budgets rebuilt after a restart are never lower than the truth). A SQLite
transaction through the writer thread costs ~120 µs of CPU per request (two thread hand-offs and a commit);
one ``write(2)`` of a JSON line to a file opened with ``O_APPEND`` costs ~6 µs on the caller's thread and gives
the SAME durability class as the ledger's default ``synchronous=NORMAL``: the line is in the operating
system's page cache when ``write`` returns, so it survives ``kill -9`` of the process, not a power loss or a
kernel crash. (A ledger opened with ``synchronous="FULL"`` does not use the journal.)

Files: each gateway process writes its own segment files ``<ledger>-reservations-<token>-<n>.jsonl`` and holds
an exclusive ``flock`` on each while it lives. A reservation is settled when its usage event (which carries
the ``reservation_id``) is committed to the ledger; the journal only keeps a count of open reservations per
segment and deletes a segment that is no longer the active one once it has none. At start-up
:func:`recover_journals` reads every segment whose lock is free (its process is gone): those reservations,
minus the ones whose event is in the ledger, become open reservations in the ledger, charged at their worst
case by :meth:`SQLiteLedger.reconcile_open_reservations`. A line torn by a power loss is skipped with a warning.
"""

from __future__ import annotations

import fcntl
import logging
import os
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path

import orjson

from .base import LedgerError, Reservation

__all__ = ["ReservationJournal", "recover_journals"]

_log = logging.getLogger(__name__)

# A segment is closed and a new one started after this many bytes; closed segments are deleted once all
# their reservations settled, so the journal's size on disk stays about one segment.
SEGMENT_BYTES = 4 * 1024 * 1024


def _glob(ledger_path: Path) -> str:
    return f"{ledger_path.name}-reservations-*.jsonl"


def encode_reservation(res: Reservation) -> bytes:
    """One JSON line. Raises ValueError on a naive time or a non-finite amount (before anything is written)."""
    if res.created_at.tzinfo is None or (res.expires_at is not None and res.expires_at.tzinfo is None):
        raise ValueError("reservation times must be timezone-aware")
    if not res.amount.is_finite():
        raise ValueError(f"reservation amount must be finite, got {res.amount}")
    record = {
        "reservation_id": res.reservation_id,
        "request_id": res.request_id,
        "scopes": list(res.scopes),
        "amount": str(res.amount),
        "created_at": res.created_at.isoformat(),
        "expires_at": res.expires_at.isoformat() if res.expires_at else None,
        "key_id": res.key_id,
        "tags": dict(res.tags),
        "endpoint": res.endpoint,
        "model": res.model,
    }
    return orjson.dumps(record) + b"\n"


def decode_reservation(line: bytes) -> Reservation:
    """The reservation of one journal line. Raises ValueError when the line is not one."""
    try:
        record = orjson.loads(line)
        return Reservation(
            reservation_id=str(record["reservation_id"]),
            request_id=str(record["request_id"]),
            scopes=tuple(str(s) for s in record["scopes"]),
            amount=Decimal(record["amount"]),
            created_at=datetime.fromisoformat(record["created_at"]),
            expires_at=datetime.fromisoformat(record["expires_at"]) if record.get("expires_at") else None,
            key_id=record.get("key_id"),
            tags={str(k): str(v) for k, v in (record.get("tags") or {}).items()},
            endpoint=record.get("endpoint"),
            model=record.get("model"),
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError, InvalidOperation, ValueError) as exc:
        raise ValueError(f"not a reservation record: {exc}") from None


@dataclass
class _Segment:
    path: Path
    fd: int
    size: int = 0
    open_count: int = 0


@dataclass
class ReservationJournal:
    """This process's journal beside ``ledger_path`` (see the module docs). Thread-safe: the event loop
    appends, the ledger's writer thread settles after each commit."""

    ledger_path: Path
    segment_bytes: int = SEGMENT_BYTES
    _token: str = field(default_factory=lambda: secrets.token_hex(6))
    _number: int = 0
    _active: _Segment | None = None
    _segments: dict[str, _Segment] = field(default_factory=dict)  # reservation_id -> its segment
    _open: dict[str, Reservation] = field(default_factory=dict)
    _closed: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _new_segment(self) -> _Segment:
        self._number += 1
        path = self.ledger_path.with_name(f"{self.ledger_path.name}-reservations-{self._token}-{self._number}.jsonl")
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held while this process lives: "not an orphan"
        except OSError:
            os.close(fd)
            raise
        return _Segment(path, fd)

    def append(self, reservation: Reservation) -> None:
        """Record an open reservation; returns once the line is in the operating system's hands."""
        line = encode_reservation(reservation)
        with self._lock:
            self._append(reservation, line)

    def _append(self, reservation: Reservation, line: bytes) -> None:
        if self._closed:
            raise LedgerError("the reservation journal is closed")
        try:
            if self._active is None or self._active.size >= self.segment_bytes:
                previous = self._active
                self._active = self._new_segment()
                if previous is not None and previous.open_count == 0:
                    self._drop(previous)
            written = os.write(self._active.fd, line)
        except OSError as exc:
            raise LedgerError(
                f"cannot write the reservation journal beside {self.ledger_path}: {exc}", cause=exc
            ) from exc
        if written != len(line):  # a short write to a regular file means the disk is full
            raise LedgerError(f"short write to the reservation journal {self._active.path} (disk full?)")
        self._active.size += written
        self._active.open_count += 1
        self._segments[reservation.reservation_id] = self._active
        self._open[reservation.reservation_id] = reservation

    def settled(self, reservation_id: str) -> bool:
        """The reservation's event is committed: forget it. True if it was open here."""
        with self._lock:
            segment = self._segments.pop(reservation_id, None)
            self._open.pop(reservation_id, None)
            if segment is None:
                return False
            segment.open_count -= 1
            if segment.open_count == 0 and segment is not self._active and not self._closed:
                self._drop(segment)
            return True

    def open_reservations(self) -> list[Reservation]:
        with self._lock:
            return list(self._open.values())

    def _drop(self, segment: _Segment) -> None:
        try:
            os.unlink(segment.path)
        except FileNotFoundError:
            pass
        os.close(segment.fd)

    def close(self) -> None:
        """Close the files; delete them when nothing is open (else the next start-up recovers them)."""
        with self._lock:
            self._close()

    def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        segments = {id(s): s for s in self._segments.values()}
        if self._active is not None:
            segments[id(self._active)] = self._active
        for segment in segments.values():
            if segment.open_count == 0:
                self._drop(segment)
            else:
                os.close(segment.fd)
        self._active = None


@dataclass
class _Orphan:
    path: Path
    fd: int


def _orphans(ledger_path: Path) -> Iterator[_Orphan]:
    """Segment files whose process is gone (their lock can be taken). Locked ones belong to a live gateway."""
    for path in sorted(ledger_path.parent.glob(_glob(ledger_path))):
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:  # its owner just deleted it
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        yield _Orphan(path, fd)


def recover_journals(ledger_path: Path) -> tuple[list[Reservation], list[Path], list[int]]:
    """Every reservation in orphaned segment files beside ``ledger_path``: (reservations, their files, the
    locked file descriptors to close after the files are deleted). Torn or foreign lines are skipped."""
    reservations: list[Reservation] = []
    paths: list[Path] = []
    fds: list[int] = []
    for orphan in _orphans(ledger_path):
        paths.append(orphan.path)
        fds.append(orphan.fd)
        with open(orphan.fd, "rb", closefd=False) as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    reservations.append(decode_reservation(line))
                except ValueError as exc:
                    _log.warning("reservation journal %s line %d skipped: %s", orphan.path, number, exc)
    return reservations, paths, fds

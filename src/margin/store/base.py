"""The ledger's storage interface and its rows.

The metering gateway writes one :class:`~margin.usage.UsageEvent` per attempt, opens a write-ahead
:class:`Reservation` of the worst-case cost before each upstream call and settles it after, and reads spend
back to rebuild budget counters. :class:`LedgerStore` is that contract; :class:`~margin.store.sqlite.SQLiteLedger`
implements it on an embedded SQLite file, :class:`~margin.store.postgres.PostgresLedger` on PostgreSQL.

Writes are asynchronous and return only once COMMITTED (the gateway awaits them on its event loop); reads and
key management are synchronous (the CLI calls them; the gateway calls them off the loop, at start-up).
Times are timezone-aware datetimes; money is Decimal USD, stored exactly.

:class:`MeteringLedger` is everything else the gateway, the CLI and the insights call (reports, rollups, shared
costs, tasks, the write path's state); :class:`~margin.store.sqlite.SQLiteLedger` and
:class:`~margin.store.postgres.PostgresLedger` both implement it, and
:func:`margin.store.location.open_ledger` picks one from ``gateway.database``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal, Protocol, runtime_checkable

from ..errors import MarginError
from ..usage import UsageEvent

__all__ = [
    "GROUP_BY_CHOICES",
    "Alert",
    "LedgerError",
    "LedgerStore",
    "MeteringLedger",
    "Reservation",
    "SpendRow",
    "SyncMode",
    "VirtualKey",
]

# Values of ``group_by`` accepted by :meth:`LedgerStore.spend`, besides ``"tag:<name>"``.
GROUP_BY_CHOICES: tuple[str, ...] = ("key", "user", "team", "project", "feature", "model", "provider", "status")
SyncMode = Literal["OFF", "NORMAL", "FULL", "EXTRA"]


class LedgerError(MarginError):
    """The ledger cannot record: a write failed (disk full, constraint violated), the ledger is in its failed
    state after such a failure, or it is closed. The gateway answers 503 and serves nothing unmetered."""

    http_status = 503
    error_type = "ledger_unavailable"

    def __init__(self, message: str, *, cause: BaseException | None = None) -> None:
        super().__init__(message)
        self.cause = cause
        if cause is not None:
            self.__cause__ = cause


@dataclass(frozen=True, kw_only=True)
class Reservation:
    """An open write-ahead reservation: ``amount`` (the request's worst-case cost) held on every budget
    counter in ``scopes`` (opaque keys such as ``"team:ml:month:2026-11"``) until the request settles.

    ``key_id``, ``tags``, ``endpoint`` and ``model`` are optional context: if the gateway dies before
    settling, :meth:`LedgerStore.reconcile_open_reservations` turns the reservation into a usage event that
    carries them, so budgets rebuilt from the ledger by key, tag or model include the charge.
    """

    reservation_id: str
    request_id: str
    scopes: tuple[str, ...]
    amount: Decimal
    created_at: datetime
    expires_at: datetime | None = None
    key_id: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    endpoint: str | None = None
    model: str | None = None


@dataclass(frozen=True, kw_only=True)
class VirtualKey:
    """A virtual API key. Only ``key_hash`` (sha256 hex, see :mod:`margin.keys`) is stored, never the key;
    ``prefix`` is its first characters, for display. ``user``, ``team`` and ``project`` become tags of every
    request made with the key; ``budget`` is e.g. ``"5/day"``; ``models`` empty means every model."""

    key_id: str
    key_hash: str
    prefix: str
    user: str | None = None
    team: str | None = None
    project: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    budget: str | None = None
    models: tuple[str, ...] = ()
    created_at: datetime
    revoked_at: datetime | None = None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


@dataclass(frozen=True, kw_only=True)
class SpendRow:
    """Spend of one group (``group`` is None for the total, or for events lacking the grouped field).
    ``requests`` counts distinct request ids (a retried request counts once; the tokens and costs of all its
    attempts count). Costs are exact Decimal sums of the stored amounts."""

    group: str | None
    requests: int
    input_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    output_tokens: int
    list_cost: Decimal
    effective_cost: Decimal


@dataclass(frozen=True, kw_only=True)
class Alert:
    """A recorded alert (budget threshold crossed, anomaly). ``scope`` names what it is about."""

    alert_id: str
    created_at: datetime
    kind: str
    scope: str | None
    message: str
    data: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class LedgerStore(Protocol):
    """What the gateway and the CLI need from a ledger. Async writes return once committed and raise
    :class:`LedgerError` when the ledger cannot record; bad input (a naive datetime, a NaN amount) raises
    ValueError before anything is queued."""

    # -- writes (async, committed on return) --------------------------------------------------------------
    async def write_event(self, event: UsageEvent) -> None: ...

    async def open_reservation(self, reservation: Reservation) -> None: ...

    async def settle(self, event: UsageEvent, reservation_id: str) -> bool:
        """Write ``event`` and delete the reservation in one transaction; True if it was still open."""
        ...

    async def write_alert(
        self,
        kind: str,
        message: str,
        *,
        scope: str | None = None,
        data: Mapping[str, Any] | None = None,
        created_at: datetime | None = None,
    ) -> str: ...

    # -- keys (sync) ----------------------------------------------------------------------------------------
    def create_key(self, key: VirtualKey) -> None: ...

    def get_key_by_hash(self, key_hash: str) -> VirtualKey | None: ...

    def list_keys(self, *, include_revoked: bool = True) -> list[VirtualKey]: ...

    def revoke_key(self, key_id_or_prefix: str, *, now: datetime | None = None) -> bool: ...

    # -- reads (sync) ---------------------------------------------------------------------------------------
    def spend(
        self, since: datetime | None = None, until: datetime | None = None, group_by: str | None = None
    ) -> list[SpendRow]: ...

    def sum_effective_cost(
        self,
        since: datetime,
        *,
        key_id: str | None = None,
        tags: Mapping[str, str] | None = None,
        served_model: str | None = None,
    ) -> Decimal: ...

    def effective_cost_by(self, since: datetime, group_by: str | None = None) -> dict[str | None, Decimal]:
        """The exact effective cost per group since ``since`` (:meth:`spend`'s ``effective_cost`` column alone,
        which a backend may read faster): the budget counters' start-up rebuild."""
        ...

    def open_reservations(self) -> list[Reservation]: ...

    def events(self, request_id: str | None = None, limit: int = 1000) -> list[UsageEvent]: ...

    def alerts(self, limit: int = 100) -> list[Alert]: ...

    # -- recovery and lifecycle -----------------------------------------------------------------------------
    def reconcile_open_reservations(self, now: datetime, *, only_expired: bool = False) -> list[UsageEvent]: ...

    async def aclose(self) -> None: ...

    def close(self) -> None: ...


@runtime_checkable
class MeteringLedger(LedgerStore, Protocol):
    """The whole ledger the gateway, the CLI and the insights use: :class:`LedgerStore` plus reports, rollups,
    shared costs, tasks and the write path's state. Both backends implement it with the same semantics
    (exact Decimal sums, the same orderings, LedgerError and the failed state)."""

    # -- the write path's state (metrics, health) ---------------------------------------------------------------
    @property
    def failed(self) -> LedgerError | None:
        """The error that put the ledger in its failed state (writes refused), or None while healthy."""
        ...

    @property
    def closed(self) -> bool: ...

    @property
    def in_flight(self) -> int:
        """Writes queued or being committed now."""
        ...

    @property
    def committed_items(self) -> int:
        """Writes committed since the ledger was opened."""
        ...

    @property
    def reservations_held(self) -> int:
        """Reservations this process opened and has not settled yet (kept in memory: no database read)."""
        ...

    def describe(self) -> str:
        """Where the ledger is, for banners and logs (no password)."""
        ...

    # -- writes beyond LedgerStore ------------------------------------------------------------------------------
    async def write_event(self, event: UsageEvent, *, wait: bool = True) -> None: ...

    async def settle(self, event: UsageEvent, reservation_id: str, *, wait: bool = True) -> bool | None: ...

    async def flush(self) -> None:
        """Return once every write queued before this call is committed."""
        ...

    def set_task_outcome(
        self, task_id: str, outcome: str, *, note: str | None = None, key_id: str | None = None
    ) -> None: ...

    def add_shared_cost(
        self, name: str, period: str, category: str, amount: Decimal, note: str | None = None
    ) -> None: ...

    def remove_shared_cost(self, name: str, period: str) -> bool: ...

    # -- reports ----------------------------------------------------------------------------------------------
    def daily_spend(
        self, since: datetime | None, until: datetime | None, group_by: str | None = None
    ) -> list[tuple[str, str | None, Decimal]]: ...

    def usage_by_tags(
        self, since: datetime | None, until: datetime | None
    ) -> list[tuple[dict[str, str], Decimal, int, int, int]]: ...

    def shared_costs(self, period: str | None = None) -> list[tuple[str, str, str, Decimal, str | None]]: ...

    def overview(self, since: datetime, until: datetime) -> dict[str, Any]: ...

    def rollup_breakdown(self, since: datetime, until: datetime, by: str) -> list[dict[str, Any]]: ...

    def rollup_breakdowns(
        self, since: datetime, until: datetime, bys: Sequence[str]
    ) -> dict[str, list[dict[str, Any]]]: ...

    def hourly_spend(
        self, since: datetime, until: datetime, group_by: str | None = None
    ) -> list[tuple[str, str | None, Decimal, int]]: ...

    def events_between(
        self, since: datetime | None, until: datetime | None, *, limit: int = 1_000_000
    ) -> list[UsageEvent]: ...

    def task_keys(self, task_id: str) -> set[str | None]: ...

    def task_costs(
        self, since: datetime | None, until: datetime | None
    ) -> list[tuple[str, int, Decimal, str | None]]: ...

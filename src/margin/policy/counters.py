"""Where budget counters live: the async interface the gateway calls, and its in-process implementation.

The gateway reserves, settles and reads budget counters through :class:`CounterStore`. In one process the
counters are :class:`~margin.policy.budgets.BudgetCounters` (pure, synchronous: a check-and-reserve cannot
be interleaved on one event loop), wrapped by :class:`MemoryCounters`. Several gateway processes share them
through Redis (:mod:`margin.gateway.backends.redis_counters`), where each operation is one server-side
script with the same all-or-none semantics.

Money conversions for a backend that counts integer nano-dollars are here too, rounded so that a counter
is never lower than the truth: amounts charged or reserved round UP to the next nano, caps round DOWN.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Protocol

from .budgets import AppliedBudget, BudgetCounters, Figures, Period, Reservation, period_start

__all__ = [
    "CounterSeed",
    "CounterStore",
    "MemoryCounters",
    "nanos_ceil",
    "nanos_floor",
    "period_end",
]

_NANOS = Decimal(1_000_000_000)


def nanos_ceil(amount: Decimal) -> int:
    """USD -> integer nano-dollars, rounded up (a reservation or a charge is never under-counted)."""
    return int((amount * _NANOS).to_integral_value(rounding=ROUND_CEILING))


def nanos_floor(amount: Decimal) -> int:
    """USD -> integer nano-dollars, rounded down (a cap is never raised by rounding)."""
    return int((amount * _NANOS).to_integral_value(rounding=ROUND_FLOOR))


def period_end(period: Period, now: datetime) -> datetime:
    """When the calendar period containing ``now`` ends (UTC); a per-request budget has no period: ``now``."""
    start = period_start(period, now)
    if period == "hour":
        return start + timedelta(hours=1)
    if period == "day":
        return start + timedelta(days=1)
    if period == "month":
        return (start + timedelta(days=32)).replace(day=1)
    return now.astimezone(UTC)


@dataclass(frozen=True)
class CounterSeed:
    """A counter's spend in its current period according to the ledger (at start-up)."""

    counter: str
    spent: Decimal
    expires_at: datetime  # the end of the counter's period; a backend may keep it a little longer


class CounterStore(Protocol):
    """Budget counters: reserve the worst case on every applicable counter or none, settle the actual cost.

    ``headroom`` is the least room left under any applicable cap (None when no budget applies, or when the
    backend is unreachable and configured to fail open). ``reserve`` returns None when a cap would be
    exceeded. ``settle`` never raises for a backend outage (a backend retries it itself).

    ``reserve_read`` and ``settle_read`` do the same and also return the counted budgets' figures right after
    the operation (None when the backend could not say), so that a request needs no separate read: with a
    remote backend every read is a round trip. ``room_hint`` is the room left as this process last saw it,
    without asking anybody (exact in one process; possibly stale, or None, for a shared backend): it may only
    steer choices that are safe either way, never admit or refuse a request."""

    async def headroom(self, applied: Sequence[AppliedBudget]) -> Decimal | None: ...

    def room_hint(self, applied: Sequence[AppliedBudget]) -> Decimal | None: ...

    async def reserve(
        self, reservation_id: str, applied: Sequence[AppliedBudget], amount: Decimal
    ) -> Reservation | None: ...

    async def reserve_read(
        self, reservation_id: str, applied: Sequence[AppliedBudget], amount: Decimal
    ) -> tuple[Reservation | None, Figures | None]: ...

    async def settle(self, reservation: Reservation, actual: Decimal) -> None: ...

    async def settle_read(self, reservation: Reservation, actual: Decimal) -> Figures | None:
        """Settle, then (spent, reserved) of the reservation's counters, in order."""
        ...

    async def snapshots(self, counters: Sequence[str]) -> list[tuple[Decimal, Decimal]]:
        """(spent, reserved) of each counter, in order."""
        ...

    async def items(self) -> list[tuple[str, tuple[Decimal, Decimal]]]:
        """Every live counter as (name, (spent, reserved)), sorted by name."""
        ...

    def rebuild(self, seeds: Sequence[CounterSeed], reconciled: Sequence[str]) -> None:
        """Start-up: counters from the ledger's spend, after the ledger charged the ``reconciled`` reservation
        ids (of gateways that stopped uncleanly) at their worst case."""
        ...


class MemoryCounters:
    """:class:`BudgetCounters` behind the async interface: one gateway process, exact Decimal arithmetic.
    No method awaits anything, so reserve's check-and-add stays atomic on the event loop."""

    def __init__(self, counters: BudgetCounters | None = None) -> None:
        self.local = counters if counters is not None else BudgetCounters()

    async def headroom(self, applied: Sequence[AppliedBudget]) -> Decimal | None:
        return self.local.headroom(applied)

    def room_hint(self, applied: Sequence[AppliedBudget]) -> Decimal | None:
        return self.local.headroom(applied)

    async def reserve(
        self, reservation_id: str, applied: Sequence[AppliedBudget], amount: Decimal
    ) -> Reservation | None:
        return self.local.try_reserve(reservation_id, applied, amount)

    async def reserve_read(
        self, reservation_id: str, applied: Sequence[AppliedBudget], amount: Decimal
    ) -> tuple[Reservation | None, Figures | None]:
        held = self.local.try_reserve(reservation_id, applied, amount)
        return held, self.local.figures(applied)

    async def settle(self, reservation: Reservation, actual: Decimal) -> None:
        self.local.settle(reservation, actual)

    async def settle_read(self, reservation: Reservation, actual: Decimal) -> Figures | None:
        self.local.settle(reservation, actual)
        return tuple(self.local.snapshot(name) for name in reservation.counters)

    async def snapshots(self, counters: Sequence[str]) -> list[tuple[Decimal, Decimal]]:
        return [self.local.snapshot(name) for name in counters]

    async def items(self) -> list[tuple[str, tuple[Decimal, Decimal]]]:
        return self.local.items()

    def rebuild(self, seeds: Sequence[CounterSeed], reconciled: Sequence[str]) -> None:
        # The reconciled reservations are already in the ledger's spend; nothing of them is held in memory.
        for seed in seeds:
            self.local.add_spent(seed.counter, seed.spent)

    def describe(self) -> str:
        return "in this process"

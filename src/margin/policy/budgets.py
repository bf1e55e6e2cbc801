"""Budget policy: which budgets a request falls under, the reserve/settle arithmetic that makes a hard
budget impossible to overspend, thresholds, and the max_tokens a budget can still afford. Pure: no I/O.

The rule: before the upstream call the gateway reserves the request's WORST-CASE cost (its prompt, counted
locally with a safety margin, plus max_tokens at the output price) on every budget counter that applies,
in one step that either succeeds on all of them or on none. A counter's cap is ``amount x block`` (110%
of the budget by default, the seeds' block threshold). Because spent + reserved never exceeds the cap and
the actual cost of a call can never exceed its worst case, spend never exceeds the cap. After the call the
reservation is replaced by the actual cost.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal

from ..gateway.config import BudgetConfig

__all__ = [
    "AppliedBudget",
    "BudgetCounters",
    "BudgetStatus",
    "Figures",
    "RequestScope",
    "Reservation",
    "applicable_budgets",
    "budget_rooms",
    "budget_spend",
    "budget_status",
    "counter_name",
    "max_affordable_output_tokens",
    "period_key",
    "period_start",
    "room_left",
]

Period = Literal["request", "hour", "day", "month"]
BudgetStatus = Literal["ok", "warn", "review", "block"]
ZERO = Decimal(0)


@dataclass(frozen=True, kw_only=True)
class RequestScope:
    """Who and what a request is, as far as budgets care."""

    key_id: str | None
    tags: Mapping[str, str]
    model: str


@dataclass(frozen=True, kw_only=True)
class AppliedBudget:
    """A budget that applies to one request, resolved to its counter for the current period."""

    rule: BudgetConfig
    scope_value: str
    counter: str | None  # None for per-request budgets (no running total)
    cap: Decimal  # the most this counter may ever hold (amount x block), or the per-request limit

    @property
    def label(self) -> str:
        scope = self.rule.scope if self.rule.scope == "global" else f"{self.rule.scope}={self.scope_value}"
        return f"{self.rule.name} ({scope}, per {self.rule.period})"


def period_key(period: Period, now: datetime) -> str:
    """The calendar period (UTC) a moment falls in: 2026-11-23T19, 2026-11-23, 2026-11."""
    now = now.astimezone(UTC)
    if period == "hour":
        return now.strftime("%Y-%m-%dT%H")
    if period == "day":
        return now.strftime("%Y-%m-%d")
    if period == "month":
        return now.strftime("%Y-%m")
    return "request"


def period_start(period: Period, now: datetime) -> datetime:
    now = now.astimezone(UTC)
    if period == "hour":
        return now.replace(minute=0, second=0, microsecond=0)
    if period == "day":
        return now.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "month":
        return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return now


def _scope_value(rule: BudgetConfig, scope: RequestScope) -> str | None:
    kind = rule.scope
    if kind == "global":
        found: str | None = "*"
    elif kind == "key":
        found = scope.key_id
    elif kind == "model":
        found = scope.model
    elif kind.startswith("tag:"):
        found = scope.tags.get(kind[4:])
    else:  # user, team, project are tags
        found = scope.tags.get(kind)
    if found is None:
        return None
    if rule.value is not None and rule.value != found:
        return None
    return found


def counter_name(rule: BudgetConfig, scope_value: str, now: datetime) -> str:
    """The running-total key of a budget for one scope value in the period containing ``now``."""
    return f"{rule.name}|{rule.scope}={scope_value}|{period_key(rule.period, now)}"


def applicable_budgets(rules: Iterable[BudgetConfig], scope: RequestScope, now: datetime) -> list[AppliedBudget]:
    applied = []
    for rule in rules:
        value = _scope_value(rule, scope)
        if value is None:
            continue
        if rule.period == "request":
            applied.append(AppliedBudget(rule=rule, scope_value=value, counter=None, cap=rule.amount))
        else:
            counter = counter_name(rule, value, now)
            applied.append(AppliedBudget(rule=rule, scope_value=value, counter=counter, cap=rule.amount * rule.block))
    return applied


def budget_status(rule: BudgetConfig, spent: Decimal) -> BudgetStatus:
    """The seeds' escalation: warn from 75%, review from 90%, block at 110% (fractions of the amount)."""
    if rule.amount == 0:
        return "block"
    used = spent / rule.amount
    if used >= rule.block:
        return "block"
    if used >= rule.review:
        return "review"
    if used >= rule.warn:
        return "warn"
    return "ok"


def max_affordable_output_tokens(headroom: Decimal, input_cost: Decimal, output_price_per_token: Decimal) -> int:
    """The most output tokens whose worst case still fits: floor((headroom - input cost) / price)."""
    left = headroom - input_cost
    if left < 0:
        return 0
    if output_price_per_token <= 0:
        return 2**31 - 1
    return math.floor(left / output_price_per_token)


# (spent, reserved) of each counted budget (those with a counter), in the order of the applied budgets.
Figures = tuple[tuple[Decimal, Decimal], ...]


def budget_rooms(applied: Sequence[AppliedBudget], figures: Figures) -> list[Decimal]:
    """The room left under each applicable budget, in order, given the counted budgets' figures (a per-request
    budget's room is its cap)."""
    counted = iter(figures)
    rooms = []
    for budget in applied:
        if budget.counter is None:
            rooms.append(budget.cap)
        else:
            spent, reserved = next(counted)
            rooms.append(budget.cap - spent - reserved)
    return rooms


def room_left(applied: Sequence[AppliedBudget], figures: Figures) -> Decimal | None:
    """The least room left under any applicable cap, given the counted budgets' figures (None: no budget)."""
    rooms = budget_rooms(applied, figures)
    return min(rooms) if rooms else None


@dataclass(frozen=True, kw_only=True)
class Reservation:
    reservation_id: str
    counters: tuple[str, ...]
    amount: Decimal


@dataclass
class _Counter:
    spent: Decimal = ZERO
    reserved: Decimal = ZERO


@dataclass
class BudgetCounters:
    """Running totals per budget counter, in memory. Every method is synchronous and does not yield, so on
    one event loop a check-and-reserve is atomic; a multi-process backend (Redis) implements the same
    operations with a server-side script."""

    _counters: dict[str, _Counter] = field(default_factory=dict)

    def snapshot(self, counter: str) -> tuple[Decimal, Decimal]:
        c = self._counters.get(counter)
        return (c.spent, c.reserved) if c else (ZERO, ZERO)

    def figures(self, applied: Sequence[AppliedBudget]) -> Figures:
        """(spent, reserved) of each counted budget, in order."""
        return tuple(self.snapshot(b.counter) for b in applied if b.counter is not None)

    def headroom(self, applied: Sequence[AppliedBudget]) -> Decimal | None:
        """The least room left under any applicable cap (None when no budget applies)."""
        return room_left(applied, self.figures(applied))

    def try_reserve(self, reservation_id: str, applied: Sequence[AppliedBudget], amount: Decimal) -> Reservation | None:
        """Reserve ``amount`` on every applicable counter, or on none (returns None when any cap would be
        exceeded)."""
        if amount < 0:
            raise ValueError("a reservation cannot be negative")
        room = self.headroom(applied)
        if room is not None and amount > room:
            return None
        counters = tuple(b.counter for b in applied if b.counter is not None)
        for name in counters:
            self._counters.setdefault(name, _Counter()).reserved += amount
        return Reservation(reservation_id=reservation_id, counters=counters, amount=amount)

    def settle(self, reservation: Reservation, actual: Decimal) -> None:
        """Replace the reservation by the actual cost."""
        for name in reservation.counters:
            counter = self._counters.setdefault(name, _Counter())
            counter.reserved -= reservation.amount
            counter.spent += actual

    def add_spent(self, counter: str, amount: Decimal) -> None:
        """Rebuild from the ledger at start-up."""
        self._counters.setdefault(counter, _Counter()).spent += amount

    def items(self) -> list[tuple[str, tuple[Decimal, Decimal]]]:
        """Every counter as (name, (spent, reserved)), sorted by name."""
        return [(name, (c.spent, c.reserved)) for name, c in sorted(self._counters.items())]

    def spent(self, counter: str) -> Decimal:
        return self.snapshot(counter)[0]


def budget_spend(
    rules: Iterable[BudgetConfig], spend: Callable[[datetime, str | None], Iterable[Any]], now: datetime
) -> list[tuple[BudgetConfig, str, Decimal]]:
    """``(rule, scope value, spent)`` of every budget rule in its period containing ``now``, from ``spend(since,
    group_by)`` (the ledger's :meth:`spend` from ``since`` to now, ``SpendRow``s). ``global`` budgets have the
    scope value ``*``; budgets without a ``value`` get one entry per scope value with spend. Per-request budgets
    have no running total and are skipped. Shared by the counters' rebuild at start-up and the budget alerts."""
    out: list[tuple[BudgetConfig, str, Decimal]] = []
    for rule in rules:
        if rule.period == "request":
            continue
        rows = spend(period_start(rule.period, now), None if rule.scope == "global" else rule.scope)
        for row in rows:
            value = "*" if rule.scope == "global" else row.group
            if value is None or (rule.value is not None and value != rule.value):
                continue
            out.append((rule, value, row.effective_cost))
    return out

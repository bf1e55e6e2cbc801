"""Cost attribution and shared-cost allocation: who spent what, and who carries the costs nobody metered.

Pure and synchronous. The edges build :class:`UsageSlice` rows from the ledger (one per ``GROUP BY`` of tags
and activity) and describe the costs that are not per request (self-hosted GPUs, platform fees, engineering
time) as :class:`SharedCost` items; this module does the arithmetic.

* :func:`direct_attribution` sums metered spend by one tag, with an explicit ``unattributed`` bucket.
* :func:`tag_coverage` is the share of spend that carries each required tag.
* :func:`allocate` splits every shared cost over the groups by its category's :class:`AllocationRule`:
  proportional (tokens, requests, GPU-seconds or direct cost), activity-based (rate per activity type)
  or an even split. A category without a rule is split proportionally by tokens, the one usage unit every
  metered LLM request has.
* :func:`showback` puts both together per group; its grand total is *exactly* the metered spend plus the
  shared amounts.

Money is :class:`~decimal.Decimal` throughout. Shares are rounded to a ``quantum`` (default one
micro-dollar, since LLM costs are tiny) with the largest-remainder method, so the shares of every item add up
exactly to the item: each group first gets the floor of its exact quota in whole quanta, then the quanta still
missing go one each to the groups with the largest remainders, ties broken by group name.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from fractions import Fraction
from types import MappingProxyType
from typing import Any, Literal, get_args

from margin.errors import MarginError
from margin.money import MONEY_CONTEXT, ZERO

__all__ = [
    "DEFAULT_QUANTUM",
    "UNATTRIBUTED",
    "Allocation",
    "AllocationRule",
    "AttributionError",
    "ItemAllocation",
    "SharedCost",
    "ShowbackReport",
    "ShowbackRow",
    "UsageSlice",
    "allocate",
    "default_rule",
    "direct_attribution",
    "showback",
    "tag_coverage",
]

UNATTRIBUTED = "unattributed"
DEFAULT_QUANTUM = Decimal("0.000001")
_DISPLAY_RATIO = Decimal("0.0001")

Method = Literal["proportional", "activity", "even"]
Basis = Literal["tokens", "requests", "gpu_seconds", "cost"]
_METHODS: tuple[str, ...] = get_args(Method)
_BASES: tuple[str, ...] = get_args(Basis)


class AttributionError(MarginError):
    """Bad input to attribution or allocation: the message says which value and how to fix it."""

    exit_code = 2
    http_status = 400
    error_type = "invalid_request_error"


# --------------------------------------------------------------------------------------------------- inputs


def _amount(value: object, what: str) -> Decimal:
    """A non-negative, finite Decimal from a Decimal, int or str (never a float, never a bool)."""
    if isinstance(value, bool) or not isinstance(value, Decimal | int | str):
        raise AttributionError(f"{what} must be a Decimal, int or str amount, got {value!r} ({type(value).__name__})")
    try:
        amount = Decimal(value)
    except ArithmeticError:
        raise AttributionError(f"{what} is not a number: {value!r}") from None
    if not amount.is_finite():
        raise AttributionError(f"{what} must be finite, got {value!r}")
    if amount < 0:
        raise AttributionError(f"{what} must not be negative, got {amount}; record refunds and credits separately")
    return amount


def _count(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise AttributionError(f"{what} must be an int, got {value!r}")
    if value < 0:
        raise AttributionError(f"{what} must not be negative, got {value}")
    return value


def _name(value: object, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise AttributionError(f"{what} must be a non-empty string, got {value!r}")
    return value


@dataclass(frozen=True)
class UsageSlice:
    """Metered usage of one combination of tags (and activity) in a period: an aggregate of ledger events.

    ``activity`` is the activity type used by activity-based rules (for example ``"embedding"`` or
    ``"batch_job"``); the slice's ``requests`` are its activity count. A tag whose value is empty or blank
    counts as missing.
    """

    tags: Mapping[str, str]
    cost: Decimal
    input_tokens: int = 0
    output_tokens: int = 0
    requests: int = 0
    gpu_seconds: Decimal = ZERO
    activity: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.tags, Mapping):
            raise AttributionError(f"UsageSlice.tags must be a mapping of tag -> value, got {self.tags!r}")
        tags = {}
        for key, value in self.tags.items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise AttributionError(f"UsageSlice tag {key!r}={value!r}: tag names and values must be strings")
            tags[key] = value
        object.__setattr__(self, "tags", MappingProxyType(tags))
        object.__setattr__(self, "cost", _amount(self.cost, "UsageSlice.cost"))
        object.__setattr__(self, "gpu_seconds", _amount(self.gpu_seconds, "UsageSlice.gpu_seconds"))
        _count(self.input_tokens, "UsageSlice.input_tokens")
        _count(self.output_tokens, "UsageSlice.output_tokens")
        _count(self.requests, "UsageSlice.requests")
        if self.activity is not None:
            _name(self.activity, "UsageSlice.activity")

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def tag(self, name: str) -> str | None:
        """The tag's value, or None when it is missing or blank."""
        value = self.tags.get(name)
        return value if value is not None and value.strip() else None


@dataclass(frozen=True)
class SharedCost:
    """A cost that is not per request, for one period: a GPU instance, a platform fee, engineering time."""

    name: str
    category: str
    amount: Decimal

    def __post_init__(self) -> None:
        _name(self.name, "SharedCost.name")
        _name(self.category, f"SharedCost {self.name!r} category")
        object.__setattr__(self, "amount", _amount(self.amount, f"SharedCost {self.name!r} amount"))

    @classmethod
    def gpu(cls, name: str, hourly: Decimal | int | str, hours: Decimal | int | str, *, category: str = "gpu"):
        """A self-hosted GPU instance: hourly price x hours (exact)."""
        hourly_d = _amount(hourly, f"SharedCost {name!r} hourly price")
        hours_d = _amount(hours, f"SharedCost {name!r} hours")
        with localcontext(MONEY_CONTEXT):
            return cls(name, category, hourly_d * hours_d)

    @classmethod
    def fee(cls, name: str, amount: Decimal | int | str, *, category: str = "platform_fee"):
        """A flat fee for the period (platform subscription, support plan, vector database)."""
        return cls(name, category, _amount(amount, f"SharedCost {name!r} amount"))

    @classmethod
    def engineering(
        cls, name: str, hourly_rate: Decimal | int | str, hours: Decimal | int | str, *, category: str = "engineering"
    ):
        """Engineering time: fully loaded hourly rate x hours (exact)."""
        rate_d = _amount(hourly_rate, f"SharedCost {name!r} hourly rate")
        hours_d = _amount(hours, f"SharedCost {name!r} hours")
        with localcontext(MONEY_CONTEXT):
            return cls(name, category, rate_d * hours_d)


@dataclass(frozen=True)
class AllocationRule:
    """How the shared costs of one category are split over the groups.

    * ``proportional``: by each group's ``basis`` (tokens, requests, gpu_seconds or direct cost).
    * ``activity``: by each group's activity counts (requests of slices with that ``activity``) x
      ``activity_rates[activity]``, normalized to the item's amount (the rates are relative weights, so the
      shares always add up to the item; an activity without a rate weighs nothing).
    * ``even``: equal shares.

    ``among`` restricts the split to the named groups (a named group without usage still takes part in an
    even split, and gets zero in the other methods).
    """

    category: str
    method: Method = "proportional"
    basis: Basis = "tokens"
    activity_rates: Mapping[str, Decimal] = field(default_factory=dict)
    among: Sequence[str] | None = None

    def __post_init__(self) -> None:
        _name(self.category, "AllocationRule.category")
        if self.method not in _METHODS:
            raise AttributionError(
                f"allocation rule for {self.category!r}: unknown method {self.method!r}; "
                f"use one of {', '.join(_METHODS)}"
            )
        if self.basis not in _BASES:
            raise AttributionError(
                f"allocation rule for {self.category!r}: unknown basis {self.basis!r}; use one of {', '.join(_BASES)}"
            )
        if not isinstance(self.activity_rates, Mapping):
            raise AttributionError(f"allocation rule for {self.category!r}: activity_rates must map activity -> rate")
        rates = {
            _name(activity, f"allocation rule for {self.category!r}: activity name"): _amount(
                rate, f"allocation rule for {self.category!r}: rate of activity {activity!r}"
            )
            for activity, rate in self.activity_rates.items()
        }
        if self.method == "activity" and not rates:
            raise AttributionError(
                f"allocation rule for {self.category!r}: method 'activity' needs activity_rates, "
                "e.g. {'embedding': Decimal('0.001'), 'batch_job': Decimal('2')}"
            )
        object.__setattr__(self, "activity_rates", MappingProxyType(rates))
        if self.among is not None:
            if isinstance(self.among, str) or not isinstance(self.among, Iterable):
                raise AttributionError(
                    f"allocation rule for {self.category!r}: among must be a list of group names, got {self.among!r}"
                )
            among = tuple(_name(g, f"allocation rule for {self.category!r}: group in among") for g in self.among)
            if not among:
                raise AttributionError(
                    f"allocation rule for {self.category!r}: among is empty; name at least one group or omit it"
                )
            if len(set(among)) != len(among):
                raise AttributionError(f"allocation rule for {self.category!r}: among lists a group twice: {among}")
            object.__setattr__(self, "among", among)


def default_rule(category: str) -> AllocationRule:
    """The rule used for a category that has none: proportional by tokens (every metered request has tokens)."""
    return AllocationRule(category, "proportional", "tokens")


# --------------------------------------------------------------------------------------------------- direct


def _check_by(by: str) -> str:
    return _name(by, "the attribution dimension `by` (a tag name such as 'team')")


def _group_of(s: UsageSlice, by: str) -> str:
    value = s.tag(by)
    if value is None:
        return UNATTRIBUTED
    if value == UNATTRIBUTED:
        raise AttributionError(
            f"tag {by}={UNATTRIBUTED!r} is reserved for spend without the tag; rename that {by} in its requests"
        )
    return value


def _slices(slices: Iterable[UsageSlice]) -> list[UsageSlice]:
    out = list(slices)
    for s in out:
        if not isinstance(s, UsageSlice):
            raise AttributionError(f"expected UsageSlice rows, got {s!r}")
    return out


def direct_attribution(slices: Iterable[UsageSlice], by: str) -> dict[str, Decimal]:
    """Metered spend per value of tag ``by``; spend without the tag lands in ``"unattributed"`` (always present).

    Exact: no rounding happens, so the values add up to the total metered spend.
    """
    _check_by(by)
    totals: dict[str, Decimal] = {UNATTRIBUTED: ZERO}
    with localcontext(MONEY_CONTEXT):
        for s in _slices(slices):
            group = _group_of(s, by)
            totals[group] = totals.get(group, ZERO) + s.cost
    return dict(sorted(totals.items()))


def tag_coverage(slices: Iterable[UsageSlice], required: Sequence[str]) -> dict[str, Decimal]:
    """For each required tag, the share (0..1) of spend whose slices carry it.

    The ratio is computed to 50 significant digits (exact for any terminating ratio); round it only to show it.
    With no spend at all the coverage is 1: no spend is missing the tag.
    """
    rows = _slices(slices)
    tags = [_name(t, "required tag") for t in required]
    with localcontext(MONEY_CONTEXT):
        total = sum((s.cost for s in rows), ZERO)
        out: dict[str, Decimal] = {}
        for tag in tags:
            covered = sum((s.cost for s in rows if s.tag(tag) is not None), ZERO)
            out[tag] = Decimal(1) if total == 0 else covered / total
    return out


# --------------------------------------------------------------------------------------------------- split


def _largest_remainder(
    amount: Decimal, weights: Mapping[str, Fraction], quantum: Decimal, item: str
) -> dict[str, Decimal]:
    """Split ``amount`` in proportion to ``weights`` (not all zero) in whole quanta, summing exactly to it."""
    units_f = Fraction(amount) / Fraction(quantum)
    if units_f.denominator != 1:
        raise AttributionError(
            f"shared cost {item!r}: amount {amount} is not a whole number of the allocation quantum {quantum}; "
            f"round the amount (amount.quantize(Decimal('{quantum}'))) or pass a finer quantum"
        )
    units = units_f.numerator
    total_weight = sum(weights.values(), Fraction(0))
    floors: dict[str, int] = {}
    remainders: dict[str, Fraction] = {}
    for group, weight in weights.items():
        quota = units * weight / total_weight
        floors[group] = quota.numerator // quota.denominator
        remainders[group] = quota - floors[group]
    missing = units - sum(floors.values())
    # Largest remainder first, ties by group name; a zero-weight group has remainder 0 and never gets one,
    # because the remainders add up to `missing` and each is below 1.
    for group in sorted(weights, key=lambda g: (-remainders[g], g))[:missing]:
        floors[group] += 1
    with localcontext(MONEY_CONTEXT):
        return {group: (quantum * n).quantize(quantum) for group, n in sorted(floors.items())}


@dataclass(frozen=True)
class ItemAllocation:
    """How one shared cost was split. ``fallback`` says why the rule's own weights were not used, if so."""

    name: str
    category: str
    amount: Decimal
    method: str
    basis: str | None
    shares: Mapping[str, Decimal]
    fallback: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "category": self.category,
            "amount": str(self.amount),
            "method": self.method,
            "basis": self.basis,
            "fallback": self.fallback,
            "shares": {g: str(v) for g, v in self.shares.items()},
        }


@dataclass(frozen=True)
class Allocation:
    """Every shared cost split over the ``by`` groups."""

    by: str
    quantum: Decimal
    items: tuple[ItemAllocation, ...]

    @property
    def total(self) -> Decimal:
        with localcontext(MONEY_CONTEXT):
            return sum((i.amount for i in self.items), ZERO)

    def item(self, name: str) -> ItemAllocation:
        for i in self.items:
            if i.name == name:
                return i
        raise KeyError(name)

    def by_group(self) -> dict[str, Decimal]:
        """Allocated cost per group, all categories together."""
        out: dict[str, Decimal] = {}
        with localcontext(MONEY_CONTEXT):
            for i in self.items:
                for group, share in i.shares.items():
                    out[group] = out.get(group, ZERO) + share
        return dict(sorted(out.items()))

    def by_group_and_category(self) -> dict[str, dict[str, Decimal]]:
        out: dict[str, dict[str, Decimal]] = {}
        with localcontext(MONEY_CONTEXT):
            for i in self.items:
                for group, share in i.shares.items():
                    row = out.setdefault(group, {})
                    row[i.category] = row.get(i.category, ZERO) + share
        return {g: dict(sorted(c.items())) for g, c in sorted(out.items())}

    def as_dict(self) -> dict[str, Any]:
        return {
            "by": self.by,
            "quantum": str(self.quantum),
            "total": str(self.total),
            "items": [i.as_dict() for i in self.items],
        }


def _rules_by_category(rules: Iterable[AllocationRule] | Mapping[str, AllocationRule]) -> dict[str, AllocationRule]:
    values = rules.values() if isinstance(rules, Mapping) else rules
    out: dict[str, AllocationRule] = {}
    for rule in values:
        if not isinstance(rule, AllocationRule):
            raise AttributionError(f"expected AllocationRule, got {rule!r}")
        if rule.category in out:
            raise AttributionError(f"two allocation rules for category {rule.category!r}; keep one")
        out[rule.category] = rule
    return out


def _basis_weight(s: UsageSlice, rule: AllocationRule) -> Fraction:
    if rule.method == "activity":
        if s.activity is None or s.activity not in rule.activity_rates:
            return Fraction(0)
        return s.requests * Fraction(rule.activity_rates[s.activity])
    if rule.basis == "tokens":
        return Fraction(s.tokens)
    if rule.basis == "requests":
        return Fraction(s.requests)
    if rule.basis == "gpu_seconds":
        return Fraction(s.gpu_seconds)
    return Fraction(s.cost)


def allocate(
    shared: Iterable[SharedCost],
    rules: Iterable[AllocationRule] | Mapping[str, AllocationRule],
    slices: Iterable[UsageSlice],
    by: str,
    *,
    quantum: Decimal = DEFAULT_QUANTUM,
) -> Allocation:
    """Split each shared cost over the values of tag ``by`` by the rule of its category.

    Which groups take part:

    * proportional and activity-based: every group seen in ``slices``, ``unattributed`` included (its usage
      consumed the shared resource as much as anyone's), or only the groups in ``among``;
    * even split: the named groups seen in ``slices`` (``unattributed`` is not a tenant, so it gets no equal
      share), or the groups in ``among``; with no named group at all the item goes to ``unattributed``.

    A group with zero basis gets zero. When every basis is zero (a GPU nobody used this period), the item is
    split evenly instead: the cost was incurred all the same, dropping it would break the totals and parking it
    in ``unattributed`` would hide it; ``fallback`` records this on the item.
    """
    _check_by(by)
    q = _amount(quantum, "quantum")
    if q == 0:
        raise AttributionError("quantum must be positive, e.g. Decimal('0.000001') for micro-dollars")
    rows = _slices(slices)
    by_cat = _rules_by_category(rules)
    groups_of = [(_group_of(s, by), s) for s in rows]
    all_groups = sorted({g for g, _ in groups_of})
    named = [g for g in all_groups if g != UNATTRIBUTED]

    items: list[ItemAllocation] = []
    seen: set[str] = set()
    for cost in shared:
        if not isinstance(cost, SharedCost):
            raise AttributionError(f"expected SharedCost items, got {cost!r}")
        if cost.name in seen:
            raise AttributionError(f"two shared costs are named {cost.name!r}; give each a unique name")
        seen.add(cost.name)
        rule = by_cat.get(cost.category) or default_rule(cost.category)
        even_groups = list(rule.among) if rule.among is not None else (named or [UNATTRIBUTED])
        fallback: str | None = None
        if rule.method == "even":
            weights = {g: Fraction(1) for g in even_groups}
            if rule.among is None and not named:
                fallback = "no group carries the tag: the whole amount is unattributed"
        else:
            candidates = list(rule.among) if rule.among is not None else all_groups
            weights = {g: Fraction(0) for g in candidates}
            for group, s in groups_of:
                if group in weights:
                    weights[group] += _basis_weight(s, rule)
            if not any(weights.values()):
                if candidates:
                    fallback = "even split: every group's basis is zero"
                else:
                    fallback = "no usage in the period: the whole amount is unattributed"
                weights = {g: Fraction(1) for g in even_groups}
        shares = _largest_remainder(cost.amount, weights, q, cost.name)
        items.append(
            ItemAllocation(
                name=cost.name,
                category=cost.category,
                amount=cost.amount,
                method=rule.method,
                basis=rule.basis if rule.method == "proportional" else None,
                shares=MappingProxyType(shares),
                fallback=fallback,
            )
        )
    return Allocation(by=by, quantum=q, items=tuple(items))


# --------------------------------------------------------------------------------------------------- showback


@dataclass(frozen=True)
class ShowbackRow:
    """One group's line: metered (direct) spend, its share of each shared-cost category, and the total."""

    group: str
    direct: Decimal
    allocated: Mapping[str, Decimal]

    @property
    def shared(self) -> Decimal:
        with localcontext(MONEY_CONTEXT):
            return sum(self.allocated.values(), ZERO)

    @property
    def total(self) -> Decimal:
        with localcontext(MONEY_CONTEXT):
            return self.direct + self.shared


@dataclass(frozen=True)
class ShowbackReport:
    """Showback for one period by one dimension. ``grand_total == direct_total + shared_total`` exactly,
    and both equal the sums over the rows."""

    by: str
    period: str | None
    categories: tuple[str, ...]
    groups: tuple[ShowbackRow, ...]
    direct_total: Decimal
    shared_total: Decimal
    coverage: Mapping[str, Decimal]
    allocation: Allocation

    @property
    def grand_total(self) -> Decimal:
        with localcontext(MONEY_CONTEXT):
            return self.direct_total + self.shared_total

    def group(self, name: str) -> ShowbackRow:
        for row in self.groups:
            if row.group == name:
                return row
        raise KeyError(name)

    def coverage_display(self) -> dict[str, Decimal]:
        """Coverage rounded to 4 decimals (half-even), for people only."""
        with localcontext(MONEY_CONTEXT):
            return {t: v.quantize(_DISPLAY_RATIO, rounding=ROUND_HALF_EVEN) for t, v in self.coverage.items()}

    def rows(self, *, include_total: bool = True) -> list[dict[str, str | Decimal]]:
        """One dict per group (same keys, in column order) for tables and ``csv.DictWriter``; a ``TOTAL`` row last."""

        def line(group: str, direct: Decimal, allocated: Mapping[str, Decimal], shared: Decimal, total: Decimal):
            out: dict[str, str | Decimal] = {self.by: group, "direct": direct}
            for category in self.categories:
                out[f"shared:{category}"] = allocated.get(category, ZERO)
            out["shared"] = shared
            out["total"] = total
            return out

        out = [line(r.group, r.direct, r.allocated, r.shared, r.total) for r in self.groups]
        if include_total:
            with localcontext(MONEY_CONTEXT):
                per_category = {c: sum((r.allocated.get(c, ZERO) for r in self.groups), ZERO) for c in self.categories}
            out.append(line("TOTAL", self.direct_total, per_category, self.shared_total, self.grand_total))
        return out

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: every amount is a string, so no float ever touches it."""
        return {
            "by": self.by,
            "period": self.period,
            "categories": list(self.categories),
            "direct_total": str(self.direct_total),
            "shared_total": str(self.shared_total),
            "grand_total": str(self.grand_total),
            "groups": [
                {
                    "group": r.group,
                    "direct": str(r.direct),
                    "allocated": {c: str(v) for c, v in r.allocated.items()},
                    "shared": str(r.shared),
                    "total": str(r.total),
                }
                for r in self.groups
            ],
            "coverage": {t: str(v) for t, v in self.coverage.items()},
            "coverage_display": {t: str(v) for t, v in self.coverage_display().items()},
            "allocation": self.allocation.as_dict(),
        }


def showback(
    slices: Iterable[UsageSlice],
    shared: Iterable[SharedCost],
    rules: Iterable[AllocationRule] | Mapping[str, AllocationRule],
    by: str,
    *,
    required_tags: Sequence[str] = (),
    quantum: Decimal = DEFAULT_QUANTUM,
    period: str | None = None,
) -> ShowbackReport:
    """Direct spend plus allocated shared costs per group of ``by``, for the period the slices cover.

    Rows are ordered by total (largest first, then name) with ``unattributed`` always last and always present.
    """
    rows = _slices(slices)
    items = list(shared)
    direct = direct_attribution(rows, by)
    allocation = allocate(items, rules, rows, by, quantum=quantum)
    allocated = allocation.by_group_and_category()
    categories = tuple(sorted({i.category for i in allocation.items}))
    group_names = set(direct) | set(allocated)
    lines = [ShowbackRow(g, direct.get(g, ZERO), MappingProxyType(allocated.get(g, {}))) for g in group_names]
    lines.sort(key=lambda r: (r.group == UNATTRIBUTED, -r.total, r.group))
    with localcontext(MONEY_CONTEXT):
        direct_total = sum(direct.values(), ZERO)
        shared_total = sum((i.amount for i in items), ZERO)
    return ShowbackReport(
        by=by,
        period=period,
        categories=categories,
        groups=tuple(lines),
        direct_total=direct_total,
        shared_total=shared_total,
        coverage=MappingProxyType(tag_coverage(rows, required_tags)),
        allocation=allocation,
    )

"""How the ledger encodes rows: column lists and statements, money as exact Decimal text plus integer
nano-dollars, fixed-width UTC timestamps, tags as JSON, and SQLite's exact ``margin_decimal_sum`` aggregate.
Shared by :mod:`margin.store.sqlite` and :mod:`margin.store.postgres` (which sends the same validated rows as
COPY text, parsed by the server into numeric, timestamptz and jsonb); no I/O."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Context, Decimal, Inexact, InvalidOperation
from typing import Any

import orjson

from ..usage import UsageEvent
from .base import GROUP_BY_CHOICES, Reservation, VirtualKey

NANOS_PER_USD = 10**9
_MAX_NANOS = 2**63 - 1
# Sums of Decimal text in SQL: enough precision for any realistic ledger, and Inexact trapped, so a sum is
# exact or raises, never silently rounded.
_SUM_CONTEXT = Context(prec=400, rounding=ROUND_HALF_EVEN, traps=[Inexact, InvalidOperation])
_TAG_NAME = re.compile(r'^[^"\\\x00-\x1f]+$')


_EVENT_COLUMNS = tuple(
    """
    event_id request_id attempt started_at finished_at status endpoint requested_model served_model
    provider key_id tags task_id input_tokens cache_read_tokens cache_write_tokens output_tokens
    reasoning_tokens usage_source list_cost list_cost_nanos effective_cost effective_cost_nanos
    price_source latency_ms ttft_ms error_type error_message retries stream route cache fallback_from
    max_tokens reserved_cost reserved_cost_nanos reservation_id avoided_cost avoided_cost_nanos decisions
    prompt_hash
    """.split()
)
_RESERVATION_ID_AT = _EVENT_COLUMNS.index("reservation_id")
_INSERT_EVENT = (
    f"INSERT INTO usage_events ({', '.join(_EVENT_COLUMNS)}) VALUES ({', '.join('?' * len(_EVENT_COLUMNS))})"
)
_SELECT_EVENT = f"SELECT {', '.join(_EVENT_COLUMNS)} FROM usage_events"

_RESERVATION_COLUMNS = tuple(
    """
    reservation_id request_id scopes amount amount_nanos created_at expires_at key_id tags endpoint
    model
    """.split()
)
_INSERT_RESERVATION = (
    f"INSERT INTO reservations ({', '.join(_RESERVATION_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(_RESERVATION_COLUMNS))})"
)
_SELECT_RESERVATION = f"SELECT {', '.join(_RESERVATION_COLUMNS)} FROM reservations"

_KEY_COLUMNS = tuple(
    """
    key_id key_hash prefix user team project tags budget models created_at revoked_at
    """.split()
)
_INSERT_KEY = f"INSERT INTO keys ({', '.join(_KEY_COLUMNS)}) VALUES ({', '.join('?' * len(_KEY_COLUMNS))})"
_INSERT_ALERT = "INSERT INTO alerts (alert_id, created_at, kind, scope, message, data) VALUES (?, ?, ?, ?, ?, ?)"
_SELECT_KEY = f"SELECT {', '.join(_KEY_COLUMNS)} FROM keys"


def to_nanos(amount: Decimal) -> int:
    """USD -> integer nano-dollars, rounded half-even once (exact rational arithmetic on integers)."""
    if not isinstance(amount, Decimal):
        raise TypeError(f"money must be a Decimal, got {type(amount).__name__} {amount!r}")
    if not amount.is_finite():
        raise ValueError(f"money must be a finite amount, got {amount}")
    if amount and amount.adjusted() > 9:
        raise ValueError(f"amount {amount} is out of the ledger's range (|amount| < $9.2 billion)")
    numerator, denominator = amount.as_integer_ratio()
    nanos, remainder = divmod(numerator * NANOS_PER_USD, denominator)  # floor; 0 <= remainder < denominator
    twice = 2 * remainder
    if twice > denominator or (twice == denominator and nanos % 2):
        nanos += 1
    if abs(nanos) > _MAX_NANOS:
        raise ValueError(f"amount {amount} is out of the ledger's range (|amount| < $9.2 billion)")
    return nanos


def from_nanos(nanos: int) -> Decimal:
    """Integer nano-dollars -> USD, exactly."""
    return Decimal(nanos).scaleb(-9, Context(prec=60))


def _money(amount: Decimal, what: str) -> tuple[str, int]:
    try:
        return str(amount), to_nanos(amount)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"{what}: {exc}") from None


def _ts(value: datetime, what: str) -> str:
    if not isinstance(value, datetime):
        raise TypeError(f"{what} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware (e.g. datetime.now(UTC)), got naive {value.isoformat()}")
    return value.astimezone(UTC).isoformat(timespec="microseconds")


# The eight sums of a rollup cell, in the order rollup_row reads them (the same SQL on both databases).
ROLLUP_SUMS = (
    "SUM(requests), SUM(input_tokens), SUM(cache_read_tokens), SUM(cache_write_tokens), SUM(output_tokens), "
    "SUM(list_cost_nanos), SUM(effective_cost_nanos), SUM(avoided_cost_nanos)"
)


def sum_by_column(cells: Sequence[Sequence[Any]], keys: int) -> tuple[list[dict[Any, list[int]]], list[int]]:
    """Rollup cells ``(key_1, ..., key_n, sum_1, ..., sum_8)`` summed per key column: for each of the ``keys``
    columns, its values -> their eight integer sums; and the eight totals. Several breakdowns from one scan."""
    by: list[dict[Any, list[int]]] = [{} for _ in range(keys)]
    total = [0] * 8
    for cell in cells:
        values = [int(v or 0) for v in cell[keys:]]
        for column, key in zip(by, cell[:keys], strict=False):
            acc = column.setdefault(key, [0] * 8)
            for i, v in enumerate(values):
                acc[i] += v
        for i, v in enumerate(values):
            total[i] += v
    return by, total


def rollup_row(group: Any, sums: Sequence[Any]) -> dict[str, Any]:
    """One group's figures from its eight rollup sums: counts and tokens, money in USD from nano-dollars."""
    requests, inp, cache_read, cache_write, out, list_nanos, eff_nanos, avoided_nanos = (int(v or 0) for v in sums)
    return {
        "group": group,
        "requests": requests,
        "input_tokens": inp,
        "cache_read_tokens": cache_read,
        "cache_write_tokens": cache_write,
        "output_tokens": out,
        "list_cost": from_nanos(list_nanos),
        "effective_cost": from_nanos(eff_nanos),
        "avoided_cost": from_nanos(avoided_nanos),
    }


def by_cost(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Breakdown rows most expensive first (ties by group name)."""
    return sorted(rows, key=lambda r: (-r["effective_cost"], str(r["group"])))


def _on_the_hour(value: datetime) -> bool:
    """True when ``value`` starts an hour (UTC): the hourly rollups then cover exactly the events from it on."""
    utc = value.astimezone(UTC)
    return utc.minute == 0 and utc.second == 0 and utc.microsecond == 0 and value.utcoffset() is not None


def _opt_ts(value: datetime | None, what: str) -> str | None:
    return None if value is None else _ts(value, what)


def _from_ts(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def _tags_json(tags: Mapping[str, str], what: str) -> str:
    for name, value in tags.items():
        if not isinstance(name, str) or not isinstance(value, str):
            raise TypeError(f"{what} must map str to str, got {name!r}: {value!r}")
    return json.dumps(dict(tags), ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def _group_sql(group_by: str | None) -> tuple[str, list[Any]]:
    """The SQL expression (and its parameters) of a spend grouping: key, model, provider, status, a tag."""
    if group_by is None:
        return "NULL", []
    if group_by == "key":
        return "key_id", []
    if group_by == "model":
        return "served_model", []
    if group_by in ("provider", "status"):
        return group_by, []
    if group_by in ("user", "team", "project", "feature") or group_by.startswith("tag:"):
        name = group_by[4:] if group_by.startswith("tag:") else group_by
        return "json_extract(tags, ?)", [_tag_path(name)]
    raise ValueError(f"cannot group spend by {group_by!r}: use one of {', '.join(GROUP_BY_CHOICES)} or tag:NAME")


def _tag_path(name: str) -> str:
    if not _TAG_NAME.match(name):
        raise ValueError(f"invalid tag name {name!r}: it must be non-empty, without quotes or backslashes")
    return f'$."{name}"'


def _event_row(event: UsageEvent) -> tuple[Any, ...]:
    if not isinstance(event, UsageEvent):
        raise TypeError(f"expected a UsageEvent, got {type(event).__name__}")
    list_cost, list_nanos = _money(event.list_cost, "list_cost")
    effective_cost, effective_nanos = _money(event.effective_cost, "effective_cost")
    reserved_cost, reserved_nanos = _money(event.reserved_cost, "reserved_cost")
    avoided_cost, avoided_nanos = _money(event.avoided_cost, "avoided_cost")
    return (
        event.event_id,
        event.request_id,
        event.attempt,
        _ts(event.started_at, "started_at"),
        _ts(event.finished_at, "finished_at"),
        event.status,
        event.endpoint,
        event.requested_model,
        event.served_model,
        event.provider,
        event.key_id,
        _tags_json(event.tags, "tags"),
        event.task_id,
        event.input_tokens,
        event.cache_read_tokens,
        event.cache_write_tokens,
        event.output_tokens,
        event.reasoning_tokens,
        event.usage_source,
        list_cost,
        list_nanos,
        effective_cost,
        effective_nanos,
        event.price_source,
        event.latency_ms,
        event.ttft_ms,
        event.error_type,
        event.error_message,
        event.retries,
        1 if event.stream else 0,
        event.route,
        event.cache,
        event.fallback_from,
        event.max_tokens,
        reserved_cost,
        reserved_nanos,
        event.reservation_id,
        avoided_cost,
        avoided_nanos,
        orjson.dumps(event.decisions, default=str).decode() if event.decisions else "{}",
        event.prompt_hash,
    )


def _event_from_row(row: Sequence[Any]) -> UsageEvent:
    values = dict(zip(_EVENT_COLUMNS, row, strict=True))
    for nanos in ("list_cost_nanos", "effective_cost_nanos", "reserved_cost_nanos", "avoided_cost_nanos"):
        del values[nanos]
    for money in ("list_cost", "effective_cost", "reserved_cost", "avoided_cost"):
        values[money] = Decimal(values[money])
    values["decisions"] = json.loads(values["decisions"])
    values["started_at"] = _from_ts(values["started_at"])
    values["finished_at"] = _from_ts(values["finished_at"])
    values["tags"] = json.loads(values["tags"])
    values["stream"] = bool(values["stream"])
    return UsageEvent(**values)


def _reservation_row(res: Reservation) -> tuple[Any, ...]:
    if not isinstance(res, Reservation):
        raise TypeError(f"expected a Reservation, got {type(res).__name__}")
    amount, nanos = _money(res.amount, "amount")
    return (
        res.reservation_id,
        res.request_id,
        json.dumps(list(res.scopes), ensure_ascii=False),
        amount,
        nanos,
        _ts(res.created_at, "created_at"),
        _opt_ts(res.expires_at, "expires_at"),
        res.key_id,
        _tags_json(res.tags, "tags"),
        res.endpoint,
        res.model,
    )


def _reservation_from_row(row: Sequence[Any]) -> Reservation:
    values = dict(zip(_RESERVATION_COLUMNS, row, strict=True))
    del values["amount_nanos"]
    values["scopes"] = tuple(json.loads(values["scopes"]))
    values["amount"] = Decimal(values["amount"])
    values["created_at"] = _from_ts(values["created_at"])
    values["expires_at"] = _from_ts(values["expires_at"])
    values["tags"] = json.loads(values["tags"])
    return Reservation(**values)


def _key_row(key: VirtualKey) -> tuple[Any, ...]:
    if not isinstance(key, VirtualKey):
        raise TypeError(f"expected a VirtualKey, got {type(key).__name__}")
    return (
        key.key_id,
        key.key_hash,
        key.prefix,
        key.user,
        key.team,
        key.project,
        _tags_json(key.tags, "tags"),
        key.budget,
        json.dumps(list(key.models), ensure_ascii=False),
        _ts(key.created_at, "created_at"),
        _opt_ts(key.revoked_at, "revoked_at"),
    )


def _key_from_row(row: Sequence[Any]) -> VirtualKey:
    values = dict(zip(_KEY_COLUMNS, row, strict=True))
    values["tags"] = json.loads(values["tags"])
    values["models"] = tuple(json.loads(values["models"]))
    values["created_at"] = _from_ts(values["created_at"])
    values["revoked_at"] = _from_ts(values["revoked_at"])
    return VirtualKey(**values)


class _DecimalSum:
    """SQLite aggregate: the exact sum of Decimal text values, returned as text."""

    def __init__(self) -> None:
        self.total = Decimal(0)

    def step(self, value: str | None) -> None:
        if value is not None:
            self.total = _SUM_CONTEXT.add(self.total, Decimal(value))

    def finalize(self) -> str:
        return str(self.total)


def reconciled_event(res: Reservation, now: datetime) -> UsageEvent:
    """The usage event that charges a reservation left open by a gateway that stopped: status
    ``upstream_error``, error_type ``gateway_crash``, list = effective = reserved cost = the reserved worst case,
    with the reservation's key, tags and model (see ``reconcile_open_reservations``)."""
    return UsageEvent(
        event_id=f"reconciled-{res.reservation_id}",
        request_id=res.request_id,
        attempt=0,
        started_at=res.created_at,
        finished_at=now,
        status="upstream_error",
        endpoint=res.endpoint or "unknown",
        requested_model=res.model or "unknown",
        served_model=res.model,
        key_id=res.key_id,
        tags=dict(res.tags),
        usage_source="none",
        list_cost=res.amount,
        effective_cost=res.amount,
        reserved_cost=res.amount,
        reservation_id=res.reservation_id,
        price_source="reservation",
        error_type="gateway_crash",
        error_message=(
            "the gateway stopped before this request settled; charged the reserved worst case "
            f"(reservation {res.reservation_id}, scopes {', '.join(res.scopes) or '-'})"
        ),
    )

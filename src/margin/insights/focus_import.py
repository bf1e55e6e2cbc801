"""Shared costs from a FOCUS cost and usage file (a cloud bill in the FinOps Open Cost and Usage
Specification's columns): the GPU instances, platform fees and other charges that are not per request, read
into ``margin costs`` items to be allocated. Pure: rows in (dicts from a CSV reader), items out.

Each row's cost (``EffectiveCost`` by default; ``BilledCost`` or ``ListCost`` on request) counts towards an
item named by its resource (``ResourceName``, else ``ResourceId``, else ``ServiceName`` and ``SkuId``) in the
month of its ``ChargePeriodStart``; rows of the same item and month are summed exactly. The category is the
one given, else the row's ``ServiceSubcategory`` or ``ServiceCategory`` in snake case. ``filters`` keep only
the rows whose columns equal the values given (e.g. ``ServiceCategory=Compute``). Rows with
``ChargeCategory`` ``Tax`` or ``Credit`` are skipped unless asked for: a showback allocates usage.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation

from ..errors import MarginError

__all__ = ["FocusImportError", "ImportedCost", "shared_costs_from_focus"]

COST_COLUMNS = ("EffectiveCost", "BilledCost", "ListCost", "ContractedCost")
SKIPPED_CHARGES = frozenset({"Tax", "Credit"})


class FocusImportError(MarginError):
    """A FOCUS file margin cannot read: a missing column, a bad number or date (the message names the row)."""

    exit_code = 2


@dataclass(frozen=True, kw_only=True)
class ImportedCost:
    name: str
    period: str  # YYYY-MM
    category: str
    amount: Decimal
    rows: int  # bill rows summed into it


def _snake(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.strip().lower()).strip("_") or "other"


def _period(value: str, line: int) -> str:
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise FocusImportError(f"row {line}: ChargePeriodStart {value!r} is not an ISO 8601 date-time") from None
    return f"{moment.year:04d}-{moment.month:02d}"


def _name(row: Mapping[str, str]) -> str | None:
    for column in ("ResourceName", "ResourceId"):
        if (row.get(column) or "").strip():
            return row[column].strip()
    service, sku = (row.get("ServiceName") or "").strip(), (row.get("SkuId") or "").strip()
    return " / ".join(part for part in (service, sku) if part) or None


def shared_costs_from_focus(
    rows: Iterable[Mapping[str, str]],
    *,
    cost_column: str = "EffectiveCost",
    category: str | None = None,
    filters: Mapping[str, str] | None = None,
    include_charges: Iterable[str] = (),
) -> list[ImportedCost]:
    """Items summed by (name, month), sorted by month then name. Raises :class:`FocusImportError` for a file
    without the columns it needs, or a row whose cost or date cannot be read."""
    if cost_column not in COST_COLUMNS:
        raise FocusImportError(f"cost column must be one of {', '.join(COST_COLUMNS)}, not {cost_column!r}")
    wanted = dict(filters or {})
    skipped = SKIPPED_CHARGES - set(include_charges)
    sums: dict[tuple[str, str], tuple[str, Decimal, int]] = {}
    for line, row in enumerate(rows, start=2):  # line 1 is the header
        if line == 2:
            missing = [c for c in (cost_column, "ChargePeriodStart", *wanted) if c not in row]
            if missing:
                raise FocusImportError(
                    f"the file has no {', '.join(missing)} column; is it a FOCUS export (header row first)?"
                )
        if any((row.get(column) or "") != value for column, value in wanted.items()):
            continue
        if (row.get("ChargeCategory") or "") in skipped:
            continue
        name = _name(row)
        if name is None:
            raise FocusImportError(f"row {line}: no ResourceName, ResourceId or ServiceName to name the item")
        try:
            amount = Decimal((row.get(cost_column) or "0").strip() or "0")
        except InvalidOperation:
            raise FocusImportError(f"row {line}: {cost_column} {row.get(cost_column)!r} is not a number") from None
        if not amount.is_finite():
            raise FocusImportError(f"row {line}: {cost_column} {row.get(cost_column)!r} is not a finite number")
        period = _period(row.get("ChargePeriodStart") or "", line)
        kind = category or _snake(row.get("ServiceSubcategory") or row.get("ServiceCategory") or "other")
        prior_kind, prior, count = sums.get((name, period), (kind, Decimal(0), 0))
        sums[(name, period)] = (prior_kind, prior + amount, count + 1)
    return [
        ImportedCost(name=name, period=period, category=kind, amount=amount, rows=count)
        for (name, period), (kind, amount, count) in sorted(sums.items(), key=lambda kv: (kv[0][1], kv[0][0]))
    ]

"""The PostgreSQL ledger's reads: spend, sums, reports from the hourly rollups, events, keys, alerts.

A mixin of :class:`~margin.store.postgres.PostgresLedger`: every query goes through ``self._fetch(sql, params)``
(a pooled connection on the ledger's own event loop). Same results, orderings and exactness as the SQLite
ledger's reads: money sums are ``numeric`` (exact) or ``bigint`` nano-dollars, times come back in UTC.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from ..usage import UsageEvent
from ._rows import (
    _EVENT_COLUMNS,
    _KEY_COLUMNS,
    _RESERVATION_COLUMNS,
    ROLLUP_SUMS,
    _on_the_hour,
    _tag_path,
    _ts,
    by_cost,
    from_nanos,
    rollup_row,
    sum_by_column,
)
from .base import GROUP_BY_CHOICES, Alert, Reservation, SpendRow, VirtualKey


def _quote(column: str) -> str:
    return '"user"' if column == "user" else column  # a reserved word in PostgreSQL


PG_EVENT_COLUMNS = ", ".join(_EVENT_COLUMNS)
PG_RESERVATION_COLUMNS = ", ".join(_RESERVATION_COLUMNS)
PG_KEY_COLUMNS = ", ".join(_quote(c) for c in _KEY_COLUMNS)
_SELECT_EVENT = f"SELECT {PG_EVENT_COLUMNS} FROM usage_events"
_SELECT_RESERVATION = f"SELECT {PG_RESERVATION_COLUMNS} FROM reservations"
_SELECT_KEY = f"SELECT {PG_KEY_COLUMNS} FROM keys"


def _utc(value: datetime | None) -> datetime | None:
    return None if value is None else value.astimezone(UTC)


def _hour(value: datetime, what: str) -> datetime:
    """The UTC hour ``value`` falls in (rollups are kept per hour; the SQLite ledger compares hour text)."""
    _ts(value, what)  # the same TypeError / ValueError for a naive or non-datetime value
    return value.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def pg_group_sql(group_by: str | None) -> tuple[str, list[Any]]:
    """The SQL expression (and parameters) of a spend grouping (see ``_rows._group_sql``, SQLite's)."""
    if group_by is None:
        return "NULL::text", []
    if group_by == "key":
        return "key_id", []
    if group_by == "model":
        return "served_model", []
    if group_by in ("provider", "status"):
        return group_by, []
    if group_by in ("user", "team", "project", "feature") or group_by.startswith("tag:"):
        name = group_by[4:] if group_by.startswith("tag:") else group_by
        _tag_path(name)  # the same validation and message as SQLite's
        return "tags->>%s", [name]
    raise ValueError(f"cannot group spend by {group_by!r}: use one of {', '.join(GROUP_BY_CHOICES)} or tag:NAME")


def event_from_pg(row: Sequence[Any]) -> UsageEvent:
    values = dict(zip(_EVENT_COLUMNS, row, strict=True))
    for nanos in ("list_cost_nanos", "effective_cost_nanos", "reserved_cost_nanos", "avoided_cost_nanos"):
        del values[nanos]
    values["started_at"] = _utc(values["started_at"])
    values["finished_at"] = _utc(values["finished_at"])
    return UsageEvent(**values)


def reservation_from_pg(row: Sequence[Any]) -> Reservation:
    values = dict(zip(_RESERVATION_COLUMNS, row, strict=True))
    del values["amount_nanos"]
    values["scopes"] = tuple(values["scopes"])
    values["created_at"] = _utc(values["created_at"])
    values["expires_at"] = _utc(values["expires_at"])
    return Reservation(**values)


def key_from_pg(row: Sequence[Any]) -> VirtualKey:
    values = dict(zip(_KEY_COLUMNS, row, strict=True))
    values["models"] = tuple(values["models"])
    values["created_at"] = _utc(values["created_at"])
    values["revoked_at"] = _utc(values["revoked_at"])
    return VirtualKey(**values)


_BREAKDOWNS = {
    "model": "served_model",
    "team": "team",
    "status": "status",
    "feature": "tags->>'feature'",
    "day": "to_char(hour AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
    "week": "to_char(hour AT TIME ZONE 'UTC', 'YYYY-MM-DD')",  # days, summed into weeks by rollup_breakdown
}


def _breakdown_sql(by: str) -> tuple[str, list[Any]]:
    """The rollup column expression (and its parameters) of a breakdown (see _sqlite_reads._breakdown_sql)."""
    if by.startswith("tag:") and len(by) > 4:
        _tag_path(by[4:])
        return "tags->>%s", [by[4:]]
    if by in _BREAKDOWNS:
        return _BREAKDOWNS[by], []
    raise ValueError(f"break down by one of {', '.join(_BREAKDOWNS)} or tag:NAME, not {by!r}")


class PostgresReads:
    """Reads of the PostgreSQL ledger (see the module docstring)."""

    def _fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    @staticmethod
    def _time_filter(
        since: datetime | None, until: datetime | None, column: str = "finished_at"
    ) -> tuple[list[str], list[Any]]:
        clauses, params = [], []
        if since is not None:
            _ts(since, "since")
            clauses.append(f"{column} >= %s")
            params.append(since)
        if until is not None:
            _ts(until, "until")
            clauses.append(f"{column} < %s")
            params.append(until)
        return clauses, params

    @staticmethod
    def _where(clauses: list[str]) -> str:
        return " WHERE " + " AND ".join(clauses) if clauses else ""

    # -- spend ------------------------------------------------------------------------------------------------

    def spend(
        self, since: datetime | None = None, until: datetime | None = None, group_by: str | None = None
    ) -> list[SpendRow]:
        """Spend between ``since`` (inclusive) and ``until`` (exclusive) by ``finished_at``, per group (see
        :meth:`SQLiteLedger.spend`): exact ``numeric`` sums, most expensive first."""
        group_sql, params = pg_group_sql(group_by)
        clauses, where_params = self._time_filter(since, until)
        sql = (
            f"SELECT {group_sql} AS grp, COUNT(DISTINCT request_id), COALESCE(SUM(input_tokens), 0), "
            "COALESCE(SUM(cache_read_tokens), 0), COALESCE(SUM(cache_write_tokens), 0), "
            "COALESCE(SUM(output_tokens), 0), COALESCE(SUM(list_cost), 0), COALESCE(SUM(effective_cost), 0) "
            f"FROM usage_events{self._where(clauses)}"
        )
        if group_by is not None:
            sql += " GROUP BY grp"
        rows = [
            SpendRow(
                group=None if group is None else str(group),
                requests=int(requests),
                input_tokens=int(inp),
                cache_read_tokens=int(cache_read),
                cache_write_tokens=int(cache_write),
                output_tokens=int(out),
                list_cost=Decimal(list_cost),
                effective_cost=Decimal(effective_cost),
            )
            for group, requests, inp, cache_read, cache_write, out, list_cost, effective_cost in self._fetch(
                sql, [*params, *where_params]
            )
        ]
        rows.sort(key=lambda row: (-row.effective_cost, row.group is None, row.group or ""))
        return rows

    def sum_effective_cost(
        self,
        since: datetime,
        *,
        key_id: str | None = None,
        tags: Mapping[str, str] | None = None,
        served_model: str | None = None,
    ) -> Decimal:
        """Effective cost since ``since`` matching every filter, summed as integer nano-dollars (each event rounded
        half-even to the nano, as on SQLite). Tag filters are one ``@>`` containment (the GIN index). From
        ``since`` on the hour and without a key filter, read from the hourly rollups: the same total (see the
        SQLite ledger's method)."""
        _ts(since, "since")
        rollups = key_id is None and _on_the_hour(since)
        clauses, params = ["hour >= %s" if rollups else "finished_at >= %s"], [since]
        if key_id is not None:
            clauses.append("key_id = %s")
            params.append(key_id)
        if tags:
            for name, value in tags.items():
                _tag_path(name)
                if not isinstance(value, str):
                    raise TypeError(f"tag values must be str, got {value!r}")
            clauses.append("tags @> %s::jsonb")
            params.append(json.dumps(dict(tags), ensure_ascii=False))
        if served_model is not None:
            clauses.append("served_model = %s")
            params.append(served_model)
        table = "rollup_hourly" if rollups else "usage_events"
        sql = f"SELECT COALESCE(SUM(effective_cost_nanos), 0) FROM {table}{self._where(clauses)}"
        ((total,),) = self._fetch(sql, params)
        return from_nanos(int(total))

    def effective_cost_by(self, since: datetime, group_by: str | None = None) -> dict[str | None, Decimal]:
        """The exact effective cost per group since ``since``: PostgreSQL sums the NUMERIC column in the server
        (2.75 s for two budgets on a 1M-event month), so this is :meth:`spend`'s column."""
        return {row.group: row.effective_cost for row in self.spend(since, None, group_by)}

    def daily_spend(
        self, since: datetime | None, until: datetime | None, group_by: str | None = None
    ) -> list[tuple[str, str | None, Decimal]]:
        """(UTC day ``YYYY-MM-DD``, group, exact effective cost) per day and group."""
        group_sql, params = pg_group_sql(group_by)
        clauses, where_params = self._time_filter(since, until)
        sql = (
            f"SELECT to_char(finished_at AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS day, {group_sql} AS grp, "
            f"SUM(effective_cost) FROM usage_events{self._where(clauses)} GROUP BY day, grp ORDER BY day"
        )
        return [
            (day, None if grp is None else str(grp), Decimal(cost or 0))
            for day, grp, cost in self._fetch(sql, [*params, *where_params])
        ]

    def usage_by_tags(
        self, since: datetime | None, until: datetime | None
    ) -> list[tuple[dict[str, str], Decimal, int, int, int]]:
        """Spend per distinct tag set (rejected requests left out), ordered like the SQLite ledger: by the tag
        set's compact JSON text with sorted keys."""
        clauses, params = self._time_filter(since, until)
        clauses.append("status <> 'rejected'")
        sql = (
            "SELECT tags, SUM(effective_cost), COALESCE(SUM(input_tokens), 0), COALESCE(SUM(output_tokens), 0), "
            f"COUNT(*) FROM usage_events{self._where(clauses)} GROUP BY tags"
        )
        rows = [(t, Decimal(c or 0), int(i), int(o), int(n)) for t, c, i, o, n in self._fetch(sql, params)]
        rows.sort(key=lambda r: json.dumps(r[0], ensure_ascii=False, sort_keys=True, separators=(",", ":")))
        return rows

    def shared_costs(self, period: str | None = None) -> list[tuple[str, str, str, Decimal, str | None]]:
        """(name, period, category, amount, note) of the shared costs of ``period`` (all when None)."""
        sql = "SELECT name, period, category, amount, note FROM shared_costs"
        params: list[Any] = []
        if period is not None:
            sql += " WHERE period = %s"
            params.append(period)
        return [(n, p, c, Decimal(a), note) for n, p, c, a, note in self._fetch(sql + " ORDER BY period, name", params)]

    # -- rollups --------------------------------------------------------------------------------------------------

    def overview(self, since: datetime, until: datetime) -> dict[str, Any]:
        """A period's overview from the hourly rollups (see :meth:`SQLiteLedger.overview`): totals, and spend by
        served model, team, status and UTC day, from one scan grouped by (day, model, status, team)."""
        sql = (
            "SELECT to_char(hour AT TIME ZONE 'UTC', 'YYYY-MM-DD'), served_model, status, team, "
            f"{ROLLUP_SUMS} FROM rollup_hourly WHERE hour >= %s AND hour < %s GROUP BY 1, 2, 3, 4"
        )
        cells = self._fetch(sql, [_hour(since, "since"), _hour(until, "until")])
        (by_day, by_model, by_status, by_team), total = sum_by_column(cells, 4)
        day_rows = sorted((rollup_row(day, sums) for day, sums in by_day.items()), key=lambda r: r["group"])
        return {
            "total": rollup_row(None, total),
            **{
                name: by_cost([rollup_row(k, v) for k, v in sums.items()])
                for name, sums in (("by_model", by_model), ("by_team", by_team), ("by_status", by_status))
            },
            "by_day": day_rows,
        }

    def rollup_breakdowns(
        self, since: datetime, until: datetime, bys: Sequence[str]
    ) -> dict[str, list[dict[str, Any]]]:
        """Several breakdowns (not ``day`` or ``week``) from ONE scan of the rollups (see
        :meth:`SQLiteLedger.rollup_breakdowns`)."""
        if not bys or any(by in ("day", "week") for by in bys):
            raise ValueError("rollup_breakdowns takes one or more breakdowns other than day and week")
        groups, params = zip(*(_breakdown_sql(by) for by in bys), strict=True)
        sql = (
            f"SELECT {', '.join(groups)}, {ROLLUP_SUMS} FROM rollup_hourly WHERE hour >= %s AND hour < %s "
            f"GROUP BY {', '.join(str(i + 1) for i in range(len(bys)))}"
        )
        bound = [p for ps in params for p in ps]
        cells = self._fetch(sql, [*bound, _hour(since, "since"), _hour(until, "until")])
        columns, _total = sum_by_column(cells, len(bys))
        return {
            by: by_cost([rollup_row(group, sums) for group, sums in column.items()])
            for by, column in zip(bys, columns, strict=True)
        }

    def rollup_breakdown(self, since: datetime, until: datetime, by: str) -> list[dict[str, Any]]:
        """Spend by ``model``, ``team``, ``feature`` (or ``tag:NAME``), ``status``, ``day`` or ``week`` from the
        hourly rollups (see :meth:`SQLiteLedger.rollup_breakdown`; weeks are ``%Y-W%W`` of the day)."""
        group, params = _breakdown_sql(by)
        sql = f"SELECT {group} AS g, {ROLLUP_SUMS} FROM rollup_hourly WHERE hour >= %s AND hour < %s GROUP BY g"
        cells = self._fetch(sql, [*params, _hour(since, "since"), _hour(until, "until")])
        if by == "week":  # SQLite's strftime('%Y-W%W'): weeks starting on Monday, week 00 before the first one
            weekly = [(datetime.strptime(day, "%Y-%m-%d").strftime("%Y-W%W"), *sums) for day, *sums in cells]
            (weeks,), _total = sum_by_column(weekly, 1)
            cells = [(week, *sums) for week, sums in weeks.items()]
        found = [rollup_row(g, sums) for g, *sums in cells]
        if by in ("week", "day"):
            return sorted(found, key=lambda r: str(r["group"]))
        return by_cost(found)

    def daily_rollup(
        self, since: datetime, until: datetime, by: str | None = None
    ) -> list[tuple[str, str | None, Decimal]]:
        """(UTC day, group, effective cost) from the hourly rollups (see :meth:`SQLiteLedger.daily_rollup`)."""
        if by == "key":  # the rollups do not keep the key: the events themselves (exact, slower)
            return self.daily_spend(since, until, by)
        params: list[Any] = []
        if by is None:
            group = "NULL::text"
        elif by in ("model", "team"):
            group = {"model": "served_model", "team": "team"}[by]
        else:
            name = by[4:] if by.startswith("tag:") else by
            _tag_path(name)
            group = "tags->>%s"
            params.append(name)
        sql = (
            f"SELECT to_char(hour AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS day, {group} AS g, SUM(effective_cost_nanos) "
            "FROM rollup_hourly WHERE hour >= %s AND hour < %s GROUP BY 1, 2 ORDER BY 1"
        )
        rows = self._fetch(sql, [*params, _hour(since, "since"), _hour(until, "until")])
        return [(d, None if g in (None, "") else str(g), from_nanos(int(c or 0))) for d, g, c in rows]

    def hourly_spend(
        self, since: datetime, until: datetime, group_by: str | None = None
    ) -> list[tuple[str, str | None, Decimal, int, int]]:
        """(hour ``YYYY-MM-DDTHH``, team or None, effective cost, events, fallback events) from the rollups, in
        total or per team; rejected requests left out (as on SQLite)."""
        if group_by not in (None, "team"):
            raise ValueError("hourly spend is kept per team or in total")
        group = "team" if group_by == "team" else "NULL::text"
        sql = (
            f"""SELECT to_char(hour AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24') AS h, {group}, """
            "SUM(effective_cost_nanos), SUM(requests), SUM(fallback_events) FROM rollup_hourly "
            "WHERE hour >= %s AND hour < %s AND status <> 'rejected' GROUP BY 1, 2 ORDER BY 1"
        )
        rows = self._fetch(sql, [_hour(since, "since"), _hour(until, "until")])
        return [(h, g, from_nanos(int(c or 0)), int(n or 0), int(f or 0)) for h, g, c, n, f in rows]

    def retained_prompts(
        self, since: datetime | None = None, until: datetime | None = None, *, limit: int = 100_000
    ) -> list[dict[str, Any]]:
        """Retained bodies created in [since, until), oldest first (as :meth:`SQLiteLedger.retained_prompts`)."""
        clauses: list[str] = []
        params: list[Any] = []
        if since is not None:
            _ts(since, "since")
            clauses.append("created_at >= %s")
            params.append(since)
        if until is not None:
            _ts(until, "until")
            clauses.append("created_at < %s")
            params.append(until)
        sql = (
            "SELECT request_id, prompt_hash, created_at, endpoint, model, body FROM retained_prompts"
            f"{self._where(clauses)} ORDER BY created_at LIMIT %s"
        )
        rows = self._fetch(sql, [*params, limit])
        return [
            {
                "request_id": r,
                "prompt_hash": h,
                "created_at": c.astimezone(UTC),
                "endpoint": e,
                "model": m,
                "body": json.loads(b),
            }
            for r, h, c, e, m, b in rows
        ]

    # -- events, tasks, reservations, keys, alerts -------------------------------------------------------------

    def events_between(
        self, since: datetime | None, until: datetime | None, *, limit: int = 1_000_000
    ) -> list[UsageEvent]:
        """Usage events finished in [since, until), oldest first, at most ``limit``."""
        clauses, params = self._time_filter(since, until)
        sql = f"{_SELECT_EVENT}{self._where(clauses)} ORDER BY finished_at, seq LIMIT %s"
        return [event_from_pg(row) for row in self._fetch(sql, [*params, limit])]

    def events(self, request_id: str | None = None, limit: int = 1000) -> list[UsageEvent]:
        """With ``request_id``: that request's attempts in order; without: the latest ``limit``, newest first."""
        if request_id is not None:
            sql = f"{_SELECT_EVENT} WHERE request_id = %s ORDER BY attempt, finished_at, seq LIMIT %s"
            rows = self._fetch(sql, [request_id, limit])
        else:
            rows = self._fetch(f"{_SELECT_EVENT} ORDER BY finished_at DESC, seq DESC LIMIT %s", [limit])
        return [event_from_pg(row) for row in rows]

    def task_keys(self, task_id: str) -> set[str | None]:
        """The keys whose requests carried ``task_id``."""
        return {k for (k,) in self._fetch("SELECT DISTINCT key_id FROM usage_events WHERE task_id = %s", [task_id])}

    def task_costs(self, since: datetime | None, until: datetime | None) -> list[tuple[str, int, Decimal, str | None]]:
        """(task id, requests, exact effective cost, outcome or None) of the tasks with events in the period."""
        clauses, params = self._time_filter(since, until, "e.finished_at")
        clauses.insert(0, "e.task_id IS NOT NULL")
        sql = (
            "SELECT e.task_id, COUNT(DISTINCT e.request_id), SUM(e.effective_cost), o.outcome "
            "FROM usage_events e LEFT JOIN task_outcomes o ON o.task_id = e.task_id "
            f"{self._where(clauses)} GROUP BY e.task_id, o.outcome ORDER BY e.task_id"
        )
        return [(t, int(n), Decimal(c or 0), o) for t, n, c, o in self._fetch(sql, params)]

    def open_reservations(self) -> list[Reservation]:
        """Open reservations: the ledger's rows (every process's: they are shared)."""
        rows = self._fetch(f"{_SELECT_RESERVATION} ORDER BY created_at, reservation_id")
        return [reservation_from_pg(row) for row in rows]

    def get_key_by_hash(self, key_hash: str) -> VirtualKey | None:
        rows = self._fetch(f"{_SELECT_KEY} WHERE key_hash = %s", [key_hash])
        return key_from_pg(rows[0]) if rows else None

    def list_keys(self, *, include_revoked: bool = True) -> list[VirtualKey]:
        where = "" if include_revoked else " WHERE revoked_at IS NULL"
        return [key_from_pg(row) for row in self._fetch(f"{_SELECT_KEY}{where} ORDER BY created_at, key_id")]

    def alerts(self, limit: int = 100) -> list[Alert]:
        """The latest alerts, newest first."""
        rows = self._fetch(
            "SELECT alert_id, created_at, kind, scope, message, data FROM alerts "
            "ORDER BY created_at DESC, seq DESC LIMIT %s",
            [limit],
        )
        return [
            Alert(alert_id=a, created_at=_utc(t), kind=k, scope=s, message=m, data=d)  # type: ignore[arg-type]
            for a, t, k, s, m, d in rows
        ]

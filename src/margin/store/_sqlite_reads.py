"""The SQLite ledger's reads: spend and budget sums, the insight reads (daily spend, rollups, tasks, retained
prompts), events, reservations and alerts. A mixin of :class:`~margin.store.sqlite.SQLiteLedger`, which
provides ``_reader()`` (a pooled read-only connection); kept apart so the write path stays one module.
Every method is synchronous (the CLI calls them; the gateway calls them in a thread)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from decimal import Decimal
from typing import Any

from ..usage import UsageEvent
from ._rows import (
    _SELECT_EVENT,
    _SELECT_RESERVATION,
    _SUM_CONTEXT,
    ROLLUP_SUMS,
    _event_from_row,
    _from_ts,
    _group_sql,
    _on_the_hour,
    _reservation_from_row,
    _tag_path,
    _ts,
    by_cost,
    from_nanos,
    rollup_row,
    sum_by_column,
)
from .base import Alert, Reservation, SpendRow
from .migrations import SUB_NANO_COST

__all__ = ["SQLiteReads"]


_BREAKDOWNS = {
    "model": "served_model",
    "team": "team",
    "status": "status",
    "feature": "json_extract(tags, '$.feature')",
    "day": "substr(hour, 1, 10)",
    "week": "strftime('%Y-W%W', substr(hour, 1, 10))",
}


def _breakdown_sql(by: str) -> tuple[str, list[Any]]:
    """The rollup column expression (and its parameters) of a breakdown."""
    if by.startswith("tag:") and len(by) > 4:
        return "json_extract(tags, ?)", [_tag_path(by[4:])]
    if by in _BREAKDOWNS:
        return _BREAKDOWNS[by], []
    raise ValueError(f"break down by one of {', '.join(_BREAKDOWNS)} or tag:NAME, not {by!r}")


class SQLiteReads:
    """Read methods over ``self._reader()``."""

    def _reader(self) -> AbstractContextManager[Any]:  # provided by SQLiteLedger
        raise NotImplementedError

    def spend(
        self, since: datetime | None = None, until: datetime | None = None, group_by: str | None = None
    ) -> list[SpendRow]:
        """Spend between ``since`` (inclusive) and ``until`` (exclusive) by ``finished_at``, per group.

        ``group_by``: None (one total row, present even when empty), ``key``, ``model`` (served model),
        ``provider``, ``status``, ``user``/``team``/``project``/``feature`` (tags), or ``tag:NAME``. Rows come
        most expensive first. Costs are exact sums of the stored Decimal text.
        """
        group_sql, params = _group_sql(group_by)
        where, where_params = self._time_filter(since, until)
        sql = (
            f"SELECT {group_sql} AS grp, COUNT(DISTINCT request_id), COALESCE(SUM(input_tokens), 0), "
            "COALESCE(SUM(cache_read_tokens), 0), COALESCE(SUM(cache_write_tokens), 0), "
            "COALESCE(SUM(output_tokens), 0), margin_decimal_sum(list_cost), margin_decimal_sum(effective_cost) "
            f"FROM usage_events{where}"
        )
        if group_by is not None:
            sql += " GROUP BY grp"
        with self._reader() as conn:
            rows = conn.execute(sql, params + where_params).fetchall()
        spend = [
            SpendRow(
                group=None if group is None else str(group),
                requests=requests,
                input_tokens=inp,
                cache_read_tokens=cache_read,
                cache_write_tokens=cache_write,
                output_tokens=out,
                list_cost=Decimal(list_cost or 0),
                effective_cost=Decimal(effective_cost or 0),
            )
            for group, requests, inp, cache_read, cache_write, out, list_cost, effective_cost in rows
        ]
        spend.sort(key=lambda row: (-row.effective_cost, row.group is None, row.group or ""))
        return spend

    @staticmethod
    def _time_filter(since: datetime | None, until: datetime | None) -> tuple[str, list[Any]]:
        clauses, params = [], []
        if since is not None:
            clauses.append("finished_at >= ?")
            params.append(_ts(since, "since"))
        if until is not None:
            clauses.append("finished_at < ?")
            params.append(_ts(until, "until"))
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), params

    def sum_effective_cost(
        self,
        since: datetime,
        *,
        key_id: str | None = None,
        tags: Mapping[str, str] | None = None,
        served_model: str | None = None,
    ) -> Decimal:
        """Effective cost of the events finished at or after ``since`` matching every filter given, summed
        exactly in SQL as integer nano-dollars (each event rounded half-even to the nano) and converted back.
        This is what the gateway rebuilds its budget counters from at start-up.

        From ``since`` on the hour (every budget period starts on one) and without a key filter, the same sum is
        read from the hourly rollups: they hold the same per-event nanos summed by hour, model, status and the
        whole tag set, so the total is identical, and it reads one row per cell instead of one per event (a
        budget over a 1M-event month: ~11 s from the events, well under a second from the rollups)."""
        stamp = _ts(since, "since")
        if key_id is None and _on_the_hour(since):
            clauses, params = ["hour >= ?"], [stamp[:13]]
            table = "rollup_hourly"
        else:
            clauses, params = ["finished_at >= ?"], [stamp]
            table = "usage_events"
        if key_id is not None:
            clauses.append("key_id = ?")
            params.append(key_id)
        for name, value in (tags or {}).items():
            clauses.append("json_extract(tags, ?) = ?")
            params += [_tag_path(name), value]
        if served_model is not None:
            clauses.append("served_model = ?")
            params.append(served_model)
        sql = f"SELECT COALESCE(SUM(effective_cost_nanos), 0) FROM {table} WHERE {' AND '.join(clauses)}"
        with self._reader() as conn:
            (total,) = conn.execute(sql, params).fetchone()
        return from_nanos(int(total))

    def effective_cost_by(self, since: datetime, group_by: str | None = None) -> dict[str | None, Decimal]:
        """Exact effective cost per group of the events finished at or after ``since`` (what :meth:`spend`
        gives as ``effective_cost``, without the other columns): what the gateway rebuilds its budget counters
        from at start-up.

        From ``since`` on the hour, grouped by anything the hourly rollups keep (a tag, the model, the status),
        the sum is the rollups' nano-dollars plus, exactly, what the per-event rounding to the nano took from
        the few events whose cost is not a whole number of nanos (their text has more than nine decimals or
        an exponent; a partial index holds just those, m012). That reads rollup rows and a few events instead
        of parsing a Decimal per event in Python: ~9 s per budget on a 1M-event month before. Anything else:
        :meth:`spend`."""
        rollup_group: str | None
        if group_by is None:
            rollup_group, params = "NULL", []
        elif group_by == "model":
            rollup_group, params = "NULLIF(served_model, '')", []
        elif group_by == "status":
            rollup_group, params = "status", []
        elif group_by in ("user", "team", "project", "feature") or group_by.startswith("tag:"):
            rollup_group, params = _group_sql(group_by)
        else:
            rollup_group, params = None, []
        if rollup_group is None or not _on_the_hour(since):
            return {row.group: row.effective_cost for row in self.spend(since, None, group_by)}
        stamp = _ts(since, "since")
        event_group, event_params = _group_sql(group_by)
        with self._reader() as conn:
            sums = conn.execute(
                f"SELECT {rollup_group} AS grp, SUM(effective_cost_nanos) FROM rollup_hourly WHERE hour >= ? "
                "GROUP BY grp",
                [*params, stamp[:13]],
            ).fetchall()
            fractional = conn.execute(
                f"SELECT {event_group}, effective_cost, effective_cost_nanos FROM usage_events "
                f"INDEXED BY usage_events_sub_nano WHERE finished_at >= ? AND {SUB_NANO_COST}",
                [*event_params, stamp],
            ).fetchall()
        totals = {None if grp is None else str(grp): from_nanos(int(nanos)) for grp, nanos in sums}
        for grp, text, nanos in fractional:  # exact: the ledger's own summing context (_rows._SUM_CONTEXT)
            name = None if grp is None else str(grp)
            rounding_taken = _SUM_CONTEXT.subtract(Decimal(text), from_nanos(int(nanos)))
            totals[name] = _SUM_CONTEXT.add(totals.get(name, Decimal(0)), rounding_taken)
        return totals

    def daily_spend(
        self, since: datetime | None, until: datetime | None, group_by: str | None = None
    ) -> list[tuple[str, str | None, Decimal]]:
        """(UTC day ``YYYY-MM-DD``, group, exact effective cost) per day and group (see :meth:`spend`)."""
        group_sql, params = _group_sql(group_by)
        where, where_params = self._time_filter(since, until)
        sql = (
            f"SELECT substr(finished_at, 1, 10) AS day, {group_sql} AS grp, margin_decimal_sum(effective_cost) "
            f"FROM usage_events{where} GROUP BY day, grp ORDER BY day"
        )
        with self._reader() as conn:
            rows = conn.execute(sql, params + where_params).fetchall()
        return [(day, None if grp is None else str(grp), Decimal(cost or 0)) for day, grp, cost in rows]

    def usage_by_tags(
        self, since: datetime | None, until: datetime | None
    ) -> list[tuple[dict[str, str], Decimal, int, int, int]]:
        """Spend per distinct tag set between ``since`` and ``until``: (tags, effective cost, input tokens,
        output tokens, requests), exact. Rejected requests are left out (they cost nothing and used nothing)."""
        where, params = self._time_filter(since, until)
        where += (" AND " if where else " WHERE ") + "status != 'rejected'"
        sql = (
            "SELECT tags, margin_decimal_sum(effective_cost), COALESCE(SUM(input_tokens), 0), "
            f"COALESCE(SUM(output_tokens), 0), COUNT(*) FROM usage_events{where} GROUP BY tags ORDER BY tags"
        )
        with self._reader() as conn:
            rows = conn.execute(sql, params).fetchall()
        return [(json.loads(t), Decimal(c or "0"), int(i), int(o), int(n)) for t, c, i, o, n in rows]

    def shared_costs(self, period: str | None = None) -> list[tuple[str, str, str, Decimal, str | None]]:
        """(name, period, category, amount, note) of the shared costs of ``period`` (all when None)."""
        sql = "SELECT name, period, category, amount, note FROM shared_costs"
        params: tuple[Any, ...] = ()
        if period is not None:
            sql += " WHERE period = ?"
            params = (period,)
        with self._reader() as conn:
            rows = conn.execute(sql + " ORDER BY period, name", params).fetchall()
        return [(n, p, c, Decimal(a), note) for n, p, c, a, note in rows]

    def overview(self, since: datetime, until: datetime) -> dict[str, Any]:
        """A period's overview from the hourly rollups (fast at any ledger size): totals, and spend by served
        model, by team, by status and by UTC day. Money in USD from integer nano-dollars (exact to 1e-9).
        One scan groups the rollups by (day, model, status, team); the breakdowns are summed from that."""
        lo, hi = _ts(since, "since")[:13], _ts(until, "until")[:13]
        sql = (
            f"SELECT substr(hour, 1, 10), served_model, status, team, {ROLLUP_SUMS} FROM rollup_hourly "
            "WHERE hour >= ? AND hour < ? GROUP BY 1, 2, 3, 4"
        )
        with self._reader() as conn:
            cells = conn.execute(sql, (lo, hi)).fetchall()
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
        """Several of :meth:`rollup_breakdown`'s breakdowns (not ``day`` or ``week``) from ONE scan of the
        rollups: grouped by all of them at once, then summed per breakdown (integer nanos: exact)."""
        if not bys or any(by in ("day", "week") for by in bys):
            raise ValueError("rollup_breakdowns takes one or more breakdowns other than day and week")
        groups, params = zip(*(_breakdown_sql(by) for by in bys), strict=True)
        columns = ", ".join(f"{group} AS g{i}" for i, group in enumerate(groups))
        sql = (
            f"SELECT {columns}, {ROLLUP_SUMS} FROM rollup_hourly WHERE hour >= ? AND hour < ? "
            f"GROUP BY {', '.join(f'g{i}' for i in range(len(bys)))}"
        )
        bound = [p for ps in params for p in ps]
        with self._reader() as conn:
            cells = conn.execute(sql, [*bound, _ts(since, "since")[:13], _ts(until, "until")[:13]]).fetchall()
        columns_summed, _total = sum_by_column(cells, len(bys))
        return {
            by: by_cost([rollup_row(group, sums) for group, sums in column.items()])
            for by, column in zip(bys, columns_summed, strict=True)
        }

    def rollup_breakdown(self, since: datetime, until: datetime, by: str) -> list[dict[str, Any]]:
        """Spend by ``model``, ``team``, ``feature`` (or any ``tag:NAME``), ``status`` or ``week`` (ISO week of
        the hour, ``YYYY-Www``) from the hourly rollups, most expensive first (weeks in order)."""
        group, params = _breakdown_sql(by)
        sql = f"SELECT {group} AS g, {ROLLUP_SUMS} FROM rollup_hourly WHERE hour >= ? AND hour < ? GROUP BY g"
        with self._reader() as conn:
            rows = conn.execute(sql, [*params, _ts(since, "since")[:13], _ts(until, "until")[:13]]).fetchall()
        found = [rollup_row(g, sums) for g, *sums in rows]
        if by in ("week", "day"):
            return sorted(found, key=lambda r: str(r["group"]))
        return by_cost(found)

    def daily_rollup(
        self, since: datetime, until: datetime, by: str | None = None
    ) -> list[tuple[str, str | None, Decimal]]:
        """(UTC day ``YYYY-MM-DD``, group, effective cost) from the hourly rollups: :meth:`daily_spend` at any
        ledger size, by None, ``model``, ``team``, ``project``, ``feature``, ``user`` or ``tag:NAME``; by ``key``,
        which the rollups do not keep, it is :meth:`daily_spend`. Hour granularity: ``since`` and ``until``
        count from their hour; nano-dollar sums (each event rounded once)."""
        if by == "key":  # the rollups do not keep the key: the events themselves (exact, slower)
            return self.daily_spend(since, until, by)
        params: list[Any] = []
        if by is None:
            group = "NULL"
        elif by in ("model", "team"):
            group = {"model": "served_model", "team": "team"}[by]
        else:
            name = by[4:] if by.startswith("tag:") else by
            group = "json_extract(tags, ?)"
            params.append(_tag_path(name))
        sql = (
            f"SELECT substr(hour, 1, 10) AS day, {group} AS g, SUM(effective_cost_nanos) FROM rollup_hourly "
            "WHERE hour >= ? AND hour < ? GROUP BY day, g ORDER BY day"
        )
        with self._reader() as conn:
            rows = conn.execute(sql, [*params, _ts(since, "since")[:13], _ts(until, "until")[:13]]).fetchall()
        return [(d, None if g in (None, "") else str(g), from_nanos(int(c or 0))) for d, g, c in rows]

    def hourly_spend(
        self, since: datetime, until: datetime, group_by: str | None = None
    ) -> list[tuple[str, str | None, Decimal, int, int]]:
        """(hour ``YYYY-MM-DDTHH``, team or None, effective cost, events, fallback events) from the rollups: the
        whole ledger when ``group_by`` is None, per team when it is ``team`` (the rollups keep that tag as a
        column). Rejected requests are left out: they cost nothing and would dilute per-request figures."""
        if group_by not in (None, "team"):
            raise ValueError("hourly spend is kept per team or in total")
        group = "team" if group_by == "team" else "NULL"
        sql = (
            f"SELECT hour, {group}, SUM(effective_cost_nanos), SUM(requests), SUM(fallback_events) FROM rollup_hourly "
            "WHERE hour >= ? AND hour < ? AND status != 'rejected' GROUP BY 1, 2 ORDER BY 1"
        )
        with self._reader() as conn:
            rows = conn.execute(sql, (_ts(since, "since")[:13], _ts(until, "until")[:13])).fetchall()
        return [(h, g, from_nanos(int(c or 0)), int(n or 0), int(f or 0)) for h, g, c, n, f in rows]

    def events_between(
        self, since: datetime | None, until: datetime | None, *, limit: int = 1_000_000
    ) -> list[UsageEvent]:
        """Usage events finished in [since, until), oldest first, at most ``limit`` (reports that need rows)."""
        where, params = self._time_filter(since, until)
        with self._reader() as conn:
            rows = conn.execute(f"{_SELECT_EVENT}{where} ORDER BY finished_at LIMIT ?", [*params, limit]).fetchall()
        return [_event_from_row(row) for row in rows]

    def retained_prompts(
        self, since: datetime | None = None, until: datetime | None = None, *, limit: int = 100_000
    ) -> list[dict[str, Any]]:
        """Retained bodies created in [since, until), oldest first: request_id, prompt_hash, created_at,
        endpoint, model and body (the parsed, redacted JSON)."""
        clauses, params = [], []
        if since is not None:
            clauses.append("created_at >= ?")
            params.append(_ts(since, "since"))
        if until is not None:
            clauses.append("created_at < ?")
            params.append(_ts(until, "until"))
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        sql = (
            "SELECT request_id, prompt_hash, created_at, endpoint, model, body FROM retained_prompts"
            f"{where} ORDER BY created_at LIMIT ?"
        )
        with self._reader() as conn:
            rows = conn.execute(sql, [*params, limit]).fetchall()
        return [
            {
                "request_id": r,
                "prompt_hash": h,
                "created_at": _from_ts(c),
                "endpoint": e,
                "model": m,
                "body": json.loads(b),
            }
            for r, h, c, e, m, b in rows
        ]

    def task_keys(self, task_id: str) -> set[str | None]:
        """The keys whose requests carried ``task_id``."""
        with self._reader() as conn:
            return {
                k for (k,) in conn.execute("SELECT DISTINCT key_id FROM usage_events WHERE task_id = ?", (task_id,))
            }

    def task_costs(self, since: datetime | None, until: datetime | None) -> list[tuple[str, int, Decimal, str | None]]:
        """(task id, requests, exact effective cost, outcome or None) of the tasks with events in the period."""
        clauses, params = ["e.task_id IS NOT NULL"], []
        if since is not None:
            clauses.append("e.finished_at >= ?")
            params.append(_ts(since, "since"))
        if until is not None:
            clauses.append("e.finished_at < ?")
            params.append(_ts(until, "until"))
        sql = (
            "SELECT e.task_id, COUNT(DISTINCT e.request_id), margin_decimal_sum(e.effective_cost), o.outcome "
            "FROM usage_events e LEFT JOIN task_outcomes o ON o.task_id = e.task_id "
            f"WHERE {' AND '.join(clauses)} GROUP BY e.task_id ORDER BY e.task_id"
        )
        with self._reader() as conn:
            rows = conn.execute(sql, params).fetchall()
        return [(t, int(n), Decimal(c or "0"), o) for t, n, c, o in rows]

    def open_reservations(self) -> list[Reservation]:
        """Open reservations: the ledger's rows, and this process's journaled ones."""
        with self._reader() as conn:
            rows = conn.execute(f"{_SELECT_RESERVATION} ORDER BY created_at, reservation_id").fetchall()
        found = [_reservation_from_row(row) for row in rows]
        if self._journal is not None:
            found += self._journal.open_reservations()
            found.sort(key=lambda r: (r.created_at, r.reservation_id))
        return found

    def events(self, request_id: str | None = None, limit: int = 1000) -> list[UsageEvent]:
        """Usage events, every field as written. With ``request_id``: that request's attempts in order;
        without: the latest ``limit`` events, newest first."""
        with self._reader() as conn:
            if request_id is not None:
                rows = conn.execute(
                    f"{_SELECT_EVENT} WHERE request_id = ? ORDER BY attempt, finished_at, rowid LIMIT ?",
                    (request_id, limit),
                ).fetchall()
            else:
                rows = conn.execute(
                    f"{_SELECT_EVENT} ORDER BY finished_at DESC, rowid DESC LIMIT ?", (limit,)
                ).fetchall()
        return [_event_from_row(row) for row in rows]

    def alerts(self, limit: int = 100) -> list[Alert]:
        """The latest alerts, newest first."""
        with self._reader() as conn:
            rows = conn.execute(
                "SELECT alert_id, created_at, kind, scope, message, data FROM alerts "
                "ORDER BY created_at DESC, rowid DESC LIMIT ?",
                (limit,),
            ).fetchall()
        return [
            Alert(
                alert_id=alert_id,
                created_at=datetime.fromisoformat(created_at),
                kind=kind,
                scope=scope,
                message=message,
                data=json.loads(data),
            )
            for alert_id, created_at, kind, scope, message, data in rows
        ]

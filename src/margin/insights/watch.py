"""One pass of the anomaly watch: hourly spend (whole ledger and per team) through the spike rule, fresh
alerts to the sinks, outcomes back to the ledger. The edges call :func:`check_once` on a schedule (the
gateway's background loop) or on demand (``margin alerts check``)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from .alerts import AlertDispatcher, AlertOutcome, record, seen_keys
from .anomaly import Anomaly, HourlySpend, spend_spikes

__all__ = ["build_dispatcher", "check_once", "find_anomalies"]

# The spike rule needs a trailing day before the hour it judges: two days of history cover the last day.
LOOKBACK = timedelta(hours=48)


def find_anomalies(
    rows: list[tuple[str, str | None, Decimal, int]], *, multiple: Decimal, min_cost: Decimal
) -> list[Anomaly]:
    """Spend spikes in ``rows`` of ``(hour, team or None, cost, events)``; scope ``global`` for None rows."""
    hourly = [
        HourlySpend(datetime.fromisoformat(hour + ":00:00+00:00"), f"team={team}" if team else "global", cost, events)
        for hour, team, cost, events in rows
    ]
    return spend_spikes(hourly, multiple=multiple, min_cost=min_cost)


async def check_once(
    ledger: Any,
    dispatcher: AlertDispatcher,
    *,
    multiple: Decimal = Decimal(3),
    min_cost: Decimal = Decimal(1),
    now: datetime | None = None,
) -> list[AlertOutcome]:
    """Evaluate the last two days, send what is new, store each outcome as an alert. Reads run in a thread."""
    now = now or datetime.now(UTC)
    since = now - LOOKBACK
    until = now + timedelta(hours=1)
    rows = await asyncio.to_thread(ledger.hourly_spend, since, until, None)
    rows += await asyncio.to_thread(ledger.hourly_spend, since, until, "team")
    found = find_anomalies(rows, multiple=multiple, min_cost=min_cost)
    if not found:
        return []
    seen = seen_keys(await asyncio.to_thread(ledger.alerts, limit=5000))
    outcomes = await dispatcher.dispatch(found, seen)
    await record(ledger, outcomes)
    return outcomes


def build_dispatcher(config: Any, *, transport: Any = None) -> AlertDispatcher:
    """The dispatcher of ``insights.alerts`` (an :class:`~margin.config.AlertsConfig`): URLs from the
    environment; a sink whose variable is unset is an error that names it."""
    import os

    from ..config import ConfigError
    from .alerts import LogSink, SlackSink, WebhookSink

    sinks: list[Any] = []
    for sink in config.sinks:
        if sink.type == "log":
            sinks.append(LogSink())
            continue
        url = os.environ.get(sink.url_env or "")
        if not url:
            raise ConfigError(
                f"insights.alerts: the {sink.type} sink needs its URL in the environment variable named by url_env "
                f"({sink.url_env or 'not set'})"
            )
        sinks.append(WebhookSink(url=url) if sink.type == "webhook" else SlackSink(webhook_url=url))
    return AlertDispatcher(sinks, transport=transport)

"""Alert delivery: deduplicate :class:`~margin.insights.anomaly.Anomaly` records and send them to sinks.

Sinks: :class:`LogSink` (the ``margin.alerts`` logger), :class:`WebhookSink` (a JSON POST) and :class:`SlackSink`
(a Slack-compatible incoming webhook: ``{"text": ..., "blocks": [...]}``). :class:`AlertDispatcher` drops anomalies
whose ``dedup_key`` was seen (keys passed in, typically loaded from the ledger's alerts with :func:`seen_keys`, plus
every key this dispatcher already handled), sends each fresh one to every sink and returns one
:class:`AlertOutcome` per alert with one :class:`DeliveryReport` per sink. Storing is the caller's part:
:func:`record` writes each outcome to the ledger (``write_alert``, the delivery state in ``data``).

Retry policy, per alert and sink: up to ``max_attempts`` attempts; a 5xx, a 429, a timeout or a connection /
network error is retried after ``min(max_delay_s, base_delay_s * 2**(n-1))`` seconds with equal jitter (half fixed,
half random), or after the response's ``Retry-After`` (seconds or an HTTP date) when that is longer; a
``Retry-After`` above ``max_retry_after_s`` ends the retries (the server asked for more than we wait). Any other
status (4xx other than 429, 3xx: redirects are not followed) fails at once. A delivery failure never raises: it is
logged at WARNING (sink and error) and reported in the outcome. Every request has a timeout.

Secrets: webhook URLs carry tokens (Slack's path *is* the credential) and headers may carry credentials, so
neither is ever logged, put in an error text or in a sink's ``repr``: sinks are named by :func:`redact_url`
(scheme, host and a short hash of the whole URL), error texts are scrubbed of the URL, and a filter on the
``httpx2`` logger (which logs every request's URL at INFO) replaces the sinks' URLs with their redacted form.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import random
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from email.utils import parsedate_to_datetime
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx2

from .. import __version__
from ..money import format_usd
from .anomaly import Anomaly, dedupe

__all__ = [
    "AlertDispatcher",
    "AlertOutcome",
    "DeliveryReport",
    "LogSink",
    "Sink",
    "SlackSink",
    "WebhookSink",
    "record",
    "redact_url",
    "seen_keys",
    "slack_payload",
    "webhook_payload",
]

_log = logging.getLogger(__name__)
ALERT_LOGGER = "margin.alerts"
PAYLOAD_VERSION = 1
_ERROR_MAX = 300  # characters of an error text (a response body excerpt included)

# Rules whose value/baseline are amounts of money; the others are rates or shares (fractions).
_USD_RULES = frozenset({"spend_spike", "cost_per_request_jump", "budget_threshold"})


def redact_url(url: str) -> str:
    """``https://hooks.slack.com/…#1a2b3c4d``: scheme, host and port, no path, query or credentials.

    The 8 hex digits are a SHA-256 prefix of the whole URL, to tell sinks on the same host apart; they reveal
    nothing usable about a token.
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return f"<invalid url>#{_fingerprint(url)}"
    rest = "/…" if parts.path not in ("", "/") or parts.query or parts.fragment else ""
    return f"{parts.scheme}://{host}{port}{rest}#{_fingerprint(url)}"


def _fingerprint(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()[:8]


def _check_url(url: str, what: str) -> None:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ValueError(f"{what} is not a valid URL ({redact_url(url)})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{what} must be an http(s) URL with a host, got {redact_url(url)}")


@dataclass(frozen=True)
class LogSink:
    """Write each alert to the ``margin.alerts`` logger (always delivered)."""

    level: int = logging.WARNING
    logger: str = ALERT_LOGGER

    @property
    def label(self) -> str:
        return "log"


@dataclass(frozen=True)
class WebhookSink:
    """POST the alert as JSON (:func:`webhook_payload`) to ``url``, with ``headers`` (e.g. an Authorization)."""

    url: str = field(repr=False)
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    timeout_s: float = 5

    def __post_init__(self) -> None:
        _check_url(self.url, "webhook url")
        if self.timeout_s <= 0:
            raise ValueError("timeout_s must be positive")

    @property
    def label(self) -> str:
        return f"webhook {redact_url(self.url)}"

    def __repr__(self) -> str:
        return f"WebhookSink(url={redact_url(self.url)!r}, headers=<{len(self.headers)}>, timeout_s={self.timeout_s})"


@dataclass(frozen=True)
class SlackSink:
    """POST the alert to a Slack-compatible incoming webhook (:func:`slack_payload`)."""

    webhook_url: str = field(repr=False)
    timeout_s: float = 5

    def __post_init__(self) -> None:
        _check_url(self.webhook_url, "slack webhook_url")
        if self.timeout_s <= 0:
            raise ValueError("timeout_s must be positive")

    @property
    def label(self) -> str:
        return f"slack {redact_url(self.webhook_url)}"

    def __repr__(self) -> str:
        return f"SlackSink(webhook_url={redact_url(self.webhook_url)!r}, timeout_s={self.timeout_s})"


Sink = LogSink | WebhookSink | SlackSink


# -- payloads ---------------------------------------------------------------------------------------------------------


def _iso(moment: datetime) -> str:
    return (moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)).isoformat()


def _dec(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def webhook_payload(anomaly: Anomaly) -> dict[str, Any]:
    """The generic webhook's JSON body. Decimals are strings (exact); times are ISO 8601 UTC."""
    return {
        "type": "margin.alert",
        "payload_version": PAYLOAD_VERSION,
        "margin_version": __version__,
        "rule": anomaly.rule,
        "scope": anomaly.scope,
        "subject": anomaly.subject,
        "window": {"start": _iso(anomaly.window_start), "end": _iso(anomaly.window_end)},
        "value": _dec(anomaly.value),
        "baseline": _dec(anomaly.baseline),
        "ratio": _dec(anomaly.ratio),
        "message": anomaly.message,
        "dedup_key": anomaly.dedup_key,
    }


def _human_value(rule: str, value: Decimal) -> str:
    if rule in _USD_RULES:
        suffix = "/request" if rule == "cost_per_request_jump" else ""
        return format_usd(value) + suffix
    return f"{value * 100:.1f}%"


def _mrkdwn(text: str) -> str:
    """Escape the three characters Slack's mrkdwn reserves."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_payload(anomaly: Anomaly) -> dict[str, Any]:
    """A Slack incoming-webhook body: ``text`` (notification fallback) and Block Kit ``blocks``."""
    title = anomaly.rule.replace("_", " ")
    ratio = f"{anomaly.ratio:.2f}x" if anomaly.ratio is not None else "n/a (zero baseline)"
    window = f"{_iso(anomaly.window_start)} → {_iso(anomaly.window_end)}"
    fields = [
        ("Scope", anomaly.scope + (f" ({anomaly.subject})" if anomaly.subject else "")),
        ("Window (UTC)", window),
        ("Value", _human_value(anomaly.rule, anomaly.value)),
        ("Baseline", _human_value(anomaly.rule, anomaly.baseline)),
        ("Ratio", ratio),
    ]
    return {
        "text": f"margin alert ({title}): {anomaly.message}",
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": f"margin alert: {title}"[:150], "emoji": True}},
            {"type": "section", "text": {"type": "mrkdwn", "text": _mrkdwn(anomaly.message)[:3000]}},
            {
                "type": "section",
                "fields": [{"type": "mrkdwn", "text": f"*{name}*\n{_mrkdwn(text)}"[:2000]} for name, text in fields],
            },
            {
                "type": "context",
                "elements": [
                    {"type": "mrkdwn", "text": f"dedup key `{anomaly.dedup_key}` · margin {__version__}"},
                ],
            },
        ],
    }


# -- outcomes ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class DeliveryReport:
    """How one alert went to one sink. ``sink`` is the redacted label; ``error`` is None when delivered."""

    sink: str
    ok: bool
    attempts: int
    status: int | None = None  # the last HTTP status, None for the log sink or when no response came
    error: str | None = None  # the last error, scrubbed of the URL
    retry_delays: tuple[float, ...] = ()  # seconds waited before each retry
    started_at: datetime | None = None
    finished_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "sink": self.sink,
            "ok": self.ok,
            "attempts": self.attempts,
            "status": self.status,
            "error": self.error,
            "retry_delays": list(self.retry_delays),
            "started_at": None if self.started_at is None else _iso(self.started_at),
            "finished_at": None if self.finished_at is None else _iso(self.finished_at),
        }


@dataclass(frozen=True)
class AlertOutcome:
    """One fresh alert and its delivery to every sink (in the dispatcher's sink order)."""

    anomaly: Anomaly
    deliveries: tuple[DeliveryReport, ...]

    @property
    def dedup_key(self) -> str:
        return self.anomaly.dedup_key

    @property
    def ok(self) -> bool:
        """Delivered to every sink."""
        return all(d.ok for d in self.deliveries)

    @property
    def failed(self) -> list[DeliveryReport]:
        return [d for d in self.deliveries if not d.ok]

    def data(self) -> dict[str, Any]:
        """JSON-ready ``data`` for the ledger's alert row: the anomaly's figures, the dedup key, delivery state."""
        a = self.anomaly
        return {
            "dedup_key": a.dedup_key,
            "rule": a.rule,
            "subject": a.subject,
            "window_start": _iso(a.window_start),
            "window_end": _iso(a.window_end),
            "value": _dec(a.value),
            "baseline": _dec(a.baseline),
            "ratio": _dec(a.ratio),
            "delivered": self.ok,
            "deliveries": [d.to_dict() for d in self.deliveries],
        }


class _AlertLike(Protocol):
    @property
    def data(self) -> Mapping[str, Any]: ...


def seen_keys(alerts: Iterable[_AlertLike]) -> set[str]:
    """The dedup keys of stored alerts (e.g. ``ledger.alerts(limit=1000)``); alerts without one are skipped."""
    keys: set[str] = set()
    for alert in alerts:
        key = alert.data.get("dedup_key") if isinstance(alert.data, Mapping) else None
        if isinstance(key, str) and key:
            keys.add(key)
    return keys


class _AlertWriter(Protocol):
    async def write_alert(
        self, kind: str, message: str, *, scope: str | None = ..., data: Mapping[str, Any] | None = ...
    ) -> str: ...


async def record(ledger: _AlertWriter, outcomes: Iterable[AlertOutcome]) -> list[str]:
    """Store each outcome as an alert (kind = the rule, delivery state in ``data``); returns the alert ids."""
    return [
        await ledger.write_alert(o.anomaly.rule, o.anomaly.message, scope=o.anomaly.scope, data=o.data())
        for o in outcomes
    ]


# -- dispatch ---------------------------------------------------------------------------------------------------------


class _Attempt:
    """The result of one HTTP attempt."""

    __slots__ = ("error", "ok", "retry_after", "retryable", "status")

    def __init__(
        self,
        *,
        ok: bool,
        retryable: bool,
        status: int | None = None,
        error: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.ok, self.retryable, self.status, self.error, self.retry_after = ok, retryable, status, error, retry_after


class _RedactSinkUrls(logging.Filter):
    """On the ``httpx2`` logger (which logs ``HTTP Request: POST <url> ...`` at INFO): sink URLs, redacted."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: dict[str, str] = {}

    def add(self, url: str) -> None:
        redacted = redact_url(url)
        self.urls[url] = redacted
        try:
            self.urls[str(httpx2.URL(url))] = redacted
        except Exception:  # an unparsable URL never reaches a request
            pass

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            if self.urls and isinstance(record.args, tuple):
                record.args = tuple(
                    self.urls.get(str(arg), arg) if isinstance(arg, str | httpx2.URL) else arg for arg in record.args
                )
        except Exception:  # never break logging
            pass
        return True


_URL_FILTER = _RedactSinkUrls()


def _guard_httpx_logs(sinks: Iterable[Sink]) -> None:
    for sink in sinks:
        if isinstance(sink, WebhookSink):
            _URL_FILTER.add(sink.url)
        elif isinstance(sink, SlackSink):
            _URL_FILTER.add(sink.webhook_url)
    httpx_logger = logging.getLogger("httpx2")
    if _URL_FILTER not in httpx_logger.filters:
        httpx_logger.addFilter(_URL_FILTER)


_RETRYABLE_ERRORS = (httpx2.TimeoutException, httpx2.NetworkError, httpx2.RemoteProtocolError)


class AlertDispatcher:
    """Send fresh anomalies to every sink with retries; see the module docstring for the policy.

    ``sleep``, ``clock`` (aware UTC ``datetime``) and ``rng`` (``[0, 1)``) are injectable for tests;
    ``transport`` is an ``httpx2`` async transport (``httpx2.MockTransport`` in tests, the network by default).
    """

    def __init__(
        self,
        sinks: Sequence[Sink],
        *,
        max_attempts: int = 4,
        base_delay_s: float = 0.5,
        max_delay_s: float = 8,
        max_retry_after_s: float = 60,
        transport: httpx2.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        rng: Callable[[], float] = random.random,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if base_delay_s < 0 or max_delay_s < base_delay_s:
            raise ValueError("need 0 <= base_delay_s <= max_delay_s")
        if max_retry_after_s < 0:
            raise ValueError("max_retry_after_s must not be negative")
        self.sinks = tuple(sinks)
        _guard_httpx_logs(self.sinks)
        self.max_attempts = max_attempts
        self.base_delay_s = base_delay_s
        self.max_delay_s = max_delay_s
        self.max_retry_after_s = max_retry_after_s
        self._transport = transport
        self._sleep = sleep
        self._clock = clock
        self._rng = rng
        self._handled: set[str] = set()

    def forget(self, keys: Iterable[str]) -> None:
        """Let these dedup keys be dispatched again (e.g. to redeliver alerts that failed everywhere)."""
        self._handled.difference_update(keys)

    async def dispatch(self, anomalies: Iterable[Anomaly], seen_keys: Iterable[str] = ()) -> list[AlertOutcome]:
        """Send the anomalies not in ``seen_keys`` nor handled before by this dispatcher; one outcome each.

        Sinks run concurrently, each taking the alerts in order. Never raises for a delivery failure.
        """
        fresh = dedupe(anomalies, set(seen_keys) | self._handled)
        if not fresh:
            return []
        self._handled.update(a.dedup_key for a in fresh)
        if not self.sinks:
            return [AlertOutcome(a, ()) for a in fresh]
        needs_http = any(not isinstance(s, LogSink) for s in self.sinks)
        client = httpx2.AsyncClient(transport=self._transport, follow_redirects=False) if needs_http else None
        try:
            per_sink = await asyncio.gather(*(self._run_sink(sink, fresh, client) for sink in self.sinks))
        finally:
            if client is not None:
                await client.aclose()
        return [AlertOutcome(a, tuple(reports[i] for reports in per_sink)) for i, a in enumerate(fresh)]

    async def _run_sink(
        self, sink: Sink, fresh: Sequence[Anomaly], client: httpx2.AsyncClient | None
    ) -> list[DeliveryReport]:
        reports = []
        for anomaly in fresh:
            if isinstance(sink, LogSink):
                reports.append(self._log(sink, anomaly))
            else:
                assert client is not None
                reports.append(await self._deliver(sink, anomaly, client))
        return reports

    def _log(self, sink: LogSink, anomaly: Anomaly) -> DeliveryReport:
        now = self._clock()
        logging.getLogger(sink.logger).log(
            sink.level, "margin alert [%s] %s: %s (%s)", anomaly.rule, anomaly.scope, anomaly.message, anomaly.dedup_key
        )
        return DeliveryReport(sink=sink.label, ok=True, attempts=1, started_at=now, finished_at=now)

    def _backoff(self, retry_number: int) -> float:
        """Equal jitter: half of the capped exponential delay fixed, half random."""
        delay = min(self.max_delay_s, self.base_delay_s * 2 ** (retry_number - 1))
        return delay / 2 + self._rng() * delay / 2

    async def _deliver(
        self, sink: WebhookSink | SlackSink, anomaly: Anomaly, client: httpx2.AsyncClient
    ) -> DeliveryReport:
        if isinstance(sink, SlackSink):
            url, body, headers = sink.webhook_url, slack_payload(anomaly), {}
        else:
            url, body, headers = sink.url, webhook_payload(anomaly), dict(sink.headers)
            headers.setdefault("Idempotency-Key", anomaly.dedup_key)
        content = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        headers["Content-Type"] = "application/json"
        started = self._clock()
        delays: list[float] = []
        attempts = 0
        result = _Attempt(ok=False, retryable=False, error="not attempted")
        while True:
            attempts += 1
            result = await self._attempt(client, url, content, headers, sink.timeout_s)
            if result.ok or not result.retryable or attempts >= self.max_attempts:
                break
            delay = self._backoff(attempts)
            if result.retry_after is not None:
                if result.retry_after > self.max_retry_after_s:
                    result.error = (
                        f"{result.error}; Retry-After {result.retry_after:g}s exceeds {self.max_retry_after_s:g}s"
                    )
                    break
                delay = max(delay, result.retry_after)
            _log.info(
                "alert %s to %s: attempt %d failed (%s), retrying in %.2fs",
                anomaly.dedup_key, sink.label, attempts, result.error, delay,
            )  # fmt: skip
            delays.append(delay)
            await self._sleep(delay)
        report = DeliveryReport(
            sink=sink.label,
            ok=result.ok,
            attempts=attempts,
            status=result.status,
            error=None if result.ok else result.error,
            retry_delays=tuple(delays),
            started_at=started,
            finished_at=self._clock(),
        )
        if not result.ok:
            _log.warning(
                "alert %s not delivered to %s after %d attempt(s): %s",
                anomaly.dedup_key, sink.label, attempts, result.error,
            )  # fmt: skip
        return report

    async def _attempt(
        self, client: httpx2.AsyncClient, url: str, content: bytes, headers: Mapping[str, str], timeout_s: float
    ) -> _Attempt:
        try:
            response = await client.post(url, content=content, headers=headers, timeout=httpx2.Timeout(timeout_s))
        except _RETRYABLE_ERRORS as exc:
            return _Attempt(ok=False, retryable=True, error=_scrub(_describe(exc), url))
        except Exception as exc:  # an invalid URL, a transport bug: not worth retrying, never raised
            return _Attempt(ok=False, retryable=False, error=_scrub(_describe(exc), url))
        status = response.status_code
        if 200 <= status < 300:
            return _Attempt(ok=True, retryable=False, status=status)
        excerpt = " ".join(response.text.split())[:200]
        error = _scrub(f"HTTP {status}" + (f": {excerpt}" if excerpt else ""), url)
        retryable = status == 429 or status >= 500
        retry_after = _retry_after(response.headers.get("Retry-After"), self._clock()) if retryable else None
        return _Attempt(ok=False, retryable=retryable, status=status, error=error, retry_after=retry_after)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _scrub(text: str, url: str) -> str:
    """Remove the URL (and its path and query, which hold the secrets) from an error text."""
    secrets = {url}
    try:
        secrets.add(str(httpx2.URL(url)))
    except Exception:  # an unparsable URL: the raw string is scrubbed anyway
        pass
    parts = urlsplit(url)
    for piece in (parts.path, parts.query, parts.netloc if "@" in parts.netloc else ""):
        if len(piece) > 1:
            secrets.add(piece)
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, "<redacted>")
    return text[:_ERROR_MAX]


def _retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date); None when absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())

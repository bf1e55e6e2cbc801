"""A shared backend's health as one gateway instance sees it: outages detected, alerted once each (ledger
alert, ERROR log), counted in /metrics, and probed again without making every request wait for a timeout.

While a backend is down, calls fail fast for ``probe_interval`` seconds; then one call (a request's, or the
monitor's probe) tries again. The first success ends the outage (logged, alerted as recovered) and runs the
recovery callbacks (e.g. settles that could not reach the backend are applied)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from ..errors import GatewayError

__all__ = ["BackendHealth", "BackendUnavailable"]

log = logging.getLogger("margin.gateway")

AlertSink = Callable[[str, str, dict[str, Any]], Awaitable[Any]]


class BackendUnavailable(GatewayError):
    """A request a budget applies to, refused because the budget backend cannot be reached (fail closed)."""

    def __init__(self, message: str) -> None:
        super().__init__(
            message,
            status=503,
            error_type="budget_backend_unavailable",
            code="budget_backend_unavailable",
            headers={"retry-after": "1"},
        )


class BackendDown(Exception):
    """Raised by a backend call while the backend is unreachable; callers decide: refuse, degrade or retry."""


class BackendHealth:
    def __init__(
        self,
        name: str,
        *,
        failure_mode: Literal["closed", "open"],
        describe: str,
        probe_interval: float = 0.5,
        counters: dict[tuple[str, str], int] | None = None,
    ) -> None:
        self.name = name
        self.failure_mode = failure_mode
        self.describe = describe  # where the backend is, without secrets (for messages)
        self.probe_interval = probe_interval
        self.down_since: float | None = None  # monotonic start of the current outage
        self.last_error: str | None = None
        self.outages = 0
        self._next_probe = 0.0
        self.alert_sink: AlertSink | None = None
        self.on_recovery: list[Callable[[], Awaitable[None]]] = []
        # (backend, outcome) -> count; shared with the gateway's metrics (margin_backend_unavailable_total)
        self.counts: dict[tuple[str, str], int] = counters if counters is not None else {}
        self._pending_alerts: list[tuple[str, str, dict[str, Any]]] = []
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def down(self) -> bool:
        return self.down_since is not None

    def may_try(self) -> bool:
        """False while down and the next probe is not due (fail fast instead of waiting for a timeout)."""
        if self.down_since is None:
            return True
        now = time.monotonic()
        if now >= self._next_probe:
            self._next_probe = now + self.probe_interval
            return True
        return False

    def count(self, outcome: str) -> None:
        """One request affected by the outage: ``refused``, ``unenforced``, ``local_limits``, ``cache_miss``..."""
        key = (self.name, outcome)
        self.counts[key] = self.counts.get(key, 0) + 1

    def failed(self, error: BaseException | str) -> bool:
        """A call failed because the backend is unreachable. The first failure of an outage is logged at ERROR
        and alerted (returns True); later ones only counted."""
        message = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        self.last_error = message
        self._next_probe = time.monotonic() + self.probe_interval
        if self.down_since is not None:
            return False
        self.down_since = time.monotonic()
        self.outages += 1
        self.count("outage")
        consequence = (
            "requests a budget applies to are REFUSED (503 budget_backend_unavailable) until it is back"
            if self.failure_mode == "closed"
            else "requests are served with budgets NOT ENFORCED (gateway.redis_failure: open) until it is back"
        )
        log.error(
            "%s at %s is unreachable (%s): %s; rate limits and breakers fall back to this instance's own",
            self.name,
            self.describe,
            message,
            consequence,
        )
        self._alert(
            "backend_unavailable",
            f"{self.name} at {self.describe} is unreachable: {consequence}",
            {"backend": self.name, "error": message[:500], "failure_mode": self.failure_mode},
        )
        return True

    def succeeded(self, started: float) -> None:
        """A call that began at ``started`` (monotonic) succeeded. Only a call begun after the outage started
        ends it: one sent before and answered late says nothing about the server now."""
        if self.down_since is None or started < self.down_since:
            return
        seconds = time.monotonic() - self.down_since
        self.down_since = None
        log.warning("%s at %s is reachable again after %.1f s", self.name, self.describe, seconds)
        self._alert(
            "backend_recovered",
            f"{self.name} at {self.describe} is reachable again after {seconds:.1f} s",
            {"backend": self.name, "outage_seconds": round(seconds, 3)},
        )
        for callback in self.on_recovery:
            self._spawn(callback())

    def state_lost(self, detail: str) -> None:
        """The backend came back without its data (restarted without persistence, flushed, failed over)."""
        log.error("%s at %s lost its state: %s", self.name, self.describe, detail)
        self.count("state_lost")
        self._alert(
            "backend_state_lost", f"{self.name} at {self.describe} lost its state: {detail}", {"backend": self.name}
        )

    def _alert(self, kind: str, message: str, data: dict[str, Any]) -> None:
        self._pending_alerts.append((kind, message, data))
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return  # no event loop yet (start-up): written by flush_alerts once the gateway runs
        self._spawn(self.flush_alerts())

    async def flush_alerts(self) -> None:
        """Write the alerts noted so far to the ledger (kept for the next try when the ledger refuses)."""
        while self._pending_alerts and self.alert_sink is not None:
            kind, message, data = item = self._pending_alerts.pop(0)  # taken first: flushes may run concurrently
            try:
                await self.alert_sink(kind, message, data)
            except Exception:
                log.exception("could not write the %s alert to the ledger; it is retried", kind)
                self._pending_alerts.insert(0, item)
                return

    def _spawn(self, coroutine: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)  # referenced until done: an unreferenced task may be collected
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        """Wait for the alert writes and recovery callbacks in progress (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

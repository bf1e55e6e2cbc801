"""Rate limits (requests and tokens per minute) and the spend circuit breaker. Pure: time comes in as an
argument, state lives in plain objects the gateway owns; nothing here sleeps or does I/O."""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal

__all__ = ["BreakerDecision", "RateLimiter", "SpendBreaker", "TokenBucket", "scope_value"]


def scope_value(scope: str, *, key_id: str | None, tags: Mapping[str, str]) -> str | None:
    """The value a request has for a scope: its key id, a tag (user, team, project, tag:NAME), or ``*``."""
    if scope == "global":
        return "*"
    if scope == "key":
        return key_id
    return tags.get(scope.removeprefix("tag:"))


@dataclass
class TokenBucket:
    """``capacity`` units, refilled continuously at capacity per minute. May go negative (debt) when
    actual usage is charged after the fact; then nothing passes until it refills."""

    capacity: float
    level: float
    updated: float

    def refill(self, now: float) -> None:
        if now > self.updated:
            self.level = min(self.capacity, self.level + (now - self.updated) * self.capacity / 60.0)
            self.updated = now

    def wait_for(self, amount: float, now: float) -> float:
        """Seconds until ``amount`` fits (0 when it fits now)."""
        self.refill(now)
        if self.level >= amount or (amount > self.capacity and self.level >= self.capacity):
            return 0.0  # an oversize request passes when the bucket is full rather than never
        return (min(amount, self.capacity) - self.level) * 60.0 / self.capacity


@dataclass
class RateLimiter:
    """Requests-per-minute and tokens-per-minute buckets per (rule, scope value)."""

    buckets: dict[tuple[str, str, str], TokenBucket] = field(default_factory=dict)

    def _bucket(self, rule: str, value: str, kind: str, capacity: float, now: float) -> TokenBucket:
        key = (rule, value, kind)
        bucket = self.buckets.get(key)
        if bucket is None or bucket.capacity != capacity:
            bucket = self.buckets[key] = TokenBucket(capacity=capacity, level=capacity, updated=now)
        return bucket

    def admit(self, checks: list[tuple[str, str, int | None, int | None]], tokens: int, now: float) -> float:
        """``checks`` = (rule name, scope value, requests/min, tokens/min). Admit the request (taking one
        request and ``tokens`` from every bucket) and return 0, or take nothing and return the seconds
        to wait."""
        wait = 0.0
        plan: list[tuple[TokenBucket, float]] = []
        for rule, value, rpm, tpm in checks:
            if rpm:
                bucket = self._bucket(rule, value, "rpm", float(rpm), now)
                wait = max(wait, bucket.wait_for(1, now))
                plan.append((bucket, 1.0))
            if tpm:
                bucket = self._bucket(rule, value, "tpm", float(tpm), now)
                wait = max(wait, bucket.wait_for(tokens, now))
                plan.append((bucket, float(tokens)))
        if wait > 0:
            return wait
        for bucket, amount in plan:
            bucket.level -= amount
        return 0.0

    def charge_tokens(self, checks: list[tuple[str, str, int | None, int | None]], tokens: int, now: float) -> None:
        """Charge tokens known only after the call (the output) to the token buckets."""
        for rule, value, _rpm, tpm in checks:
            if tpm:
                bucket = self._bucket(rule, value, "tpm", float(tpm), now)
                bucket.refill(now)
                bucket.level -= tokens


@dataclass(frozen=True)
class BreakerDecision:
    open: bool
    retry_after: float = 0.0
    spent_last_hour: Decimal = Decimal(0)
    limit: Decimal = Decimal(0)


@dataclass
class _Window:
    events: deque[tuple[float, Decimal]] = field(default_factory=deque)
    total: Decimal = Decimal(0)
    open_until: float = 0.0


@dataclass
class SpendBreaker:
    """Trips a scope when its spend in the last hour exceeds ``multiple x expected_hourly``; refuses the
    scope's requests until ``open_until`` (the cool-down) or an admin reset."""

    windows: dict[tuple[str, str], _Window] = field(default_factory=dict)

    def _window(self, rule: str, value: str, now: float) -> _Window:
        window = self.windows.setdefault((rule, value), _Window())
        while window.events and window.events[0][0] <= now - 3600:
            _, amount = window.events.popleft()
            window.total -= amount
        return window

    def check(self, rule: str, value: str, now: float) -> BreakerDecision:
        window = self._window(rule, value, now)
        if window.open_until > now:
            return BreakerDecision(open=True, retry_after=window.open_until - now, spent_last_hour=window.total)
        return BreakerDecision(open=False, spent_last_hour=window.total)

    def record(self, rule: str, value: str, amount: Decimal, now: float, *, limit: Decimal, cooldown_s: float) -> bool:
        """Add spend; returns True when this spend trips the breaker (the caller writes the alert)."""
        window = self._window(rule, value, now)
        if amount:
            window.events.append((now, amount))
            window.total += amount
        if window.total > limit and window.open_until <= now:
            window.open_until = now + cooldown_s
            return True
        return False

    def reset(self, rule: str | None = None, value: str | None = None) -> int:
        """Close breakers (all, one rule's, or one scope value's). Returns how many were open."""
        count = 0
        for (name, scope_val), window in self.windows.items():
            if (rule is None or name == rule) and (value is None or scope_val == value):
                if window.open_until > 0:
                    count += 1
                window.open_until = 0.0
                window.events.clear()
                window.total = Decimal(0)
        return count

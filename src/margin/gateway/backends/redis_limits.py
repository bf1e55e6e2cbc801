"""Rate limits and spend breakers in Redis, shared by every gateway instance, with the semantics of
:mod:`margin.policy.limits`: token buckets refilled continuously (taken all-or-none at admission; output
tokens charged after the call, a bucket may go into debt), and a one-hour spend window per scope that opens
the breaker when it exceeds ``multiple x expected_hourly`` until the cool-down ends or an admin resets it.
Each operation is one Lua script on the server's clock (``TIME``), so instances' clocks do not matter.

Keys: ``{p}:rate:<rule>|<value>|rpm|tpm`` hash ``l`` (level), ``u`` (updated, s), ``c`` (capacity); it
expires once the bucket would be full again (a missing bucket is a full one). ``{p}:breaker:<rule>|<value>``
hash of minute buckets ``m<minute>`` (nano-dollars), ``open`` (until, ms), ``rule`` and ``value``; it expires
an hour after its last spend or its cool-down. A breaker's window is kept in one-minute buckets, so spend
leaves it up to a minute later than in one process (it trips sooner, never later).

While Redis is unreachable both fall back to this instance's own limiter and breaker (each instance then
enforces the limits alone; logged, alerted and counted by the backend's health)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from decimal import Decimal

from ...policy.counters import nanos_ceil, nanos_floor
from ...policy.limits import BreakerDecision
from ...store._rows import from_nanos
from ._redis import RedisBackend
from .health import BackendDown
from .memory import LocalBreakers, LocalRateLimits, RateCheck

__all__ = ["RedisBreakers", "RedisRateLimits"]

log = logging.getLogger("margin.gateway")

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local function bucket(key, cap)
  local v = redis.call('HMGET', key, 'l', 'u', 'c')
  local level, updated = cap, now
  if v[1] and tonumber(v[3]) == cap then level, updated = tonumber(v[1]), tonumber(v[2]) end
  if now > updated then level, updated = math.min(cap, level + (now - updated) * cap / 60.0), now end
  return level
end
local function store(key, cap, level)
  redis.call('HSET', key, 'l', tostring(level), 'u', tostring(now), 'c', tostring(cap))
  local full_ms = math.ceil((cap - level) * 60000.0 / cap) + 1000
  redis.call('PEXPIRE', key, math.max(full_ms, 1000))
end
"""

# KEYS: buckets; ARGV: (capacity, amount) per bucket. Returns '0' (taken) or the seconds to wait.
_ADMIT = (
    _NOW
    + """
local wait, levels = 0, {}
for i = 1, #KEYS do
  local cap, amount = tonumber(ARGV[2 * i - 1]), tonumber(ARGV[2 * i])
  local level = bucket(KEYS[i], cap)
  levels[i] = level
  if not (level >= amount or (amount > cap and level >= cap)) then
    wait = math.max(wait, (math.min(amount, cap) - level) * 60.0 / cap)
  end
end
if wait > 0 then return tostring(wait) end
for i = 1, #KEYS do store(KEYS[i], tonumber(ARGV[2 * i - 1]), levels[i] - tonumber(ARGV[2 * i])) end
return '0'
"""
)

# KEYS: token buckets; ARGV: (capacity, tokens) per bucket. Takes even into debt.
_CHARGE = (
    _NOW
    + """
for i = 1, #KEYS do
  local cap = tonumber(ARGV[2 * i - 1])
  store(KEYS[i], cap, bucket(KEYS[i], cap) - tonumber(ARGV[2 * i]))
end
return 'OK'
"""
)

_WINDOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function total(key, at)
  local sum = 0
  local fields = redis.call('HGETALL', key)
  for i = 1, #fields, 2 do
    local name = fields[i]
    if string.sub(name, 1, 1) == 'm' then
      local minute = tonumber(string.sub(name, 2))
      if (minute + 1) * 60000 <= at - 3600000 then
        redis.call('HDEL', key, name)
      else
        sum = sum + tonumber(fields[i + 1])
      end
    end
  end
  return sum
end
local function add(key, at, amount, limit, cooldown)
  -- amount: a decimal string of nanos (HINCRBY takes it as is; a Lua number could print as 1e+15)
  if tonumber(amount) > 0 then
    redis.call('HINCRBY', key, 'm' .. string.format('%d', math.floor(at / 60000)), amount)
  end
  local sum = total(key, at)
  local open = tonumber(redis.call('HGET', key, 'open') or '0')
  local tripped = 0
  if sum > limit and open <= at then
    open = at + cooldown
    redis.call('HSET', key, 'open', string.format('%d', open))
    tripped = 1
  end
  redis.call('PEXPIREAT', key, string.format('%d', math.max(open, now) + 3600000))
  return tripped, sum
end
"""

# KEYS: window; ARGV: (none). Returns {open 0/1, retry_after_ms, spent_last_hour_nanos}.
_CHECK = (
    _WINDOW
    + """
local sum = total(KEYS[1], now)
local open = tonumber(redis.call('HGET', KEYS[1], 'open') or '0')
if open > now then return {1, open - now, string.format('%d', sum)} end
return {0, 0, string.format('%d', sum)}
"""
)

# KEYS: window; ARGV: amount nanos, limit nanos, cooldown ms, rule, value. Returns 1 when this spend tripped it.
_RECORD = (
    _WINDOW
    + """
redis.call('HSET', KEYS[1], 'rule', ARGV[4], 'value', ARGV[5])
local tripped = add(KEYS[1], now, ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]))
return tripped
"""
)

# Start-up: the last hour from the ledger, only when no instance keeps this window yet. KEYS: window;
# ARGV: limit, cooldown ms, rule, value, then (ms ago its bucket ended, amount nanos) oldest first.
_SEED = (
    _WINDOW
    + """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'rule', ARGV[3], 'value', ARGV[4])
for i = 5, #ARGV, 2 do
  add(KEYS[1], now - tonumber(ARGV[i]), ARGV[i + 1], tonumber(ARGV[1]), tonumber(ARGV[2]))
end
local open = tonumber(redis.call('HGET', KEYS[1], 'open') or '0')
if open > now then return 1 end
return 0
"""
)


class RedisRateLimits:
    def __init__(self, backend: RedisBackend, *, fallback: LocalRateLimits) -> None:
        self.backend = backend
        self.fallback = fallback
        self._admit = backend.script(_ADMIT)
        self._charge = backend.script(_CHARGE)

    def _key(self, rule: str, value: str, kind: str) -> str:
        return self.backend.key("rate", f"{rule}|{value}|{kind}")

    async def admit(self, checks: list[RateCheck], tokens: int) -> float:
        keys: list[str] = []
        args: list[object] = []
        for rule, value, rpm, tpm in checks:
            if rpm:
                keys.append(self._key(rule, value, "rpm"))
                args += [rpm, 1]
            if tpm:
                keys.append(self._key(rule, value, "tpm"))
                args += [tpm, tokens]
        if not keys:
            return 0.0
        try:
            return float(await self.backend.script_call(self._admit, keys, args))
        except BackendDown:
            self.backend.health.count("local_limits")
            return await self.fallback.admit(checks, tokens)

    async def charge_tokens(self, checks: list[RateCheck], tokens: int) -> None:
        keys: list[str] = []
        args: list[object] = []
        for rule, value, _rpm, tpm in checks:
            if tpm:
                keys.append(self._key(rule, value, "tpm"))
                args += [tpm, tokens]
        if not keys:
            return
        try:
            await self.backend.script_call(self._charge, keys, args)
        except BackendDown:
            await self.fallback.charge_tokens(checks, tokens)


class RedisBreakers:
    def __init__(self, backend: RedisBackend, *, fallback: LocalBreakers) -> None:
        self.backend = backend
        self.fallback = fallback
        self._check = backend.script(_CHECK)
        self._record = backend.script(_RECORD)
        self._seed = backend.script(_SEED)
        self._pending: list[tuple[str, str, list[tuple[float, Decimal]], Decimal, float]] = []
        backend.health.on_recovery.append(self.apply_rebuild)

    def _key(self, rule: str, value: str) -> str:
        return self.backend.key("breaker", f"{rule}|{value}")

    async def check(self, rule: str, value: str) -> BreakerDecision:
        try:
            is_open, retry_ms, spent = await self.backend.script_call(self._check, [self._key(rule, value)], [])
        except BackendDown:
            return await self.fallback.check(rule, value)
        return BreakerDecision(
            open=bool(is_open), retry_after=int(retry_ms) / 1000, spent_last_hour=from_nanos(int(spent))
        )

    async def record(self, rule: str, value: str, amount: Decimal, *, limit: Decimal, cooldown_s: float) -> bool:
        args: list[object] = [nanos_ceil(amount), nanos_floor(limit), int(cooldown_s * 1000), rule, value]
        try:
            return bool(await self.backend.script_call(self._record, [self._key(rule, value)], args))
        except BackendDown:
            return await self.fallback.record(rule, value, amount, limit=limit, cooldown_s=cooldown_s)

    async def reset(self, rule: str | None = None, value: str | None = None) -> int:
        """Close breakers (all, one rule's, or one scope value's) in Redis and here. Returns how many were open."""
        client = self.backend.client

        async def scan() -> int:
            count = 0
            async for key in client.scan_iter(match=self.backend.key("breaker", "*"), count=1000):
                name, scope, opened = await client.hmget(key, "rule", "value", "open")
                if (rule is None or (name or b"").decode() == rule) and (
                    value is None or (scope or b"").decode() == value
                ):
                    count += 1 if opened else 0
                    await client.delete(key)
            return count

        local = await self.fallback.reset(rule, value)
        return max(local, await self.backend.run(scan))

    def rebuild(
        self, rule: str, value: str, buckets: list[tuple[float, Decimal]], *, limit: Decimal, cooldown_s: float
    ) -> bool:
        """Noted at start-up, applied on the event loop (:meth:`apply_rebuild`) unless an instance already keeps
        this window. Returns False: whether it is open is known (and logged) then."""
        self._pending.append((rule, value, buckets, limit, cooldown_s))
        return False

    async def apply_rebuild(self) -> None:
        while self._pending:
            rule, value, buckets, limit, cooldown_s = self._pending[0]
            args: list[object] = [nanos_floor(limit), int(cooldown_s * 1000), rule, value]
            for ago, amount in sorted(buckets, key=lambda bucket: -bucket[0]):
                args += [int(ago * 1000), nanos_ceil(amount)]
            try:
                opened = await self.backend.script_call(self._seed, [self._key(rule, value)], args)
            except BackendDown:
                return
            self._pending.pop(0)
            if opened:
                log.warning(
                    "spend breaker %s is open after the restart for %s: last-hour spend above %s USD",
                    rule,
                    value,
                    limit,
                )

    def pending(self) -> Sequence[object]:
        return self._pending

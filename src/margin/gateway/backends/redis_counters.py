"""Budget counters in Redis, shared by every gateway instance: reserve and settle are each ONE Lua script.

Keys (all under the hash tag ``{prefix}``, see _redis.py):

``{p}:budget:<counter>``   hash ``s`` (spent) and ``r`` (reserved), integer nano-dollars; expires one hour
                           after its period ends (a counter name carries its period: ``team-daily|team=ml|2026-11-23``)
``{p}:res:<id>``           an open reservation: ``a`` (amount), ``st`` (o = open, x = charged at its deadline,
                           u = settled without a reservation), ``n`` and ``k1..kn`` (its counters)
``{p}:reservations``       sorted set of open reservation ids by deadline (server time, ms)

Money: integer nano-dollars, never floats. What is charged or reserved rounds UP to the next nano and a cap
rounds DOWN, so a counter is never below the exact Decimal truth and never allows more than the cap. Lua
numbers are doubles, exact only to 2^53 nanos (~9 million USD), so the cap check adds and compares the
decimal strings in two limbs (billions of nanos, and the rest) and stays exact to ~9e15 USD; the updates
themselves are HINCRBY (64-bit integers on the server).

Reserve: every counter must exist with a spent figure (else SEED: the gateway loads it from the ledger,
idempotently, and retries), and spent + reserved + amount <= cap on every counter, or nothing changes.
Reserving an id that is already held is a no-op (a retried command cannot reserve twice).

Settle: an open reservation is replaced by the actual cost. One charged at its deadline (its instance was
presumed dead) gets ``actual - amount`` added. A reservation that never reached Redis (fail open) adds the
actual cost and leaves a marker so a retried settle adds it once. A reservation that is gone was settled.

Deadlines: a reservation not settled within ``redis_reservation_ttl_s`` is charged at its worst case (moved
from reserved to spent, so the room left does not change) by the next reserve that sweeps; the ledger
charges the same reservation at its worst case when a gateway next starts (its journal recovery), and at
start-up the reservations the ledger just charged are charged here at once, so both agree.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from ...money import ZERO
from ...policy.budgets import AppliedBudget, Figures, Reservation, room_left
from ...policy.counters import CounterSeed, nanos_ceil, nanos_floor, period_end
from ...store._rows import from_nanos
from ._redis import RedisBackend
from .health import BackendDown, BackendUnavailable

__all__ = ["RedisCounters"]

log = logging.getLogger("margin.gateway")

# A counter outlives its period by this much, so late settles still land and the admin API shows it.
COUNTER_GRACE = timedelta(hours=1)
# How long a "settled without reservation" marker keeps a retried settle from counting twice.
MARKER_TTL_MS = 24 * 3600 * 1000
# Settles waiting for Redis to come back; past this many the oldest are dropped (logged): their spend is in
# the ledger, and counters are raised to the ledger's spend when a gateway starts.
MAX_PENDING_SETTLES = 100_000
# room_hint trusts figures this process saw in a reply for this long (they only steer the exact prompt count).
HINT_MAX_AGE_S = 2.0

SeedSpend = Callable[[AppliedBudget, datetime], Awaitable[Decimal]]

_LIB = """
local function neg(n)
  if n == '0' then return '0' end
  return '-' .. n
end
local function limbs(n)
  if string.sub(n, 1, 1) == '-' then return 0, 0 end
  local len = string.len(n)
  if len <= 9 then return 0, tonumber(n) end
  return tonumber(string.sub(n, 1, len - 9)), tonumber(string.sub(n, len - 8))
end
local function add(ah, al, bh, bl)
  local h, l = ah + bh, al + bl
  if l >= 1000000000 then return h + 1, l - 1000000000 end
  return h, l
end
local function le(ah, al, bh, bl)
  return ah < bh or (ah == bh and al <= bl)
end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function charge(record, id, zset)
  local st = redis.call('HGET', record, 'st')
  if st == 'o' then
    local a = redis.call('HGET', record, 'a')
    local n = tonumber(redis.call('HGET', record, 'n') or '0')
    for j = 1, n do
      local c = redis.call('HGET', record, 'k' .. j)
      if c and redis.call('EXISTS', c) == 1 then
        redis.call('HINCRBY', c, 'r', neg(a))
        redis.call('HINCRBY', c, 's', a)
      end
    end
    redis.call('HSET', record, 'st', 'x')
  end
  redis.call('ZREM', zset, id)
end
"""

# KEYS: epoch, hold, reservations, record, counter... ; ARGV: epoch, amount, ttl_ms, record_expire_at_ms,
# record key prefix, reservation id, then (cap, expire_at_ms) per counter.
# Replies {'OK', s1, r1, s2, r2, ...} with the counters' figures after reserving, or {'CAP', i, s1, r1, ...}
# with the figures that refused it, so that the gateway needs no separate read (a round trip each).
_RESERVE = (
    _LIB
    + """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return {'EPOCH'} end
if redis.call('EXISTS', KEYS[2]) == 1 then return {'HOLD'} end
local n = #KEYS - 4
local function reply(head)
  for i = 1, n do
    local v = redis.call('HMGET', KEYS[4 + i], 's', 'r')
    head[#head + 1] = v[1] or ''
    head[#head + 1] = v[2] or '0'
  end
  return head
end
if redis.call('EXISTS', KEYS[4]) == 1 then return reply({'OK'}) end
local now = now_ms()
local due = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, 16)
for _, id in ipairs(due) do charge(ARGV[5] .. id, id, KEYS[3]) end
local ah, al = limbs(ARGV[2])
for i = 1, n do
  local v = redis.call('HMGET', KEYS[4 + i], 's', 'r')
  if not v[1] then return {'SEED', tostring(i)} end
  local sh, sl = limbs(v[1])
  local rh, rl = limbs(v[2] or '0')
  local th, tl = add(sh, sl, rh, rl)
  th, tl = add(th, tl, ah, al)
  local ch, cl = limbs(ARGV[5 + 2 * i])
  if not le(th, tl, ch, cl) then return reply({'CAP', tostring(i)}) end
end
for i = 1, n do
  redis.call('HINCRBY', KEYS[4 + i], 'r', ARGV[2])
  redis.call('PEXPIREAT', KEYS[4 + i], ARGV[6 + 2 * i])
  redis.call('HSET', KEYS[4], 'k' .. i, KEYS[4 + i])
end
redis.call('HSET', KEYS[4], 'a', ARGV[2], 'st', 'o', 'n', n)
redis.call('PEXPIREAT', KEYS[4], ARGV[4])
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[3]), ARGV[6])
return reply({'OK'})
"""
)

# KEYS: epoch, reservations, record, counter... ; ARGV: the reservation's epoch, actual, actual - amount,
# confirmed (1: the reserve returned OK), reservation id. Replies {outcome, s1, r1, ...}: the counters' figures
# after settling (for the response's budget headers), or {'EPOCH'}.
_SETTLE = (
    _LIB
    + """
local function settle()
  local st = redis.call('HGET', KEYS[3], 'st')
  if st == 'o' then
    local a = redis.call('HGET', KEYS[3], 'a')
    for i = 4, #KEYS do
      if redis.call('EXISTS', KEYS[i]) == 1 then
        redis.call('HINCRBY', KEYS[i], 'r', neg(a))
        redis.call('HINCRBY', KEYS[i], 's', ARGV[2])
      end
    end
    redis.call('DEL', KEYS[3])
    redis.call('ZREM', KEYS[2], ARGV[5])
    return 'SETTLED'
  elseif st == 'x' then
    for i = 4, #KEYS do
      if redis.call('EXISTS', KEYS[i]) == 1 then redis.call('HINCRBY', KEYS[i], 's', ARGV[3]) end
    end
    redis.call('DEL', KEYS[3])
    return 'SETTLED_AFTER_DEADLINE'
  elseif st == 'u' then
    return 'DUPLICATE'
  end
  if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 'EPOCH' end
  if ARGV[4] == '1' then return 'GONE' end
  if ARGV[2] == '0' then return 'NOTHING' end
  for i = 4, #KEYS do
    if redis.call('HEXISTS', KEYS[i], 's') == 1 then redis.call('HINCRBY', KEYS[i], 's', ARGV[2]) end
  end
  redis.call('HSET', KEYS[3], 'st', 'u')
  redis.call('PEXPIRE', KEYS[3], ARGV[6])
  return 'UNRESERVED'
end
local out = {settle()}
if out[1] == 'EPOCH' then return out end
for i = 4, #KEYS do
  local v = redis.call('HMGET', KEYS[i], 's', 'r')
  out[#out + 1] = v[1] or ''
  out[#out + 1] = v[2] or '0'
end
return out
"""
)

# Re-register a reservation this process holds after the server lost its data. KEYS as reserve without hold;
# ARGV: epoch, amount, ttl_ms, record_expire_at_ms, reservation id, expire_at_ms per counter.
_RESTORE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 'EPOCH' end
if redis.call('EXISTS', KEYS[3]) == 1 then return 'EXISTS' end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n = #KEYS - 3
for i = 1, n do
  redis.call('HINCRBY', KEYS[3 + i], 'r', ARGV[2])
  redis.call('PEXPIREAT', KEYS[3 + i], ARGV[5 + i])
  redis.call('HSET', KEYS[3], 'k' .. i, KEYS[3 + i])
end
redis.call('HSET', KEYS[3], 'a', ARGV[2], 'st', 'o', 'n', n)
redis.call('PEXPIREAT', KEYS[3], ARGV[4])
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), ARGV[5])
return 'RESTORED'
"""

# A counter's spent figure from the ledger: set when missing, raised when the ledger's is higher (never
# lowered, never added: any number of instances may seed the same counter). KEYS: epoch, counter;
# ARGV: epoch, spent, expire_at_ms.
_SEED = (
    _LIB
    + """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 'EPOCH' end
local s = redis.call('HGET', KEYS[2], 's')
local ah, al = limbs(ARGV[2])
if not s then
  redis.call('HSET', KEYS[2], 's', ARGV[2])
else
  local sh, sl = limbs(s)
  if not le(ah, al, sh, sl) then redis.call('HSET', KEYS[2], 's', ARGV[2]) end
end
if redis.call('HEXISTS', KEYS[2], 'r') == 0 then redis.call('HSET', KEYS[2], 'r', '0') end
redis.call('PEXPIREAT', KEYS[2], ARGV[3])
return 'OK'
"""
)

# Charge reservations the ledger charged at start-up (ids), or every one past its deadline (no ids).
# KEYS: reservations; ARGV: record key prefix, ids...
_CHARGE = (
    _LIB
    + """
local ids = {}
for i = 2, #ARGV do ids[#ids + 1] = ARGV[i] end
if #ids == 0 then ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now_ms(), 'LIMIT', 0, 1000) end
for _, id in ipairs(ids) do charge(ARGV[1] .. id, id, KEYS[1]) end
return #ids
"""
)

_READ = """
local out = {}
for i = 1, #KEYS do
  local v = redis.call('HMGET', KEYS[i], 's', 'r')
  out[i] = {v[1] or '', v[2] or '0'}
end
return out
"""


@dataclass
class _Held:
    """A reservation this process made (or tried to) and has not settled yet."""

    reservation: Reservation
    amount_nanos: int
    keys: list[str]
    expire_at_ms: list[int]
    epoch: bytes
    confirmed: bool  # Redis answered OK to the reserve
    budgets: list[AppliedBudget] = field(default_factory=list)


class RedisCounters:
    """:class:`~margin.policy.counters.CounterStore` on Redis. ``seed_spend(budget, now)`` returns a counter's
    spend in its current period from the ledger (used when Redis has no figure for it yet)."""

    def __init__(
        self,
        backend: RedisBackend,
        *,
        seed_spend: SeedSpend,
        reservation_ttl_s: float = 900,
        clock: Callable[[], datetime],
    ) -> None:
        self.backend = backend
        self.health = backend.health
        self.seed_spend = seed_spend
        self.ttl_ms = int(reservation_ttl_s * 1000)
        self.clock = clock
        self.zset = backend.key("reservations")
        self.record_prefix = backend.key("res") + ":"
        self._reserve = backend.script(_RESERVE)
        self._settle = backend.script(_SETTLE)
        self._restore = backend.script(_RESTORE)
        self._seed = backend.script(_SEED)
        self._charge = backend.script(_CHARGE)
        self._read = backend.script(_READ)
        self._open: dict[str, _Held] = {}
        self._pending: deque[tuple[_Held, int]] = deque()
        self._seeding: dict[str, asyncio.Future[None]] = {}
        self._rebuild: tuple[list[CounterSeed], list[str]] | None = None
        # The last (spent, reserved) nanos seen per counter key, and when (time.monotonic): room_hint's source.
        self._seen: dict[str, tuple[int, int, float]] = {}
        backend.on_epoch_change.append(self._restore_open)
        self.health.on_recovery.append(self._after_outage)

    def describe(self) -> str:
        return f"redis at {self.health.describe}"

    def counter_key(self, counter: str) -> str:
        return self.backend.key("budget", counter)

    @property
    def pending_settles(self) -> int:
        return len(self._pending)

    # -- the failure policy -------------------------------------------------------------------------------------

    def _unavailable(self, detail: str) -> None:
        """Redis cannot answer for a request a budget applies to: refuse it (closed) or let it through (open)."""
        if self.health.failure_mode == "closed":
            self.health.count("refused")
            raise BackendUnavailable(
                f"the budget backend (redis at {self.health.describe}) is unavailable ({detail}), so this request's "
                "budget cannot be enforced and it is refused; retry shortly. Operators: bring Redis back, or set "
                "gateway.redis_failure: open to serve unenforced during an outage"
            )
        self.health.count("unenforced")

    # -- reads --------------------------------------------------------------------------------------------------

    def _note(self, keys: Sequence[str], flat: Sequence[bytes]) -> Figures:
        """Figures from a script's flat reply (spent, reserved, spent, reserved, ...), remembered for room_hint."""
        now = time.monotonic()
        figures = []
        for i, key in enumerate(keys):
            spent, reserved = int(flat[2 * i] or 0), int(flat[2 * i + 1] or 0)
            self._seen[key] = (spent, reserved, now)
            figures.append((from_nanos(spent), from_nanos(reserved)))
        if len(self._seen) > 100_000:  # counters of past periods: forget them all, the next replies refill it
            self._seen.clear()
        return tuple(figures)

    def room_hint(self, applied: Sequence[AppliedBudget]) -> Decimal | None:
        counted = []
        horizon = time.monotonic() - HINT_MAX_AGE_S
        for budget in applied:
            if budget.counter is None:
                continue
            seen = self._seen.get(self.counter_key(budget.counter))
            if seen is None or seen[2] < horizon:
                return None
            counted.append((from_nanos(seen[0]), from_nanos(seen[1])))
        return room_left(applied, tuple(counted))

    async def _figures(self, budgets: Sequence[AppliedBudget]) -> list[tuple[int, int]]:
        """(spent, reserved) nanos per budget, seeding counters Redis does not have yet."""
        keys = [self.counter_key(b.counter or "") for b in budgets]
        for _ in range(3):
            rows = await self.backend.script_call(self._read, keys, [])
            missing = [b for b, (spent, _r) in zip(budgets, rows, strict=True) if spent == b""]
            if not missing:
                self._note(keys, [value for row in rows for value in row])
                return [(int(spent), int(reserved)) for spent, reserved in rows]
            await asyncio.gather(*(self._seed_counter(b) for b in missing))
        raise BackendDown("budget counters keep disappearing (is Redis evicting keys? use maxmemory-policy noeviction)")

    async def headroom(self, applied: Sequence[AppliedBudget]) -> Decimal | None:
        rooms = [b.cap for b in applied if b.counter is None]
        counted = [b for b in applied if b.counter is not None]
        if counted:
            try:
                figures = await self._figures(counted)
            except BackendDown as exc:
                self._unavailable(str(exc))
                return min(rooms) if rooms else None
            for budget, (spent, reserved) in zip(counted, figures, strict=True):
                rooms.append(from_nanos(nanos_floor(budget.cap) - spent - reserved))
        return min(rooms) if rooms else None

    async def snapshots(self, counters: Sequence[str]) -> list[tuple[Decimal, Decimal]]:
        if not counters:
            return []
        try:
            rows = await self.backend.script_call(self._read, [self.counter_key(c) for c in counters], [])
        except BackendDown:
            return [(ZERO, ZERO) for _ in counters]
        return [(from_nanos(int(s or 0)), from_nanos(int(r))) for s, r in rows]

    async def items(self) -> list[tuple[str, tuple[Decimal, Decimal]]]:
        prefix = self.counter_key("")
        client = self.backend.client

        async def scan() -> list[tuple[str, tuple[Decimal, Decimal]]]:
            names = sorted([key async for key in client.scan_iter(match=prefix + "*", count=1000)])
            if not names:
                return []
            async with client.pipeline(transaction=False) as pipe:
                for name in names:
                    pipe.hmget(name, "s", "r")
                rows = await pipe.execute()
            return [
                (name.decode()[len(prefix) :], (from_nanos(int(s or 0)), from_nanos(int(r or 0))))
                for name, (s, r) in zip(names, rows, strict=True)
            ]

        return await self.backend.run(scan)

    # -- reserve and settle -------------------------------------------------------------------------------------

    def _expire_at_ms(self, budget: AppliedBudget, now: datetime) -> int:
        return int((period_end(budget.rule.period, now) + COUNTER_GRACE).timestamp() * 1000)

    async def reserve(
        self, reservation_id: str, applied: Sequence[AppliedBudget], amount: Decimal
    ) -> Reservation | None:
        return (await self.reserve_read(reservation_id, applied, amount))[0]

    async def reserve_read(
        self, reservation_id: str, applied: Sequence[AppliedBudget], amount: Decimal
    ) -> tuple[Reservation | None, Figures | None]:
        if amount < 0:
            raise ValueError("a reservation cannot be negative")
        counted = [b for b in applied if b.counter is not None]
        if any(amount > b.cap for b in applied if b.counter is None):
            # A per-request cap refuses it whatever the counters say; their figures cost a read here, on the
            # refusal path only.
            try:
                figures = await self._figures(counted) if counted else []
            except BackendDown:
                return None, None
            return None, tuple((from_nanos(s), from_nanos(r)) for s, r in figures)
        reservation = Reservation(
            reservation_id=reservation_id, counters=tuple(b.counter for b in counted if b.counter), amount=amount
        )
        if not counted:
            return reservation, ()
        now = self.clock()
        held = _Held(
            reservation=reservation,
            amount_nanos=nanos_ceil(amount),
            keys=[self.counter_key(c) for c in reservation.counters],
            expire_at_ms=[self._expire_at_ms(b, now) for b in counted],
            epoch=self.backend.epoch or b"",
            confirmed=False,
            budgets=counted,
        )
        record_expire = max([*held.expire_at_ms, int(now.timestamp() * 1000) + self.ttl_ms + 3_600_000])
        for _ in range(5):
            held.epoch = self.backend.epoch or b""
            args: list[object] = [held.epoch, held.amount_nanos, self.ttl_ms, record_expire, self.record_prefix]
            args.append(reservation_id)
            for budget, expire in zip(counted, held.expire_at_ms, strict=True):
                args += [nanos_floor(budget.cap), expire]
            keys = [self.backend.epoch_key, self.backend.hold_key, self.zset, self.record_prefix + reservation_id]
            try:
                reply = await self.backend.script_call(self._reserve, [*keys, *held.keys], args)
            except BackendDown as exc:
                # The script may have run with its reply lost: release it once Redis answers again.
                self._open[reservation_id] = held
                self._queue(held, 0 if self.health.failure_mode == "closed" else None)
                self._unavailable(str(exc))
                return reservation, None
            code = reply[0]
            if code == b"OK":
                held.confirmed = True
                self._open[reservation_id] = held
                return reservation, self._note(held.keys, reply[1:])
            if code == b"CAP":
                return None, self._note(held.keys, reply[2:])
            if code == b"SEED":
                try:
                    await self._seed_counter(counted[int(reply[1]) - 1])
                except BackendDown as exc:
                    self._unavailable(str(exc))
                    self._open[reservation_id] = held
                    return reservation, None
                continue
            if code == b"EPOCH":
                try:
                    await self.backend.recover_epoch()
                except BackendDown:
                    pass  # the next attempt reports it
                continue
            if code == b"HOLD":
                self._unavailable("redis lost its data moments ago; counters are being rebuilt")
                self._open[reservation_id] = held
                return reservation, None
            raise RuntimeError(f"unexpected reply from the reserve script: {reply!r}")
        self._unavailable("the reservation did not settle on a stable state of redis")
        self._open[reservation_id] = held
        return reservation, None

    async def settle(self, reservation: Reservation, actual: Decimal) -> None:
        await self.settle_read(reservation, actual)

    async def settle_read(self, reservation: Reservation, actual: Decimal) -> Figures | None:
        held = self._open.get(reservation.reservation_id)
        if held is None:
            return () if not reservation.counters else None  # no counter applied, or never reached Redis
        return (await self._apply(held, nanos_ceil(actual)))[1]

    async def _apply(self, held: _Held, actual_nanos: int) -> tuple[bool, Figures | None]:
        """Settle one held reservation; on an outage it waits in the pending queue. Returns (done, the
        counters' figures after it)."""
        rid = held.reservation.reservation_id
        for _ in range(4):
            keys = [self.backend.epoch_key, self.zset, self.record_prefix + rid, *held.keys]
            args: list[object] = [held.epoch, actual_nanos, actual_nanos - held.amount_nanos]
            args += ["1" if held.confirmed else "0", rid, MARKER_TTL_MS]
            try:
                reply = await self.backend.script_call(self._settle, keys, args)
            except BackendDown:
                self._queue(held, actual_nanos)
                return False, None
            if reply[0] == b"EPOCH":
                try:
                    await self.backend.recover_epoch()  # re-registers the confirmed ones, this one included
                except BackendDown:
                    self._queue(held, actual_nanos)
                    return False, None
                if not held.confirmed:
                    held.epoch = self.backend.epoch or b""
                continue
            self._open.pop(rid, None)
            return True, self._note(held.keys, reply[1:])
        log.error("reservation %s could not be settled in redis (its epoch keeps changing)", rid)
        self._open.pop(rid, None)
        return False, None

    def _queue(self, held: _Held, actual_nanos: int | None) -> None:
        """Keep a settle for when Redis answers again (None: the request goes on; its settle comes later)."""
        if actual_nanos is None:
            return
        if len(self._pending) >= MAX_PENDING_SETTLES:
            dropped, _ = self._pending.popleft()
            log.error(
                "more than %d settles wait for redis; dropped the oldest (reservation %s): its spend is in the "
                "ledger, and counters are raised to the ledger's spend when a gateway starts",
                MAX_PENDING_SETTLES,
                dropped.reservation.reservation_id,
            )
        self._pending.append((held, actual_nanos))

    async def flush_pending(self) -> None:
        """Apply the settles that waited for Redis (stops at the first that cannot reach it)."""
        while self._pending:
            held, actual = self._pending.popleft()
            if not (await self._apply(held, actual))[0]:
                # _apply queued it again at the end; put it back in front to keep the order, and stop.
                self._pending.appendleft(self._pending.pop())
                return

    # -- seeding, rebuild and recovery --------------------------------------------------------------------------

    async def _seed_counter(self, budget: AppliedBudget) -> None:
        """Load one counter's spent figure from the ledger into Redis (once per process at a time)."""
        name = budget.counter or ""
        running = self._seeding.get(name)
        if running is not None:
            await asyncio.shield(running)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._seeding[name] = future
        try:
            now = self.clock()
            spent = await self.seed_spend(budget, now)
            await self._seed_one(CounterSeed(name, spent, period_end(budget.rule.period, now)))
            future.set_result(None)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved here: the waiters re-raise it
            raise
        finally:
            self._seeding.pop(name, None)

    async def _seed_one(self, seed: CounterSeed) -> None:
        expire = int((seed.expires_at + COUNTER_GRACE).timestamp() * 1000)
        for _ in range(3):
            args: list[object] = [self.backend.epoch or b"", nanos_ceil(seed.spent), expire]
            reply = await self.backend.script_call(
                self._seed, [self.backend.epoch_key, self.counter_key(seed.counter)], args
            )
            if reply != b"EPOCH":
                return
            await self.backend.recover_epoch()
        raise BackendDown("the redis epoch keeps changing")

    def rebuild(self, seeds: Sequence[CounterSeed], reconciled: Sequence[str]) -> None:
        """Noted at build time, applied by :meth:`start` on the event loop (or once Redis is reachable)."""
        self._rebuild = (list(seeds), list(reconciled))

    async def start(self) -> None:
        await self.backend.start()
        if not self.health.down:
            await self._apply_rebuild()

    async def _apply_rebuild(self) -> None:
        """The start-up rebuild: charge the reservations the ledger just charged (so they are not counted twice),
        then raise every counter to at least the ledger's spend. Idempotent: any instance may run it any time."""
        if self._rebuild is None:
            return
        seeds, reconciled = self._rebuild
        try:
            for start in range(0, len(reconciled), 500):
                ids = reconciled[start : start + 500]
                await self.backend.script_call(self._charge, [self.zset], [self.record_prefix, *ids])
            for seed in seeds:
                await self._seed_one(seed)
        except BackendDown:
            return  # applied when Redis is back (see _after_outage)
        self._rebuild = None
        if reconciled or seeds:
            log.info("budget counters in redis: %d raised to the ledger's spend at least", len(seeds))

    async def charge_overdue(self) -> int:
        """Charge every reservation past its deadline now (the reserves also do it, 16 at a time)."""
        return int(await self.backend.script_call(self._charge, [self.zset], [self.record_prefix]))

    async def _restore_open(self) -> None:
        """After Redis lost its data: re-register every reservation this process confirmed and still holds."""
        for held in list(self._open.values()):
            if not held.confirmed:
                continue
            held.epoch = self.backend.epoch or b""
            record_expire = max([*held.expire_at_ms, 0])
            args: list[object] = [held.epoch, held.amount_nanos, self.ttl_ms, record_expire]
            args += [held.reservation.reservation_id, *held.expire_at_ms]
            keys = [self.backend.epoch_key, self.zset, self.record_prefix + held.reservation.reservation_id]
            await self.backend.script_call(self._restore, [*keys, *held.keys], args)

    async def _after_outage(self) -> None:
        await self.flush_pending()
        await self._apply_rebuild()

    async def aclose(self) -> None:
        await self.flush_pending()

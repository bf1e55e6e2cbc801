"""Budget counters in Redis: the reserve script at the cap boundary (exact nanos), all-or-none over several
counters, settle, seeding from the ledger, deadlines, a server that lost its data, and two processes' worth
of clients reserving concurrently (property test)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from margin.gateway.backends._redis import RedisBackend
from margin.gateway.backends.health import BackendUnavailable
from margin.gateway.backends.redis_counters import RedisCounters
from margin.gateway.config import BudgetConfig
from margin.policy.budgets import RequestScope, applicable_budgets
from margin.policy.counters import CounterSeed, nanos_ceil

NOW = datetime.now(UTC)
NANO = Decimal("0.000000001")


def budgets(*amounts: str, block: str = "1.0", name: str = "b"):
    rules = [
        BudgetConfig(name=f"{name}{i}", scope="global", period="day", amount=Decimal(a), block=Decimal(block))
        for i, a in enumerate(amounts)
    ]
    return applicable_budgets(rules, RequestScope(key_id="k", tags={}, model="m"), NOW)


def store(
    url: str, *, seeds: dict[str, Decimal] | None = None, mode: str = "closed", ttl: float = 900
) -> RedisCounters:
    seen = seeds if seeds is not None else {}

    async def seed_spend(budget, now):
        seen.setdefault("_calls", Decimal(0))
        seen["_calls"] += 1
        return seen.get(budget.counter, Decimal(0))

    # 5 s: a loaded CI machine must not turn a slow reply into an outage (the outage tests set their own).
    backend = RedisBackend(url, failure_mode=mode, timeout_s=5.0)  # type: ignore[arg-type]
    return RedisCounters(backend, seed_spend=seed_spend, reservation_ttl_s=ttl, clock=lambda: NOW)


async def raw(counters: RedisCounters, counter: str) -> tuple[int, int]:
    s, r = await counters.backend.client.hmget(counters.counter_key(counter), "s", "r")
    return int(s or 0), int(r or 0)


def run(coro):
    # A hang must fail the test, not stall the suite.
    return asyncio.run(asyncio.wait_for(coro, timeout=120))


def test_reserve_exactly_at_the_cap_and_one_nano_over(redis_url):
    async def go():
        counters = store(redis_url)
        await counters.start()
        try:
            applied = budgets("1.000000005")
            assert await counters.reserve("r1", applied, Decimal("1.000000004")) is not None
            assert await counters.reserve("r2", applied, NANO * 2) is None  # one nano over the cap
            held = await counters.reserve("r3", applied, NANO)  # exactly at the cap
            assert held is not None
            assert await counters.headroom(applied) == 0
            assert await raw(counters, applied[0].counter) == (0, 1_000_000_005)
            await counters.settle(held, Decimal(0))
            assert await counters.reserve("r4", applied, NANO) is not None
        finally:
            await counters.aclose()
            await counters.backend.aclose()

    run(go())


def test_sub_nano_amounts_round_so_the_counter_is_never_low(redis_url):
    async def go():
        counters = store(redis_url)
        await counters.start()
        try:
            applied = budgets("0.0000000025")  # cap 2.5 nanos -> 2
            held = await counters.reserve("r1", applied, Decimal("0.0000000011"))  # 1.1 nanos -> reserves 2
            assert held is not None
            assert await counters.reserve("r2", applied, Decimal("0.0000000001")) is None
            await counters.settle(held, Decimal("0.0000000001"))  # 0.1 nano -> counts 1
            assert await raw(counters, applied[0].counter) == (1, 0)
        finally:
            await counters.aclose()
            await counters.backend.aclose()

    run(go())


def test_all_or_none_over_several_counters_and_big_amounts(redis_url):
    async def go():
        counters = store(redis_url)
        await counters.start()
        try:
            # 20 million USD: beyond 2^53 nanos, where a double would round; the limbs keep it exact.
            applied = budgets("20000000.000000001", "5")
            assert await counters.reserve("r1", applied, Decimal(6)) is None
            assert [await raw(counters, b.counter) for b in applied] == [(0, 0), (0, 0)]  # nothing half-reserved
            held = await counters.reserve("r2", applied, Decimal(5))
            await counters.settle(held, Decimal("4.5"))
            assert await raw(counters, applied[1].counter) == (4_500_000_000, 0)
            big = budgets("20000000.000000001", name="big")
            assert await counters.reserve("r3", big, Decimal("20000000.000000001")) is not None
            assert await counters.reserve("r4", big, NANO) is None
        finally:
            await counters.aclose()
            await counters.backend.aclose()

    run(go())


def test_counters_are_seeded_from_the_ledger_once_and_only_raised(redis_url):
    async def go():
        applied = budgets("10")
        seeds = {applied[0].counter: Decimal("7.25")}
        counters = store(redis_url, seeds=seeds)
        await counters.start()
        try:
            assert await counters.headroom(applied) == Decimal("2.75")
            assert await counters.reserve("r1", applied, Decimal("2.76")) is None
            assert seeds["_calls"] == 1
            await counters.reserve("r2", applied, Decimal(1))
            assert seeds["_calls"] == 1  # seeded once
            # A second instance starting: its ledger figure is lower (an event not committed yet): not lowered.
            counters.rebuild([CounterSeed(applied[0].counter, Decimal(5), NOW)], [])
            await counters._apply_rebuild()
            assert await raw(counters, applied[0].counter) == (7_250_000_000, 1_000_000_000)
            counters.rebuild([CounterSeed(applied[0].counter, Decimal(8), NOW)], [])
            await counters._apply_rebuild()
            assert await raw(counters, applied[0].counter) == (8_000_000_000, 1_000_000_000)
        finally:
            await counters.aclose()
            await counters.backend.aclose()

    run(go())


def test_a_reservation_past_its_deadline_is_charged_then_corrected_by_its_settle(redis_url):
    async def go():
        counters = store(redis_url, ttl=0.05)
        await counters.start()
        try:
            applied = budgets("10")
            held = await counters.reserve("r1", applied, Decimal(2))
            await asyncio.sleep(0.1)
            assert await counters.charge_overdue() == 1
            assert await raw(counters, applied[0].counter) == (2_000_000_000, 0)  # worst case: room unchanged
            await counters.settle(held, Decimal("0.5"))
            assert await raw(counters, applied[0].counter) == (500_000_000, 0)
            await counters.settle(held, Decimal("0.5"))  # a repeated settle changes nothing
            assert await raw(counters, applied[0].counter) == (500_000_000, 0)
        finally:
            await counters.aclose()
            await counters.backend.aclose()

    run(go())


def test_reservations_the_ledger_charged_at_start_up_are_charged_once(redis_url):
    async def go():
        applied = budgets("10")
        crashed = store(redis_url)
        await crashed.start()
        await crashed.reserve("lost", applied, Decimal(3))  # its process dies here
        await crashed.backend.aclose()
        # The next instance: the ledger charged "lost" at 3 USD, so the ledger's spend is 3.
        restarted = store(redis_url)
        restarted.rebuild([CounterSeed(applied[0].counter, Decimal(3), NOW)], ["lost"])
        await restarted.start()
        try:
            assert await raw(restarted, applied[0].counter) == (3_000_000_000, 0)  # not 3 spent + 3 reserved
        finally:
            await restarted.aclose()
            await restarted.backend.aclose()

    run(go())


def test_a_server_that_lost_its_data_gets_the_open_reservations_back(redis_url):
    async def go():
        applied = budgets("10")
        seeds = {applied[0].counter: Decimal(1)}
        counters = store(redis_url, seeds=seeds)
        await counters.start()
        alerts = []

        async def sink(kind, message, data):
            alerts.append(kind)

        counters.health.alert_sink = sink
        try:
            held = await counters.reserve("r1", applied, Decimal(4))
            await counters.backend.client.flushall()  # restarted without persistence
            # The next reserve sees the epoch gone: a new epoch with a hold (refused meanwhile), ours re-registered.
            with pytest.raises(BackendUnavailable):
                await counters.reserve("r2", applied, Decimal(1))
            await counters.health.drain()
            assert "backend_state_lost" in alerts
            await asyncio.sleep(counters.backend.hold_ms / 1000 + 0.05)
            assert await counters.headroom(applied) == Decimal(5)  # 10 - 1 (ledger) - 4 (re-registered)
            await counters.settle(held, Decimal(2))
            assert await raw(counters, applied[0].counter) == (3_000_000_000, 0)
        finally:
            await counters.aclose()
            await counters.backend.aclose()

    run(go())


def test_unreachable_redis_fails_closed_or_open_alerting_once(redis_url):
    async def go(mode):
        counters = store("redis://127.0.0.1:1/0", mode=mode)  # nothing listens on port 1
        alerts = []

        async def sink(kind, message, data):
            alerts.append((kind, message))

        counters.health.alert_sink = sink
        applied = budgets("10")
        outcomes = []
        for i in range(3):
            try:
                outcomes.append(await counters.reserve(f"r{i}", applied, Decimal(1)) is not None)
            except BackendUnavailable as exc:
                assert exc.http_status == 503 and exc.code == "budget_backend_unavailable"
                outcomes.append("refused")
        await counters.health.drain()
        await counters.backend.client.aclose()
        return outcomes, alerts, dict(counters.health.counts)

    outcomes, alerts, counts = run(go("closed"))
    assert outcomes == ["refused"] * 3
    assert [kind for kind, _ in alerts] == ["backend_unavailable"]  # one alert per outage
    assert "REFUSED" in alerts[0][1]
    assert counts[("redis", "refused")] == 3 and counts[("redis", "outage")] == 1
    outcomes, alerts, counts = run(go("open"))
    assert outcomes == [True] * 3
    assert "NOT ENFORCED" in alerts[0][1]
    assert counts[("redis", "unenforced")] == 3


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    plan=st.lists(
        st.tuples(st.integers(0, 1), st.integers(1, 400), st.integers(0, 100)),  # client, worst (nanos x1000), % of it
        min_size=1,
        max_size=40,
    )
)
def test_two_clients_never_exceed_the_cap_and_spent_is_the_sum_of_actuals(redis_server, plan):
    redis_server.flush()
    cap = Decimal("0.000005")  # 5000 nanos: room for a handful of reservations at a time

    async def go():
        clients = [store(redis_server.url), store(redis_server.url)]
        for client in clients:
            await client.start()
        applied = budgets(str(cap))
        counter = applied[0].counter
        actuals = []
        worst_seen = []

        async def one(index, client_no, worst_units, share):
            client = clients[client_no]
            worst = Decimal(worst_units * 17) * NANO + Decimal("0.0000000003")  # fractions of a nano too
            held = await client.reserve(f"r{index}", applied, worst)
            s, r = await raw(client, counter)
            worst_seen.append(s + r)
            if held is None:
                return
            await asyncio.sleep(0)
            actual = worst * share / 100
            actuals.append(actual)
            await client.settle(held, actual)
            s, r = await raw(client, counter)
            worst_seen.append(s + r)

        try:
            await asyncio.gather(*(one(i, c, w, p) for i, (c, w, p) in enumerate(plan)))
            spent, reserved = await raw(clients[0], counter)
        finally:
            for client in clients:
                await client.aclose()
                await client.backend.aclose()
        assert max(worst_seen) <= 5000
        assert reserved == 0
        assert spent == sum(nanos_ceil(a) for a in actuals)

    run(go())


def test_reserve_and_settle_replies_carry_the_counters_figures(redis_url):
    """The gateway reads no counter on the way: the reserve reply has the figures after reserving (or those
    that refused it), the settle reply those after settling, and room_hint reuses the last ones seen."""

    async def go():
        counters = store(redis_url, seeds={})
        await counters.start()
        try:
            applied = budgets("1", "3")
            assert counters.room_hint(applied) is None  # nothing seen yet: no guess
            held, figures = await counters.reserve_read("r1", applied, Decimal("0.4"))
            assert held is not None
            assert figures == ((0, Decimal("0.4")), (0, Decimal("0.4")))
            assert counters.room_hint(applied) == Decimal("0.6")
            refused, figures = await counters.reserve_read("r2", applied, Decimal("0.7"))
            assert refused is None
            assert figures == ((0, Decimal("0.4")), (0, Decimal("0.4")))  # unchanged by the refusal
            after = await counters.settle_read(held, Decimal("0.25"))
            assert after == ((Decimal("0.25"), 0), (Decimal("0.25"), 0))
            assert counters.room_hint(applied) == Decimal("0.75")
            assert [await raw(counters, b.counter) for b in applied] == [(250_000_000, 0)] * 2
            # Another instance's spend is not seen until a reply says so, and an old reading is not trusted.
            for key, (spent, reserved, _when) in list(counters._seen.items()):
                counters._seen[key] = (spent, reserved, 0.0)
            assert counters.room_hint(applied) is None
            # A per-request cap refuses without touching the counters, and still reports their figures.
            per_request = [
                *applied,
                *applicable_budgets(
                    [BudgetConfig(name="req", scope="global", period="request", amount=Decimal("0.1"))],
                    RequestScope(key_id="k", tags={}, model="m"),
                    NOW,
                ),
            ]
            refused, figures = await counters.reserve_read("r3", per_request, Decimal("0.2"))
            assert refused is None
            assert figures == ((Decimal("0.25"), 0), (Decimal("0.25"), 0))
        finally:
            await counters.aclose()
            await counters.backend.aclose()

    run(go())

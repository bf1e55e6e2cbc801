"""What the ledger stores and reads back: exact events, reservations, keys, alerts, spend and budget sums."""

from __future__ import annotations

import asyncio
import sqlite3
import tempfile
from datetime import UTC, datetime, timedelta, timezone
from decimal import ROUND_HALF_EVEN, Context, Decimal, Inexact, localcontext
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from margin.keys import hash_key
from margin.store.base import LedgerError, LedgerStore, MeteringLedger, Reservation, SpendRow
from margin.store.sqlite import SQLiteLedger, default_ledger_path, from_nanos, to_nanos

from .conftest import T0, event, new_key


def run(coro):
    return asyncio.run(coro)


# -- events -------------------------------------------------------------------------------------------------


def test_every_field_of_an_event_round_trips_exactly(ledger):
    full = event(
        1,
        attempt=2,
        started_at=T0,
        finished_at=T0 + timedelta(seconds=1, microseconds=123456),
        status="upstream_error",
        endpoint="messages",
        requested_model="claude-sonnet-4",
        served_model="claude-sonnet-4-20250514",
        provider="anthropic",
        key_id="key-1",
        tags={"team": "ml", "feature": "résumé ✨", "user": "josé", "emoji": "🧾", "quote": 'a"b\\c'},
        task_id="task-9",
        input_tokens=123_456,
        cache_read_tokens=100_000,
        cache_write_tokens=2_000,
        output_tokens=789,
        reasoning_tokens=300,
        usage_source="local_count",
        list_cost=Decimal("12345678.901234567890"),  # 20 significant digits
        effective_cost=Decimal("0.00000000012345678901234567890"),
        price_source="genai-prices 0.2.3",
        latency_ms=1234,
        ttft_ms=321,
        error_type="timeout",
        error_message="upstream timed out after 60 s — retrying",
        retries=2,
        stream=True,
        route="cheap-first",
        cache="miss",
        fallback_from="gpt-4o",
        max_tokens=4096,
        reserved_cost=Decimal("1.50"),
        prompt_hash="ab" * 32,
    )
    minimal = event(2, served_model=None, provider=None, tags={}, list_cost=Decimal(0), effective_cost=Decimal("-0"))

    async def write():
        await ledger.write_event(full)
        await ledger.write_event(minimal)

    run(write())
    (back,) = ledger.events(request_id=full.request_id)
    assert back == full
    assert str(back.list_cost) == "12345678.901234567890"
    assert str(back.effective_cost) == str(full.effective_cost)
    assert str(back.reserved_cost) == "1.50"  # trailing zeros (the exponent) survive too
    assert back.tags == full.tags
    (back_minimal,) = ledger.events(request_id=minimal.request_id)
    assert back_minimal == minimal
    assert back_minimal.served_model is None and back_minimal.latency_ms is None and back_minimal.tags == {}


def test_retained_prompts_round_trip_and_purge(ledger):
    body = '{"messages": [{"role": "user", "content": "[REDACTED:email] asks about r\\u00e9sum\\u00e9s"}]}'

    async def write():
        for n in range(3):
            await ledger.retain_prompt(f"req-{n}", f"hash-{n}", T0 + timedelta(days=n), "chat.completions", "m", body)
        await ledger.retain_prompt("req-0", "other", T0, "chat.completions", "m", "{}")  # the first one stays
        await ledger.flush()

    run(write())
    rows = ledger.retained_prompts(T0, None)
    assert [r["request_id"] for r in rows] == ["req-0", "req-1", "req-2"]
    assert rows[0]["prompt_hash"] == "hash-0" and rows[0]["created_at"] == T0
    assert rows[0]["body"]["messages"][0]["content"] == "[REDACTED:email] asks about résumés"
    assert [r["request_id"] for r in ledger.retained_prompts(T0 + timedelta(days=1), T0 + timedelta(days=2))] == [
        "req-1"
    ]
    assert ledger.purge_retained_prompts(T0 + timedelta(days=1)) == 1
    assert [r["request_id"] for r in ledger.retained_prompts()] == ["req-1", "req-2"]


def test_times_with_any_offset_come_back_as_the_same_instant_in_utc(ledger):
    paris = timezone(timedelta(hours=1))
    local = datetime(2026, 11, 23, 13, 0, 0, 5, tzinfo=paris)
    run(ledger.write_event(event(1, started_at=local, finished_at=local)))
    (back,) = ledger.events()
    assert back.finished_at == local
    assert back.finished_at.utcoffset() == timedelta(0)


def test_bad_input_is_refused_before_queueing_and_leaves_the_ledger_healthy(ledger):
    naive = datetime(2026, 11, 23, 12, 0)
    with pytest.raises(ValueError, match="timezone-aware"):
        run(ledger.write_event(event(1, finished_at=naive)))
    with pytest.raises(ValueError, match="finite"):
        run(ledger.write_event(event(2, list_cost=Decimal("NaN"))))
    with pytest.raises(TypeError, match="Decimal"):
        run(ledger.write_event(event(3, effective_cost=0.1)))
    with pytest.raises(ValueError, match="range"):
        run(ledger.write_event(event(4, effective_cost=Decimal("1E+12"))))
    with pytest.raises(TypeError, match="str to str"):
        run(ledger.write_event(event(5, tags={"n": 1})))
    assert ledger.failed is None and ledger.commit_count == 0
    run(ledger.write_event(event(6)))
    assert [e.event_id for e in ledger.events()] == ["ev-6"]


def test_events_lists_newest_first_and_attempts_in_order(ledger):
    async def write():
        for attempt in (1, 0):
            await ledger.write_event(
                event(10 + attempt, request_id="req-x", attempt=attempt, finished_at=T0 + timedelta(seconds=attempt))
            )
        await ledger.write_event(event(20, finished_at=T0 + timedelta(hours=1)))

    run(write())
    assert [e.attempt for e in ledger.events(request_id="req-x")] == [0, 1]
    assert [e.event_id for e in ledger.events(limit=2)] == ["ev-20", "ev-11"]


@pytest.mark.parametrize(
    ("amount", "nanos"),
    [
        (Decimal("0.0000000005"), 0),  # half to even: 0.5 -> 0
        (Decimal("0.0000000015"), 2),  # 1.5 -> 2
        (Decimal("-0.0000000025"), -2),
        (Decimal("1.23456789012345678901234567890"), 1_234_567_890),
        (Decimal("9000000000"), 9_000_000_000 * 10**9),
        (Decimal("1E-40"), 0),
    ],
)
def test_nanos_round_half_even(amount, nanos):
    assert to_nanos(amount) == nanos
    assert from_nanos(nanos) == Decimal(nanos) / 10**9


@given(st.decimals(allow_nan=False, allow_infinity=False, min_value=-(10**9), max_value=10**9))
def test_nanos_equal_decimal_half_even_quantize(amount):
    with localcontext(Context(prec=500)):
        expected = int(amount.scaleb(9).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))
    assert to_nanos(amount) == expected


# -- reservations, settle, reconcile --------------------------------------------------------------------------


def reservation(number: int, amount: str = "0.25", **fields) -> Reservation:
    values = {
        "reservation_id": f"res-{number}",
        "request_id": f"req-{number}",
        "scopes": ("team:ml:month:2026-11", "global:*:day:2026-11-23"),
        "amount": Decimal(amount),
        "created_at": T0,
        "expires_at": T0 + timedelta(minutes=10),
    }
    values.update(fields)
    return Reservation(**values)


def test_open_reservations_round_trip(ledger):
    res = reservation(1, "0.123456789012345678901", key_id="k1", tags={"team": "ml"}, model="gpt-4o")
    run(ledger.open_reservation(res))
    assert ledger.open_reservations() == [res]


def test_settle_writes_the_event_and_removes_the_reservation_in_one_transaction(ledger):
    async def flow():
        await ledger.open_reservation(reservation(1))
        await ledger.open_reservation(reservation(2))
        assert await ledger.settle(event(1, request_id="req-1"), "res-1") is True
        assert await ledger.settle(event(3, request_id="req-1", attempt=1), "res-1") is False  # already settled

    run(flow())
    assert [r.reservation_id for r in ledger.open_reservations()] == ["res-2"]
    assert [e.event_id for e in ledger.events(request_id="req-1")] == ["ev-1", "ev-3"]


def test_a_settle_that_fails_keeps_the_reservation_open(open_store):
    ledger = open_store()

    async def flow():
        await ledger.write_event(event(1))
        await ledger.open_reservation(reservation(7))
        with pytest.raises(LedgerError):
            await ledger.settle(event(1), "res-7")  # duplicate event id: the insert fails, so must the delete

    run(flow())
    ledger.close()
    with open_store() as reopened:
        assert [r.reservation_id for r in reopened.open_reservations()] == ["res-7"]
        assert len(reopened.events()) == 1


def test_reconcile_charges_open_reservations_at_their_worst_case(open_store):
    first = open_store()

    async def before_crash():
        await first.open_reservation(
            reservation(1, "0.75", key_id="k1", tags={"team": "ml"}, endpoint="chat.completions", model="gpt-4o")
        )
        await first.open_reservation(reservation(2, "0.000000001234567890123"))
        await first.open_reservation(reservation(3, "0.10"))
        await first.settle(event(3, request_id="req-3", effective_cost=Decimal("0.01")), "res-3")

    run(before_crash())
    first.close()  # stands in for a crash: the first two reservations never settled

    now = T0 + timedelta(hours=1)
    with open_store() as ledger:
        charged = ledger.reconcile_open_reservations(now)
        assert sorted(e.request_id for e in charged) == ["req-1", "req-2"]
        assert ledger.open_reservations() == []
        by_request = {e.request_id: e for e in ledger.events()}
        crash = by_request["req-1"]
        assert crash == next(e for e in charged if e.request_id == "req-1")
        assert crash.status == "upstream_error" and crash.error_type == "gateway_crash"
        assert crash.list_cost == crash.effective_cost == crash.reserved_cost == Decimal("0.75")
        assert crash.key_id == "k1" and crash.tags == {"team": "ml"} and crash.served_model == "gpt-4o"
        assert crash.finished_at == now
        assert by_request["req-2"].effective_cost == Decimal("0.000000001234567890123")
        # Budgets rebuilt from the ledger include the worst case, by key, tag and model.
        assert ledger.sum_effective_cost(T0, key_id="k1") == Decimal("0.75")
        assert ledger.sum_effective_cost(T0, tags={"team": "ml"}, served_model="gpt-4o") == Decimal("0.75")
        assert ledger.reconcile_open_reservations(now) == []  # nothing left: never charged twice


def test_reconcile_only_expired_leaves_live_reservations(ledger):
    async def flow():
        await ledger.open_reservation(reservation(1, expires_at=T0 + timedelta(minutes=1)))
        await ledger.open_reservation(reservation(2, expires_at=T0 + timedelta(hours=2)))
        await ledger.open_reservation(reservation(3, expires_at=None))

    run(flow())
    charged = ledger.reconcile_open_reservations(T0 + timedelta(minutes=5), only_expired=True)
    assert [e.request_id for e in charged] == ["req-1"]
    assert [r.reservation_id for r in ledger.open_reservations()] == ["res-2", "res-3"]


# -- spend ----------------------------------------------------------------------------------------------------


@pytest.fixture
def spend_ledger(ledger):
    rows = [
        # (team, feature, model, key, status, minutes after T0, effective cost)
        ("ml", "chat", "gpt-4o", "k1", "ok", 0, "0.10"),
        ("ml", "chat", "gpt-4o-mini", "k1", "ok", 10, "0.0000000000000000001"),
        ("ml", "search", "gpt-4o", "k2", "upstream_error", 20, "0.30"),
        ("web", "chat", "gpt-4o-mini", "k3", "ok", 30, "0.02"),
        (None, None, "gpt-4o", None, "rejected", 40, "0"),
    ]

    async def write():
        for number, (team, feature, model, key, status, minutes, cost) in enumerate(rows):
            tags = {name: value for name, value in (("team", team), ("feature", feature)) if value}
            await ledger.write_event(
                event(
                    number,
                    tags=tags,
                    served_model=model,
                    key_id=key,
                    status=status,
                    finished_at=T0 + timedelta(minutes=minutes),
                    list_cost=Decimal(cost) * 2,
                    effective_cost=Decimal(cost),
                    input_tokens=100 * (number + 1),
                    output_tokens=10,
                    cache_read_tokens=number,
                )
            )

    run(write())
    return ledger


def by_group(rows: list[SpendRow]) -> dict[str | None, SpendRow]:
    return {row.group: row for row in rows}


def test_spend_total(spend_ledger):
    (total,) = spend_ledger.spend()
    assert total.group is None and total.requests == 5
    assert total.effective_cost == Decimal("0.4200000000000000001")  # exact, below a nano-dollar too
    assert total.list_cost == Decimal("0.8400000000000000002")
    assert (total.input_tokens, total.output_tokens, total.cache_read_tokens) == (1500, 50, 10)


def test_spend_by_team_model_and_tag(spend_ledger):
    teams = by_group(spend_ledger.spend(group_by="team"))
    assert set(teams) == {"ml", "web", None}
    assert teams["ml"].effective_cost == Decimal("0.4000000000000000001") and teams["ml"].requests == 3
    assert teams["web"].effective_cost == Decimal("0.02")
    assert [row.group for row in spend_ledger.spend(group_by="team")] == ["ml", "web", None]  # priciest first

    models = by_group(spend_ledger.spend(group_by="model"))
    assert models["gpt-4o"].effective_cost == Decimal("0.40") and models["gpt-4o"].requests == 3
    assert models["gpt-4o-mini"].list_cost == Decimal("0.0400000000000000002")

    assert by_group(spend_ledger.spend(group_by="tag:feature")) == by_group(spend_ledger.spend(group_by="feature"))
    features = by_group(spend_ledger.spend(group_by="feature"))
    assert features["search"].effective_cost == Decimal("0.30")
    assert by_group(spend_ledger.spend(group_by="key"))["k1"].requests == 2
    assert by_group(spend_ledger.spend(group_by="status"))["upstream_error"].effective_cost == Decimal("0.30")
    assert set(by_group(spend_ledger.spend(group_by="provider"))) == {"openai"}
    assert by_group(spend_ledger.spend(group_by="tag:nope")).keys() == {None}


def test_spend_since_until(spend_ledger):
    window = spend_ledger.spend(since=T0 + timedelta(minutes=10), until=T0 + timedelta(minutes=30))
    assert window[0].requests == 2
    assert window[0].effective_cost == Decimal("0.3000000000000000001")
    assert spend_ledger.spend(since=T0 + timedelta(days=1))[0] == SpendRow(
        group=None,
        requests=0,
        input_tokens=0,
        cache_read_tokens=0,
        cache_write_tokens=0,
        output_tokens=0,
        list_cost=Decimal(0),
        effective_cost=Decimal(0),
    )
    assert spend_ledger.spend(since=T0 + timedelta(days=1), group_by="team") == []


def test_spend_refuses_unknown_groupings(ledger):
    with pytest.raises(ValueError, match="cannot group spend by 'colour'"):
        ledger.spend(group_by="colour")
    with pytest.raises(ValueError, match="invalid tag name"):
        ledger.spend(group_by='tag:a"b')


def test_sum_effective_cost_filters(spend_ledger):
    assert spend_ledger.sum_effective_cost(T0) == Decimal("0.42")  # each event rounded to the nano
    assert spend_ledger.sum_effective_cost(T0 + timedelta(minutes=15)) == Decimal("0.32")
    assert spend_ledger.sum_effective_cost(T0, key_id="k1") == Decimal("0.10")
    assert spend_ledger.sum_effective_cost(T0, tags={"team": "ml", "feature": "chat"}) == Decimal("0.10")
    assert spend_ledger.sum_effective_cost(T0, served_model="gpt-4o-mini") == Decimal("0.02")
    assert spend_ledger.sum_effective_cost(T0, tags={"team": "ml"}, served_model="gpt-4o") == Decimal("0.40")
    assert spend_ledger.sum_effective_cost(T0 + timedelta(days=1)) == 0


money = st.decimals(min_value=Decimal("-1000"), max_value=Decimal("1000"), places=15, allow_nan=False).map(
    lambda d: d.normalize() if d.adjusted() > -40 else d
) | st.builds(
    lambda digits, exponent: Decimal(f"{digits}E{exponent}"),
    st.integers(min_value=0, max_value=10**20 - 1),  # up to 20 significant digits
    st.integers(min_value=-30, max_value=-12),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(costs=st.lists(money, min_size=1, max_size=40))
def test_sums_are_exact(costs):
    with tempfile.TemporaryDirectory() as directory, SQLiteLedger(Path(directory) / "l.db") as ledger:

        async def write():
            await asyncio.gather(
                *(ledger.write_event(event(i, effective_cost=cost, list_cost=cost)) for i, cost in enumerate(costs))
            )

        run(write())
        with localcontext(Context(prec=400, traps=[Inexact])):  # the default 28 digits would round
            exact = sum(costs, Decimal(0))
        with localcontext(Context(prec=400)):
            exact_nanos = (exact * 10**9).quantize(Decimal(1), rounding=ROUND_HALF_EVEN)
            stored_nanos = ledger.sum_effective_cost(T0) * 10**9
            # Each event is rounded once to the nano (error at most 1/2 nano each).
            assert abs(stored_nanos - exact * 10**9) <= Decimal(len(costs)) / 2
            assert abs(stored_nanos - exact_nanos) <= Decimal(len(costs)) / 2 + Decimal("0.5")
        (total,) = ledger.spend()
        assert total.effective_cost == exact and total.list_cost == exact  # Decimal text sums: exact
        assert stored_nanos == stored_nanos.to_integral_value()
        assert stored_nanos == sum(to_nanos(cost) for cost in costs)


# -- keys and alerts -------------------------------------------------------------------------------------------


def test_keys_create_find_list_revoke(ledger):
    secret, alice = new_key(
        "key-alice",
        user="alice",
        team="ml",
        project="bot",
        tags={"env": "prod", "owner": "zoë"},
        budget="5/day",
        models=("gpt-4o", "claude-sonnet-4"),
    )
    _, bob = new_key("key-bob", created_at=T0 + timedelta(seconds=1))
    ledger.create_key(alice)
    ledger.create_key(bob)
    assert ledger.get_key_by_hash(hash_key(secret)) == alice
    assert ledger.get_key_by_hash(hash_key("mk-wrong")) is None
    assert ledger.list_keys() == [alice, bob]

    later = T0 + timedelta(days=1)
    assert ledger.revoke_key(alice.prefix, now=later) is True
    assert ledger.revoke_key(alice.prefix, now=later) is False  # already revoked
    assert ledger.revoke_key("no-such-key") is False
    assert ledger.get_key_by_hash(alice.key_hash).revoked_at == later
    assert ledger.list_keys(include_revoked=False) == [bob]
    assert ledger.revoke_key("key-bob") is True


def test_revoke_by_the_key_itself_and_ambiguous_prefixes(ledger):
    secret, one = new_key("k1", prefix="mk-same123")
    _, two = new_key("k2", prefix="mk-same123")
    ledger.create_key(one)
    ledger.create_key(two)
    with pytest.raises(ValueError, match="matches 2 keys"):
        ledger.revoke_key("mk-same123")
    assert ledger.revoke_key(secret) is True
    assert ledger.failed is None


def test_duplicate_keys_are_refused_without_failing_the_ledger(ledger):
    _, key = new_key("k1")
    ledger.create_key(key)
    with pytest.raises(ValueError, match="already exists"):
        ledger.create_key(key)
    _, other = new_key("k1")
    with pytest.raises(ValueError, match="already exists"):
        ledger.create_key(other)
    assert ledger.failed is None
    run(ledger.write_event(event(1)))


def test_alerts(ledger):
    async def write():
        await ledger.write_alert("budget_warn", "team ml at 75% of 100/day", scope="team:ml", data={"pct": "75"})
        return await ledger.write_alert("anomaly", "spend spike", created_at=T0 + timedelta(days=1))

    second = run(write())
    alerts = ledger.alerts()
    assert alerts[0].alert_id == second
    assert alerts[1].kind == "budget_warn" and alerts[1].scope == "team:ml" and alerts[1].data == {"pct": "75"}


# -- interface ---------------------------------------------------------------------------------------------------


def test_both_ledgers_implement_the_store_protocols(ledger):
    assert isinstance(ledger, LedgerStore) and isinstance(ledger, MeteringLedger)
    error = LedgerError("x")
    assert error.http_status == 503 and error.error_type == "ledger_unavailable"


def test_default_path_is_under_margin_home(tmp_path):
    assert default_ledger_path() == tmp_path / "margin-home" / "ledger.db"


def test_in_memory_databases_are_refused():
    with pytest.raises(ValueError, match="file path"):
        SQLiteLedger(":memory:")


def test_reads_use_their_own_connections_while_a_write_is_open(sqlite_ledger, db_path):
    # SQLite's own mechanics: WAL lets readers run beside another process's write lock.
    ledger = sqlite_ledger
    run(ledger.write_event(event(1)))
    other = sqlite3.connect(db_path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        assert len(ledger.events()) == 1
        assert ledger.spend()[0].requests == 1
    finally:
        other.execute("ROLLBACK")
        other.close()


def test_utc_constant_sanity():
    assert T0.tzinfo is UTC


def test_daily_rollup_equals_daily_spend_from_the_events(ledger):
    tags = [{"team": "ml", "feature": "search", "user": "ana"}, {"team": "web", "project": "shop"}, {}]

    async def write():
        for n in range(120):
            await ledger.write_event(
                event(
                    n,
                    finished_at=T0 + timedelta(hours=7 * n),
                    served_model=("gpt-4o", "gpt-4o-mini")[n % 2],
                    tags=tags[n % 3],
                    key_id=f"k{n % 4}",
                    effective_cost=Decimal(n) / 1000,
                )
            )

    run(write())
    since, until = T0 - timedelta(days=1), T0 + timedelta(days=40)
    for by in (None, "team", "model", "feature", "project", "user", "tag:team", "key"):
        rolled = sorted(ledger.daily_rollup(since, until, by), key=str)
        assert rolled == sorted(ledger.daily_spend(since, until, by), key=str) and rolled, by


def test_several_breakdowns_from_one_scan_equal_each_breakdown(ledger):
    """rollup_breakdowns (the dashboard overview's one read for several dimensions) gives, for each dimension,
    exactly what rollup_breakdown gives alone: groups, counts, tokens, costs and order."""
    tags = [{"team": "ml", "feature": "search", "project": "p1"}, {"team": "web", "project": "shop"}, {}]

    async def write():
        for n in range(60):
            await ledger.write_event(
                event(
                    n,
                    finished_at=T0 + timedelta(hours=5 * n),
                    served_model=("gpt-4o", "gpt-4o-mini", "claude-haiku-4-5")[n % 3],
                    status=("ok", "cached")[n % 2],
                    tags=tags[n % 3],
                    effective_cost=Decimal(n) / 1000,
                    list_cost=Decimal(n) / 500,
                )
            )

    run(write())
    since, until = T0, T0 + timedelta(days=20)
    bys = ["tag:project", "feature", "team", "model", "status"]
    together = ledger.rollup_breakdowns(since, until, bys)
    for by in bys:
        alone = ledger.rollup_breakdown(since, until, by)
        assert together[by] == alone and alone, by
    with pytest.raises(ValueError, match="day and week"):
        ledger.rollup_breakdowns(since, until, ["week"])

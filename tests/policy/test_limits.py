from __future__ import annotations

from decimal import Decimal

from margin.policy.limits import RateLimiter, SpendBreaker, scope_value


def test_scope_value():
    tags = {"team": "ml", "feature": "qa"}
    assert scope_value("global", key_id="k", tags=tags) == "*"
    assert scope_value("key", key_id="k", tags=tags) == "k"
    assert scope_value("team", key_id="k", tags=tags) == "ml"
    assert scope_value("tag:feature", key_id="k", tags=tags) == "qa"
    assert scope_value("project", key_id="k", tags=tags) is None


def test_requests_per_minute_refill():
    limiter = RateLimiter()
    checks = [("r", "k", 2, None)]
    assert limiter.admit(checks, 0, now=0.0) == 0
    assert limiter.admit(checks, 0, now=0.0) == 0
    wait = limiter.admit(checks, 0, now=0.0)
    assert wait == 30.0  # one request per 30 s at 2/min
    assert limiter.admit(checks, 0, now=30.0) == 0


def test_tokens_per_minute_charges_output_afterwards():
    limiter = RateLimiter()
    checks = [("t", "k", None, 1000)]
    assert limiter.admit(checks, 600, now=0.0) == 0
    limiter.charge_tokens(checks, 500, now=0.0)  # the output arrives: bucket in debt (-100)
    wait = limiter.admit(checks, 100, now=0.0)
    assert wait == (100 - -100) * 60 / 1000
    assert limiter.admit(checks, 100, now=wait) == 0


def test_rejected_request_takes_nothing_from_any_bucket():
    limiter = RateLimiter()
    checks = [("r", "k", 10, None), ("t", "k", None, 100)]
    assert limiter.admit(checks, 90, now=0.0) == 0
    assert limiter.admit(checks, 50, now=0.0) > 0
    assert limiter.buckets[("r", "k", "rpm")].level == 9  # only the admitted request was taken


def test_breaker_trips_on_last_hour_spend_and_cools_down():
    breaker = SpendBreaker()
    limit = Decimal(3)
    assert not breaker.record("b", "*", Decimal(2), 0.0, limit=limit, cooldown_s=600)
    assert not breaker.check("b", "*", 10.0).open
    assert breaker.record("b", "*", Decimal("1.5"), 20.0, limit=limit, cooldown_s=600)
    decision = breaker.check("b", "*", 30.0)
    assert decision.open and decision.retry_after == 590
    assert not breaker.check("b", "*", 621.0).open  # cooled down
    # Spend older than an hour leaves the window.
    assert breaker.check("b", "*", 3700.0).spent_last_hour == 0


def test_breaker_admin_reset():
    breaker = SpendBreaker()
    breaker.record("b", "ml", Decimal(10), 0.0, limit=Decimal(1), cooldown_s=600)
    assert breaker.check("b", "ml", 1.0).open
    assert breaker.reset("b") == 1
    assert not breaker.check("b", "ml", 2.0).open

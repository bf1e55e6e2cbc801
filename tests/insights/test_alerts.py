"""Alert delivery with httpx2.MockTransport (no network): retries, Retry-After, dedupe, payloads, redaction."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx2
import pytest

from margin import __version__
from margin.insights.alerts import (
    AlertDispatcher,
    LogSink,
    SlackSink,
    WebhookSink,
    record,
    redact_url,
    seen_keys,
    slack_payload,
    webhook_payload,
)
from margin.insights.anomaly import budget_crossings
from margin.store.sqlite import SQLiteLedger

D = Decimal
NOW = datetime(2024, 3, 15, 12, tzinfo=UTC)
MONTH = (datetime(2024, 3, 1, tzinfo=UTC), datetime(2024, 4, 1, tzinfo=UTC))
HOOK = "https://hooks.example.com/margin/alerts"
SLACK_TOKEN = "XyZsecretTOKEN123456"
SLACK = f"https://hooks.slack.com/services/T0001/B0002/{SLACK_TOKEN}"


def anomalies(after: str = "80"):
    """Budget threshold alerts: 75% only with the default, 75% and 90% with ``after="95"``."""
    return budget_crossings(D(70), D(after), D(100), scope="team:ml", window_start=MONTH[0], window_end=MONTH[1])


class FakeSleep:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


class Server:
    """A MockTransport handler answering from a script of statuses / exceptions, then 200."""

    def __init__(self, *script, headers=None) -> None:
        self.script = list(script)
        self.headers = headers or {}
        self.requests: list[httpx2.Request] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        step = self.script.pop(0) if self.script else 200
        if isinstance(step, type) and issubclass(step, Exception):
            raise step(f"failed talking to {request.url}", request=request)
        if isinstance(step, Exception):
            raise step
        return httpx2.Response(step, headers=self.headers if step != 200 else {}, text="ok" if step == 200 else "nope")

    def bodies(self):
        return [json.loads(r.content) for r in self.requests]


def dispatcher(sinks, server, sleep=None, **kw) -> AlertDispatcher:
    kw.setdefault("rng", lambda: 0.0)
    return AlertDispatcher(
        sinks, transport=httpx2.MockTransport(server), sleep=sleep or FakeSleep(), clock=lambda: NOW, **kw
    )


def run(coro):
    return asyncio.run(coro)


def test_webhook_delivery_ok():
    server = Server()
    d = dispatcher([WebhookSink(HOOK, headers={"Authorization": "Bearer s3cret"})], server)
    [outcome] = run(d.dispatch(anomalies(), set()))
    assert outcome.ok and outcome.failed == []
    [report] = outcome.deliveries
    assert report.ok and report.attempts == 1 and report.status == 200 and report.error is None
    assert report.retry_delays == () and report.started_at == NOW
    [request] = server.requests
    assert request.method == "POST" and str(request.url) == HOOK
    assert request.headers["Authorization"] == "Bearer s3cret"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["Idempotency-Key"] == outcome.dedup_key
    body = json.loads(request.content)
    assert body == webhook_payload(outcome.anomaly)
    assert body["rule"] == "budget_threshold" and body["scope"] == "team:ml" and body["subject"] == "threshold:0.75"
    assert body["window"] == {"start": "2024-03-01T00:00:00+00:00", "end": "2024-04-01T00:00:00+00:00"}
    assert (D(body["value"]), D(body["baseline"])) == (D(80), D(75)) and body["ratio"] == str(outcome.anomaly.ratio)
    assert body["dedup_key"] == outcome.dedup_key and body["margin_version"] == __version__
    assert body["message"] == outcome.anomaly.message
    # the ledger's data: the key and delivery state, JSON-ready
    data = json.loads(json.dumps(outcome.data()))
    assert data["dedup_key"] == outcome.dedup_key and data["delivered"] is True
    assert data["deliveries"][0]["attempts"] == 1 and data["deliveries"][0]["sink"].startswith("webhook https://")


def test_500_then_200_is_retried_with_backoff():
    server, sleep = Server(500), FakeSleep()
    [outcome] = run(dispatcher([WebhookSink(HOOK)], server, sleep).dispatch(anomalies()))
    [report] = outcome.deliveries
    assert report.ok and report.attempts == 2 and report.status == 200
    assert sleep.delays == [0.25] == list(report.retry_delays)  # base 0.5, equal jitter with rng 0 -> half
    assert len(server.requests) == 2
    assert server.bodies()[0] == server.bodies()[1]


def test_backoff_is_exponential_capped_and_jittered():
    server, sleep = Server(503, 503, 503, 503, 503, 503), FakeSleep()
    d = dispatcher([WebhookSink(HOOK)], server, sleep, max_attempts=6, base_delay_s=1, max_delay_s=4, rng=lambda: 1.0)
    [outcome] = run(d.dispatch(anomalies()))
    assert sleep.delays == [1, 2, 4, 4, 4]  # rng 1 -> the full delay; capped at max_delay_s
    assert not outcome.ok and outcome.deliveries[0].attempts == 6 and outcome.deliveries[0].status == 503


def test_400_is_not_retried_and_the_failure_is_visible(caplog):
    server, sleep = Server(400), FakeSleep()
    with caplog.at_level(logging.INFO, logger="margin.insights.alerts"):
        [outcome] = run(dispatcher([WebhookSink(HOOK)], server, sleep).dispatch(anomalies()))
    [report] = outcome.deliveries
    assert not outcome.ok and outcome.failed == [report]
    assert not report.ok and report.attempts == 1 and report.status == 400 and report.error == "HTTP 400: nope"
    assert sleep.delays == [] and len(server.requests) == 1
    assert outcome.data()["delivered"] is False and outcome.data()["deliveries"][0]["error"] == "HTTP 400: nope"
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert report.sink in warning.getMessage() and "HTTP 400" in warning.getMessage()


def test_timeout_is_retried():
    server, sleep = Server(httpx2.ReadTimeout, httpx2.ConnectError), FakeSleep()
    [outcome] = run(dispatcher([WebhookSink(HOOK, timeout_s=0.5)], server, sleep).dispatch(anomalies()))
    [report] = outcome.deliveries
    assert report.ok and report.attempts == 3 and sleep.delays == [0.25, 0.5]


def test_exhausted_retries_report_the_last_error(caplog):
    server, sleep = Server(*[httpx2.ConnectTimeout] * 4), FakeSleep()
    with caplog.at_level(logging.WARNING):
        [outcome] = run(dispatcher([WebhookSink(HOOK)], server, sleep).dispatch(anomalies()))
    [report] = outcome.deliveries
    assert not report.ok and report.attempts == 4 and report.status is None and len(sleep.delays) == 3
    assert report.error.startswith("ConnectTimeout: ")
    assert HOOK not in report.error and "/margin/alerts" not in report.error  # scrubbed of the URL
    assert any("after 4 attempt(s)" in r.getMessage() for r in caplog.records)


def test_unexpected_transport_error_never_raises():
    server = Server(RuntimeError("transport bug"))
    [outcome] = run(dispatcher([WebhookSink(HOOK)], server).dispatch(anomalies()))
    assert not outcome.ok and outcome.deliveries[0].attempts == 1
    assert outcome.deliveries[0].error == "RuntimeError: transport bug"


def test_retry_after_seconds_is_honoured():
    server, sleep = Server(429, headers={"Retry-After": "3"}), FakeSleep()
    [outcome] = run(dispatcher([WebhookSink(HOOK)], server, sleep).dispatch(anomalies()))
    assert outcome.ok and outcome.deliveries[0].attempts == 2 and sleep.delays == [3.0]


def test_retry_after_http_date_is_honoured():
    when = (NOW + timedelta(seconds=7)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    server, sleep = Server(503, headers={"Retry-After": when}), FakeSleep()
    [outcome] = run(dispatcher([WebhookSink(HOOK)], server, sleep).dispatch(anomalies()))
    assert outcome.ok and sleep.delays == [7.0]


def test_retry_after_shorter_than_backoff_keeps_the_backoff():
    server, sleep = Server(429, headers={"Retry-After": "0"}), FakeSleep()
    run(dispatcher([WebhookSink(HOOK)], server, sleep, rng=lambda: 1.0).dispatch(anomalies()))
    assert sleep.delays == [0.5]


def test_retry_after_beyond_the_limit_stops_retrying():
    server, sleep = Server(429, headers={"Retry-After": "3600"}), FakeSleep()
    [outcome] = run(dispatcher([WebhookSink(HOOK)], server, sleep).dispatch(anomalies()))
    [report] = outcome.deliveries
    assert not report.ok and report.attempts == 1 and report.status == 429 and sleep.delays == []
    assert "Retry-After 3600s exceeds 60s" in report.error


def test_dedupe_by_key_across_calls():
    server = Server()
    d = dispatcher([WebhookSink(HOOK)], server)
    first = run(d.dispatch(anomalies()))
    assert len(first) == 1
    assert run(d.dispatch(anomalies())) == []  # handled by this dispatcher already
    both = run(d.dispatch(anomalies("95")))  # 75% again (skipped) and 90% (new)
    assert [o.anomaly.subject for o in both] == ["threshold:0.9"]
    assert len(server.requests) == 2
    # keys from the ledger: a fresh dispatcher skips them too
    fresh = dispatcher([WebhookSink(HOOK)], server)
    assert run(fresh.dispatch(anomalies("95"), {first[0].dedup_key, both[0].dedup_key})) == []
    d.forget([first[0].dedup_key])
    assert [o.dedup_key for o in run(d.dispatch(anomalies()))] == [first[0].dedup_key]


def test_duplicates_in_one_batch_are_sent_once():
    server = Server()
    outcomes = run(dispatcher([WebhookSink(HOOK)], server).dispatch(anomalies() + anomalies()))
    assert len(outcomes) == 1 and len(server.requests) == 1


def test_slack_payload_shape():
    server = Server()
    [outcome] = run(dispatcher([SlackSink(SLACK)], server).dispatch(anomalies()))
    assert outcome.ok
    [body] = server.bodies()
    assert body == slack_payload(outcome.anomaly)
    assert set(body) == {"text", "blocks"}
    assert body["text"] == f"margin alert (budget threshold): {outcome.anomaly.message}"
    assert [b["type"] for b in body["blocks"]] == ["header", "section", "section", "context"]
    assert body["blocks"][0]["text"] == {"type": "plain_text", "text": "margin alert: budget threshold", "emoji": True}
    assert body["blocks"][1]["text"]["type"] == "mrkdwn"
    fields = [f["text"] for f in body["blocks"][2]["fields"]]
    assert fields[0] == "*Scope*\nteam:ml (threshold:0.75)"
    assert fields[2] == "*Value*\n$80.00" and fields[3] == "*Baseline*\n$75.00" and fields[4] == "*Ratio*\n1.07x"
    assert outcome.dedup_key in body["blocks"][3]["elements"][0]["text"]
    assert "Idempotency-Key" not in server.requests[0].headers


def test_slack_mrkdwn_is_escaped():
    [a] = budget_crossings(D(0), D(80), D(100), [D("0.5")], scope="<team & co>", window_start=NOW, window_end=NOW)
    body = slack_payload(a)
    assert "&lt;team &amp; co&gt;" in body["blocks"][1]["text"]["text"]
    assert "<team" not in json.dumps(body["blocks"])


def test_webhook_urls_are_redacted_in_logs(caplog):
    server = Server(*[httpx2.ConnectError] * 2, 500, 500)
    sinks = [SlackSink(SLACK), WebhookSink(f"https://user:pw@hooks.example.com/h?token={SLACK_TOKEN}")]
    with caplog.at_level(logging.DEBUG):
        outcomes = run(dispatcher(sinks, server, max_attempts=2).dispatch(anomalies()))
    [outcome] = outcomes
    assert not outcome.ok and len(outcome.failed) == 2
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "not delivered to slack https://hooks.slack.com/…#" in logged
    assert "not delivered to webhook https://hooks.example.com/…#" in logged
    assert "HTTP Request: POST https://hooks.example.com/…#" in logged  # httpx2's own INFO line, filtered
    stored = json.dumps(outcome.data())
    for text in (logged, stored, repr(sinks)):
        assert SLACK_TOKEN not in text and "T0001/B0002" not in text and "pw@" not in text
    assert repr(sinks[0]) == f"SlackSink(webhook_url={redact_url(SLACK)!r}, timeout_s=5)"


def test_redact_url():
    assert redact_url(SLACK).startswith("https://hooks.slack.com/…#") and len(redact_url(SLACK).split("#")[1]) == 8
    assert redact_url("http://localhost:8080") == f"http://localhost:8080#{redact_url('http://localhost:8080')[-8:]}"
    assert redact_url(SLACK) != redact_url(SLACK + "x")  # sinks on one host stay distinguishable


def test_bad_sink_config_fails_early_without_the_secret():
    with pytest.raises(ValueError) as info:
        SlackSink(f"hooks.slack.com/services/{SLACK_TOKEN}")
    assert SLACK_TOKEN not in str(info.value)
    with pytest.raises(ValueError):
        WebhookSink(HOOK, timeout_s=0)
    with pytest.raises(ValueError):
        AlertDispatcher([], max_attempts=0)


def test_log_sink_and_a_failing_sink_do_not_affect_each_other(caplog):
    server = Server(404)
    with caplog.at_level(logging.WARNING, logger="margin.alerts"):
        [outcome] = run(dispatcher([LogSink(), SlackSink(SLACK)], server).dispatch(anomalies()))
    log_report, slack_report = outcome.deliveries
    assert log_report.ok and log_report.sink == "log" and log_report.attempts == 1
    assert not slack_report.ok and slack_report.status == 404 and slack_report.attempts == 1
    [logged] = [r for r in caplog.records if r.name == "margin.alerts"]
    assert logged.levelno == logging.WARNING and outcome.anomaly.message in logged.getMessage()


def test_record_in_the_ledger_and_load_seen_keys(tmp_path):
    ledger = SQLiteLedger(tmp_path / "ledger.db")
    try:
        server = Server(500)
        d = dispatcher([WebhookSink(HOOK)], server)

        async def go():
            outcomes = await d.dispatch(anomalies("95"), seen_keys(ledger.alerts()))
            return outcomes, await record(ledger, outcomes)

        outcomes, ids = run(go())
        stored = ledger.alerts()
        assert len(ids) == 2 and {a.alert_id for a in stored} == set(ids)
        assert seen_keys(stored) == {o.dedup_key for o in outcomes}
        by_key = {a.data["dedup_key"]: a for a in stored}
        first = by_key[outcomes[0].dedup_key]
        assert first.kind == "budget_threshold" and first.scope == "team:ml"
        assert first.data["deliveries"][0]["attempts"] == 2 and first.data["delivered"] is True
        fresh = dispatcher([WebhookSink(HOOK)], server)
        assert run(fresh.dispatch(anomalies("95"), seen_keys(ledger.alerts()))) == []
    finally:
        ledger.close()

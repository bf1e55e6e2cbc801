"""PostgreSQL restarted under load, through the real gateway: while the ledger cannot record, requests are
refused with 503 ``ledger_unavailable`` (never served unmetered); once the server is back the gateway serves
again on its own; every request that was answered is in the ledger exactly once."""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx2

from .conftest import start_gateway


def _wait_for(condition, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _flushed(gateway) -> bool:
    response = httpx2.post(
        gateway.base_url + "/v1/margin/ledger/flush", headers={"authorization": "Bearer mk-master-test"}, timeout=10
    )
    return response.status_code == 200


def _ledger_request_ids(url: str) -> Counter:
    import psycopg

    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT request_id FROM usage_events WHERE status = 'ok'").fetchall()
    return Counter(r for (r,) in rows)


def test_postgres_restart_under_load_loses_nothing_acknowledged(tmp_path, pg_server, pg_database):
    # pool_timeout=1: an operation that gets no connection within a second fails (default 5 s, which would
    # absorb this outage as latency instead).
    config = f"gateway:\n  database: '{pg_database}?pool_timeout=1'\n  retries: {{max_retries: 0}}\n"
    gateway = start_gateway(tmp_path, config)
    try:
        key = gateway.create_key("--team", "load")
        body = {"model": "gpt-4o-mini", "max_tokens": 20, "messages": [{"role": "user", "content": "under load"}]}
        stop = threading.Event()
        results: list[tuple[int | str, str | None, str | None]] = []

        def worker() -> None:
            with httpx2.Client(base_url=gateway.base_url, timeout=30) as client:
                while not stop.is_set():
                    try:
                        r = client.post("/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"})
                        code = r.json().get("error", {}).get("code") if r.status_code != 200 else None
                        results.append((r.status_code, r.headers.get("x-margin-request-id"), code))
                    except httpx2.HTTPError as exc:
                        results.append((type(exc).__name__, None, None))

        with ThreadPoolExecutor(8) as pool:
            for _ in range(8):
                pool.submit(worker)
            _wait_for(lambda: len(results) >= 50, "50 answers before the outage")
            before_restart = len(results)
            pg_server.stop()  # down for three seconds: writes fail, the ledger enters its failed state
            time.sleep(3)
            pg_server.start()
            restarted_at = len(results)
            # The ledger probes the server every 0.5 s, writes what the outage lost, and takes writes again.
            _wait_for(lambda: [s for s, _, _ in results[-60:]] == [200] * 60, "60 answers in a row after the outage")
            stop.set()
        _wait_for(lambda: _flushed(gateway), "a ledger flush")

        statuses = Counter(status for status, _, _ in results)
        assert before_restart >= 50
        refused = [code for status, _, code in results if status != 200]
        assert refused and set(refused) == {"ledger_unavailable"}, statuses  # refused, never served unmetered
        after = [status for status, _, _ in results[restarted_at:]]
        assert after[-50:] == [200] * 50, Counter(after)  # serving again on its own, without a gateway restart
        answered = [rid for status, rid, _ in results if status == 200]
        in_ledger = _ledger_request_ids(pg_database)
        assert [rid for rid in answered if in_ledger[rid] != 1] == []  # each answered request once, none lost
        log = (tmp_path / "gateway.log").read_text()
        assert "PostgreSQL answers again" in log  # answered requests whose events the outage cut off: written now
        alerts = httpx2.get(
            gateway.base_url + "/v1/margin/alerts", headers={"authorization": "Bearer mk-master-test"}, timeout=10
        ).json()["alerts"]
        (recovered,) = [a for a in alerts if a["kind"] == "ledger_recovered"]
        # Most refused requests were refused at their first write (a few at a key lookup: a read).
        assert len(refused) / 2 < recovered["data"]["refused_writes"] <= len(refused)
        assert 2 < recovered["data"]["seconds"] < 60
        metrics = httpx2.get(
            gateway.base_url + "/metrics", headers={"authorization": "Bearer mk-master-test"}, timeout=10
        ).text
        assert "margin_ledger_up 1.0" in metrics
    finally:
        gateway.stop()

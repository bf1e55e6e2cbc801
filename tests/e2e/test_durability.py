"""kill -9 under load: after a restart the ledger accounts for every request whose response a client fully
received (as a settled event, or, if the kill came between the response and its event's commit, as its
journaled reservation charged at the worst case), in-flight requests are charged at their worst case, and
budgets rebuilt from the ledger are never lower than the truth."""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
import time
from decimal import Decimal

import httpx2

from margin.store.journal import recover_journals
from margin.store.sqlite import to_nanos

from .conftest import free_port, start_gateway

CONFIG = """
gateway:
  retries: {max_retries: 0}
  providers:
    - {name: mock, type: mock, latency_ms: 20}
  budgets:
    - {name: daily, scope: global, period: day, amount: 1000}
"""


def test_kill_9_loses_no_acknowledged_request(tmp_path):
    port = free_port()
    gw = start_gateway(tmp_path, CONFIG, port=port)
    key = gw.create_key("--team", "crash")
    received: list[str] = []
    stop = threading.Event()
    lock = threading.Lock()

    def client_loop() -> None:
        with httpx2.Client(base_url=gw.base_url, timeout=10) as client:
            while not stop.is_set():
                try:
                    response = client.post(
                        "/v1/chat/completions",
                        headers={"authorization": f"Bearer {key}"},
                        json={
                            "model": "gpt-4o-mini",
                            "max_tokens": 64,
                            "messages": [{"role": "user", "content": "durable?"}],
                        },
                    )
                except httpx2.HTTPError:
                    return  # the server died mid-request: this response was not received
                if response.status_code == 200 and response.json().get("choices"):
                    with lock:
                        received.append(response.headers["x-margin-request-id"])

    threads = [threading.Thread(target=client_loop) for _ in range(8)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and len(received) < 150:
        time.sleep(0.02)
    gw.process.send_signal(signal.SIGKILL)
    gw.process.wait()
    stop.set()
    for thread in threads:
        thread.join(timeout=15)
    assert len(received) >= 50, "the load did not get going before the kill"

    db_path = gw.home / "ledger.db"
    # In flight at the kill: reservations in the dead process's journal files whose event never committed.
    journaled, _, fds = recover_journals(db_path)
    for fd in fds:
        os.close(fd)
    with sqlite3.connect(db_path) as db:
        settled_ids = {r for (r,) in db.execute("select reservation_id from usage_events") if r}
        in_table = db.execute("select count(*), coalesce(sum(amount_nanos), 0) from reservations").fetchone()
    in_flight = [r for r in journaled if r.reservation_id not in settled_ids]
    assert in_flight, "the kill found no request in flight (the test needs some)"
    open_before = (in_table[0] + len(in_flight), in_table[1] + sum(to_nanos(r.amount) for r in in_flight))

    # Restart on the same ledger: open reservations are reconciled at their worst case.
    again = start_gateway(tmp_path, CONFIG, port=free_port())
    try:
        with sqlite3.connect(db_path) as db:
            # A response leaves once its event is queued; killed before the commit, the request is charged
            # through its journaled reservation (a gateway_crash event at its worst case) instead.
            settled = {
                row[0]
                for row in db.execute(
                    "select request_id from usage_events where status = 'ok' or error_type = 'gateway_crash'"
                )
            }
            open_after = db.execute("select count(*) from reservations").fetchone()[0]
            crashed = db.execute(
                "select count(*), coalesce(sum(effective_cost_nanos), 0) from usage_events "
                "where error_type = 'gateway_crash'"
            ).fetchone()
            total = sum((Decimal(v) for (v,) in db.execute("select effective_cost from usage_events")), Decimal(0))
        missing = [rid for rid in received if rid not in settled]
        assert not missing, f"{len(missing)} acknowledged requests are not in the ledger"
        assert open_after == 0
        assert crashed[0] == open_before[0]  # every in-flight request charged...
        assert crashed[1] == open_before[1]  # ...at exactly its reserved worst case
        # The rebuilt budget counter equals the ledger's total (never lower than the truth).
        response = httpx2.post(
            again.base_url + "/v1/chat/completions",
            headers={"authorization": f"Bearer {key}"},
            json={"model": "gpt-4o-mini", "max_tokens": 16, "messages": [{"role": "user", "content": "after"}]},
            timeout=10,
        )
        assert response.status_code == 200
        remaining = Decimal(response.headers["x-margin-budget-remaining"])
        cost = Decimal(response.headers["x-margin-cost"])
        cap = Decimal(1000) * Decimal("1.10")
        assert remaining == cap - total - cost
    finally:
        again.stop()

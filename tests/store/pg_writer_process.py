"""Helper of test_postgres.py: open the PostgreSQL ledger (applying migrations if the database is empty) and
write events from concurrent tasks, into rollup cells the other process writes too.

Usage: python pg_writer_process.py URL PROCESS_NUMBER EVENTS. Prints ``ready`` once the ledger is open and
``done N`` after N events were acknowledged (committed).

``python pg_writer_process.py URL PROCESS_NUMBER crash``: requests as the gateway makes them, forever (the test
kills the process): each opens a reservation (prints ``R id`` once committed) and every other one settles it
(prints ``E id`` once committed).
"""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from margin.store.postgres import PostgresLedger
from margin.usage import UsageEvent

START = datetime(2026, 11, 30, 20, 0, tzinfo=UTC)  # the cells span a month boundary: partitions on demand


def make_event(process: int, number: int) -> UsageEvent:
    when = START + timedelta(minutes=(number * 7) % (60 * 8))
    cost = Decimal(number % 97 + 1) / Decimal(10**7) + Decimal("0.0000000001")  # sub-nano digits too
    return UsageEvent(
        event_id=f"p{process}-{number}",
        request_id=f"p{process}-{number}",
        attempt=0,
        started_at=when,
        finished_at=when,
        status="ok" if number % 5 else "upstream_error",
        endpoint="chat.completions",
        requested_model="m",
        served_model=("gpt-4o", "gpt-4o-mini")[number % 2],
        tags=({"team": "ml"}, {"team": "web", "feature": "x"})[number % 3 == 0],
        input_tokens=number % 1000,
        output_tokens=number % 100,
        list_cost=cost,
        effective_cost=cost,
    )


async def requests_forever(ledger: PostgresLedger, process: int) -> None:
    from margin.store.base import Reservation

    async def one_task(task: int) -> None:
        number = 0
        while True:
            rid = f"p{process}-t{task}-{number}"
            now = datetime.now(UTC)
            await ledger.open_reservation(
                Reservation(
                    reservation_id=rid, request_id=rid, scopes=("global",), amount=Decimal("0.5"), created_at=now
                )
            )
            print(f"R {rid}", flush=True)
            if number % 2 == 0:
                event = make_event(process, number)
                await ledger.settle(UsageEvent(**{**vars(event), "event_id": rid, "request_id": rid}), rid)
                print(f"E {rid}", flush=True)
            number += 1

    await asyncio.gather(*(one_task(task) for task in range(8)))


async def main() -> None:
    url, process = sys.argv[1], int(sys.argv[2])
    if sys.argv[3] == "crash":
        await requests_forever(PostgresLedger(url), process)
        return
    total = int(sys.argv[3])
    ledger = PostgresLedger(url)
    print("ready", flush=True)
    numbers = iter(range(total))

    async def writer() -> None:
        for number in numbers:
            await ledger.write_event(make_event(process, number))

    await asyncio.gather(*(writer() for _ in range(16)))
    await ledger.aclose()
    print(f"done {total}", flush=True)


if __name__ == "__main__":
    asyncio.run(main())

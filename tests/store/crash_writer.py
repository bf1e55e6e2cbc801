"""Helper of test_crash.py: write events forever from concurrent tasks and print each id once COMMITTED.

Usage: python crash_writer.py LEDGER_PATH [TASKS]. The test kills this process with SIGKILL mid-way.
"""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime
from decimal import Decimal

from margin.store.sqlite import SQLiteLedger
from margin.usage import UsageEvent


async def writer(ledger: SQLiteLedger, task: int) -> None:
    number = 0
    while True:
        now = datetime.now(UTC)
        event_id = f"crash-{task}-{number}"
        await ledger.write_event(
            UsageEvent(
                event_id=event_id,
                request_id=event_id,
                attempt=0,
                started_at=now,
                finished_at=now,
                status="ok",
                endpoint="chat.completions",
                requested_model="gpt-4o",
                effective_cost=Decimal("0.000123"),
                error_message="padding " * 20,
            )
        )
        # Printed only after the await returned, i.e. after the commit.
        sys.stdout.write(event_id + "\n")
        sys.stdout.flush()
        number += 1


async def main() -> None:
    ledger = SQLiteLedger(sys.argv[1])
    tasks = int(sys.argv[2]) if len(sys.argv) > 2 else 8
    await asyncio.gather(*(writer(ledger, task) for task in range(tasks)))


if __name__ == "__main__":
    asyncio.run(main())

"""kill -9 in the middle of writing: every write whose await returned is in the ledger afterwards."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from margin.store.sqlite import SQLiteLedger

WRITER = Path(__file__).with_name("crash_writer.py")


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_sigkill_loses_no_committed_write(db_path):
    process = subprocess.Popen(
        [sys.executable, str(WRITER), str(db_path), "16"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    printed: list[str] = []
    try:
        assert process.stdout is not None
        for line in process.stdout:
            printed.append(line)
            if len(printed) >= 3000:
                break
        else:
            pytest.fail(f"the writer stopped early: {process.stderr.read() if process.stderr else ''}")
        process.send_signal(signal.SIGKILL)  # no cleanup, no close, mid-way through some group commit
        rest, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == -signal.SIGKILL
    printed.extend(rest.splitlines(keepends=True))
    committed = [line.rstrip("\n") for line in printed if line.endswith("\n")]  # a cut-off last line is no id
    assert len(committed) >= 3000

    with SQLiteLedger(db_path) as ledger:  # reopening recovers the WAL
        assert ledger.failed is None
        with sqlite3.connect(db_path) as conn:
            stored = {row[0] for row in conn.execute("SELECT event_id FROM usage_events")}
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    missing = set(committed) - stored
    assert not missing, f"{len(missing)} committed events lost, e.g. {sorted(missing)[:5]}"
    assert len(stored) >= len(set(committed))

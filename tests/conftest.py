"""Shared fixtures: every test gets its own MARGIN_HOME and no config file from the environment."""

from __future__ import annotations

import os

import pytest

# Wide, uncoloured output so assertions on CLI text do not depend on the terminal.
os.environ["COLUMNS"] = "200"
os.environ["NO_COLOR"] = "1"
os.environ.setdefault("TERM", "dumb")


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    monkeypatch.setenv("MARGIN_HOME", str(tmp_path / "margin-home"))
    monkeypatch.delenv("MARGIN_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)


# Throwaway PostgreSQL servers (tests/pg_server.py): one per session, a fresh database per test.
from tests.pg_server import pg_database, pg_empty_database, pg_server  # noqa: E402, F401

# Throwaway Redis servers (tests/redis_server.py): one per session, emptied per test; own_redis for kill tests.
from tests.redis_server import own_redis, redis_server, redis_url  # noqa: E402, F401

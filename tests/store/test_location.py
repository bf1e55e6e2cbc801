"""Selecting the ledger by ``gateway.database``: a path, sqlite:///PATH or postgresql://..., with clear errors."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from margin.config import MarginConfig
from margin.errors import ConfigError
from margin.store.location import ledger_location, open_ledger, parse_database, redact_url
from margin.store.sqlite import SQLiteLedger, default_ledger_path

from .conftest import event


def config_with(database: str | None) -> MarginConfig:
    return MarginConfig.model_validate({"gateway": {"database": database}})


@pytest.mark.parametrize(
    ("value", "path"),
    [
        ("ledger.db", Path("ledger.db")),
        ("/var/lib/margin/ledger.db", Path("/var/lib/margin/ledger.db")),
        ("sqlite:///ledger.db", Path("ledger.db")),  # SQLAlchemy's convention: three slashes, relative
        ("sqlite:////var/lib/margin/ledger.db", Path("/var/lib/margin/ledger.db")),
    ],
)
def test_sqlite_paths_and_urls(value, path):
    location = parse_database(value)
    assert location.kind == "sqlite" and location.path == path


def test_postgres_urls_and_errors():
    assert parse_database("postgresql://u@db:5432/margin").url == "postgresql://u@db:5432/margin"
    assert parse_database("postgres://u@db/margin").url == "postgresql://u@db/margin"
    with pytest.raises(ConfigError, match=r"SQLite .* or PostgreSQL"):
        parse_database("mysql://u:pw@db/margin")
    with pytest.raises(ConfigError, match="sqlite:///relative"):
        parse_database("sqlite://ledger.db")


def test_passwords_are_redacted():
    assert redact_url("postgresql://u:secret@db/m?sslmode=require") == "postgresql://u:***@db/m?sslmode=require"
    assert redact_url("postgresql://db/m?user=u&password=secret") == "postgresql://db/m?user=u&password=***"
    assert parse_database("postgresql://u:secret@db/m").describe() == "postgres postgresql://u:***@db/m"


def test_the_default_is_the_sqlite_file_under_margin_home(tmp_path):
    assert ledger_location(MarginConfig()).path == tmp_path / "margin-home" / "ledger.db"
    assert default_ledger_path(config_with("sqlite:///x.db")) == Path("x.db")


def test_commands_that_read_the_sqlite_file_refuse_a_postgres_url_clearly():
    with pytest.raises(ConfigError, match="reads the SQLite ledger file directly"):
        default_ledger_path(config_with("postgresql://u:secret@db/m"))


def test_open_ledger_opens_sqlite_and_drops_postgres_only_options(tmp_path):
    ledger = open_ledger(parse_database(f"sqlite:///{tmp_path}/sub/ledger.db"), commit_delay_ms=1)
    try:
        assert isinstance(ledger, SQLiteLedger) and ledger.path == tmp_path / "sub" / "ledger.db"
    finally:
        ledger.close()


def test_without_psycopg_a_postgres_url_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "margin.store.postgres", None)  # import fails as if psycopg were missing
    with pytest.raises(ConfigError, match=r"pip install 'margin\[postgres\]'"):
        open_ledger(parse_database("postgresql://u@127.0.0.1:1/m"))


def test_the_cli_and_the_gateway_open_the_same_postgres_ledger(pg_database, tmp_path):
    from margin.cli.gateway import open_ledger as cli_open_ledger
    from margin.gateway.state import build_gateway
    from margin.store.postgres import PostgresLedger

    config = config_with(pg_database)
    gateway = build_gateway(config)
    try:
        assert isinstance(gateway.ledger, PostgresLedger)
        asyncio.run(gateway.ledger.write_event(event(1)))
    finally:
        asyncio.run(gateway.aclose())
    with cli_open_ledger(config) as ledger:
        assert isinstance(ledger, PostgresLedger) and [e.event_id for e in ledger.events()] == ["ev-1"]

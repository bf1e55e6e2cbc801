"""Where the ledger lives, and opening it: ``gateway.database`` is a plain file path or ``sqlite:///PATH`` (the
embedded SQLite ledger) or ``postgresql://...`` (the PostgreSQL ledger, ``pip install 'margin[postgres]'``).

``sqlite:///`` URLs follow SQLAlchemy's convention: ``sqlite:///ledger.db`` is relative to the working
directory, ``sqlite:////var/lib/margin/ledger.db`` (four slashes) is absolute. PostgreSQL URLs are libpq's
(``postgresql://user:password@host:5432/dbname?sslmode=require``), plus margin's own query parameters, removed
before connecting: ``pool_size`` (most connections, default 8) and ``pool_timeout`` (seconds a write or read
waits for a connection before the ledger reports PostgreSQL unreachable, default 5).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit, urlunsplit

from ..config import MarginConfig, margin_home
from ..errors import ConfigError

if TYPE_CHECKING:
    from .base import MeteringLedger

__all__ = ["LedgerLocation", "ledger_location", "open_ledger", "parse_database", "redact_url"]

POSTGRES_EXTRA_HINT = "pip install 'margin[postgres]'"


@dataclass(frozen=True)
class LedgerLocation:
    """A parsed ``gateway.database``: the SQLite file, or the PostgreSQL URL."""

    kind: Literal["sqlite", "postgres"]
    path: Path | None = None
    url: str | None = None

    def describe(self) -> str:
        """For logs and banners: the file, or the URL without its password."""
        return str(self.path) if self.kind == "sqlite" else f"postgres {redact_url(self.url or '')}"


def redact_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (also a ``password=`` query parameter)."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        user, sep, _password = userinfo.partition(":")
        netloc = f"{user}:***@{host}" if sep else netloc
    query = "&".join(
        "password=***" if item.split("=", 1)[0] == "password" else item for item in parts.query.split("&") if item
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def parse_database(value: str | Path) -> LedgerLocation:
    """A ``gateway.database`` value -> where the ledger is. ConfigError for a scheme margin has no ledger for."""
    if isinstance(value, Path):
        return LedgerLocation("sqlite", path=value.expanduser())
    text = value.strip()
    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    if not scheme:
        return LedgerLocation("sqlite", path=Path(text).expanduser())
    if scheme == "sqlite":
        rest = text[len("sqlite://") :]
        if not rest.startswith("/") or len(rest) < 2:
            raise ConfigError(
                f"database {text!r}: write sqlite:///relative/path.db or sqlite:////absolute/path.db (or a plain path)"
            )
        return LedgerLocation("sqlite", path=Path(rest[1:]).expanduser())
    if scheme in ("postgresql", "postgres"):
        return LedgerLocation("postgres", url="postgresql://" + text.split("://", 1)[1])
    raise ConfigError(
        f"database {redact_url(text)!r}: margin's ledger runs on SQLite (a path or sqlite:///PATH) or PostgreSQL "
        "(postgresql://USER@HOST/DB)"
    )


def ledger_location(config: MarginConfig | None = None, database: str | Path | None = None) -> LedgerLocation:
    """``database`` if given, else ``gateway.database`` from the config, else ``$MARGIN_HOME/ledger.db``."""
    if database is None and config is not None and config.gateway.database:
        database = config.gateway.database
    if database is None:
        return LedgerLocation("sqlite", path=margin_home(config) / "ledger.db")
    return parse_database(database)


def open_ledger(location: LedgerLocation, **options: Any) -> MeteringLedger:
    """Open the ledger at ``location``: SQLiteLedger(path, **options) or PostgresLedger(url, **options). Options
    one backend does not have are dropped (``synchronous`` and ``reservation_journal`` are SQLite's)."""
    if location.kind == "sqlite":
        from .sqlite import SQLiteLedger

        assert location.path is not None
        location.path.parent.mkdir(parents=True, exist_ok=True)
        return SQLiteLedger(location.path, **options)
    try:
        from .postgres import PostgresLedger
    except ImportError as exc:
        raise ConfigError(
            f"the PostgreSQL ledger needs psycopg 3 and psycopg-pool, which are not installed ({exc}): "
            f"{POSTGRES_EXTRA_HINT}"
        ) from None
    options = {k: v for k, v in options.items() if k not in ("synchronous", "reservation_journal")}
    assert location.url is not None
    return PostgresLedger(location.url, **options)

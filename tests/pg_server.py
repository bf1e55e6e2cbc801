"""Throwaway PostgreSQL servers for tests, started from the installed server binaries.

The way pytest-postgresql does it: ``initdb`` a cluster in a new temporary directory, start ``postgres`` on a
free 127.0.0.1 port with its unix socket in that directory and trust authentication, hand out fresh databases,
stop the server and delete the directory at the end. A server already running on the machine is never
touched (nothing here uses the default port, socket directory or data directory).

PostgreSQL refuses to run as root: as root (how CI runs) the cluster belongs to the ``postgres`` system user
(created by Debian's ``postgresql`` package) and every server command runs through ``runuser -u postgres``;
as anyone else it runs as the current user. Clients connect over TCP as the superuser ``margin_test``.
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SUPERUSER = "margin_test"
INSTALL_HINT = (
    "install the PostgreSQL server (Debian/Ubuntu: apt-get install postgresql; or run "
    "MARGIN_INSTALL_TEST_DEPS=1 bash scripts/install-test-servers.sh)"
)


class ServerUnavailable(RuntimeError):
    """No PostgreSQL server binaries on this machine."""


def find_bin_dir() -> Path:
    """The newest ``/usr/lib/postgresql/N/bin`` holding initdb and postgres (Debian's layout), else the directory
    of ``initdb`` on PATH. ``MARGIN_TEST_PG_BIN`` names the one directory to use instead."""
    override = os.environ.get("MARGIN_TEST_PG_BIN")
    if override:  # only that directory
        if (Path(override) / "initdb").exists() and (Path(override) / "postgres").exists():
            return Path(override)
        raise ServerUnavailable(f"MARGIN_TEST_PG_BIN={override} holds no initdb and postgres: {INSTALL_HINT}")
    candidates: list[str] = []

    def version(path: str) -> tuple[int, ...]:
        found = re.search(r"/postgresql/([\d.]+)/bin", path)
        return tuple(int(p) for p in found.group(1).split(".")) if found else (0,)

    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True)
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(str(Path(on_path).resolve().parent))
    for candidate in candidates:
        if (Path(candidate) / "initdb").exists() and (Path(candidate) / "postgres").exists():
            return Path(candidate)
    raise ServerUnavailable(f"no PostgreSQL server binaries (initdb, postgres) found: {INSTALL_HINT}")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class PostgresServer:
    """One running throwaway cluster. :meth:`create_database` gives each test its own database."""

    bin_dir: Path
    directory: Path
    port: int
    run_as: str | None  # a system user when the tests run as root
    fsync: bool = False  # tests: off (a throwaway cluster); benchmarks: on, as in production
    settings: tuple[str, ...] = ()  # more "name=value" server settings

    @property
    def data_dir(self) -> Path:
        return self.directory / "data"

    @property
    def log_file(self) -> Path:
        return self.directory / "server.log"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    # -- process control ----------------------------------------------------------------------------------------

    def _command(self, *args: str) -> list[str]:
        command = [str(self.bin_dir / args[0]), *args[1:]]
        return ["runuser", "-u", self.run_as, "--", *command] if self.run_as else command

    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(self._command(*args), capture_output=True, text=True, timeout=timeout, check=False)
        if result.returncode != 0:
            log = self.log_file.read_text(errors="replace")[-2000:] if self.log_file.exists() else ""
            raise RuntimeError(f"{' '.join(args[:2])} failed ({result.returncode}): {result.stderr.strip()}\n{log}")
        return result

    def start(self) -> None:
        options = f"-p {self.port} -h 127.0.0.1 -k {self.directory} -c max_connections=200"
        if not self.fsync:
            options += " -F -c full_page_writes=off"
        options += "".join(f" -c {setting}" for setting in self.settings or ("shared_buffers=64MB",))
        self._run("pg_ctl", "-D", str(self.data_dir), "-l", str(self.log_file), "-o", options, "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        if (self.data_dir / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data_dir), "-m", mode, "-w", "stop")

    def restart(self) -> None:
        self.stop()
        self.start()

    def destroy(self) -> None:
        try:
            self.stop("immediate")
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)

    # -- databases ----------------------------------------------------------------------------------------------

    def psql(self, sql: str, database: str = "postgres") -> str:
        return self._run(
            "psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", self.url(database), "-c", sql
        ).stdout.strip()

    def create_database(self, name: str, template: str = "template0") -> str:
        """A new empty database (``template``: another database to copy, e.g. one with the schema); its URL."""
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        return self.url(name)

    def drop_database(self, name: str) -> None:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def start_server(*, fsync: bool = False, settings: tuple[str, ...] = ()) -> PostgresServer:
    """initdb and start a new cluster in a new temporary directory (see the module docstring)."""
    bin_dir = find_bin_dir()
    run_as = None
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            raise ServerUnavailable(
                "running as root, and there is no 'postgres' system user to run the server as: " + INSTALL_HINT
            ) from None
        run_as = "postgres"
    # Not under pytest's tmp_path: its parents are private to the current user, and the server may run as
    # another one.
    directory = Path(tempfile.mkdtemp(prefix="margin-pg-"))
    if run_as:
        shutil.chown(directory, user=run_as)
    server = PostgresServer(bin_dir, directory, _free_port(), run_as, fsync, settings)
    try:
        server._run(
            "initdb", "-D", str(server.data_dir), "-A", "trust", "-U", SUPERUSER, "-E", "UTF8", "--locale=C",
            "--no-sync", "--no-instructions",
        )  # fmt: skip
        for attempt in range(3):
            try:
                server.start()
                break
            except RuntimeError:
                if attempt == 2:
                    raise
                server.port = _free_port()  # taken between our probe and the server's bind
        deadline = time.monotonic() + 30
        while True:
            try:
                server.psql("SELECT 1")
                break
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
    except BaseException:
        server.destroy()
        raise
    return server


# -- pytest fixtures (imported by tests/conftest.py) ------------------------------------------------------------

import pytest  # noqa: E402

TEMPLATE = "margin_template"  # every migration applied once per session; fresh databases are copies of it
_database_numbers = iter(range(1, 1_000_000))


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL server for the whole session. Skipped (with how to install it) when the server
    binaries or psycopg are missing, except in CI (``CI=true``), where that fails the tests."""
    try:
        import psycopg  # noqa: F401
        import psycopg_pool  # noqa: F401
    except ImportError:
        message = "psycopg 3 / psycopg-pool are not installed: pip install -e '.[dev]' (or 'margin[postgres]')"
        if _in_ci():
            pytest.fail(message)
        pytest.skip(message)
    try:
        server = start_server()
    except ServerUnavailable as exc:
        if _in_ci():
            pytest.fail(f"CI must run the PostgreSQL tests: {exc}")
        pytest.skip(f"PostgreSQL tests skipped: {exc}")
    try:
        from margin.store.postgres import PostgresLedger

        server.create_database(TEMPLATE)
        PostgresLedger(server.url(TEMPLATE)).close()
        yield server
    finally:
        server.destroy()


@pytest.fixture
def pg_database(pg_server: PostgresServer) -> Iterator[str]:
    """The URL of a fresh database with the ledger's schema, dropped after the test."""
    name = f"t{next(_database_numbers)}"
    url = pg_server.create_database(name, template=TEMPLATE)
    yield url
    pg_server.drop_database(name)


@pytest.fixture
def pg_empty_database(pg_server: PostgresServer) -> Iterator[str]:
    """The URL of a fresh EMPTY database (no migrations applied), dropped after the test."""
    name = f"e{next(_database_numbers)}"
    url = pg_server.create_database(name)
    yield url
    pg_server.drop_database(name)

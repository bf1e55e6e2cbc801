"""Pytest fixtures for the fake upstream server.

One server per test session (starting takes a few milliseconds, but there is no reason to pay it per test);
``fake_upstream`` hands each test that server with its requests, faults, mock state and API key reset.
Use them from a test module or conftest with ``pytest_plugins = ["tests.fakes.fixtures"]``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .upstream import FakeUpstream

__all__ = ["fake_upstream", "fake_upstream_server"]


@pytest.fixture(scope="session")
def fake_upstream_server() -> Iterator[FakeUpstream]:
    with FakeUpstream() as server:
        yield server


@pytest.fixture
def fake_upstream(fake_upstream_server: FakeUpstream) -> Iterator[FakeUpstream]:
    fake_upstream_server.reset()
    yield fake_upstream_server
    fake_upstream_server.reset()

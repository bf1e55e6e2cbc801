"""Shared fixtures: every test gets its own MARGIN_HOME and no config file from the environment."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    monkeypatch.setenv("MARGIN_HOME", str(tmp_path / "margin-home"))
    monkeypatch.delenv("MARGIN_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)

"""Fixtures for the live backend tests: a private runtime dir and unique session names."""
from __future__ import annotations

import itertools
import os

import pytest

_counter = itertools.count()


@pytest.fixture(autouse=True)
def runtime_dir(tmp_path, monkeypatch):
    """Session files (API port + token) go to a private folder, never the user's real one."""
    path = tmp_path / "run"
    monkeypatch.setenv("S2L_RUNTIME_DIR", str(path))
    return path


@pytest.fixture
def session() -> str:
    """A session name no other test (or parallel run) uses."""
    return f"t{os.getpid()}x{next(_counter)}"

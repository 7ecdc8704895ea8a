"""Fixtures for the mouth engine: small synthetic packages with a known mouth per frame."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from synthetic import write_package  # noqa: E402


@pytest.fixture(scope="session")
def talking_avatar(tmp_path_factory) -> Path:
    """300 frames (12 s) whose mouth opening follows the package's own audio."""
    return write_package(tmp_path_factory.mktemp("mouth") / "talking", n=300)


@pytest.fixture(scope="session")
def still_avatar(tmp_path_factory) -> Path:
    """A still image repeated, no audio track: the lip-warp mode."""
    return write_package(tmp_path_factory.mktemp("mouth") / "still", n=10, with_audio=False, still=True)

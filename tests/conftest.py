"""Shared pytest fixtures: where the reference data and the test media live, and small avatars.

The repository is cloned next to `shared/` (CI: a fresh clone with shared/ beside it), so reference
files are found relative to this file, never copied into the project.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("S2L_SHARED_DIR", REPO.parent / "shared"))


@pytest.fixture(scope="session", autouse=True)
def private_cache_home(tmp_path_factory):
    """The user cache folder (exported fp32 ONNX networks, backend/generators/onnx_fp32.py) of this test
    session, shared by every test and every backend it starts: never the developer's ~/.cache."""
    before = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg-cache"))
    yield
    if before is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = before


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"shared reference folder not found at {SHARED}")
    return SHARED


@pytest.fixture(scope="session")
def golden_dir(shared_dir: Path) -> Path:
    return shared_dir / "reference" / "golden"


@pytest.fixture(scope="session")
def media_dir(shared_dir: Path) -> Path:
    return shared_dir / "media"


# ---------------------------------------------------------------- avatars (owned by preprocess)
@pytest.fixture(scope="session")
def synthetic_avatar(tmp_path_factory) -> Path:
    """A 20-frame drawn-face avatar package (320x240, face 96, head 128, audio) built in ~0.2 s, no detector."""
    from preprocess.synthetic import write_synthetic_package

    return write_synthetic_package(tmp_path_factory.mktemp("avatars") / "synthetic")


SMALL_AVATAR_SOURCE = "video-retalking__examples_face_2.mp4"


@pytest.fixture(scope="session")
def small_avatar(tmp_path_factory, media_dir: Path) -> Path:
    """A real avatar package: the first 2 s (50 frames) of a talking-head clip, face 96, head 256 (~3-5 s)."""
    from preprocess.api import preprocess_video

    source = media_dir / SMALL_AVATAR_SOURCE
    if not source.is_file():
        pytest.skip(f"test media {source} not found")
    return preprocess_video(source, tmp_path_factory.mktemp("avatars"), face_size=96, max_seconds=2.0)


@pytest.fixture(scope="module")
def big_face(tmp_path_factory):
    """A synthetic avatar whose face is ~200 px on screen: a 96 px network leaves detail to restore (one per test
    module: the detail libraries it caches stay that module's)."""
    from preprocess.package import AvatarPackage
    from preprocess.synthetic import write_synthetic_package

    return AvatarPackage.open(write_synthetic_package(tmp_path_factory.mktemp("detail") / "big", frames=24,
                                                      width=640, height=480))

"""The detail library is built once per avatar and cached in <avatar>/.cache/, rebuilt when the package or the
stage's parameters change, and never trusted when damaged."""
from __future__ import annotations

import json

import numpy as np
import pytest

from backend.detail import library as library_module
from backend.detail import DetailStage, detail_size, needs_detail
from backend.detail.library import cache_path, load_or_build
from preprocess.package import AvatarPackage
from preprocess.synthetic import write_synthetic_package


@pytest.fixture()
def package(tmp_path):
    return AvatarPackage.open(write_synthetic_package(tmp_path / "avatar", frames=8, width=320, height=240,
                                                      with_audio=False))


def _no_build(*args, **kwargs):
    raise AssertionError("the cached library should have been used")


def test_built_once_then_read_from_the_cache(package, monkeypatch):
    first = load_or_build(package, "head", 128, 32)
    path = cache_path(package, "head", 128, 32)
    assert path.is_file()
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".tmp-")]  # atomic: no leftovers
    monkeypatch.setattr(library_module, "build_library", _no_build)
    second = load_or_build(package, "head", 128, 32)
    assert second.box == first.box and np.array_equal(second.detail, first.detail)
    assert np.array_equal(second.frames, first.frames) and second.scale == pytest.approx(first.scale)


def test_a_changed_package_or_other_frames_rebuild(package, monkeypatch):
    load_or_build(package, "head", 128, 32)
    calls = []
    real_build = library_module.build_library
    monkeypatch.setattr(library_module, "build_library", lambda *a, **k: calls.append(1) or real_build(*a, **k))
    load_or_build(package, "head", 128, 32, frames=range(5))  # another library split
    assert len(calls) == 1
    manifest = package.root / "manifest.json"
    data = json.loads(manifest.read_text())
    data["created_at"] = "2030-01-01T00:00:00+00:00"  # re-preprocessed
    manifest.write_text(json.dumps(data))
    load_or_build(AvatarPackage.open(package.root), "head", 128, 32, frames=range(5))
    assert len(calls) == 2


def test_a_damaged_cache_is_rebuilt(package):
    load_or_build(package, "head", 128, 32)
    path = cache_path(package, "head", 128, 32)
    path.write_bytes(b"not an npz")
    lib = load_or_build(package, "head", 128, 32)
    assert len(lib) > 0
    with np.load(path) as z:  # and rewritten
        assert "key" in z


def test_working_size_follows_the_face_in_the_frame(package):
    size = detail_size(package, "head", 32)
    assert size % 8 == 0 and 32 <= size <= 640
    assert needs_detail(package, "head", 32)
    assert not needs_detail(package, "head", 2 * size)
    stage = DetailStage(package, "head", 32)
    assert stage.size == size
    out = stage.apply(package.face(0, "head"), 0)  # the package's 96 px crop, upsampled by the stage
    assert out.shape == (size, size, 3)

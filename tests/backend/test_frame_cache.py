"""The decoded-frame cache: same planes as decoding, invalid when the package changes, atomic, optional."""
import json
import os
import shutil

import numpy as np
import pytest
import soundfile

from backend import frame_cache as fc
from backend.compositor import load_i420
from backend.frame_cache import FrameCache
from backend.generators.base import NullGenerator
from backend.render import render
from preprocess.package import AvatarPackage
from tests.backend.helpers import speech_like


@pytest.fixture()
def avatar(synthetic_avatar, tmp_path):
    """A private copy without the caches other tests' runs built (serve builds the frame cache): these tests
    write into the package."""
    return AvatarPackage.open(shutil.copytree(synthetic_avatar, tmp_path / "avatar",
                                              ignore=shutil.ignore_patterns(".cache")))


def test_built_cache_holds_the_decoded_planes(avatar):
    assert FrameCache.open(avatar) is None
    cache = FrameCache.open_or_build(avatar, log=pytest.fail)
    assert cache is not None and cache.count == avatar.frame_count
    for i in (0, avatar.frame_count // 2, avatar.frame_count - 1):
        got, want = cache.frame(i), load_i420(avatar.image_path("bg", i))
        assert all(np.array_equal(a, b) for a, b in ((got.y, want.y), (got.u, want.u), (got.v, want.v)))
        assert not got.y.flags.writeable
    folder = avatar.root / ".cache"
    names = sorted(p.name for p in folder.iterdir() if p.name.startswith("bg_i420"))  # other stages cache too
    assert names == ["bg_i420.json", "bg_i420.raw"]  # no temporary left
    assert FrameCache.open(avatar) is not None


def test_a_changed_or_damaged_package_invalidates_it(avatar):
    FrameCache.build(avatar)
    manifest = avatar.root / "manifest.json"
    st = os.stat(manifest)
    os.utime(manifest, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # package rewritten
    assert FrameCache.open(avatar) is None
    FrameCache.build(avatar)
    raw = avatar.root / ".cache" / "bg_i420.raw"
    raw.write_bytes(raw.read_bytes()[:-10])  # truncated
    assert FrameCache.open(avatar) is None
    (avatar.root / ".cache" / "bg_i420.json").write_text("{not json")
    assert FrameCache.open(avatar) is None


def test_unsuitable_or_unwritable_packages_render_without_it(avatar, monkeypatch):
    notes = []
    monkeypatch.setattr(fc, "MAX_BYTES", 1000)
    assert FrameCache.open_or_build(avatar, log=notes.append) is None
    assert "GB" in notes[-1] and str(avatar.root) in notes[-1]
    monkeypatch.setattr(fc, "MAX_BYTES", 4 << 30)

    def read_only(*a, **k):
        raise PermissionError("read-only file system")

    monkeypatch.setattr(FrameCache, "build", staticmethod(read_only))
    assert FrameCache.open_or_build(avatar, log=notes.append) is None
    assert "read-only" in notes[-1] and "\n" not in notes[-1]


def test_render_with_and_without_the_cache_gives_the_same_video(avatar, tmp_path):
    import av

    wav, short = tmp_path / "s.wav", tmp_path / "short.wav"
    seconds = avatar.frame_count / 25 + 0.1  # every avatar frame is used: worth building the cache
    soundfile.write(wav, speech_like(seconds), 16000)
    soundfile.write(short, speech_like(0.3), 16000)
    render(avatar.root, [short], tmp_path / "short.mp4", generator=NullGenerator(96), progress=False)
    assert not (avatar.root / ".cache" / "bg_i420.raw").exists()  # a short clip of a long avatar does not build it
    outs = {}
    for name, use in (("plain", False), ("build", True), ("reuse", True)):
        render(avatar.root, [wav], tmp_path / f"{name}.mp4", generator=NullGenerator(96), progress=False,
               frame_cache=use)
        with av.open(str(tmp_path / f"{name}.mp4")) as c:
            outs[name] = [f.to_ndarray() for f in c.decode(video=0)]
        assert (avatar.root / ".cache" / "bg_i420.json").is_file() == (name != "plain")
    assert len(outs["plain"]) == avatar.frame_count + 3
    for name in ("build", "reuse"):
        assert all(np.array_equal(a, b) for a, b in zip(outs["plain"], outs[name]))
    assert json.loads((avatar.root / ".cache" / "bg_i420.json").read_text())["frame_count"] == avatar.frame_count

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
    os.utime(manifest, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # an action or a matte added
    assert FrameCache.open(avatar) is not None  # the footage is the same
    last = avatar.image_path("bg", avatar.frame_count - 1)
    st = os.stat(last)
    os.utime(last, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # frames rewritten
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


def test_footage_over_the_cap_caches_its_first_frames_and_decodes_the_rest(avatar, monkeypatch, tmp_path):
    import av

    from backend.compositor import Compositor

    frame_bytes = avatar.width * avatar.height * 3 // 2
    held = avatar.frame_count // 2
    monkeypatch.setattr(fc, "MAX_BYTES", frame_bytes * held + frame_bytes // 2)
    monkeypatch.setattr(fc, "MIN_FRAMES", 2)
    notes = []
    cache = FrameCache.open_or_build(avatar, log=notes.append)
    assert cache is not None and cache.count == held
    assert f"first {held} of {avatar.frame_count}" in notes[-1] and "\n" not in notes[-1]
    assert (avatar.root / ".cache" / "bg_i420.raw").stat().st_size == frame_bytes * held
    assert cache.frame(held) is None and cache.bgr(held) is None and cache.frame(-1) is None
    assert np.array_equal(cache.frame(held - 1).y, load_i420(avatar.image_path("bg", held - 1)).y)
    assert FrameCache.open(avatar).count == held  # reopened as what it holds
    comp = Compositor(avatar, frame_cache=cache)  # past the cache: decoded from the JPEG, the same planes
    assert np.array_equal(comp.background_i420(held).y, load_i420(avatar.image_path("bg", held)).y)
    other = AvatarPackage.open(avatar.root)  # serve with a backdrop: BGR from the cache, else the JPEG
    other.decode_frames_with(cache.bgr)
    assert np.array_equal(other.frame(held), AvatarPackage.open(avatar.root).frame(held))
    assert np.array_equal(other.frame(0), cache.frame(0).to_bgr())

    wav = tmp_path / "s.wav"  # a render over the whole avatar reads both halves and draws what decoding draws
    soundfile.write(wav, speech_like(avatar.frame_count / 25 + 0.1), 16000)
    outs = {}
    for name, use in (("plain", False), ("partial", True)):
        render(avatar.root, [wav], tmp_path / f"{name}.mp4", generator=NullGenerator(96), progress=False,
               frame_cache=use)
        with av.open(str(tmp_path / f"{name}.mp4")) as c:
            outs[name] = [f.to_ndarray() for f in c.decode(video=0)]
    assert len(outs["plain"]) == len(outs["partial"]) > avatar.frame_count
    assert all(np.array_equal(a, b) for a, b in zip(outs["plain"], outs["partial"]))


def test_a_cache_without_a_count_opens_whole_and_a_bad_count_is_ignored(avatar):
    FrameCache.build(avatar)
    meta_path = avatar.root / ".cache" / "bg_i420.json"
    meta = json.loads(meta_path.read_text())
    assert meta.pop("cached") == avatar.frame_count
    meta_path.write_text(json.dumps(meta))
    assert FrameCache.open(avatar).count == avatar.frame_count
    for bad in (0, avatar.frame_count + 1, "all"):
        meta_path.write_text(json.dumps({**meta, "cached": bad}))
        assert FrameCache.open(avatar) is None


def test_the_free_disk_space_bounds_the_cache_and_a_second_of_frames_is_the_least_worth_one(avatar, monkeypatch):
    frame_bytes = avatar.width * avatar.height * 3 // 2
    usage = shutil.disk_usage(avatar.root)

    def free_for(frames):
        monkeypatch.setattr(fc.shutil, "disk_usage", lambda _p: usage._replace(free=fc.FREE_MARGIN + frames * frame_bytes))

    free_for(10)
    assert FrameCache.cacheable(avatar)[0] == 0  # 10 of 20 frames: under a second's worth (and under all of them)
    monkeypatch.setattr(fc, "MIN_FRAMES", 5)
    count, why = FrameCache.cacheable(avatar)
    assert count == 10 and "free on disk" in why
    free_for(avatar.frame_count)
    assert FrameCache.cacheable(avatar) == (avatar.frame_count, "")

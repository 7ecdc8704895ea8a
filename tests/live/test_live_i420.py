"""serve's I420 frames: composed from the decoded-frame cache, converted once into OBS's BGRA ring slot."""
import shutil

import cv2
import numpy as np
import pytest

from backend.engine import Engine
from backend.frame_cache import FrameCache
from backend.generators.base import NullGenerator
from backend.yuv import I420, FramePool, blend_region, frame_size, from_bgr, new_av_i420, packed_i420
from models.onnx_int8 import psnr
from preprocess.package import AvatarPackage
from tests.backend.test_yuv import _photo


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return psnr(a, b, peak=255.0)


def test_packed_frames_convert_without_a_copy_and_others_the_same_way():
    photo = cv2.GaussianBlur(_photo(), (0, 0), 2.0)  # smooth: what 4:2:0 keeps (the helper adds grain)
    packed = from_bgr(photo)  # one buffer, planes one after another
    flat = packed.packed()
    assert flat is not None and flat.shape == (360, 320) and not flat.flags.writeable
    assert np.shares_memory(flat, packed.y)
    want = cv2.cvtColor(cv2.cvtColor(photo, cv2.COLOR_BGR2YUV_I420), cv2.COLOR_YUV2BGRA_I420)
    slot = np.zeros((240, 320, 4), np.uint8)
    out = packed.to_bgra(dst=slot)
    assert out is slot and np.array_equal(slot, want) and (slot[:, :, 3] == 255).all()
    assert _psnr(packed.to_bgr(), photo) > 35
    # planes in separate buffers (a cross-fade's, an encoder frame's): packed first, same picture
    apart = I420(packed.y.copy(), packed.u.copy(), packed.v.copy())
    assert apart.packed() is None and np.array_equal(apart.to_bgra(), want)
    av_frame = new_av_i420(320, 240)
    for view, plane in zip((av_frame.y, av_frame.u, av_frame.v), (packed.y, packed.u, packed.v)):
        view[...] = plane
    assert np.array_equal(av_frame.to_bgra(), want)
    assert frame_size(packed) == (240, 320) == frame_size(photo)


def test_a_packed_pool_blends_into_frames_serve_converts_in_one_pass():
    pool = FramePool(packed=True)
    frame = pool.take(320, 240)
    assert frame.packed() is not None and frame.pool is pool and frame.frame is None
    base = from_bgr(_photo())
    roi, alpha = (40, 60, 100, 80), np.full((80, 100), 0.5, np.float32)
    gen = np.full((80, 100, 3), 200, np.uint8)
    blended = blend_region(base, gen, alpha, roi, pool)
    fresh = blend_region(base, gen, alpha, roi)  # the encoder's kind of frame
    assert blended.packed() is not None
    assert all(np.array_equal(a, b) for a, b in ((blended.y, fresh.y), (blended.u, fresh.u), (blended.v, fresh.v)))
    assert packed_i420(64, 32).packed().shape == (48, 64)


@pytest.fixture()
def avatar(synthetic_avatar, tmp_path):
    """A private copy without the caches other tests built (serve builds the frame cache on its first start)."""
    return AvatarPackage.open(shutil.copytree(synthetic_avatar, tmp_path / "avatar",
                                              ignore=shutil.ignore_patterns(".cache")))


def test_the_engine_shows_the_frame_cache_as_i420_and_draws_the_same_picture(avatar):
    cache = FrameCache.open_or_build(avatar, log=pytest.fail)
    bgr = Engine(avatar, NullGenerator(96), detail="off")
    yuv = Engine(avatar, NullGenerator(96), detail="off")
    assert yuv.show_i420(cache)
    for engine in (bgr, yuv):
        engine.plans = [engine.plan_idle() for _ in range(6)]
    for a, b in zip(bgr.plans, yuv.plans):
        assert a.avatar_index == b.avatar_index
        footage = yuv.footage(b)
        assert isinstance(footage, I420) and footage.packed() is not None  # the cache's own bytes: no copy
        assert np.array_equal(footage.to_bgr(), cache.frame(b.avatar_index).to_bgr())
        assert _psnr(footage.to_bgr(), bgr.footage(a)) > 40
        for plan in (a, b):  # a generated face (the null generator's: the footage's own crop) at full blend
            plan.face, plan.blend = avatar.face(plan.avatar_index, "head"), 1.0
        composed, want = yuv.compose(b), bgr.compose(a)
        assert isinstance(composed, I420) and composed.packed() is not None
        assert _psnr(composed.to_bgr(), want) > 38
        assert np.array_equal(composed.to_bgra()[:, :, :3], composed.to_bgr())


def test_without_a_cache_jpegs_decode_straight_to_i420_and_a_backdrop_or_odd_size_keeps_bgr(avatar, tmp_path):
    from preprocess.synthetic import write_synthetic_package

    engine = Engine(avatar, NullGenerator(96), detail="off")
    assert engine.show_i420(None) and FrameCache.open(avatar) is None  # no cache: PyAV's MJPEG decoder, no BGR
    plan = engine.plan_idle()
    cache = FrameCache.open_or_build(avatar, log=pytest.fail)  # built from the same decoder: the same planes
    assert np.array_equal(engine.footage(plan).to_bgr(), cache.frame(plan.avatar_index).to_bgr())
    engine = Engine(avatar, NullGenerator(96), detail="off")
    engine.compositor.backdrop = object()  # a colour, picture or transparency behind the person: BGR(A) pixels
    assert not engine.show_i420(cache) and not engine.i420
    odd = AvatarPackage.open(write_synthetic_package(tmp_path / "odd", frames=4, width=322, height=241))
    assert not Engine(odd, NullGenerator(96), detail="off").show_i420(None)


def test_serve_prepares_frames_from_the_cache_and_with_a_backdrop_converts_them_to_bgr(avatar):
    from backend.serve_app import ServeApp

    engine = Engine(avatar, NullGenerator(96), detail="off")
    ServeApp._prepare_frames(engine)
    assert engine.i420 and FrameCache.open(avatar) is not None  # built on the first start
    other = AvatarPackage.open(avatar.root)
    engine = Engine(other, NullGenerator(96), detail="off")
    engine.compositor.backdrop = object()
    ServeApp._prepare_frames(engine)
    assert not engine.i420
    cache = FrameCache.open(other)
    assert np.array_equal(other.frame(3), cache.frame(3).to_bgr())  # converted, not decoded from the JPEG
    assert not np.array_equal(other.frame(3), AvatarPackage.open(avatar.root).frame(3))


def test_a_read_only_avatar_is_served_as_i420_decoded_up_front(avatar, monkeypatch):
    from backend import frame_cache
    from backend.serve_app import ServeApp

    def refuse(*_a, **_k):
        raise OSError("read-only file system")

    monkeypatch.setattr(frame_cache.FrameCache, "build", staticmethod(refuse))
    engine = Engine(avatar, NullGenerator(96), detail="off")
    ServeApp._prepare_frames(engine)
    assert engine.i420 and FrameCache.open(avatar) is None
    monkeypatch.setattr("backend.compositor.load_i420", lambda _path: pytest.fail("decoded again while live"))
    assert isinstance(engine.footage(engine.plan_idle()), I420)


def test_without_pyav_frames_still_decode_through_bgr(avatar, monkeypatch):
    """A bare GPU host has no PyAV: the I420 path decodes to BGR and converts instead of failing."""
    import sys

    from backend.compositor import load_i420
    from backend.yuv import decode_jpeg

    monkeypatch.setitem(sys.modules, "av", None)  # `import av` raises ImportError
    assert decode_jpeg(avatar.image_path("bg", 0).read_bytes()) is None
    yuv = load_i420(avatar.image_path("bg", 0))
    assert yuv.packed() is not None and _psnr(yuv.to_bgr(), avatar.frame(0)) > 40

"""The I420 fast path of `render`: JPEG → planes without RGB, compositing on planes, exactness outside the mask."""
import cv2
import numpy as np
import pytest

from backend.compositor import Compositor
from backend.frames import FaceFrame, VideoFrame
from backend.yuv import I420, FramePool, blend_region, decode_jpeg, even_roi, from_bgr
from tests.backend.test_compositor import _face, _package


def _photo(h=240, w=320, seed=0) -> np.ndarray:
    """Smooth colourful image with some texture (JPEG-friendly, unlike pure noise)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.dstack([127 + 100 * np.sin(xx / 23), 127 + 100 * np.cos(yy / 17), 127 + 60 * np.sin((xx + yy) / 31)])
    img += np.random.default_rng(seed).normal(0, 6, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def _jpeg(img, sampling=None) -> bytes:
    params = [cv2.IMWRITE_JPEG_QUALITY, 95]
    if sampling is not None:
        params += [cv2.IMWRITE_JPEG_SAMPLING_FACTOR, sampling]
    ok, buf = cv2.imencode(".jpg", img, params)
    assert ok
    return buf.tobytes()


@pytest.mark.parametrize("sampling", [None, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_422])
def test_jpeg_decodes_to_the_planes_the_bgr_path_would_encode(sampling):
    data = _jpeg(_photo(), sampling)
    direct = decode_jpeg(data)
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    # OpenCV's BGR→I420 takes the chroma of each block's top-left pixel; the JPEG's 4:2:0 chroma (and our
    # 4:4:4→4:2:0) is the block's average, so compare with the chroma of the block-averaged image
    blocks = bgr.reshape(120, 2, 160, 2, 3).mean(axis=(1, 3)).round().astype(np.uint8)
    averaged = from_bgr(np.repeat(np.repeat(blocks, 2, axis=0), 2, axis=1))
    via_bgr = from_bgr(bgr)
    assert direct.y.shape == (240, 320) and direct.u.shape == direct.v.shape == (120, 160)
    for a, b in zip((direct.y, direct.u, direct.v), (via_bgr.y, averaged.u, averaged.v)):
        diff = np.abs(a.astype(int) - b)
        assert diff.mean() < 1.0 and diff.max() <= 6  # two roundings (and chroma filters) apart
    assert 16 <= direct.y.min() and direct.y.max() <= 235  # limited range


def test_undecodable_or_odd_jpegs_are_refused():
    assert decode_jpeg(b"not a jpeg") is None
    assert decode_jpeg(_jpeg(_photo(239, 320))) is None


def test_even_roi_covers_and_aligns():
    assert even_roi((3, 5, 10, 7), 320, 240) == (2, 4, 12, 8)
    assert even_roi((0, 0, 320, 240), 320, 240) == (0, 0, 320, 240)
    x, y, w, h = even_roi((311, 231, 9, 9), 320, 240)
    assert (x, y, x + w, y + h) == (310, 230, 320, 240)


def test_blend_region_leaves_everything_outside_the_weights_bit_identical():
    base = from_bgr(_photo())
    roi = (40, 60, 100, 80)
    alpha = np.zeros((80, 100), np.float32)
    alpha[21:60, 31:70] = 1.0  # odd edges: some 2x2 chroma blocks are half inside
    out = blend_region(base, np.full((80, 100, 3), 255, np.uint8), alpha, roi)
    y_changed = out.y != base.y
    assert y_changed[60 + 21:60 + 60, 40 + 31:40 + 70].all()
    mask = np.zeros_like(y_changed)
    mask[60 + 21:60 + 60, 40 + 31:40 + 70] = True
    assert not y_changed[~mask].any()
    block = mask.reshape(120, 2, 160, 2).any(axis=(1, 3))
    for plane, orig in ((out.u, base.u), (out.v, base.v)):
        assert np.array_equal(plane[~block], orig[~block])
    assert base.y.flags.c_contiguous and np.array_equal(base.y, from_bgr(_photo()).y)  # input untouched


@pytest.mark.parametrize("crop", ["head", "body"])
def test_compose_i420_matches_the_bgr_compositor(crop):
    pkg = _package()
    comp = Compositor(pkg)
    ff = FaceFrame(0, 0, 1, _face(pkg, crop), crop=crop, blend=1.0)
    direct = comp.compose_i420(ff)
    via_bgr = from_bgr(comp.compose(ff))
    placed = comp.placement(1, crop, pkg.face_size)
    x, y, w, h = even_roi(placed.roi, pkg.width, pkg.height)
    outside = np.ones((pkg.height, pkg.width), bool)
    outside[y:y + h, x:x + w] = False
    assert np.array_equal(direct.y[outside], via_bgr.y[outside])  # the avatar frame, exactly
    diff = np.abs(direct.y.astype(int) - via_bgr.y)[~outside]
    assert diff.mean() < 1.0 and diff.max() <= 3  # the face: same blend, rounded in another colour space


def test_silent_frames_are_the_avatar_frame_itself():
    pkg = _package()
    comp = Compositor(pkg)
    base = comp.background_i420(2)
    for ff in (FaceFrame(0, 0, 2, None), FaceFrame(0, 0, 2, _face(pkg, "head"), blend=0.0)):
        out = comp.compose_i420(ff)
        assert all(np.array_equal(a, b) for a, b in ((out.y, base.y), (out.u, base.u), (out.v, base.v)))


def test_finish_i420_and_the_encoder_frame():
    pkg = _package()
    comp = Compositor(pkg)
    video = VideoFrame(7, 3, 1, None, pending=FaceFrame(7, 3, 1, _face(pkg, "head"), blend=1.0))
    done = comp.finish_i420(video)
    assert isinstance(done.yuv, I420) and done.pending is None and (done.pts_ns, done.index) == (7, 3)
    frame = done.yuv.frame if done.yuv.frame is not None else done.yuv.copy_to_av().frame
    assert (frame.width, frame.height, frame.format.name) == (320, 240, "yuv420p")
    assert np.array_equal(frame.to_ndarray()[:240], done.yuv.y)
    bgr = comp.finish(VideoFrame(0, 0, 1, None, pending=video.pending))
    assert bgr.image.shape == (240, 320, 3)


def test_package_jpegs_decode_through_the_fast_path(synthetic_avatar):
    from preprocess.package import AvatarPackage

    pkg = AvatarPackage.open(synthetic_avatar)
    yuv = Compositor(pkg).background_i420(0)
    ref = from_bgr(pkg.frame(0))
    assert np.abs(yuv.y.astype(int) - ref.y).mean() < 1.0


def test_grey_jpegs_decode_with_neutral_chroma():
    grey = cv2.cvtColor(_photo(), cv2.COLOR_BGR2GRAY)
    ok, buf = cv2.imencode(".jpg", grey, [cv2.IMWRITE_JPEG_QUALITY, 95])
    out = decode_jpeg(buf.tobytes())
    assert (out.u == 128).all() and (out.v == 128).all()
    decoded = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)
    assert np.abs(out.y.astype(int) - from_bgr(cv2.cvtColor(decoded, cv2.COLOR_GRAY2BGR)).y).max() <= 3


def test_frame_pool_hands_frames_out_and_takes_back_only_its_own():
    pool = FramePool(keep=2)
    a = pool.take(320, 240)
    assert a.frame is not None and (a.y.shape, a.u.shape, a.v.shape) == ((240, 320), (120, 160), (120, 160))
    a.y[...] = 7  # writable views of the frame's own buffers
    assert np.array_equal(a.frame.to_ndarray()[:240], a.y)
    pool.give(a)
    pool.give(a)  # twice: still one free entry
    assert pool.take(320, 240) is a and pool.made == 1
    assert pool.take(160, 120).y.shape == (120, 160) and pool.made == 2  # another size: a new frame
    pool.give(from_bgr(_photo()))  # not from this pool: ignored
    pool.give(FramePool().take(320, 240))
    assert pool.take(320, 240) is not a and pool.made == 3
    frames = [pool.take(320, 240) for _ in range(3)]
    for f in frames:
        pool.give(f)
    assert len({id(pool.take(320, 240)) for _ in range(3)} & {id(f) for f in frames}) == 2  # keep=2


def test_blend_into_a_pooled_frame_equals_a_fresh_one():
    base = from_bgr(_photo())
    roi, alpha = (40, 60, 100, 80), np.full((80, 100), 0.5, np.float32)
    fresh = blend_region(base, np.full((80, 100, 3), 200, np.uint8), alpha, roi)
    pool = FramePool()
    stale = pool.take(320, 240)
    for plane in (stale.y, stale.u, stale.v):
        plane[...] = 255  # a reused frame still holds the previous picture
    pool.give(stale)
    pooled = blend_region(base, np.full((80, 100, 3), 200, np.uint8), alpha, roi, pool)
    assert pooled is stale or pooled.frame is stale.frame
    for a, b in ((pooled.y, fresh.y), (pooled.u, fresh.u), (pooled.v, fresh.v)):
        assert np.array_equal(a, b)


def test_the_mp4_sink_reuses_frames_and_every_frame_keeps_its_own_picture(tmp_path):
    """libx264 copies a frame inside encode(), so the sink gives frames back to be filled again; a frame
    overwritten while the encoder still read it would show another frame's level in the file."""
    import av

    from backend.frames import AudioOutFrame
    from backend.sinks.mp4 import Mp4Sink

    sink = Mp4Sink(tmp_path / "x.mp4", 320, 240, codec="libx264", audio=True)  # background worker thread
    levels = [16 + (k * 37) % 200 for k in range(40)]
    for k, level in enumerate(levels):
        yuv = sink.frame_pool.take(320, 240)
        yuv.y[...], yuv.u[...], yuv.v[...] = level, 128, 128
        sink.write(VideoFrame(k * 40_000_000, k, 0, None, yuv=yuv), AudioOutFrame(k * 40_000_000, np.zeros(640, np.float32)))
    sink.close()
    assert sink.frame_pool.made < len(levels)  # frames were reused
    with av.open(str(tmp_path / "x.mp4")) as c:
        means = [float(f.to_ndarray(format="gray").mean()) for f in c.decode(video=0)]
    assert len(means) == len(levels)
    # grey levels survive as grey levels (limited-range Y -> full-range grey is a fixed monotone map)
    expected = [(lv - 16) * 255 / 219 for lv in levels]
    assert max(abs(m - e) for m, e in zip(means, expected)) < 3.0

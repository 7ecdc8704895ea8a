import numpy as np
import pytest

from backend import placement as compositor_module
from backend.compositor import Compositor
from backend.placement import frame_to_face_affine, lower_face_mask, mouth_ring
from backend.frames import FaceFrame
from preprocess.crops import head_face_crop
from preprocess.geometry import build_geometry, raw_geometry
from preprocess.synthetic import synthetic_landmarks
from tests.backend.helpers import MemoryPackage


def _package(width=320, height=240, shift=(0.0, 0.0), frames=3, seed=0, scale=1.0):
    rng = np.random.default_rng(seed)
    lm = synthetic_landmarks(frames, width, height)
    centre = np.array([width / 2, height / 2])
    lm = (lm - centre) * scale + centre + np.asarray(shift)
    geo = build_geometry(raw_geometry(lm), width, height, 128, (0, 10, 0, 0))
    imgs = rng.integers(0, 256, size=(frames, height, width, 3), dtype=np.uint8)  # noise: any change shows
    return MemoryPackage(imgs, lm, geo.body_face_box, geo.head_affine, geo.head_face_box)


def _face(pkg, crop, value=None):
    size = pkg.head_size if crop == "heads" else pkg.face_size
    if value is None:
        return np.random.default_rng(1).integers(0, 256, (size, size, 3), dtype=np.uint8)
    return np.full((size, size, 3), value, np.uint8)


@pytest.mark.parametrize("crop", ["head", "heads", "body"])
def test_outside_the_mask_is_bit_identical(crop):
    pkg = _package()
    comp = Compositor(pkg)
    out = comp.compose(FaceFrame(0, 0, 1, _face(pkg, crop, 255), crop=crop, blend=1.0))
    placed = comp.placement(1, crop, pkg.head_size if crop == "heads" else pkg.face_size)
    x, y, w, h = placed.roi
    changed = np.any(out != pkg.frame(1), axis=2)
    assert changed.sum() > 500  # the lower face was replaced...
    inside = np.zeros_like(changed)
    inside[y:y + h, x:x + w] = True
    assert not changed[~inside].any()  # ...and nothing outside the mask's box moved
    # the changed pixels stay inside the lower-face polygon: below its top and below the eyes
    from preprocess import landmarks as L

    ys = np.nonzero(changed)[0]
    lm = pkg.track.landmarks[1]
    assert ys.min() >= L.lower_face_polygon(lm)[:, 1].min() - 2
    assert ys.min() > lm[list(L.RIGHT_EYE + L.LEFT_EYE), 1].max()


def test_blend_zero_returns_the_footage_exactly():
    pkg = _package()
    comp = Compositor(pkg)
    for ff in (FaceFrame(0, 0, 2, _face(pkg, "head"), blend=0.0), FaceFrame(0, 0, 2, None, blend=1.0)):
        out = comp.compose(ff)
        assert out.dtype == np.uint8 and np.array_equal(out, pkg.frame(2))
        assert not out.flags.writeable  # the package's own frame, shared read-only


def test_partial_blend_is_between():
    pkg = _package()
    comp = Compositor(pkg, colour=False)
    full = comp.compose(FaceFrame(0, 0, 0, _face(pkg, "head", 255), blend=1.0)).astype(int)
    half = comp.compose(FaceFrame(0, 0, 0, _face(pkg, "head", 255), blend=0.5)).astype(int)
    base = pkg.frame(0).astype(int)
    assert np.all(np.minimum(base, full) <= half) and np.all(half <= np.maximum(base, full))
    assert (half != base).any() and (half != full).any()


def test_inverse_transform_round_trips():
    """Cut the head_face crop the way preprocess does, paste it back: the frame is reproduced in the mask."""
    pkg = _package(width=640, height=480)
    smooth = np.tile(np.linspace(0, 255, 640, dtype=np.float32)[None, :, None], (480, 1, 3))
    smooth[..., 1] = np.linspace(0, 255, 480, dtype=np.float32)[:, None]
    frame = smooth.astype(np.uint8)
    pkg.crops["bg"][0] = frame
    tr = pkg.track
    crop = head_face_crop(frame, tr.head_affine[0], tr.head_face_box[0], pkg.face_size)
    pkg.crops["head"][0] = crop
    comp = Compositor(pkg, colour=False)
    out = comp.compose(FaceFrame(0, 0, 0, crop, blend=1.0)).astype(int)
    placed = comp.placement(0, "head", pkg.face_size)
    x, y, w, h = placed.roi
    err = np.abs(out - frame.astype(int))[y:y + h, x:x + w]
    assert err.max() <= 3  # resampling of a linear ramp only
    # and the affine maps landmarks into the crop consistently with preprocess
    m = frame_to_face_affine(pkg, 0, "head", pkg.face_size)
    mouth = tr.landmarks[0][13]
    fx, fy = m[:, :2] @ mouth + m[:, 2]
    assert 0 < fx < 96 and 48 < fy < 96


@pytest.mark.parametrize("shift", [(-150.0, 0.0), (150.0, 0.0), (0.0, 110.0), (0.0, -130.0), (-140.0, 100.0)])
@pytest.mark.parametrize("crop", ["head", "body"])
def test_face_at_the_frame_edge(shift, crop):
    pkg = _package(shift=shift)
    comp = Compositor(pkg)
    for value in (0, 255):
        out = comp.compose(FaceFrame(0, 0, 0, _face(pkg, crop, value), crop=crop, blend=1.0))
        assert out.shape == pkg.frame(0).shape and out.dtype == np.uint8
        x, y, w, h = comp.placement(0, crop, pkg.face_size).roi
        changed = np.any(out != pkg.frame(0), axis=2)
        inside = np.zeros_like(changed)
        inside[y:y + h, x:x + w] = True
        assert not changed[~inside].any()


def test_face_entirely_outside_is_a_no_op():
    pkg = _package(shift=(1000.0, 0.0))
    out = Compositor(pkg).compose(FaceFrame(0, 0, 0, _face(pkg, "body", 255), crop="body", blend=1.0))
    assert np.array_equal(out, pkg.frame(0))


def test_colour_matching_pulls_towards_the_skin():
    pkg = _package()
    orig = pkg.face(0, "head")
    tinted = np.clip(orig.astype(int) + 60, 0, 255).astype(np.uint8)
    plain = Compositor(pkg, colour=False).compose(FaceFrame(0, 0, 0, tinted, blend=1.0)).astype(int)
    matched = Compositor(pkg, colour=True).compose(FaceFrame(0, 0, 0, tinted, blend=1.0)).astype(int)
    base = pkg.frame(0).astype(int)
    assert np.abs(matched - base).sum() < np.abs(plain - base).sum()


def test_mouth_ring_is_the_skin_band_around_the_lips_inside_the_mask():
    size = 96
    lips = np.array([[33, 62], [48, 57], [63, 62], [48, 70]], np.float64)  # 30 px wide mouth
    mask = np.zeros((size, size), np.uint8)
    mask[40:96, 5:91] = 255
    ring = mouth_ring(lips, mask, size)
    yy, xx = np.mgrid[0:size, 0:size]
    assert not ring[62, 40:56].any()  # the lips and the 12 % band around them are left out
    assert ring[62, 33 - 10] and ring[62, 63 + 10] and ring[75, 48]  # skin a third of a mouth away
    assert not ring[62, 2] and not ring[62, 94]  # beyond 60 % of the width
    assert not ring[mask <= 128].any()  # only inside the mask
    degenerate = mouth_ring(np.zeros((0, 2)), mask, size)  # no lips: the mask's inside
    assert np.array_equal(degenerate, mask > 128)


def test_large_face_masks_drawn_at_the_work_size_match_full_size_ones(monkeypatch):
    """288/384 px masks are drawn at MASK_WORK_SIZE and scaled up (4x cheaper at 384): same shape, same soft edge."""
    size = 384
    t = np.linspace(0.0, np.pi, 40)
    jaw = np.vstack([np.stack([192 + 150 * np.cos(t), 200 + 150 * np.sin(t)], 1), [[40.0, 200.0]]])
    fast = lower_face_mask(jaw, size, size / 12)
    monkeypatch.setattr(compositor_module, "MASK_WORK_SIZE", 10_000)
    full = lower_face_mask(jaw, size, size / 12)
    diff = np.abs(fast.astype(int) - full)
    assert diff.mean() < 5 and diff.max() < 48
    assert abs(int((fast > 0).sum()) - int((full > 0).sum())) < 0.1 * (full > 0).sum()
    assert fast[0].max() == fast[-1].max() == fast[:, 0].max() == fast[:, -1].max() == 0
    assert fast[250, 192] == 255 and fast[100, 192] == 0  # inside the jaw / above the line under the nose


def test_placements_are_kept_within_a_byte_budget():
    pkg = _package(frames=3)
    size = pkg.face_size
    entry = 2 * size * size  # uint8 mask + bool ring
    comp = Compositor(pkg, cache_bytes=2 * entry)
    first = comp.placement(0, "head", size)
    assert comp.placement(0, "head", size) is first  # kept
    comp.placement(1, "head", size)
    comp.placement(2, "head", size)  # over budget: the least recently used (frame 0) goes
    assert comp._cache_bytes <= 2 * entry and len(comp._cache) == 2
    assert comp.placement(0, "head", size) is not first
    assert np.array_equal(comp.placement(0, "head", size).mask, first.mask)


def test_generated_face_of_another_size_is_accepted():
    pkg = _package()
    comp = Compositor(pkg)
    out = comp.compose(FaceFrame(0, 0, 0, np.full((192, 192, 3), 255, np.uint8), blend=1.0))
    assert (out != pkg.frame(0)).any()


def test_degenerate_geometry_leaves_the_frame_alone():
    pkg = _package()
    pkg.track.head_affine[0][:] = 0.0  # a broken track: singular affine
    pkg.track.landmarks[1][:] = np.nan
    comp = Compositor(pkg)
    for i in (0, 1):
        out = comp.compose(FaceFrame(0, 0, i, _face(pkg, "head", 255), blend=1.0))
        assert np.array_equal(out, pkg.frame(i))

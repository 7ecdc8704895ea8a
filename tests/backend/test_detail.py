"""The detail stage (backend/detail/): frames in, frames out, on small synthetic faces with a skin texture.

The faces are drawn from FaceMesh-shaped synthetic landmarks (preprocess.synthetic) at a resolution well above
the stand-in network's native size, so a round trip through the native size really loses the texture.
"""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from backend.detail import DetailStage
from backend.detail import stage as stage_module
from backend.detail.library import build_library, face_affine, round_trip
from preprocess import landmarks as L
from preprocess.geometry import build_geometry, raw_geometry
from preprocess.synthetic import mouth_openings, synthetic_landmarks
from tests.backend.helpers import MemoryPackage

W, H, SIZE, NATIVE = 320, 240, 128, 32


def _frame(lm: np.ndarray, texture: np.ndarray) -> np.ndarray:
    img = np.full((H, W, 3), (90, 110, 130), np.uint8)
    cv2.fillPoly(img, [np.round(lm[list(L.FACE_OVAL)]).astype(np.int32)], (140, 170, 225), cv2.LINE_AA)
    cv2.fillPoly(img, [np.round(lm[list(L.LIPS_OUTER)]).astype(np.int32)], (70, 60, 170), cv2.LINE_AA)
    cv2.fillPoly(img, [np.round(lm[list(L.LIPS_INNER)]).astype(np.int32)], (30, 20, 40), cv2.LINE_AA)
    return np.clip(img.astype(np.int16) + texture[..., None], 0, 255).astype(np.uint8)


def _package(frames: int = 10, still: bool = False) -> MemoryPackage:
    """A talking synthetic face with a fine skin texture that moves with the head (like pores and stubble)."""
    lm = synthetic_landmarks(frames, W, H)
    if still:
        lm = np.repeat(lm[:1], frames, axis=0)
    geo = build_geometry(raw_geometry(lm), W, H, 128, (0, 10, 0, 0))
    rng = np.random.default_rng(3)
    skin = cv2.GaussianBlur(rng.normal(0, 30, (128, 128)).astype(np.float32), (0, 0), 0.7)  # head-crop pixels
    imgs = np.stack([_frame(lm[i], np.rint(cv2.warpAffine(skin, geo.head_affine[i].astype(np.float64), (W, H),
                                                          flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP))
                                     .astype(np.int16)) for i in range(frames)])
    return MemoryPackage(imgs, lm, geo.body_face_box, geo.head_affine, geo.head_face_box)


def _real(pkg, i: int, size: int = SIZE) -> np.ndarray:
    m = face_affine(pkg, i, "head", size)
    return cv2.warpAffine(pkg.frame(i), m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _generated(real: np.ndarray, native: int = NATIVE) -> np.ndarray:
    """What a native-size network would give back, already upsampled (soft, like generator output)."""
    low = cv2.GaussianBlur(cv2.resize(real, (native, native), interpolation=cv2.INTER_AREA), (0, 0), 0.6)
    return cv2.resize(low, real.shape[:2][::-1], interpolation=cv2.INTER_CUBIC)


def _box(stage, img):
    x0, y0, x1, y1 = stage.library.box
    return img[y0:y1, x0:x1].astype(np.float64)


def _gradient_energy(img: np.ndarray) -> float:
    g = cv2.cvtColor(np.ascontiguousarray(img.astype(np.uint8)), cv2.COLOR_BGR2GRAY).astype(np.float32)
    return float((cv2.Sobel(g, cv2.CV_32F, 1, 0) ** 2 + cv2.Sobel(g, cv2.CV_32F, 0, 1) ** 2).mean())


def test_restores_the_footage_detail_of_a_held_out_frame():
    pkg = _package(12)
    stage = DetailStage(pkg, "head", NATIVE, size=SIZE, frames=range(10))
    errors, gains = [], []
    for i in (10, 11):  # not in the library
        real = _real(pkg, i)
        gen = _generated(real)
        out = stage.apply(gen, i)
        assert out.shape == (SIZE, SIZE, 3) and out.dtype == np.uint8
        r, g, o = (_box(stage, x) for x in (real, gen, out))
        errors.append((np.abs(o - r).mean(), np.abs(g - r).mean()))
        gains.append(_gradient_energy(o) / _gradient_energy(g))
    for with_detail, bicubic in errors:
        assert with_detail < bicubic  # closer to the real frame than the upsampled face
    assert min(gains) > 1.3  # and visibly sharper


def test_keeps_the_low_frequencies_the_network_chose():
    """The generated mouth shape must survive: a blur of the output equals a blur of the input."""
    pkg = _package(10)
    stage = DetailStage(pkg, "head", NATIVE, size=SIZE)
    gen = _generated(_real(pkg, 4))
    x0, y0, x1, y1 = stage.library.box
    gen[y0 + (y1 - y0) // 3: y0 + (y1 - y0) // 2, (x0 + x1) // 2 - 10:(x0 + x1) // 2 + 10] = 20  # a mouth it drew
    out = stage.apply(gen, 4)
    low = lambda x: cv2.GaussianBlur(x.astype(np.float32), (0, 0), 2.0 * SIZE / NATIVE)  # noqa: E731
    assert np.abs(low(out) - low(gen)).mean() < 1.0
    assert np.abs(out.astype(int) - gen.astype(int)).mean() > 0.5  # while detail was added


def test_any_input_size_comes_back_at_the_working_size():
    pkg = _package(6)
    stage = DetailStage(pkg, "head", NATIVE, size=SIZE)
    small = cv2.resize(_real(pkg, 2), (NATIVE, NATIVE), interpolation=cv2.INTER_AREA)
    assert stage.apply(small, 2).shape == (SIZE, SIZE, 3)


def test_a_face_no_larger_than_the_network_is_left_alone():
    pkg = _package(4)
    stage = DetailStage(pkg, "head", 96, size=96)
    assert not stage.enabled
    face = np.random.default_rng(0).integers(0, 256, (96, 96, 3), dtype=np.uint8)
    assert np.array_equal(stage.apply(face, 0), face)


def test_the_choice_is_kept_through_small_changes_and_reset_forgets_it():
    pkg = _package(10)
    stage = DetailStage(pkg, "head", NATIVE, size=SIZE)
    gen = _generated(_real(pkg, 3))
    rng = np.random.default_rng(5)
    stage.apply(gen, 3)
    first = stage._active[-1].exemplar
    for _ in range(6):  # the same mouth with a little noise, frame after frame: no switching
        noisy = np.clip(gen.astype(np.int16) + rng.integers(-2, 3, gen.shape), 0, 255).astype(np.uint8)
        stage.apply(noisy, 3)
        assert [a.exemplar for a in stage._active] == [first]
    stage.reset()
    assert stage._active == []


def test_a_new_exemplar_fades_in_instead_of_jumping():
    pkg = _package(10)
    stage = DetailStage(pkg, "head", NATIVE, size=SIZE)
    opening = mouth_openings(10)
    a, b = int(np.argmax(opening)), int(np.argmin(opening))  # the widest and the most closed mouth
    open_, closed = _generated(_real(pkg, a)), _generated(_real(pkg, b))
    stage.apply(open_, a)
    stage.apply(open_, a)
    first = stage._active[0].exemplar
    weights, fading = [], []
    for _ in range(4):
        stage.apply(closed, b)
        weights.append(round(stage._active[-1].weight, 3))
        fading.append(stage._fading is not None)
    assert stage._active[-1].exemplar != first
    assert 0.0 < weights[0] < 1.0 and fading[0]  # the new one comes in part-way, the old one's detail fades out
    assert weights == sorted(weights) and weights[-1] > 0.99
    assert not fading[-1]  # and is gone a few frames later


def test_two_exemplars_blend_and_still_restore_the_detail(monkeypatch):
    monkeypatch.setattr(stage_module, "TOP_K", 2)
    pkg = _package(12)
    stage = DetailStage(pkg, "head", NATIVE, size=SIZE, frames=range(10))
    for i in (10, 11, 10):
        real = _real(pkg, i)
        gen = _generated(real)
        out = stage.apply(gen, i)
        assert len(stage._active) == 2
        r, g, o = (_box(stage, x) for x in (real, gen, out))
        assert np.abs(o - r).mean() < np.abs(g - r).mean()


def test_the_added_energy_is_capped_at_the_missing_band():
    """Sharper than the real frames is not more real: the gain falls when the detail would exceed the band."""
    pkg = _package(10)
    stage = DetailStage(pkg, "head", NATIVE, size=SIZE)
    gen = _generated(_real(pkg, 3))
    stage.apply(gen, 3)
    band = stage._band
    loud = np.full(stage.library.box_shape, int(4 * np.sqrt(band)), np.int16)  # 16x the band's energy
    before = stage._gain
    for _ in range(10):
        stage._cap_energy(loud, 1.0)
    assert stage._gain < 0.5 * before
    quiet = np.zeros(stage.library.box_shape, np.int16)
    quiet[0, 0] = 1
    for _ in range(50):
        stage._cap_energy(quiet, 1.0)
    assert stage._gain == pytest.approx(stage_module.DETAIL_GAIN)  # never above the tuned strength


def test_alignment_precision_follows_the_thumbnail_resolution():
    pkg = _package(6)
    fine = DetailStage(pkg, "head", NATIVE, size=SIZE)
    assert fine._precision() == 1.0  # thumbnail at the network's own resolution
    coarse = DetailStage(pkg, "head", 100, size=SIZE)  # a network nearly as sharp as the crop
    assert coarse._precision() < 1.0


def test_a_poor_match_adds_less_detail():
    assert stage_module.match_weight(10.0, 20.0) == 1.0
    assert stage_module.match_weight(200.0, 20.0) < stage_module.match_weight(60.0, 20.0) < 1.0


def test_library_detail_is_what_the_native_size_loses():
    pkg = _package(6, still=True)
    lib = build_library(pkg, "head", SIZE, NATIVE)
    x0, y0, x1, y1 = lib.box
    g = cv2.cvtColor(_real(pkg, 0)[y0:y1, x0:x1], cv2.COLOR_BGR2GRAY).astype(np.float32)
    from backend.detail.library import DETAIL_OFFSET, SOFTNESS

    expected = g - round_trip(g, SIZE, NATIVE, SOFTNESS)
    got = lib.detail[0].astype(np.float32) - DETAIL_OFFSET
    assert np.abs(got - np.clip(expected, -128, 127)).max() <= 1.0
    assert lib.descriptors.shape == (len(lib), lib.descriptor_shape[0] * lib.descriptor_shape[1])


@pytest.mark.parametrize("crop", ["head", "body"])
def test_crop_spaces(crop):
    pkg = _package(6)
    stage = DetailStage(pkg, crop, NATIVE, size=SIZE)
    out = stage.apply(_generated(_real(pkg, 1) if crop == "head" else cv2.warpAffine(
        pkg.frame(1), face_affine(pkg, 1, crop, SIZE), (SIZE, SIZE))), 1)
    assert out.shape == (SIZE, SIZE, 3)


def test_the_face_before_the_detail_is_kept_for_the_change_weight():
    pkg = _package(6)
    stage = DetailStage(pkg, "head", NATIVE, size=SIZE)
    small = cv2.resize(_real(pkg, 2), (NATIVE, NATIVE), interpolation=cv2.INTER_AREA)
    out = stage.apply(small, 2)
    assert np.array_equal(stage.plain, cv2.resize(small, (SIZE, SIZE), interpolation=cv2.INTER_CUBIC))
    assert not np.array_equal(stage.plain, out)


def test_the_callers_face_is_never_written():
    pkg = _package(6)
    stage = DetailStage(pkg, "head", NATIVE, size=SIZE)
    for face in (_generated(_real(pkg, 2)), cv2.resize(_real(pkg, 2), (NATIVE, NATIVE))):
        face.setflags(write=False)  # would raise on a write
        before = face.copy()
        out = stage.apply(face, 2)
        assert np.array_equal(face, before) and out is not face


def test_the_compositor_matches_colours_at_the_network_size_before_the_stage():
    """Once, on the network's own face (a tenth of the stage's pixels), so the band the stage adds -- the
    footage's own, in its colours -- is not rescaled and the compositor does not match the big face again."""
    from backend.compositor import Compositor
    from backend.frames import FaceFrame

    pkg = _package(6)
    comp = Compositor(pkg)
    comp.detail = DetailStage(pkg, "head", NATIVE, size=SIZE)
    small = cv2.resize(_real(pkg, 2), (NATIVE, NATIVE), interpolation=cv2.INTER_AREA)
    tinted = np.clip(small.astype(np.int16) + np.array([25, -15, 10], np.int16), 0, 255).astype(np.uint8)
    seen, apply = [], comp.detail.apply
    comp.detail.apply = lambda face, index: seen.append(face) or apply(face, index)
    ff = comp._with_detail(FaceFrame(pts_ns=0, index=2, avatar_index=2, face=tinted))
    assert ff.colour_matched and seen[0].shape[:2] == (NATIVE, NATIVE) and ff.face.shape[:2] == (SIZE, SIZE)

    def off(face):
        return np.abs(face.reshape(-1, 3).mean(0) - small.reshape(-1, 3).mean(0)).max()

    assert off(seen[0]) < off(tinted) / 3, "the tint is gone before the stage sees the face"
    out = comp.compose(FaceFrame(pts_ns=0, index=2, avatar_index=2, face=tinted))
    assert out.shape == pkg.frame(2).shape


def test_a_face_larger_than_its_placement_lands_where_the_network_size_face_does():
    """With the stage the compositor places the face at the network's size (mask, change weight, original crop
    stay small) and warps only the detailed face's pixels from the stage's size: the same geometry."""
    from backend.compositor import Compositor
    from backend.frames import FaceFrame

    pkg = _package(6)
    comp = Compositor(pkg)
    small = cv2.resize(_real(pkg, 2), (NATIVE, NATIVE), interpolation=cv2.INTER_AREA)
    small = np.clip(small.astype(np.int16) + 12, 0, 255).astype(np.uint8)  # a change the layer must show
    big = cv2.resize(small, (SIZE, SIZE), interpolation=cv2.INTER_CUBIC)
    scaled = comp.compose(FaceFrame(pts_ns=0, index=2, avatar_index=2, face=big, plain=small, colour_matched=True))
    assert {key[2] for key in comp._cache} == {NATIVE}, "every placement at the network's size"
    # the same face placed at its own size (mask and change weight at SIZE): the same picture
    placed = Compositor(pkg).compose(FaceFrame(pts_ns=0, index=2, avatar_index=2, face=big, colour_matched=True))
    changed = np.any(placed != pkg.frame(2), axis=2)
    assert changed.sum() > 100
    err = placed[changed].astype(np.float64) - scaled[changed]
    assert 10 * np.log10(255.0 ** 2 / max(1e-9, float(np.mean(err ** 2)))) > 35.0


def test_without_colour_matching_the_detailed_face_is_still_placed_at_the_network_size():
    """The small layer (layer_size) does not depend on the colour match: only a match still to come after an
    enhancer needs the stage-size layer."""
    from backend.compositor import Compositor
    from backend.frames import FaceFrame

    pkg = _package(6)
    comp = Compositor(pkg, colour=False)
    comp.detail = DetailStage(pkg, "head", NATIVE, size=SIZE)
    small = cv2.resize(_real(pkg, 2), (NATIVE, NATIVE), interpolation=cv2.INTER_AREA)
    ff = comp._with_detail(FaceFrame(pts_ns=0, index=2, avatar_index=2, face=small))
    assert ff.face.shape[:2] == (SIZE, SIZE) and ff.plain.shape[:2] == (NATIVE, NATIVE)
    out = comp.compose(FaceFrame(pts_ns=0, index=2, avatar_index=2, face=small))
    assert out.shape == pkg.frame(2).shape
    assert {key[2] for key in comp._cache} == {NATIVE}, "every placement at the network's size"

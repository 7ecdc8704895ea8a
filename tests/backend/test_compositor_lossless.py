"""The compositor is lossless with a perfect generator (issue 19).

Why: a generator that returns the avatar frame's own face crop changed nothing, so the composite must be the
frame itself, to >= 40 dB PSNR in the blended face region: at the crop's native size and at 96 px (scaled
up), on a face larger than the crop (the 1080p case) with noise texture (a beard: any blur shows). Then any
seam left in a real render is the generator's, not the compositor's.
"""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from backend.compositor import Compositor
from backend.frames import FaceFrame
from preprocess.geometry import build_geometry, raw_geometry
from preprocess.synthetic import synthetic_landmarks
from tests.backend.helpers import MemoryPackage

TARGET_DB = 40.0


def _package(width=480, height=480, scale=2.2, frames=2):
    """A face ~2x larger in the frame than the 128 px head crop, textured like a beard."""
    rng = np.random.default_rng(3)
    lm = synthetic_landmarks(frames, width, height)
    centre = np.array([width / 2, height / 2])
    lm = (lm - centre) * scale + centre
    geo = build_geometry(raw_geometry(lm), width, height, 128, (0, 10, 0, 0))
    noise = rng.integers(0, 256, size=(frames, height, width, 3), dtype=np.uint8)
    smooth = cv2.GaussianBlur(noise[0], (0, 0), 12)
    imgs = np.stack([cv2.addWeighted(n, 0.5, smooth, 0.5, 0) for n in noise])  # skin tone + fine texture
    return MemoryPackage(imgs, lm, geo.body_face_box, geo.head_affine, geo.head_face_box)


def _face_mask(comp: Compositor, index: int, crop: str, size: int) -> tuple[np.ndarray, tuple]:
    placed = comp.placement(index, crop, size)
    x, y, w, h = placed.roi
    mask = cv2.warpAffine(placed.mask, placed.roi_to_face, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
    return mask > 0, placed.roi


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean())
    return 99.0 if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def _perfect_face(pkg, crop: str, index: int, size: int) -> np.ndarray:
    face = pkg.image(crop, index)
    if face.shape[0] != size:
        face = cv2.resize(face, (size, size), interpolation=cv2.INTER_AREA)
    return face


@pytest.mark.parametrize("crop,size", [("heads", 128), ("head", 96), ("heads", 96), ("body", 96)])
def test_perfect_generator_gives_back_the_frame(crop, size):
    pkg = _package()
    comp = Compositor(pkg)
    out = comp.compose(FaceFrame(0, 0, 1, _perfect_face(pkg, crop, 1, size), crop=crop, blend=1.0))
    mask, (x, y, w, h) = _face_mask(comp, 1, crop, size)
    assert mask.sum() > 2000
    db = _psnr(out[y:y + h, x:x + w][mask], pkg.frame(1)[y:y + h, x:x + w][mask])
    assert db >= TARGET_DB, f"{crop} at {size} px: {db:.1f} dB"


def test_perfect_generator_on_the_i420_path():
    from backend.yuv import from_bgr

    pkg = _package()
    comp = Compositor(pkg)
    out = comp.compose_i420(FaceFrame(0, 0, 0, _perfect_face(pkg, "heads", 0, 128), crop="heads", blend=1.0))
    mask, (x, y, w, h) = _face_mask(comp, 0, "heads", 128)
    ref = from_bgr(pkg.frame(0))
    db = _psnr(out.y[y:y + h, x:x + w][mask], ref.y[y:y + h, x:x + w][mask])
    assert db >= TARGET_DB, f"{db:.1f} dB"


def test_a_changed_mouth_still_shows():
    """Keeping the frame's detail must not keep the old mouth: a redrawn region comes out as drawn."""
    pkg = _package()
    comp = Compositor(pkg, colour=False)
    face = pkg.image("heads", 1).copy()
    lm = comp.placement(1, "heads", 128)  # the mouth in face space, from the package landmarks
    from preprocess import landmarks as L
    from preprocess.geometry import apply_affine

    mouth = apply_affine(lm.frame_to_face, np.asarray(pkg.track.landmarks[1], np.float64)[list(L.LIPS_OUTER)])
    cx, cy = mouth.mean(0)
    cv2.circle(face, (int(cx), int(cy)), 6, (0, 0, 255), -1)
    out = comp.compose(FaceFrame(0, 0, 1, face, crop="heads", blend=1.0))
    centre = apply_affine(np.linalg.inv(np.vstack([lm.frame_to_face, [0, 0, 1]]))[:2], np.array([[cx, cy]]))[0]
    px = out[int(round(centre[1])), int(round(centre[0]))].astype(int)
    assert px[2] > 200 and px[0] < 60 and px[1] < 60


def test_colours_are_left_alone_when_the_generator_kept_the_ring():
    """The mouth engine returns the footage's own skin around a new mouth: matching mean/std over a ring that
    now holds its teeth washed its lips out (issue 19); a tinted face (a network's colour drift) is matched."""
    from backend.placement import colour_match

    pkg = _package()
    comp = Compositor(pkg)
    placed = comp.placement(1, "heads", 128)
    original = pkg.image("heads", 1)
    new_mouth = original.copy()
    ys, xs = np.nonzero(placed.ring)
    cy, cx = int(ys.mean()), int(xs.mean())
    cv2.ellipse(new_mouth, (cx, cy), (14, 8), 0, 0, 360, (235, 235, 235), -1)  # teeth over part of the ring
    assert np.array_equal(colour_match(new_mouth, original, placed.ring), new_mouth)
    tinted = np.clip(original.astype(int) + 30, 0, 255).astype(np.uint8)
    assert not np.array_equal(colour_match(tinted, original, placed.ring), tinted)

"""The realism benchmark's measures see what people saw (issue 19): smears, washed-out texture, lip colour."""
from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.realism_metrics import lip_colour, patch_boxes, patch_stats, psnr_in_mask, ssim  # noqa: E402
from synthetic import landmarks_for  # noqa: E402


def _textured(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = np.full((160, 160, 3), (120, 150, 200), np.uint8)
    return np.clip(base.astype(int) + rng.integers(-20, 21, base.shape), 0, 255).astype(np.uint8)


def test_identical_patches_score_perfectly():
    img = _textured()
    box = patch_boxes(landmarks_for(4.0), img.shape)["cheek_l"]
    s = patch_stats(img, img, box)
    assert s["ssim"] > 0.999 and s["de"] < 1e-6 and abs(s["tex"] - 1.0) < 1e-6


def test_a_smear_and_a_wash_are_seen():
    img = _textured()
    lm = landmarks_for(4.0)
    boxes = patch_boxes(lm, img.shape)
    x0, y0, x1, y1 = boxes["cheek_r"]
    smeared = img.copy()
    smeared[y0:y1, x0:x1] = (40, 50, 60)  # dark hair over the cheek
    s = patch_stats(smeared, img, boxes["cheek_r"])
    assert s["ssim"] < 0.5 and s["de"] > 20
    washed = cv2.GaussianBlur(img, (0, 0), 2.0)  # a beard washed out
    assert patch_stats(washed, img, boxes["jaw_l"])["tex"] < 0.5


def test_lip_colour_ignores_a_few_teeth_pixels():
    img = _textured()
    lm = landmarks_for(8.0)
    t = np.linspace(0, 2 * np.pi, 20, endpoint=False)
    from preprocess import landmarks as L

    lm[list(L.LIPS_OUTER)] = np.stack([80 - 18 * np.cos(t), 110 - 9 * np.sin(t)], 1)
    lm[list(L.LIPS_INNER)] = np.stack([80 - 14 * np.cos(t), 110 - 4 * np.sin(t)], 1)
    cv2.fillPoly(img, [np.round(lm[list(L.LIPS_OUTER)]).astype(np.int32)], (60, 50, 180))
    base = lip_colour(img, lm)
    teeth = img.copy()
    teeth[104:106, 70:90] = 250
    assert np.linalg.norm(lip_colour(teeth, lm) - base) < 2.0


def test_psnr_in_mask():
    a = _textured()
    mask = np.zeros(a.shape[:2], bool)
    mask[40:80, 40:80] = True
    assert psnr_in_mask(a, a, mask) == 99.0
    b = a.copy()
    b[~mask] = 0  # outside the mask does not count
    assert psnr_in_mask(b, a, mask) == 99.0
    assert ssim(a[..., 0], a[..., 0]) > 0.999

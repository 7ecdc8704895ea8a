"""The mouth transplant moves only the mouth, aligned and in the shown frame's colours; the chooser minds pose.

Why (issue 19): the first transplant pasted another frame's whole lower face, so its hair, background and jaw
outline showed as smears and ghost jaws, and its lips' colour jumped between frames.
"""
from __future__ import annotations

import cv2
import numpy as np

from backend.mouth.chooser import FrameChooser
from backend.mouth.geometry import pose_features
from backend.mouth.geometry import eye_distance
from backend.mouth.transfer import blend_region, transfer_mouth
from preprocess import landmarks as L
from synthetic import draw_face, landmarks_for


def _lip_mean(img: np.ndarray, lm: np.ndarray) -> np.ndarray:
    m = np.zeros(img.shape[:2], np.uint8)
    cv2.fillPoly(m, [np.round(lm[list(L.LIPS_OUTER)]).astype(np.int32)], 255)
    cv2.fillPoly(m, [np.round(lm[list(L.LIPS_INNER)]).astype(np.int32)], 0)
    return np.array(cv2.mean(img, m)[:3])


def test_only_the_mouth_moves_and_nothing_of_the_source_outside_it():
    target_lm, source_lm = landmarks_for(2.0), landmarks_for(12.0, dx=3.0)
    target, source = draw_face(2.0, 0), draw_face(12.0, 1, dx=3.0)
    source[95:125, 20:45] = (10, 10, 10)  # "hair" over the source's cheek, beside its mouth
    out = transfer_mouth(target, target_lm, source, source_lm)
    changed = np.abs(out.astype(int) - target.astype(int)).max(-1) > 2
    ys, xs = np.nonzero(changed)
    assert ys.size > 50  # the mouth opened...
    assert ys.min() > 93 and ys.max() < 140  # ...between the nose base and the chin
    assert xs.min() > 40 and xs.max() < 120  # ...and not out at the cheeks or the jaw outline
    assert not changed[95:125, 20:40].any()  # the source's hair never shows


def _face_with_lips(opening: float, lip_bgr, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A textured face whose lips are drawn exactly where its LIPS_OUTER / LIPS_INNER landmarks say."""
    lm = landmarks_for(opening)
    t = np.linspace(0, 2 * np.pi, len(L.LIPS_OUTER), endpoint=False)
    lm[list(L.LIPS_OUTER)] = np.stack([80 - 18 * np.cos(t), 114 - (opening / 2 + 5) * np.sin(t)], 1)
    lm[list(L.LIPS_INNER)] = np.stack([80 - 14 * np.cos(t), 114 - (opening / 2 + 0.5) * np.sin(t)], 1)
    img = draw_face(opening, 0)
    rng = np.random.default_rng(seed)
    img = np.clip(img.astype(int) + rng.integers(-6, 7, img.shape), 0, 255).astype(np.uint8)  # skin texture
    cv2.fillPoly(img, [np.round(lm[list(L.LIPS_OUTER)]).astype(np.int32)], lip_bgr)
    cv2.fillPoly(img, [np.round(lm[list(L.LIPS_INNER)]).astype(np.int32)], (30, 20, 40))
    return img, lm


def test_lips_take_the_shown_frames_lip_tone():
    target, target_lm = _face_with_lips(3.0, (50, 40, 170), 0)  # red lipstick
    pale, source_lm = _face_with_lips(10.0, (85, 80, 185), 1)  # the source frame's lips look pale
    out = transfer_mouth(target, target_lm, pale, source_lm)
    assert np.abs(_lip_mean(pale, source_lm) - _lip_mean(target, target_lm)).max() > 30
    assert np.abs(_lip_mean(out, source_lm) - _lip_mean(target, target_lm)).max() < 12
    inner = np.zeros(out.shape[:2], np.uint8)
    cv2.fillPoly(inner, [np.round(source_lm[list(L.LIPS_INNER)]).astype(np.int32)], 255)
    assert cv2.countNonZero(inner) > 20  # the source's open mouth came along


def test_same_frame_transplant_is_nearly_the_frame():
    lm = landmarks_for(6.0)
    img = draw_face(6.0, 0)
    out = transfer_mouth(img, lm, img, lm)
    assert np.abs(out.astype(int) - img.astype(int)).max() <= 1


def test_pose_features_see_a_turned_head_but_not_the_mouth():
    base = landmarks_for(2.0)
    opened = base.copy()
    opened[list(L.LIPS_INNER) + list(L.LIPS_OUTER)] += (0.0, 4.0)  # only the mouth moves
    turned = base.copy()
    turned[[1, 2, 4]] += (6.0, 0.0)  # the nose moves across the face: a yaw
    p = pose_features(np.stack([base, opened, turned]))
    assert np.linalg.norm(p[1] - p[0]) < 1e-5
    assert np.linalg.norm(p[2] - p[0]) > 0.1


def test_chooser_prefers_a_source_in_the_shown_frames_pose():
    desc = np.array([[0.1, 0.5, 0.2], [0.3, 0.5, 0.3], [0.3, 0.5, 0.3], [0.1, 0.5, 0.2]], np.float32)
    pose = np.array([[0.2, 0], [1, 0], [0, 0], [0, 0]], np.float32)  # frame 1 is turned away, 0 a little
    ch = FrameChooser(desc, np.full(3, 0.05, np.float32), np.ones(4, bool), pose=pose, pose_weight=1.0)
    assert ch.choose(np.array([[0.3, 0.5, 0.3]], np.float32), np.array([3]))[0] == 2
    ch.reset()
    # the shown frame itself is a candidate: when its own mouth fits best, nothing is transplanted
    assert ch.choose(np.array([[0.1, 0.5, 0.2]], np.float32), np.array([3]))[0] == 3


def _lip_median(img: np.ndarray, lm: np.ndarray) -> np.ndarray:
    m = np.zeros(img.shape[:2], np.uint8)
    cv2.fillPoly(m, [np.round(lm[list(L.LIPS_OUTER)]).astype(np.int32)], 255)
    cv2.fillPoly(m, [np.round(lm[list(L.LIPS_INNER)]).astype(np.int32)], 0)
    m = cv2.erode(m, np.ones((3, 3), np.uint8))
    return np.median(img[m > 0].astype(np.float64), axis=0)


def test_open_mouths_lips_take_a_closed_frames_tone_with_teeth_and_landmarks_off():
    """An open source mouth (lighter lips, white teeth) under landmarks a pixel off its lips (the package's are
    smoothed over time and lag a fast mouth), onto a closed target: the transplanted lips' median colour is the
    target's."""
    target, target_lm = _face_with_lips(2.0, (55, 45, 165), 0)
    source, source_lm = _face_with_lips(12.0, (90, 85, 195), 1)  # lighter lips
    inner = np.zeros(source.shape[:2], np.uint8)
    cv2.fillPoly(inner, [np.round(source_lm[list(L.LIPS_INNER)]).astype(np.int32)], 255)
    source[(inner > 0) & (np.arange(source.shape[0])[:, None] < 112)] = (225, 230, 235)  # upper teeth
    off = source_lm.copy()
    off[list(L.LIPS_OUTER) + list(L.LIPS_INNER)] += (0.0, 1.0)
    out = transfer_mouth(target, target_lm, source, off)
    got, want = _lip_median(out, source_lm), _lip_median(target, target_lm)
    assert np.abs(_lip_median(source, source_lm) - want).max() > 25
    assert np.abs(got - want).max() <= 4, (got, want)


def test_tone_match_is_a_shift_and_never_washes_texture_out():
    """The colour match moves colours, never contrast: the transplanted mouth keeps the source's fine texture
    (a gain below 1 was what washed lips and teeth out in the first version). Measured off the lip contours,
    where the lips' shift meets the skin's and the image has real edges."""
    target, target_lm = _face_with_lips(3.0, (50, 40, 170), 0)
    source, source_lm = _face_with_lips(10.0, (85, 80, 185), 1)  # pale lips: a large shift
    rng = np.random.default_rng(3)
    source = np.clip(source.astype(int) + rng.integers(-15, 16, source.shape), 0, 255).astype(np.uint8)
    out = transfer_mouth(target, target_lm, source, source_lm)
    _, soft = blend_region(out.shape[:2], target_lm, source_lm, eye_distance(target_lm))
    away = np.where(soft > 0.99, 255, 0).astype(np.uint8)  # only the transplanted pixels, not the blend
    assert cv2.countNonZero(away) > 200
    for poly in (L.LIPS_OUTER, L.LIPS_INNER):
        cv2.polylines(away, [np.round(source_lm[list(poly)]).astype(np.int32)], True, 0, thickness=5)
    hf = lambda img: (lambda g: g - cv2.GaussianBlur(g, (0, 0), 1.0))(img.astype(np.float32))  # noqa: E731
    keep = away > 0
    ratio = (hf(out)[keep] ** 2).mean() / (hf(source)[keep] ** 2).mean()
    assert 0.9 < ratio < 1.1, ratio
    lips = np.zeros_like(away)
    cv2.fillPoly(lips, [np.round(source_lm[list(L.LIPS_OUTER)]).astype(np.int32)], 255)
    cv2.fillPoly(lips, [np.round(source_lm[list(L.LIPS_INNER)]).astype(np.int32)], 0)
    assert np.abs(out[lips > 0].astype(int) - source[lips > 0]).mean() > 10  # and the lips' colour did move

"""A tiny, valid avatar package with a drawn face: for tests of everything downstream of preprocess.

No detector and no media file: the face is a skin ellipse with eyes and a mouth whose opening changes every
frame, drawn from a FaceMesh-shaped landmark set (the lip, eye, jaw, nose and iris indices of
`preprocess.landmarks` hold the points they would on a real face; the other mesh points are scattered inside
the face). Geometry goes through the same `preprocess.geometry` code as the real pipeline, so boxes, the
tilted-head affine and the head-face box are consistent with the pixels. Two frames show the face covered
(valid=False, geometry filled from neighbours), like an occlusion in a real recording. Builds in ~0.1 s.
"""
from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

from preprocess import landmarks as L
from preprocess.geometry import build_geometry, raw_geometry
from preprocess.writer import (base_manifest, frame_crops, make_folders, write_face_det, write_frame,
                               write_manifest, write_wav16)

SAMPLE_RATE = 16000
FPS = 25


def mouth_openings(frames: int) -> np.ndarray:
    """Per-frame mouth opening in [0, 1] (0 = closed): a slow talk-like rhythm, deterministic."""
    t = np.arange(frames) / FPS
    return np.clip(0.5 + 0.5 * np.sin(2 * np.pi * 3.0 * t) * np.cos(2 * np.pi * 0.7 * t), 0.0, 1.0)


def _canonical_face(opening: float, rng_points: np.ndarray) -> np.ndarray:
    """(478, 2) landmarks of an upright face with half-width 1, centre at the origin, y down."""
    pts = rng_points.copy()

    def ring(indices, cx, cy, w, h_down, h_up, mirror=False):
        n = len(indices)
        for k, idx in enumerate(indices):
            t = 2 * math.pi * k / n
            s = math.sin(t)
            x = cx + (w * math.cos(t) if mirror else -w * math.cos(t))
            pts[idx] = (x, cy + (h_down if s > 0 else h_up) * s)

    n_oval = len(L.FACE_OVAL)
    for k, idx in enumerate(L.FACE_OVAL):
        t = 2 * math.pi * k / n_oval
        pts[idx] = (math.sin(t), -1.3 * math.cos(t))
    ring(L.RIGHT_EYE, -0.4, -0.25, 0.18, 0.08, 0.09)
    ring(L.LEFT_EYE, 0.4, -0.25, 0.18, 0.08, 0.09, mirror=True)
    for iris, cx in ((L.RIGHT_IRIS, -0.4), (L.LEFT_IRIS, 0.4)):
        pts[iris[0]] = (cx, -0.25)
        for k, idx in enumerate(iris[1:]):
            a = math.pi / 2 * k
            pts[idx] = (cx + 0.06 * math.cos(a), -0.25 + 0.06 * math.sin(a))
    gap = 0.25 * opening / 2  # inner half-height
    ring(L.LIPS_INNER, 0.0, 0.62, 0.28, gap, gap)
    ring(L.LIPS_OUTER, 0.0, 0.62, 0.36, gap + 0.1, gap + 0.08)
    pts[L.NOSE_TIP] = (0.0, 0.2)
    pts[L.SUBNASALE] = (0.0, 0.34)
    return pts


def synthetic_landmarks(frames: int, width: int, height: int, seed: int = 0) -> np.ndarray:
    """(frames, 478, 2) frame-pixel landmarks of a slightly tilted, gently moving face."""
    rng = np.random.default_rng(seed)
    r = np.sqrt(rng.uniform(0, 1, L.NUM_LANDMARKS)) * 0.7
    a = rng.uniform(0, 2 * np.pi, L.NUM_LANDMARKS)
    scatter = np.stack([r * np.cos(a), 1.2 * r * np.sin(a)], axis=1)
    scale = 0.2 * min(width, height)
    out = np.empty((frames, L.NUM_LANDMARKS, 2))
    for i, opening in enumerate(mouth_openings(frames)):
        theta = math.radians(6.0 + 2.0 * math.sin(i / 7.0))
        rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
        centre = np.array([width / 2 + 5 * math.sin(i / 5.0), height / 2 + 3 * math.cos(i / 6.0)])
        out[i] = _canonical_face(float(opening), scatter) * scale @ rot.T + centre
    return out


def _draw(width: int, height: int, lm: np.ndarray, covered: bool) -> np.ndarray:
    y = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
    x = np.linspace(0, 1, width, dtype=np.float32)[None, :, None]
    img = (np.array([90, 70, 50], np.float32) + 60 * y + 40 * x * np.array([1, 0.5, 0], np.float32))
    img = np.ascontiguousarray(img.astype(np.uint8))

    def poly(idx, color):
        cv2.fillPoly(img, [np.round(lm[list(idx)]).astype(np.int32)], color, lineType=cv2.LINE_AA)

    poly(L.FACE_OVAL, (140, 170, 225))
    for eye, iris in ((L.RIGHT_EYE, L.RIGHT_IRIS), (L.LEFT_EYE, L.LEFT_IRIS)):
        poly(eye, (245, 245, 245))
        c = lm[iris[0]]
        rad = max(1, int(round(np.linalg.norm(lm[iris[1]] - c))))
        cv2.circle(img, (int(round(c[0])), int(round(c[1]))), rad, (60, 40, 30), -1, cv2.LINE_AA)
    nose = np.round(lm[[L.NOSE_TIP, L.SUBNASALE]]).astype(np.int32)
    cv2.line(img, tuple(map(int, nose[0])), tuple(map(int, nose[1])), (100, 120, 180), 2, cv2.LINE_AA)
    poly(L.LIPS_OUTER, (70, 60, 170))
    poly(L.LIPS_INNER, (30, 20, 40))
    if covered:  # a hand in front of the face: the detector would find nothing here
        x1, y1 = lm[:, 0].min() - 5, lm[:, 1].min() - 5
        x2, y2 = lm[:, 0].max() + 5, lm[:, 1].max() + 5
        cv2.rectangle(img, (int(x1), int(y1)), (int(x2), int(y2)), (120, 120, 120), -1)
    return img


def invalid_frames(frames: int) -> list[int]:
    """The frames drawn with the face covered (valid=False)."""
    if frames < 6:
        return []
    return [frames // 3, frames // 3 + 1]


def _audio(frames: int) -> np.ndarray:
    n = int(round(frames / FPS * SAMPLE_RATE))
    t = np.arange(n) / SAMPLE_RATE
    rng = np.random.default_rng(1)
    envelope = np.repeat(mouth_openings(frames), SAMPLE_RATE // FPS)[:n]
    envelope = np.pad(envelope, (0, n - len(envelope)))
    voice = 0.5 * np.sin(2 * np.pi * 180 * t) + 0.25 * np.sin(2 * np.pi * 360 * t) + 0.1 * rng.standard_normal(n)
    return (0.4 * envelope * voice).astype(np.float32)


def write_synthetic_package(out_dir: str | Path, frames: int = 20, width: int = 320, height: int = 240,
                            face_size: int = 96, head_size: int = 128, with_audio: bool = True) -> Path:
    """Write the package into `out_dir` (created; must not already hold another package) and return it."""
    pkg = Path(out_dir)
    make_folders(pkg)
    pads = (0, 10, 0, 0)
    true_lm = synthetic_landmarks(frames, width, height)
    bad = invalid_frames(frames)
    valid = np.ones(frames, bool)
    valid[bad] = False
    lm = true_lm.copy()
    good = np.flatnonzero(valid)
    for i in bad:  # fill from the nearest valid frame, like the real tracker
        lm[i] = true_lm[good[np.argmin(np.abs(good - i))]]
    geometry = build_geometry(raw_geometry(lm), width, height, head_size, pads)
    for i in range(frames):
        frame = _draw(width, height, true_lm[i], covered=not valid[i])
        write_frame(pkg, i, frame_crops(frame, geometry, i, face_size, head_size))
    write_face_det(pkg, geometry, lm, valid)
    if with_audio:
        write_wav16(pkg / "audio.wav", _audio(frames))
    write_manifest(pkg, base_manifest(
        frame_count=frames, width=width, height=height, face_size=face_size, head_size=head_size,
        detector="synthetic", detector_version="1", landmark_count=L.NUM_LANDMARKS, pads=list(pads), smooth=0,
        source="synthetic", source_sha256=None, has_audio=bool(with_audio), duration_s=frames / FPS,
        valid_fraction=float(valid.mean()), face_crop="head_face",
    ))
    return pkg

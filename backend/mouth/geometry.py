"""Landmarks in crop space, and the similarity transform that aligns one crop's face to another's.

Why: the mouth engine works inside the same crop the compositor pastes back (`heads`, `head` or `body`), so it
needs each frame's FaceMesh landmarks in that crop's pixels; and a mouth taken from another frame must be
moved onto the current frame's face, using points that do not move when the mouth does (nose, eyes).
"""
from __future__ import annotations

import numpy as np

from preprocess import landmarks as L


# FaceMesh points that stay put while the mouth moves: nose bridge/tip/wings, eye corners.
STABLE_POINTS = (1, 4, 5, 6, 195, 197, 168, 98, 327, 33, 263, 133, 362)
# The lower face: the same region the compositor replaces (jaw line, closed just under the nose).
LOWER_FACE = L.JAW + (L.SUBNASALE,)
UPPER_INNER_LIP, LOWER_INNER_LIP = 13, 14
INNER_CORNERS = (78, 308)
OUTER_CORNERS = (61, 291)
LOWER_OUTER_LIP, CHIN = 17, 152
EYE_OUTER = (33, 263)


def crop_landmarks(package, i: int, crop: str, size: int) -> np.ndarray:
    """Frame i's landmarks (K,2) in the pixels of crop `crop` ('heads' | 'head' | 'body') at `size`.

    Uses the compositor's own frame -> crop affine, so the mouth engine and the paste-back agree to the pixel.
    """
    from backend.placement import frame_to_face_affine

    m = np.asarray(frame_to_face_affine(package, i, crop, size), np.float64)
    lm = np.asarray(package.track.landmarks[i], np.float64)
    return (lm @ m[:, :2].T + m[:, 2]).astype(np.float32)


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """(2,3) least-squares similarity (rotation, uniform scale, shift) mapping src points onto dst (Umeyama)."""
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    ms, md = src.mean(0), dst.mean(0)
    s, d = src - ms, dst - md
    var = (s ** 2).sum() / len(s)
    if var < 1e-9:
        return np.array([[1, 0, md[0] - ms[0]], [0, 1, md[1] - ms[1]]], np.float32)
    cov = d.T @ s / len(s)
    u, sig, vt = np.linalg.svd(cov)
    e = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        e[1, 1] = -1
    r = u @ e @ vt
    scale = np.trace(np.diag(sig) @ e) / var
    t = md - scale * r @ ms
    return np.hstack([scale * r, t[:, None]]).astype(np.float32)


def apply_affine(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return (np.asarray(pts, np.float32) @ m[:, :2].T + m[:, 2]).astype(np.float32)


# Points whose layout shows the head's pose but not the mouth: nose tip and base, the face outline beside the
# eyes and down the cheeks to the jaw angle (the jaw below it and the chin move with the mouth: left out).
POSE_POINTS = (1, 2, 4, 234, 454, 93, 323, 132, 361, 10, 151)


def pose_features(landmarks: np.ndarray) -> np.ndarray:
    """(N,K,2) landmarks -> (N,2P) head-pose shape: POSE_POINTS after aligning the eyes and nose bridge of every
    frame onto the first valid one, in eye distances.

    Why: a mouth taken from a frame with another pose carries that pose's cheek and jaw outline; the chooser
    prefers source frames whose pose shape is close to the frame being shown.
    """
    lm = np.asarray(landmarks, np.float64)
    n = len(lm)
    out = np.zeros((n, 2 * len(POSE_POINTS)), np.float32)
    stable = list(STABLE_POINTS)
    ok = np.all(np.isfinite(lm[:, stable + list(POSE_POINTS)]), axis=(1, 2)) if n else np.zeros(0, bool)
    if not ok.any():
        return out
    ref = lm[int(np.argmax(ok)), stable]
    ref = (ref - ref.mean(0)) / max(float(np.linalg.norm(ref[9] - ref[10])), 1e-6)  # eye corners 33, 263 = 1
    for i in np.flatnonzero(ok):
        m = similarity(lm[i, stable], ref).astype(np.float64)
        out[i] = (lm[i, list(POSE_POINTS)] @ m[:, :2].T + m[:, 2]).ravel()
    return out


def eye_distance(lm: np.ndarray) -> float:
    return float(max(np.linalg.norm(lm[EYE_OUTER[0]] - lm[EYE_OUTER[1]]), 1e-3))

"""From FaceMesh landmarks to the three crops of an avatar package (body_face box, upright head, head_face box).

Everything here is plain NumPy on (N, K, 2) landmark arrays so that the real pipeline and the synthetic test
avatar compute geometry the same way. The split is deliberate:

* `raw_geometry` turns landmarks into a few *parameters* per frame (box edges, head centre/angle/size);
* the caller smooths those parameter tracks over time (smoothing 8 numbers is cheaper and steadier than
  smoothing 478 points, and it never blurs the lip shape that the mouth engine measures);
* `build_geometry` turns smoothed parameters into the stored arrays.

Head alignment follows the usual eye/mouth recipe: the crop's x axis is the eye-to-eye direction corrected by
the eye-to-mouth direction (so a tilted head comes out upright), its centre sits slightly below the eyes, and
its side is twice the larger of 2x eye distance and 1.8x eye-to-mouth distance, i.e. the whole head with some
hair and neck: what face enhancers expect.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from preprocess import landmarks as L

# The Wav2Lip detector (S3FD) box spans cheek to cheek and chin to mid-forehead; the FaceMesh oval reaches
# the hairline, so its top is trimmed by this fraction of its height to look like the detector's box.
DETECTOR_TOP_TRIM = 0.15


def detector_like_box(landmarks: np.ndarray) -> np.ndarray:
    """(..., 4) x1,y1,x2,y2 box shaped like the face detector box Wav2Lip was trained with."""
    oval = np.asarray(landmarks, dtype=np.float64)[..., L.FACE_OVAL, :]
    x1, x2 = oval[..., 0].min(-1), oval[..., 0].max(-1)
    y1, y2 = oval[..., 1].min(-1), oval[..., 1].max(-1)
    y1 = y1 + DETECTOR_TOP_TRIM * (y2 - y1)
    return np.stack([x1, y1, x2, y2], axis=-1)


def pad_box(box: np.ndarray, pads: tuple[float, float, float, float], width: float, height: float,
            scale: np.ndarray | float = 1.0) -> np.ndarray:
    """Wav2Lip padding: pads=(top, bottom, left, right) in pixels (times `scale`), clipped to the image."""
    top, bottom, left, right = (float(p) for p in pads)
    box = np.array(box, dtype=np.float64, copy=True)
    s = np.asarray(scale, dtype=np.float64)
    box[..., 0] = np.clip(box[..., 0] - left * s, 0, width)
    box[..., 1] = np.clip(box[..., 1] - top * s, 0, height)
    box[..., 2] = np.clip(box[..., 2] + right * s, 0, width)
    box[..., 3] = np.clip(box[..., 3] + bottom * s, 0, height)
    return box


def head_params(landmarks: np.ndarray) -> np.ndarray:
    """(..., 4) [centre_x, centre_y, angle_rad, side_px] of the upright head square in frame pixels."""
    right_eye, left_eye = L.eye_centers(landmarks)
    mouth = (np.asarray(landmarks, dtype=np.float64)[..., L.MOUTH_CORNER_A, :]
             + np.asarray(landmarks, dtype=np.float64)[..., L.MOUTH_CORNER_B, :]) / 2
    eye_avg = (right_eye + left_eye) / 2
    eye_to_eye = left_eye - right_eye  # points to the image right for an upright frontal face
    eye_to_mouth = mouth - eye_avg  # points down
    # x axis: eye direction plus the mouth direction turned by -90 deg (down -> right).
    x_axis = eye_to_eye + np.stack([eye_to_mouth[..., 1], -eye_to_mouth[..., 0]], axis=-1)
    angle = np.arctan2(x_axis[..., 1], x_axis[..., 0])
    half = np.maximum(2.0 * np.linalg.norm(eye_to_eye, axis=-1), 1.8 * np.linalg.norm(eye_to_mouth, axis=-1))
    centre = eye_avg + 0.1 * eye_to_mouth
    return np.concatenate([centre, angle[..., None], (2.0 * half)[..., None]], axis=-1)


def head_affine(params: np.ndarray, head_size: int) -> np.ndarray:
    """(..., 2, 3) frame -> head crop affine from head params; the head is rotated by -angle (made upright)."""
    params = np.asarray(params, dtype=np.float64)
    cx, cy, angle, side = (params[..., i] for i in range(4))
    s = head_size / np.maximum(side, 1e-6)
    c, si = np.cos(angle) * s, np.sin(angle) * s
    half = head_size / 2.0
    m = np.zeros(params.shape[:-1] + (2, 3))
    m[..., 0, 0], m[..., 0, 1] = c, si
    m[..., 1, 0], m[..., 1, 1] = -si, c
    m[..., 0, 2] = half - (c * cx + si * cy)
    m[..., 1, 2] = half - (-si * cx + c * cy)
    return m


def apply_affine(affine: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Map (..., K, 2) points with (..., 2, 3) affines."""
    a = np.asarray(affine, dtype=np.float64)
    p = np.asarray(points, dtype=np.float64)
    return np.einsum("...ij,...kj->...ki", a[..., :2], p) + a[..., None, :, 2]


def invert_affine(affine: np.ndarray) -> np.ndarray:
    """(..., 2, 3) inverse of (..., 2, 3) affines."""
    a = np.asarray(affine, dtype=np.float64)
    lin_inv = np.linalg.inv(a[..., :2])
    t = -np.einsum("...ij,...j->...i", lin_inv, a[..., 2])
    return np.concatenate([lin_inv, t[..., None]], axis=-1)


@dataclass
class RawGeometry:
    """Per-frame parameters before temporal smoothing (all (N, 4) float64)."""

    body_box: np.ndarray  # detector-like box in frame pixels, before pads
    head: np.ndarray  # centre x, centre y, angle, side
    head_face_box: np.ndarray  # detector-like box in head-crop pixels *relative to head size 1* (unitless)

    def stacked(self) -> np.ndarray:
        return np.concatenate([self.body_box, self.head, self.head_face_box], axis=-1)

    @classmethod
    def from_stacked(cls, a: np.ndarray) -> "RawGeometry":
        return cls(a[..., 0:4], a[..., 4:8], a[..., 8:12])


def raw_geometry(landmarks: np.ndarray) -> RawGeometry:
    """Parameters for (N, K, 2) landmarks; the head-face box is measured in the upright head (unit size)."""
    lm = np.asarray(landmarks, dtype=np.float64)
    head = head_params(lm)
    unit = head_affine(head, 1)
    face_in_head = detector_like_box(apply_affine(unit, lm))
    return RawGeometry(detector_like_box(lm), head, face_in_head)


@dataclass
class Geometry:
    """What face_det.npz stores besides landmarks/valid."""

    body_face_box: np.ndarray  # (N, 4) frame pixels, padded and clipped
    head_affine: np.ndarray  # (N, 2, 3) frame -> head crop
    head_face_box: np.ndarray  # (N, 4) head-crop pixels, padded and clipped


def build_geometry(raw: RawGeometry, width: int, height: int, head_size: int,
                   pads: tuple[float, float, float, float]) -> Geometry:
    """Final boxes and affines from (smoothed) parameters. Pads are frame pixels; in the head crop they are
    scaled by the head's zoom so the padded region covers the same part of the face."""
    body = pad_box(raw.body_box, pads, width, height)
    aff = head_affine(raw.head, head_size)
    zoom = head_size / np.maximum(raw.head[..., 3], 1e-6)
    hf = pad_box(raw.head_face_box * head_size, pads, head_size, head_size, scale=zoom)
    return Geometry(body.astype(np.float32), aff.astype(np.float32), hf.astype(np.float32))


def box_to_size_affine(box: np.ndarray, size: int) -> np.ndarray:
    """(2, 3) affine mapping the box x1,y1,x2,y2 onto a size x size square (the crop -> resize step)."""
    x1, y1, x2, y2 = (float(v) for v in box)
    sx = size / max(x2 - x1, 1e-6)
    sy = size / max(y2 - y1, 1e-6)
    return np.array([[sx, 0.0, -x1 * sx], [0.0, sy, -y1 * sy]])


def compose_affine(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """outer ∘ inner for (2, 3) affines (apply inner first)."""
    o = np.vstack([np.asarray(outer, dtype=np.float64), [0, 0, 1]])
    i = np.vstack([np.asarray(inner, dtype=np.float64), [0, 0, 1]])
    return (o @ i)[:2]

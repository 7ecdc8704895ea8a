"""Cutting the three crops of one frame, and writing JPEGs the way every package folder expects them.

The head_face crop is warped straight from the full frame (head affine composed with the box-to-square
scale) so it is resampled once, not twice; that keeps the 96 px face the network sees as sharp as possible.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from preprocess.geometry import box_to_size_affine, compose_affine

JPEG_QUALITY = 95


def body_face_crop(frame: np.ndarray, box: np.ndarray, size: int) -> np.ndarray:
    """Wav2Lip-style: the axis-aligned box (already clipped to the frame) resized to size x size."""
    h, w = frame.shape[:2]
    x1, y1, x2, y2 = (int(round(float(v))) for v in box)
    x1, y1 = min(max(x1, 0), w - 1), min(max(y1, 0), h - 1)
    x2, y2 = max(min(x2, w), x1 + 1), max(min(y2, h), y1 + 1)
    return cv2.resize(frame[y1:y2, x1:x2], (size, size), interpolation=cv2.INTER_AREA)


def head_crop(frame: np.ndarray, affine: np.ndarray, head_size: int) -> np.ndarray:
    """The upright head square; outside the frame the border pixels are repeated (enhancers dislike black)."""
    return warp_antialiased(frame, affine, head_size)


def warp_antialiased(frame: np.ndarray, affine: np.ndarray, size: int) -> np.ndarray:
    """warpAffine to a size x size square without aliasing when it shrinks: a bilinear warp samples only
    4 pixels, so a 3x reduction would skip most of them; we warp to k*size and area-average down by k."""
    m = np.asarray(affine, np.float64)
    zoom = np.sqrt(abs(float(np.linalg.det(m[:, :2]))))
    k = int(min(4, max(1, np.ceil(1.0 / max(zoom, 1e-6) - 0.25))))
    if k == 1:
        return cv2.warpAffine(frame, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    big = cv2.warpAffine(frame, m * k + np.array([[0, 0, (k - 1) / 2], [0, 0, (k - 1) / 2]]), (size * k, size * k),
                         flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return cv2.resize(big, (size, size), interpolation=cv2.INTER_AREA)


def head_face_affine(affine: np.ndarray, head_face_box: np.ndarray, face_size: int) -> np.ndarray:
    """(2, 3) frame -> head_face crop (face_size square)."""
    return compose_affine(box_to_size_affine(head_face_box, face_size), affine)


def head_face_crop(frame: np.ndarray, affine: np.ndarray, head_face_box: np.ndarray, face_size: int) -> np.ndarray:
    return warp_antialiased(frame, head_face_affine(affine, head_face_box, face_size), face_size)


def write_jpeg(path: Path, image: np.ndarray, quality: int = JPEG_QUALITY) -> None:
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError(f"{path}: JPEG encoding failed")
    Path(path).write_bytes(buf.tobytes())

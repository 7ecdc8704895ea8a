"""Move the lower face of one avatar frame onto another frame's crop.

Why: the mouth engine shows a real mouth image from elsewhere in the footage; the head, eyes and background of
the current frame must stay exactly as they are. The source crop is aligned to the target by points that do
not move with the mouth, blended in through a feathered lower-face mask, and its colour nudged to the
target's so lighting changes across the footage do not show as a patch.
"""
from __future__ import annotations

import cv2
import numpy as np

from backend.mouth.geometry import LOWER_FACE, STABLE_POINTS, apply_affine, eye_distance, similarity


def lower_face_mask(shape: tuple[int, int], polygons: list[np.ndarray], feather: float) -> np.ndarray:
    """(H,W) float32 in [0,1]: union of the polygons, eroded then blurred so the edge is soft and inside."""
    mask = np.zeros(shape, np.uint8)
    for poly in polygons:
        cv2.fillPoly(mask, [np.round(poly).astype(np.int32)], 255)
    k = max(1, int(round(feather)))
    mask = cv2.erode(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * k + 1, 2 * k + 1)))
    return cv2.GaussianBlur(mask, (0, 0), max(0.5, k / 1.5)).astype(np.float32) * np.float32(1.0 / 255.0)


def transfer_lower_face(target: np.ndarray, target_lm: np.ndarray, source: np.ndarray,
                        source_lm: np.ndarray) -> np.ndarray:
    """Target crop with its lower face replaced by the source crop's (same size, uint8 BGR).

    Only the bounding box of the lower face is touched (a third of the crop), which keeps it ~1 ms per frame.
    """
    h, w = target.shape[:2]
    m = similarity(source_lm[list(STABLE_POINTS)], target_lm[list(STABLE_POINTS)]).astype(np.float64)
    src_poly = apply_affine(m, source_lm[list(LOWER_FACE)])
    tgt_poly = target_lm[list(LOWER_FACE)]
    feather = 0.06 * eye_distance(target_lm)
    both = np.vstack([src_poly, tgt_poly])
    pad = int(feather) + 2
    x0, y0 = (np.floor(both.min(0)).astype(int) - pad).clip(0)
    x1, y1 = np.ceil(both.max(0)).astype(int) + pad + 1
    x1, y1 = min(int(x1), w), min(int(y1), h)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return target
    shift = np.array([x0, y0], np.float32)
    m_roi = m.copy()
    m_roi[:, 2] -= (x0, y0)
    warped = cv2.warpAffine(source, m_roi, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_REPLICATE)
    mask = lower_face_mask((y1 - y0, x1 - x0), [tgt_poly - shift, src_poly - shift], feather)
    base = np.ascontiguousarray(target[y0:y1, x0:x1])
    inside = (mask > 0.5).astype(np.uint8)
    if cv2.countNonZero(inside) > 16:  # colour match: shift the source's mean colour to the target's in the mask
        delta = np.clip(np.array(cv2.mean(base, inside)[:3]) - np.array(cv2.mean(warped, inside)[:3]), -25, 25)
        if np.abs(delta).max() >= 0.5:
            warped = cv2.add(warped, (float(delta[0]), float(delta[1]), float(delta[2]), 0.0))  # saturating
    blended = cv2.blendLinear(warped, base, mask, 1.0 - mask)
    out = target.copy()
    out[y0:y1, x0:x1] = blended
    return out

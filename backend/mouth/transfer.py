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


def lower_face_mask(size: int, polygons: list[np.ndarray], feather: float) -> np.ndarray:
    """(S,S) float32 in [0,1]: union of the polygons, eroded then blurred so the edge is soft and inside."""
    mask = np.zeros((size, size), np.uint8)
    for poly in polygons:
        cv2.fillPoly(mask, [np.round(poly).astype(np.int32)], 255)
    k = max(1, int(round(feather)))
    mask = cv2.erode(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * k + 1, 2 * k + 1)))
    blur = 2 * (2 * k) + 1
    return cv2.GaussianBlur(mask, (blur, blur), 0).astype(np.float32) / 255.0


def transfer_lower_face(target: np.ndarray, target_lm: np.ndarray, source: np.ndarray,
                        source_lm: np.ndarray) -> np.ndarray:
    """Target crop with its lower face replaced by the source crop's (same size, uint8 BGR)."""
    size = target.shape[0]
    m = similarity(source_lm[list(STABLE_POINTS)], target_lm[list(STABLE_POINTS)])
    warped = cv2.warpAffine(source, m, (target.shape[1], size), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_REPLICATE)
    src_poly = apply_affine(m, source_lm[list(LOWER_FACE)])
    tgt_poly = target_lm[list(LOWER_FACE)]
    feather = 0.06 * eye_distance(target_lm)
    mask = lower_face_mask(size, [tgt_poly, src_poly], feather)
    inside = mask > 0.5
    if inside.sum() > 16:  # colour match: shift the source's mean colour to the target's inside the mask
        shift = target[inside].mean(0) - warped[inside].mean(0)
        warped = np.clip(warped.astype(np.float32) + np.clip(shift, -25, 25), 0, 255)
    out = target.astype(np.float32) + mask[..., None] * (warped.astype(np.float32) - target)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)

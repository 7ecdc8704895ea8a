"""Move the mouth of one avatar frame onto another frame's crop, and nothing else.

Why this shape (issue 19): the first version moved the whole lower face (jaw line up to the nose) of the
source frame, through the union of both frames' jaw polygons. Wherever the two frames differed in pose that
union held another frame's hair, background or jaw contour (a dark smear over the cheek, a second jawline),
and a mean-colour shift over that region made the lips jump between pale and red. So now:
- the source is aligned to the target by points next to the mouth that do not move with it (nose base,
  nostrils, nose bridge, eye corners), weighted toward the nose base, where the alignment matters;
- only the lips and the skin right around them are replaced: both frames' lips, grown by a margin, cut
  below the nose, and kept inside *both* frames' face outlines shrunk inward, so the blend region holds
  skin in both frames and never a contour, hair or background;
- colour is matched by a shift only (never a gain, which washes texture out): the skin around the lips
  takes the target's skin tone, the lips the target's own lip tone (lipstick, lighting), so the lips keep the
  footage's colour frame after frame (backend/mouth/tone.py).
"""
from __future__ import annotations

import cv2
import numpy as np

from backend.mouth.geometry import apply_affine, eye_distance, similarity
from backend.mouth.tone import LipMasks, disk as _disk, fill as _fill, lip_masks, match_colour
from preprocess import landmarks as L

# Points that do not move with the mouth; the nose base (2, 98, 327, 94) is repeated: it sits next to the
# mouth, so errors there show most.
ALIGN_POINTS = (2, 2, 2, 98, 98, 327, 327, 94, 94, 1, 4, 5, 195, 197, 6, 168, 33, 263, 133, 362)
LIPS_OUTER = list(L.LIPS_OUTER)
FACE_OVAL = list(L.FACE_OVAL)
SUBNASALE, UPPER_LIP_TOP = 2, 0

MARGIN = 0.11  # skin kept around the lips, in eye distances (the skin that moves with the mouth)
INSET = 0.07  # how far inside each face outline the blend must stay, in eye distances
FEATHER = 0.03  # blur sigma of the blend edge, in eye distances


def blend_region(shape, t_lm: np.ndarray, s_lm: np.ndarray, eyes: float, t_masks: LipMasks | None = None,
                 s_masks: LipMasks | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(hard uint8 region, soft float32 mask) in ROI pixels, for target and aligned source landmarks (and their
    lip masks, when already drawn)."""
    t_outer = t_masks.outer if t_masks is not None else _fill(shape, t_lm[LIPS_OUTER])
    s_outer = s_masks.outer if s_masks is not None else _fill(shape, s_lm[LIPS_OUTER])
    lips = cv2.bitwise_or(t_outer, s_outer)
    region = cv2.dilate(lips, _disk(MARGIN * eyes))
    # below the nose: a horizontal cut 30 % of the way from the subnasale to the higher upper lip (the crop is
    # upright, so horizontal is across the face)
    top = min(float(t_lm[UPPER_LIP_TOP][1]), float(s_lm[UPPER_LIP_TOP][1]))
    cut = float(t_lm[SUBNASALE][1]) + 0.3 * max(top - float(t_lm[SUBNASALE][1]), 0.0)
    sigma = max(0.7, FEATHER * eyes)
    region[: max(0, int(np.ceil(cut + 2 * sigma)))] = 0  # the blur's tail ends at the cut
    inside = cv2.bitwise_and(_fill(shape, t_lm[FACE_OVAL]), _fill(shape, s_lm[FACE_OVAL]))
    inside = cv2.erode(inside, _disk(INSET * eyes + 2.5 * sigma))
    hard = cv2.bitwise_and(region, inside)
    soft = cv2.GaussianBlur(hard.astype(np.float32) * np.float32(1 / 255.0), (0, 0), sigma)
    return hard, soft


def transfer_mouth(target: np.ndarray, target_lm: np.ndarray, source: np.ndarray, source_lm: np.ndarray) -> np.ndarray:
    """Target crop with its lips (and the skin right around them) replaced by the source crop's, aligned.

    Same size, uint8 BGR. Only a box around the mouth is touched (~2 ms of one core per frame at 256 px).
    """
    h, w = target.shape[:2]
    idx = list(ALIGN_POINTS)
    m = similarity(source_lm[idx], target_lm[idx]).astype(np.float64)
    s_lm = apply_affine(m, source_lm)
    eyes = eye_distance(target_lm)
    pts = np.vstack([target_lm[LIPS_OUTER], s_lm[LIPS_OUTER]])
    pad = int(np.ceil((MARGIN + 4 * FEATHER) * eyes)) + 2
    x0, y0 = (np.floor(pts.min(0)).astype(int) - pad).clip(0)
    x1, y1 = np.ceil(pts.max(0)).astype(int) + pad + 1
    x1, y1 = min(int(x1), w), min(int(y1), h)
    if x1 - x0 < 4 or y1 - y0 < 4 or not np.all(np.isfinite(m)):
        return target
    shift = np.array([x0, y0], np.float32)
    t_roi, s_roi = target_lm - shift, s_lm - shift
    m_roi = m.copy()
    m_roi[:, 2] -= (x0, y0)
    warped = cv2.warpAffine(source, m_roi, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_REPLICATE)
    base = target[y0:y1, x0:x1]
    shape = (y1 - y0, x1 - x0)
    t_masks, s_masks = lip_masks(shape, t_roi, eyes), lip_masks(shape, s_roi, eyes)
    hard, soft = blend_region(shape, t_roi, s_roi, eyes, t_masks, s_masks)
    if not hard.any():
        return target
    matched = match_colour(warped, base, t_masks, s_masks, hard, eyes)
    a = soft[..., None]
    out = target.copy()
    out[y0:y1, x0:x1] = np.clip(matched * a + base.astype(np.float32) * (1 - a) + 0.5, 0, 255).astype(np.uint8)
    return out

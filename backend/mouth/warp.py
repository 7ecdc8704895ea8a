"""The lowest-quality mouth: open and close the current frame's own lips by warping them.

Why: an avatar with no usable speech footage (no audio track, or a still image) has no mouth images to choose
from. A PNGTuber-style flap is what streamers accept with zero setup; this does it on the real face: the
lower lip and jaw slide down by the wanted opening (upper lip stays), and the gap is shaded like a mouth
interior, with soft edges so no seam shows.
"""
from __future__ import annotations

import cv2
import numpy as np

from preprocess.mouth_calibration import mouth_descriptor
from backend.mouth.geometry import (CHIN, INNER_CORNERS, LOWER_INNER_LIP, LOWER_OUTER_LIP, OUTER_CORNERS,
                                    UPPER_INNER_LIP, eye_distance)

MOUTH_INTERIOR_BGR = np.array([30, 26, 62], np.float32)


def warp_mouth(crop: np.ndarray, lm: np.ndarray, opening: float) -> np.ndarray:
    """Return `crop` with the inner-lip gap set to `opening` (descriptor units: gap / eye distance)."""
    eyes = eye_distance(lm)
    current = float(mouth_descriptor(lm[None])[0, 0])  # the same measure the calibration uses
    extra = (opening - current) * eyes  # pixels the lower lip moves down (negative = closes)
    if abs(extra) < 0.5:
        return crop
    h, w = crop.shape[:2]
    # the new gap opens at the top edge of the lower lip: upper lip and any visible teeth stay put. FaceMesh
    # puts the inner lower-lip point a little into the lip when teeth show, hence the step back toward 13.
    upper_y, lower_y = float(lm[UPPER_INNER_LIP][1]), float(lm[LOWER_INNER_LIP][1])
    lip_y = lower_y - 0.25 * max(lower_y - upper_y, 0.0)
    cx = float(lm[INNER_CORNERS[0]][0] + lm[INNER_CORNERS[1]][0]) / 2.0
    half_w = max(abs(float(lm[OUTER_CORNERS[1]][0] - lm[OUTER_CORNERS[0]][0])) / 2.0, 2.0)
    half_inner = max(abs(float(lm[INNER_CORNERS[1]][0] - lm[INNER_CORNERS[0]][0])) / 2.0 * 0.75, 1.5)
    chin_y = float(lm[CHIN][1])
    lower_lip_y = max(float(lm[LOWER_OUTER_LIP][1]), lip_y + 1.0)
    reach = max(chin_y - lip_y, 4.0) * 1.5  # the jaw moves; the neck below it fades out

    # a bounded region around the mouth keeps the cost small at any crop size
    x0, x1 = int(max(0, cx - 2.2 * half_w)), int(min(w, cx + 2.2 * half_w + 1))
    y0, y1 = int(max(0, lip_y - 0.5 * half_w - max(extra, 0))), int(min(h, lip_y + reach + abs(extra) + 2))
    if x1 - x0 < 4 or y1 - y0 < 4:
        return crop
    xs = np.arange(x0, x1, dtype=np.float32)
    ys = np.arange(y0, y1, dtype=np.float32)
    u = (xs - cx) / (1.6 * half_w)
    wx = np.clip(1.0 - u ** 2, 0.0, 1.0) ** 1.5  # the jaw: strongest at the centre, zero past the cheeks
    ug = (xs - cx) / half_inner
    gap_x = np.sqrt(np.clip(1.0 - ug ** 2, 0.0, 1.0))  # the opening: a lens between the inner corners
    below = ys - lip_y
    fall = np.clip(1.0 - (ys - lower_lip_y) / max(reach - (lower_lip_y - lip_y), 1.0), 0.0, 1.0)
    wy = np.where(below < 0, 0.0, np.where(ys <= lower_lip_y, 1.0, fall)).astype(np.float32)
    # inverse map: a pixel at y shows what was at y - disp (approximately inverse for smooth fields)
    shape_x = np.maximum(wx, gap_x) if extra > 0 else wx
    disp = extra * wy[:, None] * shape_x[None, :]
    map_x = np.broadcast_to(xs[None, :], disp.shape).astype(np.float32)
    map_y = (ys[:, None] - disp).astype(np.float32)
    if extra > 0:  # pixels inside the new gap sample the lip line, not what is above it
        under = ys[:, None] >= lip_y
        map_y = np.where(under, np.maximum(map_y, np.float32(lip_y)), map_y).astype(np.float32)
    region = cv2.remap(crop, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    if extra > 0:  # shade the opened gap like a mouth interior (soft-edged, darkest in the middle)
        gap = extra * gap_x[None, :]
        t = (ys[:, None] - lip_y) / np.maximum(gap, 1e-3)
        soft = np.clip(np.minimum(t, 1.0 - t) * np.minimum(gap, 8.0) / 1.5, 0.0, 1.0)
        sides = np.clip((half_inner - np.abs(xs - cx)) / 2.0, 0.0, 1.0)[None, :]
        alpha = (soft * sides * np.clip(gap - 0.5, 0.0, 1.0) * 0.92)[..., None]
        shade = MOUTH_INTERIOR_BGR * (0.6 + 0.8 * np.clip(t, 0.0, 1.0))[..., None]  # darker under the teeth
        region = np.clip(region.astype(np.float32) * (1 - alpha) + shade * alpha, 0, 255).astype(np.uint8)
    out = crop.copy()
    out[y0:y1, x0:x1] = region
    return out

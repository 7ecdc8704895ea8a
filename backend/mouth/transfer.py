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
  takes the target's skin tone, each lip the target's own tone of that lip (the median of its reddest pixels:
  lipstick, lighting), so the lips keep the footage's colour frame after frame.
"""
from __future__ import annotations

import cv2
import numpy as np

from backend.mouth.geometry import apply_affine, eye_distance, similarity
from preprocess import landmarks as L

# Points that do not move with the mouth; the nose base (2, 98, 327, 94) is repeated: it sits next to the
# mouth, so errors there show most.
ALIGN_POINTS = (2, 2, 2, 98, 98, 327, 327, 94, 94, 1, 4, 5, 195, 197, 6, 168, 33, 263, 133, 362)
LIPS_OUTER = list(L.LIPS_OUTER)
LIPS_INNER = list(L.LIPS_INNER)
FACE_OVAL = list(L.FACE_OVAL)
SUBNASALE, UPPER_LIP_TOP = 2, 0

MARGIN = 0.11  # skin kept around the lips, in eye distances (the skin that moves with the mouth)
INSET = 0.07  # how far inside each face outline the blend must stay, in eye distances
FEATHER = 0.03  # blur sigma of the blend edge, in eye distances
MAX_SHIFT = 40.0  # largest colour shift per channel (a bad landmark must not paint the mouth)


def _disk(r: float) -> np.ndarray:
    k = max(1, int(round(r)))
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * k + 1, 2 * k + 1))


def _fill(shape, poly: np.ndarray) -> np.ndarray:
    m = np.zeros(shape, np.uint8)
    cv2.fillPoly(m, [np.round(poly * 4).astype(np.int32)], 255, lineType=cv2.LINE_8, shift=2)
    return m


def blend_region(shape, t_lm: np.ndarray, s_lm: np.ndarray, eyes: float) -> tuple[np.ndarray, np.ndarray]:
    """(hard uint8 region, soft float32 mask) in ROI pixels, for target and aligned source landmarks."""
    lips = cv2.bitwise_or(_fill(shape, t_lm[LIPS_OUTER]), _fill(shape, s_lm[LIPS_OUTER]))
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


def _mean(img: np.ndarray, mask: np.ndarray) -> np.ndarray | None:
    if cv2.countNonZero(mask) < 12:
        return None
    return np.array(cv2.mean(img, mask)[:3], np.float32)


def _median(img: np.ndarray, mask: np.ndarray) -> np.ndarray | None:
    """Per-channel median: a few teeth or skin pixels inside a landmark contour do not move it."""
    px = img[mask > 0]
    if len(px) < 12:
        return None
    return np.partition(px, len(px) // 2, axis=0)[len(px) // 2].astype(np.float32)


# Each lip as a closed polygon: its outer contour from corner to corner, then its inner contour back.
UPPER_LIP = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291, 308, 415, 310, 311, 312, 13, 82, 81, 80, 191, 78)
LOWER_LIP = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 308, 324, 318, 402, 317, 14, 87, 178, 88, 95, 78)


def lip_band(shape, lm: np.ndarray, eyes: float, lip: tuple[int, ...] | None = None) -> np.ndarray:
    """One lip (UPPER_LIP / LOWER_LIP) or both (outer contour minus the mouth opening), pulled in from its
    edges by 2 % of the eye distance (FaceMesh's lip contours are a pixel or two off at crop resolution)."""
    if lip is None:
        band = cv2.subtract(_fill(shape, lm[LIPS_OUTER]), _fill(shape, lm[LIPS_INNER]))
    else:
        band = _fill(shape, lm[list(lip)])
    thin = cv2.erode(band, _disk(0.02 * eyes))
    return thin if cv2.countNonZero(thin) >= 12 else band


def lip_tone(img: np.ndarray, lip: np.ndarray, eyes: float) -> np.ndarray | None:
    """Median colour of the reddest 40 % of the pixels in and just around a lip polygon.

    Why by colour: the package's landmarks are smoothed over time, and on a mouth that opens fast they sit a
    few pixels off, so a landmark band holds mouth interior or skin too; measured that way an open source
    mouth's lips read dark and the "match" painted them pale (issue 19). The red-most pixels are lip in any
    frame, so both frames are measured alike.
    """
    area = cv2.dilate(lip, _disk(0.03 * eyes))
    px = img[area > 0].astype(np.float32)
    if len(px) < 20:
        return None
    redness = px[:, 2] - 0.5 * (px[:, 0] + px[:, 1])  # an a*-like axis: lips are redder than skin, teeth, inside
    k = int(0.6 * len(px))
    red = px[redness >= np.partition(redness, k)[k]]
    if len(red) < 8:
        return None
    return np.partition(red, len(red) // 2, axis=0)[len(red) // 2]  # per-channel median (upper one)


def match_colour(warped: np.ndarray, base: np.ndarray, t_lm: np.ndarray, s_lm: np.ndarray, hard: np.ndarray,
                 eyes: float) -> np.ndarray:
    """`warped` shifted (no gain) so its skin has the target's skin tone and each lip the target's tone of that
    lip (an open mouth often shades the upper lip: one shift for both lips left it brown)."""
    shape = hard.shape
    near_lips = cv2.dilate(cv2.bitwise_or(_fill(shape, t_lm[LIPS_OUTER]), _fill(shape, s_lm[LIPS_OUTER])),
                           _disk(0.03 * eyes))
    skin = cv2.subtract(hard, near_lips)
    mt, ms = _mean(base, skin), _mean(warped, skin)
    d_skin = np.clip(mt - ms, -MAX_SHIFT, MAX_SHIFT) if mt is not None and ms is not None else np.zeros(3, np.float32)
    shift = np.broadcast_to(d_skin, warped.shape).astype(np.float32)
    sigma = max(0.6, 0.012 * eyes)
    for lip in (UPPER_LIP, LOWER_LIP):
        lt = lip_tone(base, _fill(shape, t_lm[list(lip)]), eyes)
        ls = lip_tone(warped, _fill(shape, s_lm[list(lip)]), eyes)
        if lt is None or ls is None:
            lt, ls = _median(base, lip_band(shape, t_lm, eyes)), _median(warped, lip_band(shape, s_lm, eyes))
        d_lip = np.clip(lt - ls, -MAX_SHIFT, MAX_SHIFT) if lt is not None and ls is not None else d_skin
        # where the source's lip now is its shift applies, elsewhere (skin, teeth, mouth interior) the skin's
        w = cv2.GaussianBlur(_fill(shape, s_lm[list(lip)]), (0, 0), sigma).astype(np.float32) * np.float32(1 / 255.0)
        shift = shift + w[..., None] * (d_lip - d_skin)[None, None, :]
    return np.clip(warped.astype(np.float32) + shift, 0, 255)


def transfer_mouth(target: np.ndarray, target_lm: np.ndarray, source: np.ndarray, source_lm: np.ndarray) -> np.ndarray:
    """Target crop with its lips (and the skin right around them) replaced by the source crop's, aligned.

    Same size, uint8 BGR. Only a box around the mouth is touched (~0.5 ms per frame at 256 px).
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
    hard, soft = blend_region((y1 - y0, x1 - x0), t_roi, s_roi, eyes)
    if not hard.any():
        return target
    matched = match_colour(warped, base, t_roi, s_roi, hard, eyes)
    a = soft[..., None]
    out = target.copy()
    out[y0:y1, x0:x1] = np.clip(matched * a + base.astype(np.float32) * (1 - a) + 0.5, 0, 255).astype(np.uint8)
    return out

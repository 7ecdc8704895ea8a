"""Where a generated face goes in the frame, and with which weights: the compositor's geometry and masks.

Everything here depends only on the avatar frame and the crop space (the face -> frame affine, the feathered
lower-face mask, the ring of skin around the mouth, the region of interest), or is a per-pixel weight of the
face layer (colour match, how much the generator changed): pure functions, frames in and arrays out, so the
compositor (backend/compositor.py) can cache them per avatar frame and test them on their own.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from preprocess.geometry import apply_affine, box_to_size_affine, compose_affine

CROP_SPACES = ("head", "heads", "body")


@dataclass(frozen=True)
class FacePlacement:
    """Everything about one avatar frame and crop space that does not depend on the generated pixels."""

    size: int  # face-space side in pixels
    frame_to_face: np.ndarray  # (2, 3) float64
    mask: np.ndarray  # (S, S) uint8 feathered lower-face mask in face space
    ring: np.ndarray  # (S, S) bool: skin around the mouth, for colour statistics
    roi: tuple[int, int, int, int]  # x, y, w, h in the frame (the mask's bounding box), w = 0 if off-frame
    roi_to_face: np.ndarray  # (2, 3) float64: ROI pixel → face pixel (for warpAffine with WARP_INVERSE_MAP)

    @property
    def nbytes(self) -> int:
        """Memory it holds (the compositor keeps placements within a byte budget)."""
        return self.mask.nbytes + self.ring.nbytes


def body_frame_to_face(box: np.ndarray, size: int, width: int, height: int) -> np.ndarray:
    """(2, 3) frame → body_face crop, with the box rounded and clipped as preprocess cuts it (cv2.resize
    pixel-centre convention: dst j ↔ src x1 + (j + 0.5) · w / S − 0.5)."""
    x1, y1, x2, y2 = (int(round(float(v))) for v in box)
    x1, y1 = min(max(x1, 0), width - 1), min(max(y1, 0), height - 1)
    x2, y2 = max(min(x2, width), x1 + 1), max(min(y2, height), y1 + 1)
    sx, sy = size / (x2 - x1), size / (y2 - y1)
    return np.array([[sx, 0.0, (0.5 - x1) * sx - 0.5], [0.0, sy, (0.5 - y1) * sy - 0.5]])


def frame_to_face_affine(package, index: int, crop: str, size: int) -> np.ndarray:
    """(2, 3) affine from frame pixels to the `crop` space of avatar frame `index`, scaled to `size`."""
    track = package.track
    if crop == "head":
        m = compose_affine(box_to_size_affine(track.head_face_box[index], package.face_size), track.head_affine[index])
        native = package.face_size
    elif crop == "heads":
        m = np.asarray(track.head_affine[index], np.float64)
        native = package.head_size
    elif crop == "body":
        m = body_frame_to_face(track.body_face_box[index], package.face_size, package.width, package.height)
        native = package.face_size
    else:
        raise ValueError(f"unknown crop space {crop!r} (expected one of {CROP_SPACES})")
    if size != native:
        m = np.diag([size / native, size / native]) @ m
    return m


MASK_WORK_SIZE = 128  # masks of larger faces are drawn at this size and scaled up: they are blurred anyway


def lower_face_mask(points: np.ndarray, size: int, feather: float) -> np.ndarray:
    """Feathered polygon mask (uint8, 0..255) in a size×size face space; 0 at the square's borders.

    The polygon is shrunk by half the feather before blurring, so the soft edge ends at the landmark line
    (the replaced area never grows past the jaw) and the blur's tail stays inside the face square.
    Faces larger than MASK_WORK_SIZE (288/384 networks) get the same mask drawn at that size and scaled up:
    erosion and blur cost grows with the square of the size times the kernel (5.5 ms per 384 px placement).
    """
    work = min(size, MASK_WORK_SIZE)
    ratio = work / size
    feather_w = feather * ratio
    scale = 4  # supersampled polygon edge
    canvas = np.zeros((work, work), np.uint8)
    pts = np.round(((np.asarray(points, np.float64) + 0.5) * ratio - 0.5) * (1 << scale)).astype(np.int32)
    cv2.fillPoly(canvas, [pts], 255, lineType=cv2.LINE_AA, shift=scale)
    k = max(1, int(round(feather_w / 2)))
    canvas = cv2.erode(canvas, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * k + 1, 2 * k + 1)))
    sigma = max(0.5, feather_w / 3.0)
    soft = cv2.GaussianBlur(canvas.astype(np.float32), (0, 0), sigma)
    if work != size:
        soft = cv2.resize(soft, (size, size), interpolation=cv2.INTER_LINEAR)
    edge = np.minimum(np.arange(size) + 0.5, size - 0.5 - np.arange(size)) / max(feather, 1.0)
    taper = np.clip(edge, 0.0, 1.0).astype(np.float32)
    soft *= taper[:, None] * taper[None, :]
    mask = np.clip(soft + 0.5, 0, 255).astype(np.uint8)
    mask[mask < 3] = 0  # the blur's faint tail would touch pixels for no visible gain
    return mask


def mouth_ring(points_lips: np.ndarray, mask: np.ndarray, size: int) -> np.ndarray:
    """Skin around the mouth: pixels within ~60 % of the mouth width of the lips, but not within ~12 %.

    Distances to the lips come from one distance transform (cost independent of the radii; two elliptical
    dilations cost 6x more at 96 px and grow with the square of the radius at 288/384 px)."""
    if len(points_lips) == 0:
        return mask > 128
    lips = np.full((size, size), 255, np.uint8)
    cv2.fillPoly(lips, [np.round(points_lips).astype(np.int32)], 0)
    width = float(np.ptp(points_lips[:, 0]))
    outer = min(size // 2, max(2, int(round(0.6 * width))))  # bounded: degenerate geometry can be huge
    inner = min(size // 4, max(1, int(round(0.12 * width))))
    distance = cv2.distanceTransform(lips, cv2.DIST_L2, cv2.DIST_MASK_5)  # 0 on the lips
    ring = (distance <= outer) & (distance > inner) & (mask > 128)
    if ring.sum() < 16:  # degenerate landmarks: use the inner part of the mask
        ring = mask > 128
    return ring


def invert_affine_2x3(m: np.ndarray) -> np.ndarray:
    """Closed-form inverse of a (2, 3) affine (LAPACK's inv costs milliseconds on a busy machine)."""
    a, b, tx = (float(v) for v in m[0])
    c, d, ty = (float(v) for v in m[1])
    det = a * d - b * c
    if det == 0.0:
        return np.full((2, 3), np.nan)
    ia, ib, ic, id_ = d / det, -b / det, -c / det, a / det
    return np.array([[ia, ib, -(ia * tx + ib * ty)], [ic, id_, -(ic * tx + id_ * ty)]])


def roi_of_mask(mask: np.ndarray, frame_to_face: np.ndarray, width: int, height: int,
                margin: int = 2) -> tuple[int, int, int, int]:
    """Frame-pixel bounding box (x, y, w, h) of the non-zero mask, clipped to the frame."""
    bx, by, bw, bh = cv2.boundingRect(mask)  # of the non-zero pixels (10x faster than np.nonzero at 384 px)
    if bw == 0:
        return 0, 0, 0, 0
    x0m, y0m, x1m, y1m = bx - 1, by - 1, bx + bw, by + bh  # one pixel beyond the mask on every side
    corners = np.array([[x0m, y0m], [x1m, y0m], [x0m, y1m], [x1m, y1m]], np.float64)
    with np.errstate(all="ignore"):
        pts = apply_affine(invert_affine_2x3(frame_to_face), corners)
    if not np.all(np.isfinite(pts)) or np.abs(pts).max() > 1e6:  # degenerate geometry: leave the frame alone
        return 0, 0, 0, 0
    x0 = int(np.floor(pts[:, 0].min())) - margin
    y0 = int(np.floor(pts[:, 1].min())) - margin
    x1 = int(np.ceil(pts[:, 0].max())) + margin + 1
    y1 = int(np.ceil(pts[:, 1].max())) + margin + 1
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(width, x1), min(height, y1)
    if x1 <= x0 or y1 <= y0:
        return 0, 0, 0, 0
    return x0, y0, x1 - x0, y1 - y0


# A generator that left this share of the ring within UNTOUCHED_LEVELS of the footage (the mouth engine: 0.26
# at least, 0.7 median on a talking clip, counting its own few-level skin-tone shift) is in the footage's
# colours already: its colours are not matched.
UNTOUCHED_RING, UNTOUCHED_LEVELS = 0.25, 6


def channel_max(image: np.ndarray) -> np.ndarray:
    """(H, W) uint8: the largest of a BGR image's three channels (numpy's .max(axis=2) is strided and ~20x
    slower, 3.5 ms on a 400 px face)."""
    b, g, r = cv2.split(image)
    return cv2.max(cv2.max(b, g), r)


def colour_transform(generated: np.ndarray, original: np.ndarray, ring: np.ndarray) -> np.ndarray | None:
    """The per-channel gain and offset that give `generated` the mean/std of `original` in `ring`, as a
    (256, 1, 3) uint8 table for cv2.LUT (rounded, saturated; 1.5x cheaper than cv2.transform with a 3x4 matrix on a
    250 px face); None when there is nothing to match (a tiny ring, or a generator in the footage's colours).
    A table rather than a matrix so one measurement can serve two faces (`colour_matched`)."""
    ring8 = ring.view(np.uint8) if ring.dtype == np.bool_ else ring.astype(np.uint8)
    total = cv2.countNonZero(ring8)
    if total < 8:
        return None
    # a generator that kept most of the ring as the footage's own pixels (the mouth engine) is in the footage's
    # colours already; statistics over a ring that now also holds its new teeth and lips only wash them out
    same = cv2.compare(channel_max(cv2.absdiff(generated, original)), UNTOUCHED_LEVELS, cv2.CMP_LE)
    if cv2.countNonZero(cv2.bitwise_and(same, same, mask=ring8)) >= UNTOUCHED_RING * total:
        return None
    mg, sg = (v.ravel() for v in cv2.meanStdDev(generated, mask=ring8))
    mo, so = (v.ravel() for v in cv2.meanStdDev(original, mask=ring8))
    gain = np.clip(so / np.maximum(sg, 1.0), 0.7, 1.4)
    # out = g * gain + (mo - mg * gain), per channel
    levels = np.arange(256, dtype=np.float64)[:, None]
    return np.clip(np.rint(levels * gain + (mo - mg * gain)), 0, 255).astype(np.uint8).reshape(256, 1, 3)


def colour_matched(generated: np.ndarray, original: np.ndarray,
                   ring: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """`generated` with each BGR channel shifted/scaled so its mean/std in `ring` match `original`'s there, and
    the table that did it (None: nothing to match), which may serve another face of the same frame."""
    table = colour_transform(generated, original, ring)
    return (generated if table is None else cv2.LUT(generated, table)), table


def colour_match(generated: np.ndarray, original: np.ndarray, ring: np.ndarray) -> np.ndarray:
    """`colour_matched` without the table."""
    return colour_matched(generated, original, ring)[0]


DETAIL_FADE = (3.0, 12.0)  # |generated - original| (grey levels, smoothed) over which the frame's detail fades out


def change_weight(generated: np.ndarray, original: np.ndarray) -> np.ndarray:
    """(S, S) uint8 0..255: how much the generator changed each pixel (0 = left as it was, 255 = redrawn)."""
    d = channel_max(cv2.absdiff(generated, original))
    size = d.shape[0]
    if size >= 192:  # the blur is size/96 px wide: done at 96 px and scaled back, 6x cheaper at 400 px
        small = cv2.GaussianBlur(cv2.resize(d, (96, 96), interpolation=cv2.INTER_AREA), (0, 0), 1.0)
        d = cv2.resize(small, (d.shape[1], size), interpolation=cv2.INTER_LINEAR)
    else:
        d = cv2.GaussianBlur(d, (0, 0), max(1.0, size / 96.0))
    lo, hi = DETAIL_FADE
    return cv2.convertScaleAbs(cv2.subtract(d, lo), alpha=255.0 / (hi - lo))  # saturating uint8 ramp

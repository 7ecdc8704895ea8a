"""A per-frame alpha matte of the person (255) against their background (0), for transparent avatars.

No weights are downloaded: MediaPipe's selfie segmentation model ships inside the mediapipe wheel
(mediapipe/modules/selfie_segmentation/). Per frame, in order (`MatteMaker.process`):

1. **segment** a small copy of the frame (long side WORK_SIDE): the model sees 256x256 anyway, so giving it
   the full 720p/1080p frame only costs resizing inside MediaPipe and a full-size float mask out;
2. **edge refinement guided by the frame itself**: a guided filter (He et al.) fits, in small windows, alpha
   as a linear function of the small frame's brightness, so the soft 256 px segmentation edge snaps to the
   picture's own edges (hair, shoulders, the jaw line);
3. **stabilise in time without lag**: the previous stabilised matte is *warped along the optical flow*
   (DIS, ultrafast preset, on the same small frames) to where the person is now, and blended with the new
   segmentation: alpha = w * new + (1 - w) * warped_previous. Because the old matte is moved with the head
   first, a turning or nodding head is smoothed as much as a still one and never trails behind it; where the
   warp does not explain the picture (occlusion, a hand coming in, a cut) w rises to 1 and the new
   segmentation wins at once. A plain moving average would either lag a moving head or not smooth at all.
   Refining (step 2) *before* stabilising matters: the refinement follows the picture, so it carries the
   picture's own noise; applied after the stabiliser at full resolution (a "fast guided filter", coefficients
   from the small frame, applied to the full one) it brought back the flicker the stabiliser had removed
   (edge flicker after motion compensation 0.71 -> 0.90 of the raw segmentation's on LivePortrait d13);
4. **face prior** (applied to the segmentation *before* steps 2-3, so the outline's jitter is smoothed too): the
   convex hull of the tracked FaceMesh landmarks, grown 5 %, counts as person. The generated mouth lands in
   the face, and a segmentation hole there (a skin-coloured background, glare) must never show what is
   behind; the raw segmentation alone left some jaw-line landmarks below 0.5 in up to 99 % of the frames of
   a clip (bench/matte.py, column `raw`). FaceMesh's own outline (not grown: a grown hull's jitter showed as
   edge flicker) is applied again after step 3, so a face that moved faster than the flow is covered at once,
   and at full size after step 5 the inner face (the hull shrunk to 85 %) is forced opaque;
5. upsample to the frame (bilinear), then a gentle contrast curve (CURVE_LO..CURVE_HI -> 0..1) so that the
   background is exactly 0 and the body exactly 255 (which also keeps the compositor's blend band thin, see
   backend.background).

Green screen (`--matte green`) is preprocess/matte_green.py; storage in the package is preprocess/matte_store.py.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

WORK_SIDE = 384  # long side of the frame the model, the flow and the guided-filter coefficients see
MODEL = 0  # selfie segmentation "general" (256x256); 1 = "landscape" (144x256) is faster but coarser
FLOW_WEIGHT = 0.3  # weight of the new segmentation where the warp explains the picture
WARP_ERROR = 0.08  # mean |brightness| (0..1) warp error at which the new segmentation is fully trusted
GUIDE_RADIUS = 4  # guided filter window radius, in WORK_SIDE pixels (~13 px at 720p)
GUIDE_EPS = 2e-3  # guided filter regulariser (brightness in 0..1): smaller = follows image edges harder
CURVE_LO, CURVE_HI = 0.15, 0.85  # probabilities below LO are background (0), above HI person (255)
FACE_SHRINK = 1.05  # face prior before the stabiliser: the landmark hull grown 5 % (the refinement pulls an edge in)
COVER_SHRINK = 1.0  # ... after the stabiliser: FaceMesh's own outline (grown, its jitter showed as edge flicker)
INNER_SHRINK = 0.85  # ... and forced opaque after refinement, shrunk so its hard edge stays off the silhouette


@dataclass(frozen=True)
class MatteSettings:
    """What the manifest records about how a matte was made (so a later version can tell)."""

    work_side: int = WORK_SIDE
    model: int = MODEL
    flow_weight: float = FLOW_WEIGHT
    warp_error: float = WARP_ERROR
    guide_radius: int = GUIDE_RADIUS
    guide_eps: float = GUIDE_EPS
    curve: tuple[float, float] = (CURVE_LO, CURVE_HI)
    face_shrink: float = FACE_SHRINK
    inner_shrink: float = INNER_SHRINK
    cover_shrink: float = COVER_SHRINK

    def describe(self) -> dict:
        return {"work_side": self.work_side, "model": ("general", "landscape")[self.model],
                "temporal": {"kind": "flow-warped recursive blend", "weight": self.flow_weight,
                             "warp_error": self.warp_error},
                "guided_filter": {"kind": "guided filter, grey guide, working size", "radius": self.guide_radius,
                                  "eps": self.guide_eps},
                "curve": list(self.curve), "face_prior_shrink": self.face_shrink,
                "inner_face_shrink": self.inner_shrink, "cover_shrink": self.cover_shrink}


def work_size(width: int, height: int, side: int = WORK_SIDE) -> tuple[int, int]:
    """(w, h) of the small working frame: long side `side`, aspect kept, at least 16 px."""
    s = side / max(width, height)
    return max(16, int(round(width * s))), max(16, int(round(height * s)))


class SelfieSegmenter:
    """MediaPipe selfie segmentation: small BGR frame in, person probability (h, w) float32 0..1 out."""

    def __init__(self, model: int = MODEL):
        from preprocess.tracking import native_stderr_silenced, quiet_native_logs

        quiet_native_logs()
        with native_stderr_silenced():
            import mediapipe as mp

            self._seg = mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=model)

    def __call__(self, small_bgr: np.ndarray) -> np.ndarray:
        result = self._seg.process(cv2.cvtColor(small_bgr, cv2.COLOR_BGR2RGB))
        mask = result.segmentation_mask
        if mask is None:
            return np.zeros(small_bgr.shape[:2], np.float32)
        return np.clip(np.asarray(mask, np.float32), 0.0, 1.0)

    def close(self) -> None:
        self._seg.close()


class TemporalStabiliser:
    """Flow-compensated recursive blend (module docstring, step 2). Feed small frames in order."""

    def __init__(self, weight: float = FLOW_WEIGHT, warp_error: float = WARP_ERROR):
        self.weight = weight
        self.warp_error = warp_error
        self._flow = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST)
        self._prev_gray: np.ndarray | None = None
        self._prev_alpha: np.ndarray | None = None
        self._grid: np.ndarray | None = None

    def reset(self) -> None:
        self._prev_gray = self._prev_alpha = None

    def __call__(self, gray: np.ndarray, alpha: np.ndarray) -> np.ndarray:
        """gray: small uint8 frame; alpha: its new segmentation (float32 0..1). Returns the stabilised one."""
        if self._prev_gray is None or self._prev_gray.shape != gray.shape:
            self._prev_gray, self._prev_alpha = gray, alpha
            h, w = gray.shape
            self._grid = np.dstack(np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32)))
            return alpha
        flow = self._flow.calc(gray, self._prev_gray, None)  # gray(x) ~ prev(x + flow(x))
        maps = self._grid + flow
        warped_alpha = cv2.remap(self._prev_alpha, maps, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        warped_gray = cv2.remap(self._prev_gray, maps, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        error = cv2.absdiff(gray, warped_gray).astype(np.float32) * (1.0 / 255.0)
        error = cv2.blur(error, (5, 5))  # one noisy pixel is not a failed warp
        w = np.clip(self.weight + (1.0 - self.weight) * error * (1.0 / self.warp_error), self.weight, 1.0)
        out = warped_alpha + w * (alpha - warped_alpha)
        self._prev_gray, self._prev_alpha = gray, out
        return out


def face_prior(landmarks: np.ndarray | None, size: tuple[int, int], scale: float, shrink: float = FACE_SHRINK
               ) -> np.ndarray | None:
    """Filled convex hull of the landmarks (frame pixels * scale), shrunk about its centre; uint8 0/255 (h, w)."""
    if landmarks is None or not np.all(np.isfinite(landmarks)):
        return None
    pts = np.asarray(landmarks, np.float64) * scale
    centre = pts.mean(axis=0)
    pts = centre + (pts - centre) * shrink
    hull = cv2.convexHull(np.round(pts).astype(np.int32))
    mask = np.zeros((size[1], size[0]), np.uint8)
    cv2.fillConvexPoly(mask, hull, 255, cv2.LINE_8)
    return mask


def fast_guided_filter(guide_small: np.ndarray, src_small: np.ndarray, guide_full: np.ndarray, radius: int,
                       eps: float) -> np.ndarray:
    """Guided filter with coefficients from the small images, applied to the full-size guide (float32 0..1)."""
    k = (2 * radius + 1, 2 * radius + 1)
    i, p = guide_small, src_small
    mean_i = cv2.blur(i, k)
    mean_p = cv2.blur(p, k)
    cov_ip = cv2.blur(i * p, k) - mean_i * mean_p
    var_i = cv2.blur(i * i, k) - mean_i * mean_i
    a = cov_ip / (var_i + eps)
    b = mean_p - a * mean_i
    a, b = cv2.blur(a, k), cv2.blur(b, k)
    h, w = guide_full.shape[:2]
    a = cv2.resize(a, (w, h), interpolation=cv2.INTER_LINEAR)
    b = cv2.resize(b, (w, h), interpolation=cv2.INTER_LINEAR)
    return cv2.multiply(a, guide_full) + b


@dataclass
class CoarseMatte:
    """The in-order part of a frame's matte (small, stabilised, face prior applied), for `MatteMaker.refine`."""

    alpha: np.ndarray  # (h, w) float32 0..1 at the working size
    gray: np.ndarray  # (h, w) uint8, the small frame's brightness (the guide)
    landmarks: np.ndarray | None


class MatteMaker:
    """Frames in order -> (H, W) uint8 mattes.

    `process(frame, landmarks)` = `refine(frame, coarse(frame, landmarks))`. `coarse` carries the temporal
    state and must see the frames in order, on one thread; `refine` (the full-resolution work: upsampling,
    the curve, the inner face) is stateless and may run on worker threads in any order. landmarks: (K, 2) frame pixels or None.
    `keep_raw=True` keeps the last raw segmentation upsampled to the frame (`last_raw`, float32 0..1), for the
    quality bench's flicker comparison.
    """

    def __init__(self, settings: MatteSettings = MatteSettings(), keep_raw: bool = False):
        self.settings = settings
        self.segment = SelfieSegmenter(settings.model)
        self.stabilise = TemporalStabiliser(settings.flow_weight, settings.warp_error)
        self.keep_raw = keep_raw
        self.last_raw: np.ndarray | None = None
        lo, hi = settings.curve
        lut = np.clip((np.arange(256, dtype=np.float32) / 255.0 - lo) / (hi - lo), 0, 1)
        self._lut = np.round(lut * 255).astype(np.uint8)

    def close(self) -> None:
        self.segment.close()

    def __enter__(self) -> "MatteMaker":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def process(self, frame: np.ndarray, landmarks: np.ndarray | None = None) -> np.ndarray:
        return self.refine(frame, self.coarse(frame, landmarks))

    def coarse(self, frame: np.ndarray, landmarks: np.ndarray | None = None) -> CoarseMatte:
        h, w = frame.shape[:2]
        sw, sh = work_size(w, h, self.settings.work_side)
        small = cv2.resize(frame, (sw, sh), interpolation=cv2.INTER_LINEAR)
        gray = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
        raw = self.segment(small)
        if self.keep_raw:
            self.last_raw = cv2.resize(raw, (w, h), interpolation=cv2.INTER_LINEAR)
        prior = face_prior(landmarks, (sw, sh), sw / w, self.settings.face_shrink)
        if prior is not None:  # before the stabiliser: the outline's own jitter is smoothed with the rest
            raw = np.maximum(raw, prior.astype(np.float32) * (1.0 / 255.0))
        guide = gray.astype(np.float32) * (1.0 / 255.0)
        refined = fast_guided_filter(guide, raw, guide, self.settings.guide_radius, self.settings.guide_eps)
        alpha = self.stabilise(gray, np.clip(refined, 0.0, 1.0))
        cover = face_prior(landmarks, (sw, sh), sw / w, self.settings.cover_shrink)
        if cover is not None:  # and after it: a face that moved faster than the flow is still covered at once
            alpha = np.maximum(alpha, cover.astype(np.float32) * (1.0 / 255.0))
        return CoarseMatte(alpha, gray, landmarks)

    def refine(self, frame: np.ndarray, coarse: CoarseMatte) -> np.ndarray:
        h, w = frame.shape[:2]
        up = cv2.resize(coarse.alpha, (w, h), interpolation=cv2.INTER_LINEAR)
        matte = cv2.LUT(cv2.convertScaleAbs(up, alpha=255.0), self._lut)  # saturating float -> uint8
        prior = face_prior(coarse.landmarks, (w, h), 1.0, self.settings.inner_shrink)
        if prior is not None:  # the inner face (where the generated mouth lands) is opaque whatever happened
            cv2.max(matte, prior, dst=matte)
        return matte

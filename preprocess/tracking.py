"""Face finding and tracking with MediaPipe 0.10.21 (weights inside the wheel: nothing is downloaded).

Choice (measured on ../shared/media, 2-core CPU): FaceMesh in tracking mode gives 478 landmarks (40 lip points,
iris) at ~6 ms/frame with the lowest jitter of the offline options; dlib is ~80 ms/frame with a non-commercial
68-point model; Haar cascades find false faces. FaceMesh's built-in detector is the short-range BlazeFace,
which misses small faces (a seated person in a 1080x1920 clip), so we:

1. *acquire* the face with the full-range BlazeFace detector on the whole frame (short-range as a second try),
   choosing the face nearest the last known position, else the largest and most central one;
2. *track* it by running FaceMesh (static_image_mode=False) on a square region of interest around the face,
   resized to 384 px, so a small face is seen as large as a close-up and other people stay out of view;
3. re-centre the region on the landmarks every frame; when FaceMesh loses the face the frame is reported as
   missing and the next frame is re-acquired with the detector (cuts, occlusions, turning away).
"""
from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass
from typing import Iterator, TextIO

import cv2
import numpy as np

from preprocess.crops import warp_antialiased
from preprocess.landmarks import NUM_LANDMARKS

DETECTOR_NAME = "mediapipe face_mesh (refine_landmarks) + face_detection full-range"
CROP = 384  # FaceMesh input size for the region of interest
ROI_FROM_DETECTION = 2.6  # region side / BlazeFace box side (that box is eyebrows-to-mouth tight)
ROI_FROM_LANDMARKS = 1.7  # region side / landmark box side (forehead to chin)


def mediapipe_version() -> str:
    try:
        from importlib.metadata import version

        return version("mediapipe")
    except Exception:  # pragma: no cover - metadata missing in odd installs
        return "unknown"


def quiet_native_logs() -> None:
    """MediaPipe's C++ side logs graph/TFLite chatter to stderr; keep only errors (a user-set value wins)."""
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@contextlib.contextmanager
def native_stderr_silenced() -> Iterator[TextIO]:
    """Point file descriptor 2 at /dev/null while MediaPipe graphs live; yield a stream to the real stderr.

    MediaPipe prints absl warnings ("Feedback manager requires...", "Created TensorFlow Lite XNNPACK
    delegate") straight to fd 2 from its graph threads, before any log level applies; a user should not see
    them on every run. Our own output (the progress bar) goes to the yielded stream, which still reaches the
    terminal. Nested use is a no-op.
    """
    global _SILENCED
    if _SILENCED:
        yield sys.stderr
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
    except (OSError, ValueError):
        yield sys.stderr
        return
    real = sys.stderr
    try:
        if real.fileno() == 2:
            real = os.fdopen(os.dup(saved), "w", buffering=1, encoding=getattr(sys.stderr, "encoding", None))
    except (OSError, ValueError, AttributeError):  # replaced stderr (pytest capsys, IDEs): keep it
        pass
    os.dup2(devnull, 2)
    _SILENCED = True
    try:
        yield real
    finally:
        _SILENCED = False
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
        if real is not sys.stderr:
            real.close()


_SILENCED = False


@dataclass
class _Roi:
    cx: float
    cy: float
    side: float

    def affine(self) -> np.ndarray:
        s = CROP / self.side
        return np.array([[s, 0, CROP / 2 - s * self.cx], [0, s, CROP / 2 - s * self.cy]])


class FaceTracker:
    """Feed frames in order with `process(bgr)`; get (478, 2) frame-pixel landmarks or None (no face)."""

    def __init__(self, min_detection_confidence: float = 0.5, min_tracking_confidence: float = 0.5):
        quiet_native_logs()
        with native_stderr_silenced():
            import mediapipe as mp

            self._mesh = mp.solutions.face_mesh.FaceMesh(
                static_image_mode=False, max_num_faces=1, refine_landmarks=True,
                min_detection_confidence=min_detection_confidence, min_tracking_confidence=min_tracking_confidence)
            self._detectors = [mp.solutions.face_detection.FaceDetection(model_selection=m,
                                                                         min_detection_confidence=0.5)
                               for m in (1, 0)]
        self._roi: _Roi | None = None
        self._last_centre: np.ndarray | None = None
        self._last_size: float | None = None

    def close(self) -> None:
        self._mesh.close()
        for d in self._detectors:
            d.close()

    def __enter__(self) -> "FaceTracker":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --------------------------------------------------------------------------------------------- per frame
    def process(self, bgr: np.ndarray) -> np.ndarray | None:
        for attempt in range(2):
            if self._roi is None:
                self._roi = self._acquire(bgr)
                if self._roi is None:
                    return None
            lm = self._landmarks_in_roi(bgr, self._roi)
            if lm is not None:
                self._follow(lm)
                return lm
            self._roi = None  # lost: one immediate re-acquisition, then give up for this frame
        return None

    def _landmarks_in_roi(self, bgr: np.ndarray, roi: _Roi) -> np.ndarray | None:
        a = roi.affine()
        crop = warp_antialiased(bgr, a, CROP)  # big faces (4K) are shrunk without aliasing
        result = self._mesh.process(cv2.cvtColor(crop, cv2.COLOR_BGR2RGB))
        if not result.multi_face_landmarks:
            return None
        pts = result.multi_face_landmarks[0].landmark
        lm = np.array([(p.x * CROP, p.y * CROP) for p in pts], dtype=np.float64)
        if lm.shape[0] != NUM_LANDMARKS:
            return None
        w, h = np.ptp(lm[:, 0]), np.ptp(lm[:, 1])
        if max(w, h) < 0.08 * CROP:  # a speck: not a face we can use
            return None
        s = a[0, 0]
        return np.stack([(lm[:, 0] - a[0, 2]) / s, (lm[:, 1] - a[1, 2]) / s], axis=1)

    def _follow(self, lm: np.ndarray) -> None:
        lo, hi = lm.min(axis=0), lm.max(axis=0)
        centre = (lo + hi) / 2
        size = float(max(hi - lo))
        self._roi = _Roi(float(centre[0]), float(centre[1]), ROI_FROM_LANDMARKS * size)
        self._last_centre, self._last_size = centre, size

    # --------------------------------------------------------------------------------------------- acquisition
    def _acquire(self, bgr: np.ndarray) -> _Roi | None:
        h, w = bgr.shape[:2]
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        for detector in self._detectors:
            result = detector.process(rgb)
            if not result.detections:
                continue
            boxes = []
            for d in result.detections:
                b = d.location_data.relative_bounding_box
                boxes.append((b.xmin * w, b.ymin * h, b.width * w, b.height * h))
            x, y, bw, bh = self._choose(np.array(boxes), w, h)
            return _Roi(x + bw / 2, y + bh / 2, ROI_FROM_DETECTION * max(bw, bh))
        return None

    def _choose(self, boxes: np.ndarray, w: int, h: int) -> np.ndarray:
        """Keep following the same person: nearest to the last face; first time: largest and most central."""
        centres = boxes[:, :2] + boxes[:, 2:] / 2
        sizes = boxes[:, 2:].max(axis=1)
        if self._last_centre is not None:
            dist = np.linalg.norm(centres - self._last_centre, axis=1) / max(self._last_size or 1.0, 1.0)
            return boxes[int(np.argmin(dist))]
        off_centre = np.linalg.norm((centres - [w / 2, h / 2]) / [w / 2, h / 2], axis=1)  # 0 centre .. ~1.4 corner
        score = sizes * (1.0 - 0.4 * np.clip(off_centre, 0, 1.4))
        return boxes[int(np.argmax(score))]

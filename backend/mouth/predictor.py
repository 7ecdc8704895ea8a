"""Audio -> predicted mouth descriptor, with the two explicit rules the probe asked for.

Why the rules: nearest-neighbour audio matching alone shows a too-closed mouth in silence and a random one
when nothing in the footage sounds like the input. So silence maps to the footage's own resting mouth, and a
weak match (large distance to the nearest library sound) is pulled toward the average speaking mouth.
"""
from __future__ import annotations

import numpy as np

from preprocess.mouth_calibration import MouthCalibration, audio_features, speech_weight, window_loudness


class DescriptorPredictor:
    """Predicts (opening, width, height) per mel window from a per-avatar kNN + ridge model.

    knn_weight: share of the kNN average in the prediction (the rest is the ridge regression).
    """

    def __init__(self, calib: MouthCalibration, k: int = 5, knn_weight: float = 0.5, confidence_floor: float = 0.35):
        self.calib = calib
        self.k = k
        self.knn_weight = knn_weight
        self.confidence_floor = confidence_floor
        lib = calib.speech
        self._lib_z = ((calib.features[lib] - calib.feat_mean) / calib.feat_std).astype(np.float32)
        self._lib_sq = (self._lib_z ** 2).sum(1)
        self._lib_desc = calib.descriptors[lib]
        self.usable = len(self._lib_z) >= max(k, 2)

    def predict(self, windows: np.ndarray, speech_flags: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(B,80,16) windows -> ((B,3) descriptors, (B,) speech weight in [0,1])."""
        c = self.calib
        loud = window_loudness(windows)
        s = speech_weight(loud, c.thresholds)
        if speech_flags is not None:
            s = s * np.asarray(speech_flags, np.float32)
        if not self.usable:
            return self.loudness_descriptor(loud, s), s
        z = (audio_features(windows) - c.feat_mean) / c.feat_std
        d2 = np.maximum(self._lib_sq[None, :] + (z ** 2).sum(1)[:, None] - 2.0 * z @ self._lib_z.T, 0.0)
        k = min(self.k, d2.shape[1])
        nearest = np.argpartition(d2, k - 1, axis=1)[:, :k]
        # stable order (ties by index) keeps the output deterministic
        order = np.lexsort((nearest, np.take_along_axis(d2, nearest, 1)), axis=1)
        nearest = np.take_along_axis(nearest, order, 1)
        knn = self._lib_desc[nearest].mean(axis=1)
        ridge = np.hstack([z, np.ones((len(z), 1), np.float32)]) @ c.ridge
        pred = self.knn_weight * knn + (1.0 - self.knn_weight) * ridge
        d1 = np.sqrt(d2[np.arange(len(z)), nearest[:, 0]])
        conf = np.clip((c.nn_dist_hi - d1) / max(c.nn_dist_hi - c.nn_dist_lo, 1e-6), 0.0, 1.0)
        trust = self.confidence_floor + (1.0 - self.confidence_floor) * conf
        pred = c.neutral + trust[:, None] * (pred - c.neutral)
        pred = c.rest + s[:, None] * (pred - c.rest)
        return pred.astype(np.float32), s

    def loudness_descriptor(self, loud: np.ndarray, s: np.ndarray) -> np.ndarray:
        """No model: opening follows loudness (gated by s) between the resting mouth and a typical open mouth."""
        c = self.calib
        a, b = c.thresholds
        level = s * np.clip((loud - a) / max(b + 1.6 - a, 0.5), 0.0, 1.0)
        open_mouth = c.rest.copy()
        open_mouth[0] = c.rest[0] + max(0.12, 3.0 * float(c.desc_scale[0]))
        open_mouth[2] = c.rest[2] + 0.8 * (open_mouth[0] - c.rest[0])
        return (c.rest + level[:, None] * (open_mouth - c.rest)).astype(np.float32)

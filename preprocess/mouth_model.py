"""The per-avatar mouth model: what the run-time engine needs, fitted from the footage's own mouths and audio.

Why: to pick the avatar's own mouth images for new speech the engine needs, per avatar frame, the speech
heard there (pooled features), the mouth seen there (descriptor) and a small audio -> mouth model (kNN
library + ridge regression) with its trust range. Fitting takes seconds; preprocess.mouth_calibration stores
it in the package. Below ~3 s of speech the mapping is useless (warp mode), and it keeps improving with more
footage, so usable seconds are reported and a warning is given under 30 s.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from preprocess.mouth_features import (FEATURE_BANDS, FEATURE_BINS, audio_features, estimate_av_offset,
                                       mouth_descriptor, shift_rows, speech_thresholds, speech_weight,
                                       window_loudness)

CALIB_VERSION = 1
MIN_USABLE_SPEECH_S = 3.0  # below this the retrieval model is useless (probe) -> warp mode
WARN_SPEECH_S = 30.0
NO_AUDIO_THRESHOLDS = (-3.0, -2.5)  # generic gate for driving audio when the footage has no sound


# ------------------------------------------------------------------------------------------ result
@dataclass
class MouthCalibration:
    """Everything the run-time engine needs, per avatar frame i (audio already shifted by av_offset)."""

    descriptors: np.ndarray  # (N,3) mouth descriptor of frame i
    features: np.ndarray  # (N,80) raw pooled audio feature paired with frame i (zeros without audio)
    loudness: np.ndarray  # (N,) paired loudness
    speech: np.ndarray  # (N,) bool: frame i is usable speech (valid face, audio above the speech gate)
    valid: np.ndarray  # (N,) bool: face found
    rest: np.ndarray  # (3,) the footage's resting (closed, silent) mouth descriptor
    neutral: np.ndarray  # (3,) the average speaking mouth
    desc_scale: np.ndarray  # (3,) descriptor spread used to weigh descriptor distances
    feat_mean: np.ndarray  # (80,)
    feat_std: np.ndarray  # (80,)
    ridge: np.ndarray  # (81,3) ridge regression z-feature (+bias) -> descriptor
    nn_dist_lo: float  # typical nearest-neighbour distance of a good match (confidence 1)
    nn_dist_hi: float  # distance beyond which the match is not trusted (confidence 0)
    thresholds: tuple[float, float]
    av_offset: int
    av_corr: float
    fps: float
    has_audio: bool
    extra: dict = field(default_factory=dict)

    @property
    def usable_speech_s(self) -> float:
        return float(self.speech.sum()) / self.fps

    @property
    def mode(self) -> str:
        """'retrieval' when the footage has enough speech to learn from, else 'warp' (lowest quality)."""
        return "retrieval" if self.has_audio and self.usable_speech_s >= MIN_USABLE_SPEECH_S else "warp"

    def summary(self) -> dict:
        s = self.usable_speech_s
        warning = None
        if not self.has_audio:
            warning = "no audio track: the mouth engine can only warp the lips (lowest quality)"
        elif s < MIN_USABLE_SPEECH_S:
            warning = f"only {s:.1f} s of speech: the mouth engine falls back to a lip warp (lowest quality)"
        elif s < WARN_SPEECH_S:
            warning = f"only {s:.1f} s of speech: record 30 s or more of talking for a better mouth match"
        return {"version": CALIB_VERSION, "mode": self.mode, "usable_speech_s": round(s, 2),
                "av_offset_frames": int(self.av_offset), "av_offset_corr": round(float(self.av_corr), 3),
                "warning": warning}

    # -------------------------------------------------------------- storage
    def save(self, path: Path) -> None:
        arrays = {k: getattr(self, k) for k in ("descriptors", "features", "loudness", "speech", "valid", "rest",
                                                "neutral", "desc_scale", "feat_mean", "feat_std", "ridge")}
        scalars = {"nn_dist_lo": self.nn_dist_lo, "nn_dist_hi": self.nn_dist_hi, "thresholds": list(self.thresholds),
                   "av_offset": self.av_offset, "av_corr": self.av_corr, "fps": self.fps,
                   "has_audio": self.has_audio, "version": CALIB_VERSION}
        with open(path, "wb") as fh:
            np.savez_compressed(fh, meta=np.array(json.dumps(scalars)), **arrays)

    @classmethod
    def load(cls, path: Path) -> "MouthCalibration | None":
        """The cached calibration, or None when absent, unreadable or from another version."""
        try:
            with np.load(path) as z:
                meta = json.loads(str(z["meta"]))
                if meta.get("version") != CALIB_VERSION:
                    return None
                arrays = {k: z[k] for k in z.files if k != "meta"}
        except (OSError, ValueError, KeyError):
            return None
        return cls(**arrays, nn_dist_lo=float(meta["nn_dist_lo"]), nn_dist_hi=float(meta["nn_dist_hi"]),
                   thresholds=tuple(meta["thresholds"]), av_offset=int(meta["av_offset"]),
                   av_corr=float(meta["av_corr"]), fps=float(meta["fps"]), has_audio=bool(meta["has_audio"]))


# ------------------------------------------------------------------------------------------ fitting
def calibrate_arrays(landmarks: np.ndarray, valid: np.ndarray, wav: np.ndarray | None,
                     fps: float = 25.0, ridge_lambda: float = 10.0, av_offset: int | None = None) -> MouthCalibration:
    """Calibrate from raw arrays (landmarks in any pixel space, 16 kHz mono audio or None).

    av_offset: force the footage's A/V offset (frames) instead of estimating it (benchmarks that estimated it
    on a longer stretch of the same clip).
    """
    from models.audio import mel_windows, melspectrogram

    n = len(landmarks)
    valid = np.asarray(valid, bool).copy()
    desc = mouth_descriptor(landmarks)
    has_audio = wav is not None and np.asarray(wav).size > 1600 and float(np.abs(wav).max()) > 1e-4
    if has_audio:
        windows = mel_windows(melspectrogram(np.asarray(wav, np.float32)), fps)
        if len(windows) < n:  # audio shorter than the video: pad with silence windows
            pad = np.full((n - len(windows), 80, 16), -4.0, np.float32)
            windows = np.concatenate([windows, pad]) if len(windows) else pad
        windows = windows[:n]
        feats_raw = audio_features(windows)
        loud_raw = window_loudness(windows)
        offset, corr = estimate_av_offset(desc[:, 0], loud_raw, valid)
        if av_offset is not None:
            offset = int(av_offset)
        feats, loud = shift_rows(feats_raw, offset), shift_rows(loud_raw, offset)
        thresholds = speech_thresholds(loud_raw)
        speech = valid & (speech_weight(loud, thresholds) >= 1.0)
    else:
        feats = np.zeros((n, FEATURE_BANDS * FEATURE_BINS), np.float32)
        loud = np.full(n, -4.0, np.float32)
        offset, corr, thresholds = 0, 0.0, NO_AUDIO_THRESHOLDS
        speech = np.zeros(n, bool)

    rest, neutral = _rest_and_neutral(desc, valid, speech, loud, thresholds)
    pool = valid if valid.any() else np.ones(n, bool)
    desc_scale = np.maximum(desc[pool].std(axis=0), np.array([0.01, 0.01, 0.01], np.float32)).astype(np.float32)

    if speech.sum() >= 2:
        feat_mean = feats[speech].mean(axis=0)
        feat_std = np.maximum(feats[speech].std(axis=0), 0.05)
    else:
        feat_mean = feats.mean(axis=0) if n else np.zeros(80, np.float32)
        feat_std = np.ones(80, np.float32)
    z = (feats - feat_mean) / feat_std
    ridge = _fit_ridge(z[speech], desc[speech], ridge_lambda) if speech.sum() >= 4 else _constant_ridge(neutral)
    lo, hi = _nn_distance_range(z[speech])
    return MouthCalibration(
        descriptors=desc, features=feats.astype(np.float32), loudness=loud.astype(np.float32), speech=speech,
        valid=valid, rest=rest, neutral=neutral, desc_scale=desc_scale, feat_mean=feat_mean.astype(np.float32),
        feat_std=feat_std.astype(np.float32), ridge=ridge, nn_dist_lo=lo, nn_dist_hi=hi,
        thresholds=(float(thresholds[0]), float(thresholds[1])), av_offset=int(offset), av_corr=float(corr),
        fps=float(fps), has_audio=bool(has_audio))


def _rest_and_neutral(desc, valid, speech, loud, thresholds) -> tuple[np.ndarray, np.ndarray]:
    """Resting mouth = the median mouth of silent frames (or the most closed fifth when nobody is silent)."""
    silent = valid & (speech_weight(loud, thresholds) <= 0.0)
    pool_valid = valid if valid.any() else np.ones(len(desc), bool)
    if silent.sum() >= 5:
        rest_pool = desc[silent]
        # a silent speaker still moves (breath, smiles): keep the more closed half as "rest"
        rest_pool = rest_pool[rest_pool[:, 0] <= np.median(rest_pool[:, 0])]
    else:
        d = desc[pool_valid]
        rest_pool = d[d[:, 0] <= np.percentile(d[:, 0], 20)]
    rest = np.median(rest_pool, axis=0)
    neutral = np.median(desc[speech], axis=0) if speech.sum() >= 5 else np.median(desc[pool_valid], axis=0)
    return rest.astype(np.float32), neutral.astype(np.float32)


def _fit_ridge(z: np.ndarray, y: np.ndarray, lam: float) -> np.ndarray:
    x = np.hstack([z, np.ones((len(z), 1), np.float32)]).astype(np.float64)
    reg = lam * np.eye(x.shape[1])
    reg[-1, -1] = 0.0  # do not shrink the bias
    return np.linalg.solve(x.T @ x + reg, x.T @ y.astype(np.float64)).astype(np.float32)


def _constant_ridge(value: np.ndarray) -> np.ndarray:
    w = np.zeros((81, 3), np.float32)
    w[-1] = value
    return w


def _nn_distance_range(z: np.ndarray, exclude: int = 6, max_rows: int = 1500) -> tuple[float, float]:
    """Typical leave-neighbours-out nearest distances inside the library: (good match, untrusted match).

    Neighbouring frames (±exclude) are skipped, otherwise every frame matches its own twin next door.
    """
    if len(z) < 2 * exclude + 3:
        return 1.0, 10.0
    step = max(1, len(z) // max_rows)
    idx = np.arange(0, len(z), step)
    q = z[idx]
    d2 = (q ** 2).sum(1)[:, None] + (z ** 2).sum(1)[None, :] - 2.0 * q @ z.T
    rows = np.arange(len(z))[None, :]
    d2[np.abs(rows - idx[:, None]) <= exclude] = np.inf
    nn = np.sqrt(np.maximum(d2.min(axis=1), 0.0))
    nn = nn[np.isfinite(nn)]
    if nn.size == 0:
        return 1.0, 10.0
    lo, hi = np.percentile(nn, [25, 95])
    return float(lo), float(max(hi, lo * 1.5 + 1e-3))

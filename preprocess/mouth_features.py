"""What the mouth engine measures: a scale-free mouth descriptor per frame, pooled audio features and
loudness per mel window, the speech gate, and the footage's own A/V offset.

Why a module of its own: these are pure numpy functions shared by calibration (preprocess), the run-time
engine (backend/mouth) and the benchmarks; the calibration that fits them lives in preprocess.mouth_model.
Facts it relies on (probe on real clips, issue 8): many clips have their own audio 3-6 frames out of sync
with the video, so the offset is estimated by cross-correlating mouth opening with loudness.
"""
from __future__ import annotations

import numpy as np

# MediaPipe FaceMesh indices (fixed by the mesh topology).
EYE_OUTER = (33, 263)  # the scale reference: outer eye corners
INNER_LIP_PAIRS = ((13, 14), (82, 87), (312, 317))  # upper inner lip -> lower inner lip
MOUTH_CORNERS = (61, 291)
OUTER_LIP_VERTICAL = (0, 17)

DESCRIPTOR_NAMES = ("opening", "width", "height")
FEATURE_BANDS, FEATURE_BINS = 20, 4  # mel window (80,16) pooled to 20 bands x 4 time bins
MAX_AV_OFFSET = 10  # frames searched either way (0.4 s); a peak at the edge is not believed
LOUDNESS_STEPS = 6  # mel steps (75 ms) at the start of a window that decide loudness / silence


def mouth_descriptor(landmarks: np.ndarray) -> np.ndarray:
    """(N,K,2) FaceMesh landmarks -> (N,3) float32 [opening, width, height], scale-free.

    opening = mean inner-lip gap, width = corner distance, height = outer lip height, all divided by the
    outer-eye-corner distance so head size and distance to the camera drop out.
    """
    lm = np.asarray(landmarks, dtype=np.float32)
    eyes = np.linalg.norm(lm[:, EYE_OUTER[0]] - lm[:, EYE_OUTER[1]], axis=-1)
    eyes = np.maximum(eyes, 1e-3)
    gaps = [np.linalg.norm(lm[:, a] - lm[:, b], axis=-1) for a, b in INNER_LIP_PAIRS]
    opening = np.mean(gaps, axis=0)
    width = np.linalg.norm(lm[:, MOUTH_CORNERS[0]] - lm[:, MOUTH_CORNERS[1]], axis=-1)
    height = np.linalg.norm(lm[:, OUTER_LIP_VERTICAL[0]] - lm[:, OUTER_LIP_VERTICAL[1]], axis=-1)
    return (np.stack([opening, width, height], axis=1) / eyes[:, None]).astype(np.float32)


def audio_features(windows: np.ndarray) -> np.ndarray:
    """(N,80,16) mel windows -> (N,80) pooled features (20 bands x 4 time bins), not yet z-scored."""
    w = np.asarray(windows, dtype=np.float32)
    n = w.shape[0]
    pooled = w.reshape(n, FEATURE_BANDS, 80 // FEATURE_BANDS, FEATURE_BINS, 16 // FEATURE_BINS).mean(axis=(2, 4))
    return pooled.reshape(n, FEATURE_BANDS * FEATURE_BINS).astype(np.float32)


def window_loudness(windows: np.ndarray) -> np.ndarray:
    """(N,80,16) -> (N,) loudness of the first 75 ms of each window (mel units, -4 = digital silence).

    The first steps are the audio at the frame's own time (a window looks 0.2 s ahead of its frame).
    """
    w = np.asarray(windows, dtype=np.float32)
    return w[:, :, :LOUDNESS_STEPS].mean(axis=(1, 2)).astype(np.float32)


def speech_thresholds(loudness: np.ndarray) -> tuple[float, float]:
    """(silent_below, speech_above) loudness levels from the footage's own distribution.

    A soft gate between the two; floors keep digital silence silent and quiet rooms from counting as speech.
    """
    lo, hi = np.percentile(loudness, [5, 95]) if loudness.size else (-4.0, 0.0)
    span = max(float(hi - lo), 0.5)
    silent_below = max(float(lo) + 0.25 * span, -3.6)
    speech_above = max(float(lo) + 0.45 * span, silent_below + 0.15)
    return silent_below, speech_above


def speech_weight(loudness: np.ndarray, thresholds: tuple[float, float]) -> np.ndarray:
    """0 = silent, 1 = speech, linear in between."""
    a, b = thresholds
    return np.clip((np.asarray(loudness, np.float32) - a) / max(b - a, 1e-3), 0.0, 1.0)


def estimate_av_offset(opening: np.ndarray, loudness: np.ndarray, valid: np.ndarray | None = None,
                       max_lag: int = MAX_AV_OFFSET, margin: float = 0.05) -> tuple[int, float]:
    """Lag k (frames) maximising corr(opening[i], loudness[i + k]); positive k = audio late vs video.

    Returns (k, correlation at k). Short clips give noisy curves, so a peak is only believed when it lies
    inside the search range and beats the in-sync correlation by `margin`; otherwise (0, r at 0).
    """
    o = np.asarray(opening, np.float64)
    ld = np.asarray(loudness, np.float64)
    n = min(len(o), len(ld))
    ok = np.ones(n, bool) if valid is None else np.asarray(valid[:n], bool)
    ok = ok & np.isfinite(o[:n]) & np.isfinite(ld[:n])
    if n < 3 * max_lag + 10:
        return 0, 0.0
    corr = {}
    for k in range(-max_lag, max_lag + 1):
        i0, i1 = max(0, -k), min(n, n - k)
        a, b, m = o[i0:i1], ld[i0 + k:i1 + k], ok[i0:i1] & ok[i0 + k:i1 + k]
        if m.sum() < 10 or a[m].std() < 1e-6 or b[m].std() < 1e-6:
            continue
        corr[k] = float(np.corrcoef(a[m], b[m])[0, 1])
    if not corr:
        return 0, 0.0
    best = max(sorted(corr, key=abs), key=lambda k: corr[k])  # ties: the smaller shift
    r0 = corr.get(0, 0.0)
    if abs(best) == max_lag or corr[best] < r0 + margin or corr[best] < 0.05:
        return 0, max(r0, 0.0)
    return best, corr[best]


def shift_rows(x: np.ndarray, k: int) -> np.ndarray:
    """y[i] = x[clip(i + k)]: pairs frame i with the audio k frames later (edge rows repeat)."""
    idx = np.clip(np.arange(len(x)) + k, 0, len(x) - 1)
    return x[idx]

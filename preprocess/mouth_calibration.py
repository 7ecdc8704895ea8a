"""Per-avatar calibration for the weightless `mouth` engine, computed once at preprocess time.

Why: the mouth engine shows the avatar's *own* mouth images, picked to match the speech. To pick them it
needs, for every avatar frame, (a) a compact feature of the speech heard at that frame, (b) a descriptor of
the mouth seen in it, and (c) a small model from (a) to (b). All three come from the footage itself, so
nothing is downloaded; they take seconds to compute and are cached in the package (`mouth_calib.npz` plus a
`mouth_calibration` field in manifest.json). The engine calibrates lazily when the cache is missing.

Facts this module relies on (measured by a probe on real clips, see issue 8):
- many clips have their own audio 3-6 frames out of sync with the video, so the footage's A/V offset is
  estimated (cross-correlation of mouth opening with loudness) and applied when pairing audio with mouths;
- below ~3 s of speech the audio -> mouth mapping is useless, and it keeps improving with more footage, so
  the usable-speech seconds are reported and a warning is given under 30 s.

This module imports only numpy (+ models.audio), so preprocess can call it without importing backend.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

CALIB_FILE = "mouth_calib.npz"
CALIB_VERSION = 1
MANIFEST_FIELD = "mouth_calibration"

# MediaPipe FaceMesh indices (fixed by the mesh topology).
EYE_OUTER = (33, 263)  # the scale reference: outer eye corners
INNER_LIP_PAIRS = ((13, 14), (82, 87), (312, 317))  # upper inner lip -> lower inner lip
MOUTH_CORNERS = (61, 291)
OUTER_LIP_VERTICAL = (0, 17)

DESCRIPTOR_NAMES = ("opening", "width", "height")
FEATURE_BANDS, FEATURE_BINS = 20, 4  # mel window (80,16) pooled to 20 bands x 4 time bins
MAX_AV_OFFSET = 10  # frames searched either way (0.4 s); a peak at the edge is not believed
MIN_USABLE_SPEECH_S = 3.0  # below this the retrieval model is useless (probe) -> warp mode
WARN_SPEECH_S = 30.0
NO_AUDIO_THRESHOLDS = (-3.0, -2.5)  # generic gate for driving audio when the footage has no sound
LOUDNESS_STEPS = 6  # mel steps (75 ms) at the start of a window that decide loudness / silence


# ------------------------------------------------------------------------------------------ features
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


# ------------------------------------------------------------------------------------------ package
def calibrate(package_dir: str | os.PathLike) -> dict:
    """Calibrate an avatar package, cache `mouth_calib.npz` in it and record a summary in manifest.json.

    Returns the summary dict (mode, usable_speech_s, av_offset_frames, warning). Preprocess calls this at the
    end of every package build; the engine calls it when the cache is missing.
    """
    root = Path(package_dir)
    manifest_path = root / "manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    with np.load(root / "face_det.npz") as z:
        landmarks, valid = z["landmarks"], z["valid"]
    wav = None
    if (root / "audio.wav").is_file():
        from models.audio import load_audio

        try:
            wav = load_audio(root / "audio.wav")
        except Exception as exc:  # a broken audio track must not fail the package: warp mode instead
            log.warning("%s: audio unreadable for mouth calibration (%s)", root / "audio.wav", exc)
    calib = calibrate_arrays(landmarks, valid, wav, float(manifest.get("fps", 25)))
    summary = calib.summary()
    _write_atomic(root / CALIB_FILE, calib.save)
    if not manifest.get(MANIFEST_FIELD, {}).get("preview_annotated"):
        summary["preview_annotated"] = _annotate_preview(root / "preview.jpg", summary)
    else:
        summary["preview_annotated"] = True
    manifest[MANIFEST_FIELD] = summary
    _write_atomic(manifest_path, lambda p: p.write_text(json.dumps(manifest, indent=2), encoding="utf-8"))
    if summary["warning"]:
        log.warning("%s: %s", root.name, summary["warning"])
    return summary


def _annotate_preview(path: Path, summary: dict) -> bool:
    """Add a line under preview.jpg saying how much speech the mouth engine can learn from (once)."""
    if not path.is_file():
        return False
    try:
        import cv2
    except ImportError:
        return False
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        return False
    if summary["mode"] == "warp":
        text = "mouth engine: no usable speech -> lip warp (lowest quality)"
    else:
        text = f"mouth engine: {summary['usable_speech_s']:.0f} s of speech, A/V offset {summary['av_offset_frames']:+d} f"
        if summary["usable_speech_s"] < WARN_SPEECH_S:
            text += " - under 30 s: record more talking"
    bar_h = max(24, img.shape[1] // 40)
    bar = np.full((bar_h, img.shape[1], 3), 32, np.uint8)
    scale = bar_h / 40.0
    colour = (80, 200, 255) if summary.get("warning") else (200, 255, 200)
    cv2.putText(bar, text, (8, int(bar_h * 0.72)), cv2.FONT_HERSHEY_SIMPLEX, scale, colour, max(1, int(scale * 2)),
                cv2.LINE_AA)
    ok, buf = cv2.imencode(".jpg", np.vstack([img, bar]), [cv2.IMWRITE_JPEG_QUALITY, 92])
    if not ok:
        return False
    _write_atomic(path, lambda p: p.write_bytes(buf.tobytes()))
    return True


def load_or_calibrate(package_dir: str | os.PathLike) -> MouthCalibration:
    """The cached calibration; computed (and cached when the folder is writable) when missing or stale."""
    root = Path(package_dir)
    calib = MouthCalibration.load(root / CALIB_FILE)
    try:
        frames = int(json.loads((root / "manifest.json").read_text(encoding="utf-8"))["frame_count"])
    except (OSError, ValueError, KeyError):
        frames = -1
    if calib is not None and len(calib.descriptors) == frames:  # a rebuilt package invalidates the cache
        return calib
    try:
        calibrate(root)
        calib = MouthCalibration.load(root / CALIB_FILE)
    except OSError:
        calib = None
    if calib is None:  # read-only package: compute in memory
        manifest = json.loads((root / "manifest.json").read_text(encoding="utf-8"))
        with np.load(root / "face_det.npz") as z:
            landmarks, valid = z["landmarks"], z["valid"]
        wav = None
        if (root / "audio.wav").is_file():
            from models.audio import load_audio

            wav = load_audio(root / "audio.wav")
        calib = calibrate_arrays(landmarks, valid, wav, float(manifest.get("fps", 25)))
    return calib


def _write_atomic(path: Path, write) -> None:
    tmp = path.with_name(f".tmp-{path.name}.{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()

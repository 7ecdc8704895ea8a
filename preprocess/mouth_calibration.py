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
The measures live in preprocess.mouth_features and the fitted model in preprocess.mouth_model; this module
stores and loads it with the package, and re-exports both so callers have one import.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np

from preprocess.mouth_features import (DESCRIPTOR_NAMES, EYE_OUTER, FEATURE_BANDS, FEATURE_BINS,  # noqa: F401
                                       INNER_LIP_PAIRS, LOUDNESS_STEPS, MAX_AV_OFFSET, MOUTH_CORNERS,
                                       OUTER_LIP_VERTICAL, audio_features, estimate_av_offset, mouth_descriptor,
                                       shift_rows, speech_thresholds, speech_weight, window_loudness)
from preprocess.mouth_model import (CALIB_VERSION, MIN_USABLE_SPEECH_S, NO_AUDIO_THRESHOLDS,  # noqa: F401
                                    WARN_SPEECH_S, MouthCalibration, calibrate_arrays)

log = logging.getLogger(__name__)

CALIB_FILE = "mouth_calib.npz"
MANIFEST_FIELD = "mouth_calibration"


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

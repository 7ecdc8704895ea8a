"""Tiny LRS2-shaped training sets from real clips of ../shared/media, cached outside the project.

Prefers the project's own writer (`stream-wav2lip preprocess VIDEO --out A --train-dir T`) when it is
available; otherwise (and always when S2L_TRAINSET_FALLBACK=1) builds the same layout directly: PyAV decodes
the 25 fps frames, MediaPipe finds the face in each frame (boxes smoothed over 9 frames, Wav2Lip-style
bottom padding), crops are resized to `size` and written as `0.jpg, 1.jpg, ...` beside a 16 kHz `audio.wav`.
Built sets are cached in $S2L_TEST_CACHE (default: <tmp>/s2l-test-cache) keyed by clip and size.
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("S2L_TEST_CACHE", Path(tempfile.gettempdir()) / "s2l-test-cache")) / "training"

# 25 fps, one frontal speaking face, audio: the four used by the smoke training (and one held out).
TRAIN_CLIPS = (
    "video-retalking__examples_face_2.mp4",
    "video-retalking__examples_face_3.mp4",
    "video-retalking__examples_face_5.mp4",
    "Real3DPortrait__data_raw_examples_May_5s.mp4",
)
VAL_CLIPS = ("LivePortrait__assets_examples_driving_d12.mp4",)


def build_set(media_dir: Path, name: str, train: tuple[str, ...] = TRAIN_CLIPS, val: tuple[str, ...] = VAL_CLIPS,
              size: int = 96, max_seconds: float | None = None) -> Path:
    """Folder `<cache>/<name>` with `<video>/<clip>/` folders, train.txt and val.txt (built once)."""
    root = CACHE / name
    if (root / "train.txt").is_file():
        return root
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{name}.", dir=_mkdir(CACHE)))
    try:
        lines: dict[str, list[str]] = {"train": [], "val": []}
        for split, clips in (("train", train), ("val", val)):
            for clip in clips:
                video = Path(clip).stem
                write_clip(media_dir / clip, tmp / video / "00000", size, max_seconds)
                lines[split].append(f"{video}/00000")
        for split, entries in lines.items():
            (tmp / f"{split}.txt").write_text("\n".join(entries) + "\n")
        if root.exists():
            shutil.rmtree(root)
        os.replace(tmp, root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_clip(video: Path, out: Path, size: int, max_seconds: float | None = None) -> None:
    import cv2
    import soundfile

    from models.audio import load_audio

    frames = decode_frames(video, max_seconds)
    boxes = face_boxes(frames)
    out.mkdir(parents=True, exist_ok=True)
    for i, (frame, (x1, y1, x2, y2)) in enumerate(zip(frames, boxes)):
        crop = frame[y1:y2, x1:x2]
        cv2.imwrite(str(out / f"{i}.jpg"), cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA),
                    [cv2.IMWRITE_JPEG_QUALITY, 95])
    wav = load_audio(video)
    if max_seconds is not None:
        wav = wav[: int(max_seconds * 16000)]
    soundfile.write(str(out / "audio.wav"), wav, 16000, subtype="PCM_16")


def decode_frames(video: Path, max_seconds: float | None = None) -> list[np.ndarray]:
    import av

    frames = []
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        for frame in container.decode(stream):
            frames.append(frame.to_ndarray(format="bgr24"))
            if max_seconds is not None and len(frames) >= int(max_seconds * 25):
                break
    return frames


def face_boxes(frames: list[np.ndarray]) -> list[tuple[int, int, int, int]]:
    """Square-ish Wav2Lip face boxes (detector box, 10 px extra at the chin), median-smoothed over 9 frames."""
    import mediapipe as mp

    h, w = frames[0].shape[:2]
    raw = []
    with mp.solutions.face_detection.FaceDetection(model_selection=1, min_detection_confidence=0.3) as detector:
        for frame in frames:
            result = detector.process(frame[:, :, ::-1])
            if result.detections:
                box = result.detections[0].location_data.relative_bounding_box
                raw.append([box.xmin * w, box.ymin * h, (box.xmin + box.width) * w, (box.ymin + box.height) * h])
            else:
                raw.append(raw[-1] if raw else [w * 0.25, h * 0.2, w * 0.75, h * 0.8])
    arr = np.asarray(raw)
    smoothed = np.stack([np.median(arr[max(0, i - 4):i + 5], axis=0) for i in range(len(arr))])
    boxes = []
    for x1, y1, x2, y2 in smoothed:
        pad = 0.1 * (y2 - y1)
        boxes.append((int(max(0, x1)), int(max(0, y1)), int(min(w, x2)), int(min(h, y2 + pad))))
    return boxes


def build_with_preprocess(media_dir: Path, name: str, train: tuple[str, ...] = TRAIN_CLIPS,
                          val: tuple[str, ...] = VAL_CLIPS, size: int = 96) -> Path | None:
    """The same set written by the project's own `preprocess --train-dir` (preprocess.api.preprocess_video),
    with train.txt/val.txt rewritten so that the train videos and the held-out video stay apart.
    None when the preprocess pipeline is not usable (or S2L_TRAINSET_FALLBACK=1)."""
    if os.environ.get("S2L_TRAINSET_FALLBACK") == "1":
        return None
    root = CACHE / f"pp-{name}"
    if (root / "train.txt").is_file() and (root / ".complete").is_file():
        return root
    try:
        from preprocess.api import preprocess_video
    except ImportError:
        return None
    shutil.rmtree(root, ignore_errors=True)
    avatars = CACHE / f"pp-{name}-avatars"
    try:
        for clip in train + val:
            preprocess_video(media_dir / clip, avatars, face_size=size, train_dir=root)
    except Exception as exc:  # the pipeline is someone else's work in progress: fall back, say why
        print(f"preprocess writer unusable ({type(exc).__name__}: {exc}); using the fallback crops", file=sys.stderr)
        return None
    lines: dict[str, list[str]] = {"train": [], "val": []}
    for split, clips in (("train", train), ("val", val)):
        for clip in clips:
            video = root / Path(clip).stem
            lines[split] += sorted(f"{video.name}/{c.name}" for c in video.iterdir() if c.is_dir())
    for split, entries in lines.items():
        (root / f"{split}.txt").write_text("\n".join(entries) + "\n")
    (root / ".complete").write_text("ok\n")
    shutil.rmtree(avatars, ignore_errors=True)
    return root


def training_set(media_dir: Path, name: str, **kwargs) -> Path:
    """The project's writer when it works, else the fallback builder above."""
    return build_with_preprocess(media_dir, name, **kwargs) or build_set(media_dir, f"fb-{name}", **kwargs)

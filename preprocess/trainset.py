"""The LRS2-shaped training set written beside the avatar packages, and a small reader for it.

Layout (what Wav2Lip-style training code expects)::

    <train_dir>/<video>/<clip>/0.jpg 1.jpg ... audio.wav    face crops at face_size + that clip's 16 kHz audio
    <train_dir>/train.txt, val.txt                         one "video/clip" per line

Which face crop: **head_face** (the crop taken from the upright head), not body_face. It is exactly what the
network is fed live by `render`/`serve`, so a model fine-tuned on it sees the same framing, scale and
roll-corrected pose at training and at inference time. The images are the package's own head_face JPEGs
(copied, not re-encoded).

Clips hold only valid frames: each run of frames with a face is cut into clips of at most CLIP_SECONDS
(runs shorter than MIN_CLIP_SECONDS are dropped, too short for a 5-frame window plus a shifted one), so every
gap starts a new clip. The split is by a hash of "video/clip" (about 1 in VAL_EVERY clips goes to val), stable
when videos are added; at least one clip goes to val once there are two or more.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from preprocess.package import CROP_FOLDERS, frame_name
from stream_wav2lip.atomic import atomic_dir, atomic_path
from stream_wav2lip.errors import UserError

FPS = 25
SAMPLE_RATE = 16000
CLIP_SECONDS = 5.0
MIN_CLIP_SECONDS = 1.0
VAL_EVERY = 10
SPLITS = ("train", "val")


@dataclass(frozen=True)
class Clip:
    """One training clip: frames in order and the audio that goes with them."""

    name: str  # "video/clip"
    path: Path
    frames: tuple[Path, ...]
    audio: Path

    def __len__(self) -> int:
        return len(self.frames)


def clip_ranges(valid: np.ndarray, clip_frames: int = int(CLIP_SECONDS * FPS),
                min_frames: int = int(MIN_CLIP_SECONDS * FPS)) -> list[tuple[int, int]]:
    """[(start, stop)) frame ranges: valid runs split into near-equal clips of <= clip_frames."""
    from preprocess.smoothing import valid_runs

    ranges = []
    for start, stop in valid_runs(valid):
        n = stop - start
        if n < min_frames:
            continue
        pieces = int(np.ceil(n / clip_frames))
        edges = np.linspace(start, stop, pieces + 1).round().astype(int)
        ranges.extend(zip(edges[:-1].tolist(), edges[1:].tolist()))
    return ranges


def read_pcm16(path: Path) -> np.ndarray:
    """The int16 samples of a 16-bit mono WAV (a one-line error otherwise)."""
    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2 or w.getnchannels() != 1:
            raise UserError(f"{path}: expected 16-bit mono WAV")
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")


def write_pcm16(path: Path, pcm: np.ndarray) -> None:
    """int16 samples as a 16 kHz mono 16-bit WAV (a training clip's audio.wav)."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(np.ascontiguousarray(pcm, dtype="<i2").tobytes())


def write_video_clips(package_dir: str | Path, train_dir: str | Path, force: bool = False) -> int:
    """Write `<train_dir>/<video>/...` from an avatar package and refresh train.txt/val.txt; returns the clip count.

    An existing video folder is kept unless `force`. A package without audio gives no clips.
    """
    package_dir, train_dir = Path(package_dir), Path(train_dir)
    video = package_dir.name
    target = train_dir / video
    train_dir.mkdir(parents=True, exist_ok=True)
    if target.is_dir() and not force:
        update_split_lists(train_dir)
        return sum(1 for p in target.iterdir() if p.is_dir())
    audio_path = package_dir / "audio.wav"
    if not audio_path.is_file():
        if target.is_dir():
            shutil.rmtree(target)
        update_split_lists(train_dir)
        return 0
    manifest = json.loads((package_dir / "manifest.json").read_text(encoding="utf-8"))
    with np.load(package_dir / "face_det.npz") as z:
        valid = z["valid"].astype(bool)
    pcm = read_pcm16(audio_path)
    per_frame = SAMPLE_RATE // FPS
    ranges = clip_ranges(valid[: int(manifest["frame_count"])])
    with atomic_dir(target) as tmp:
        for k, (start, stop) in enumerate(ranges):
            clip = tmp / f"{k:05d}"
            clip.mkdir()
            for j, i in enumerate(range(start, stop)):
                shutil.copyfile(package_dir / CROP_FOLDERS["head"] / frame_name(i), clip / f"{j}.jpg")
            piece = pcm[start * per_frame: stop * per_frame]
            piece = np.pad(piece, (0, (stop - start) * per_frame - len(piece)))
            write_pcm16(clip / "audio.wav", piece)
    update_split_lists(train_dir)
    return len(ranges)


def split_of(name: str) -> str:
    """'train' or 'val' for "video/clip", from a hash: the same answer on every machine and run."""
    h = int(hashlib.sha1(name.encode("utf-8")).hexdigest()[:8], 16)
    return "val" if h % VAL_EVERY == 0 else "train"


def _all_clips(train_dir: Path) -> list[str]:
    names = []
    for video in sorted(p for p in train_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for clip in sorted(p for p in video.iterdir() if p.is_dir() and (p / "audio.wav").is_file()):
            names.append(f"{video.name}/{clip.name}")
    return names


def update_split_lists(train_dir: str | Path) -> dict[str, list[str]]:
    """Rewrite train.txt and val.txt from the clips on disk (deterministic)."""
    train_dir = Path(train_dir)
    names = _all_clips(train_dir)
    split = {s: [n for n in names if split_of(n) == s] for s in SPLITS}
    if len(names) >= 2 and not split["val"]:  # always something to validate on
        pick = min(names, key=lambda n: hashlib.sha1(n.encode("utf-8")).hexdigest())
        split["train"].remove(pick)
        split["val"].append(pick)
    for s in SPLITS:
        with atomic_path(train_dir / f"{s}.txt") as tmp:
            tmp.write_text("".join(f"{n}\n" for n in split[s]), encoding="utf-8")
    return split


def iter_clips(train_dir: str | Path, split: str = "train") -> Iterator[Clip]:
    """Yield the clips listed in `<train_dir>/<split>.txt` (frames sorted numerically)."""
    train_dir = Path(train_dir)
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
    listing = train_dir / f"{split}.txt"
    if not listing.is_file():
        raise UserError(f"{listing}: not found; build the set with `stream-wav2lip preprocess --train-dir`")
    for line in listing.read_text(encoding="utf-8").splitlines():
        name = line.strip()
        if not name:
            continue
        path = train_dir / name
        frames = sorted(path.glob("*.jpg"), key=lambda p: int(p.stem) if p.stem.isdigit() else -1)
        audio = path / "audio.wav"
        if not frames or not audio.is_file():
            raise UserError(f"{path}: training clip listed in {listing.name} is missing or incomplete")
        yield Clip(name, path, tuple(frames), audio)

"""What a precision decision is made on and remembered by: samples of the avatar, the lower-face PSNR that
judges a low-precision network against fp32, and the per-avatar cache of verdicts (backend/generators/
precision.py decides; this module holds the data it decides on, so that the decision stays readable).
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from stream_wav2lip.errors import UserError

MIN_PSNR_DB = 35.0  # lower-face PSNR of the low-precision faces against fp32, over all validation samples
RECIPE = 1  # bump when the calibration, quantisation or validation changes: older cache entries stop matching


@dataclass
class Verdict:
    """The outcome of validating one low precision against fp32 on one avatar (stored as verdict.json)."""

    precision: str
    accepted: bool
    psnr_db: float  # over all validation samples (pooled squared error)
    worst_db: float  # the worst single sample
    samples: int
    fps: dict = field(default_factory=dict)  # machine key -> {"fp32": fps, "int8": fps}
    recipe: int = RECIPE
    detail: str = ""

    def summary(self) -> str:
        return (f"{self.precision} vs fp32 on {self.samples} samples of this avatar: lower-face PSNR "
                f"{self.psnr_db:.1f} dB (worst {self.worst_db:.1f}, needs {MIN_PSNR_DB:.0f})")


# ------------------------------------------------------------------------------------------------ samples
def lower_face_psnr(reference: np.ndarray, test: np.ndarray) -> tuple[float, float]:
    """(pooled, worst single) PSNR in dB of uint8 faces (B,S,S,3) over their lower half, the redrawn part."""
    s = reference.shape[1]
    ref = np.asarray(reference[:, s // 2:], np.float64)
    err = (ref - np.asarray(test[:, s // 2:], np.float64)) ** 2
    per_sample = err.reshape(len(err), -1).mean(axis=1)

    def db(mse: float) -> float:
        return float("inf") if mse == 0 else float(10 * np.log10(255.0 ** 2 / mse))

    return db(float(per_sample.mean())), db(float(per_sample.max()))


def synthetic_mels(count: int, seed: int = 0) -> np.ndarray:
    """(count, 80, 16) mel windows of a speech-like signal (voiced harmonics, syllable-rate envelope, noise):
    the calibration stand-in when a package has no audio of its own."""
    from models.audio import SAMPLE_RATE, mel_windows, melspectrogram

    rng = np.random.default_rng(seed)
    seconds = max(1.0, count / 25.0 + 0.4)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    pitch = 120 + 30 * np.sin(2 * np.pi * 0.5 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / SAMPLE_RATE
    voiced = sum(np.sin(k * phase) / k for k in range(1, 12))
    envelope = np.clip(np.sin(2 * np.pi * 4.0 * t), 0, None) ** 2
    wav = 0.3 * envelope * voiced + 0.02 * rng.standard_normal(t.size)
    windows = mel_windows(melspectrogram(wav.astype(np.float32)))
    return windows[np.linspace(0, len(windows) - 1, count).round().astype(int)]


def avatar_samples(package, crop: str, size: int, count: int, offset: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """`count` (face crop at the network's size, mel window) pairs of this avatar: its own crops, spread over the
    clip, and mel windows of its own audio (synthetic speech when it has none). `offset` (0..1) shifts the
    picks so calibration and validation use different samples."""
    import cv2

    from models.audio import load_audio, mel_windows, melspectrogram

    mels = None
    if package.audio_path is not None:
        try:
            mels = mel_windows(melspectrogram(load_audio(package.audio_path)))
        except (UserError, ValueError):
            mels = None  # shorter than one window, or unreadable: the stand-in below
    if mels is None or len(mels) < 2 * count:  # short or no audio: speech-like stand-ins make up the rest
        own = mels if mels is not None else np.zeros((0, 80, 16), np.float32)
        mels = np.concatenate([own, synthetic_mels(2 * count - len(own))])
    picks = (np.arange(count) + offset) / count
    frames = np.minimum((picks * package.frame_count).astype(int), package.frame_count - 1)
    windows = np.minimum((picks * len(mels)).astype(int), len(mels) - 1)
    faces = []
    for i in frames:
        face = package.face(int(i), crop)
        if face.shape[0] != size:
            interp = cv2.INTER_AREA if face.shape[0] > size else cv2.INTER_LINEAR
            face = cv2.resize(face, (size, size), interpolation=interp)
        faces.append(face)
    return np.stack(faces), np.asarray(mels[windows], np.float32)


# ------------------------------------------------------------------------------------------------ cache
_HASHED: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> digest, for this process


def file_sha256(path: str | Path, chunk: int = 1 << 22) -> str:
    """The file's SHA-256, read once per process while its size and mtime stay the same: a checkpoint's hash
    keys both the int8 cache (`cache_folder`) and the fp32 ONNX export (onnx_fp32.py), 145 MB read each time."""
    st = os.stat(path)
    key = (os.path.abspath(path), st.st_size, st.st_mtime_ns)
    if key not in _HASHED:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            while block := f.read(chunk):
                digest.update(block)
        _HASHED[key] = digest.hexdigest()
    return _HASHED[key]


def avatar_hash(package) -> str:
    """Changes whenever the crops or the audio could have: the manifest (source hash, creation time, sizes)
    plus the audio file's size and mtime."""
    digest = hashlib.sha256((package.root / "manifest.json").read_bytes())
    audio = package.audio_path
    if audio is not None:
        st = audio.stat()
        digest.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
    return digest.hexdigest()


def cache_folder(package, checkpoint: str | Path, crop: str) -> Path:
    return package.root / ".cache" / "precision" / f"{file_sha256(checkpoint)[:16]}-{avatar_hash(package)[:16]}-{crop}"


def read_verdict(folder: Path, precision: str) -> Verdict | None:
    try:
        data = json.loads((folder / f"{precision}.json").read_text(encoding="utf-8"))
        verdict = Verdict(**data)
    except (OSError, ValueError, TypeError):
        return None
    return verdict if verdict.recipe == RECIPE else None


def write_verdict(folder: Path, verdict: Verdict) -> None:
    from stream_wav2lip.atomic import atomic_path

    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / f"{verdict.precision}.json") as tmp:
        Path(tmp).write_text(json.dumps(asdict(verdict), indent=1), encoding="utf-8")


def machine_key(threads: int, batch: int) -> str:
    """Speeds are only reused on the same machine with the same threads and batch."""
    return f"{platform.machine()}-{os.cpu_count()}cpu-{threads}t-b{batch}"

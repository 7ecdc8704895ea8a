"""Fixtures for the training tests: tiny synthetic LRS2-shaped sets (fast) and real-media sets (slow, cached)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))


def write_synthetic_clip(folder: Path, frames: int, size: int = 32, seconds: float | None = None,
                         padded: bool = False, skip: tuple[int, ...] = ()) -> Path:
    """Frames whose pixel value encodes the frame number (frame n: value 6n, n < 42; the lower half's blue
    channel 255 - 6n), plus a noise WAV."""
    import cv2
    import soundfile

    folder.mkdir(parents=True, exist_ok=True)
    for n in range(frames):
        if n in skip:
            continue
        image = np.full((size, size, 3), 6 * n, np.uint8)
        image[size // 2:, :, 0] = 255 - 6 * n  # lower half differs from upper half (crop tests)
        cv2.imwrite(str(folder / (f"{n:05d}.jpg" if padded else f"{n}.jpg")), image,
                    [cv2.IMWRITE_JPEG_QUALITY, 100])
    seconds = frames / 25.0 if seconds is None else seconds
    rng = np.random.default_rng(frames)
    name = "synced.wav" if padded else "audio.wav"
    soundfile.write(str(folder / name), (0.1 * rng.standard_normal(int(seconds * 16000))).astype(np.float32),
                    16000, subtype="PCM_16")
    return folder


@pytest.fixture()
def synthetic_set(tmp_path: Path) -> Path:
    """3 train clips (one with {:05} names), 1 val clip, 1 too-short and 1 missing clip in train.txt."""
    root = tmp_path / "set"
    write_synthetic_clip(root / "vid_a" / "00000", 40)
    write_synthetic_clip(root / "vid_a" / "00001", 30, skip=(12,))
    write_synthetic_clip(root / "vid_b" / "00000", 35, padded=True)
    write_synthetic_clip(root / "vid_c" / "00000", 30)
    write_synthetic_clip(root / "vid_d" / "short", 8)
    (root / "train.txt").write_text("vid_a/00000\nvid_a/00001 extra-token\n"
                                    f"{root / 'vid_b' / '00000'}\n\nvid_d/short\nvid_x/missing\n")
    (root / "val.txt").write_text("vid_c/00000\n")
    return root


def trainer_args(add_flags, argv: list[str]) -> argparse.Namespace:
    """Parse a trainer's flags (`training.flags.add_*_arguments`) exactly as the CLI does."""
    parser = argparse.ArgumentParser()
    add_flags(parser)
    return parser.parse_args(argv)


@pytest.fixture(autouse=True)
def _few_threads():
    torch.set_num_threads(2)
    yield

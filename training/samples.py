"""SyncNet and Wav2Lip training samples, drawn the way the reference draws them (docs/models.md §12).

Why samples are a pure function of (seed, epoch, index): the reference ignored the index and used the global
RNG of each loader worker, so no two runs (or resumes, or worker counts) saw the same data. Here every sample
gets its own generator seeded from (seed, split, epoch, index); the DistributedSampler decides which indices a
rank sees. A resumed run, a run with 0 or 8 workers and rank 1 of 2 all see exactly what they would have seen.

Keys passed by the sampler are `(epoch, index)` tuples (a plain int means epoch 0).
"""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from training.clips import Clip, ClipReader
from training.windows import (MEL_STEPS, SYNC_T, generator_mel_starts, generator_window_starts, lower_half,
                              mel_window_fits, stack_window, sync_mel_start)

MAX_REDRAWS = 200
_SPLIT_TAG = {"train": 0, "val": 1}


def sample_rng(seed: int, split: str, epoch: int, index: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), _SPLIT_TAG.get(split, 2), int(epoch), int(index)])


def _unpack(key) -> tuple[int, int]:
    if isinstance(key, (tuple, list)):
        return int(key[0]), int(key[1])
    return 0, int(key)


class _ClipSamples(Dataset):
    """What both samplers share: clip list, reader, epoch length, the redraw loop."""

    def __init__(self, clips: list[Clip], image_size: int, *, seed: int = 0, split: str = "train",
                 frame_cache_mb: float = 0.0, samples_per_epoch: int | None = None):
        if not clips:
            raise ValueError("no usable clips")
        self.clips = clips
        self.image_size = int(image_size)
        self.seed, self.split = int(seed), split
        self.reader = ClipReader(clips, image_size, frame_cache_mb=frame_cache_mb)
        # An "epoch" visits about every window once (the reference used n_clips samples).
        self.length = int(samples_per_epoch or sum(int(c.sync_starts.size) for c in clips))

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, key) -> dict[str, torch.Tensor]:
        epoch, index = _unpack(key)
        rng = sample_rng(self.seed, self.split, epoch, index)
        for _ in range(MAX_REDRAWS):
            sample = self.draw(rng)
            if sample is not None:
                return sample
        raise RuntimeError(f"could not draw a valid sample in {MAX_REDRAWS} tries (all windows unreadable?)")

    def mel_window(self, mel: np.ndarray, start: int | None) -> np.ndarray | None:
        if not mel_window_fits(start, mel.shape[1]):
            return None
        return mel[:, start:start + MEL_STEPS]

    def draw(self, rng: np.random.Generator) -> dict[str, torch.Tensor] | None:
        raise NotImplementedError


class SyncNetSamples(_ClipSamples):
    """(face window, mel window, label): label 1 = the mel belongs to these 5 frames, 0 = to another window.

    As the reference: pick window `img` and a different window `wrong` of the same clip; the audio always
    comes from `img`; with probability 1/2 the video comes from `img` (positive) else from `wrong`.
    `negative_min_distance` (default 1 = reference) can keep negatives further away.
    """

    def __init__(self, clips: list[Clip], image_size: int, *, negative_min_distance: int = 1,
                 audio_shift: int = 0, **kwargs):
        super().__init__(clips, image_size, **kwargs)
        self.negative_min_distance = max(1, int(negative_min_distance))
        self.audio_shift = int(audio_shift)

    def draw(self, rng: np.random.Generator) -> dict[str, torch.Tensor] | None:
        clip_index = int(rng.integers(len(self.clips)))
        starts = self.clips[clip_index].sync_starts
        img = int(starts[rng.integers(starts.size)])
        others = starts[np.abs(starts - img) >= self.negative_min_distance]
        if others.size == 0:
            return None
        wrong = int(others[rng.integers(others.size)])
        positive = bool(rng.random() < 0.5)
        first = img if positive else wrong
        mel = self.mel_window(self.reader.mel(clip_index), sync_mel_start(img, self.audio_shift))
        if mel is None:
            return None
        frames = self.reader.window(clip_index, first)
        if frames is None:
            return None
        face = stack_window([lower_half(f) for f in frames])
        return {
            "face": torch.from_numpy(face),
            "mel": torch.from_numpy(np.ascontiguousarray(mel, dtype=np.float32)[None]),
            "label": torch.tensor(1.0 if positive else 0.0),
            "clip": torch.tensor(clip_index),
            "video_start": torch.tensor(first),
            "audio_start": torch.tensor(img),
        }


class Wav2LipSamples(_ClipSamples):
    """Generator samples (docs/models.md §12): target window `img`, reference window `wrong` (another window of the
    same clip), the target's lower half blanked, one generator mel window per target frame (shifted by
    `audio_offset`), and the sync-loss mel window of the target."""

    def __init__(self, clips: list[Clip], image_size: int, *, audio_offset: int = 0, **kwargs):
        super().__init__(clips, image_size, **kwargs)
        self.audio_offset = int(audio_offset)
        self._targets: dict[int, np.ndarray] = {}

    def target_starts(self, clip_index: int) -> np.ndarray:
        found = self._targets.get(clip_index)
        if found is None:
            clip = self.clips[clip_index]
            found = generator_window_starts(clip.frames, clip.est_mel_frames, self.audio_offset)
            self._targets[clip_index] = found
        return found

    def draw(self, rng: np.random.Generator) -> dict[str, torch.Tensor] | None:
        clip_index = int(rng.integers(len(self.clips)))
        targets = self.target_starts(clip_index)
        if targets.size == 0:
            return None
        img = int(targets[rng.integers(targets.size)])
        starts = self.clips[clip_index].sync_starts
        others = starts[starts != img]
        if others.size == 0:
            return None
        wrong = int(others[rng.integers(others.size)])
        mel = self.reader.mel(clip_index)
        sync_mel = self.mel_window(mel, sync_mel_start(img))
        indiv = [self.mel_window(mel, s) for s in generator_mel_starts(img, self.audio_offset)]
        if sync_mel is None or any(m is None for m in indiv):
            return None
        target = self.reader.window(clip_index, img)
        reference = self.reader.window(clip_index, wrong)
        if target is None or reference is None:
            return None
        gt = _to_chw_t(target)  # 3 x T x S x S
        masked = gt.copy()
        masked[:, :, self.image_size // 2:] = 0.0
        x = np.concatenate([masked, _to_chw_t(reference)], axis=0)  # 6 x T x S x S
        return {
            "x": torch.from_numpy(x),
            "indiv_mels": torch.from_numpy(np.stack(indiv).astype(np.float32)[:, None]),  # T x 1 x 80 x 16
            "mel": torch.from_numpy(np.ascontiguousarray(sync_mel, dtype=np.float32)[None]),
            "gt": torch.from_numpy(gt),
            "clip": torch.tensor(clip_index),
            "target_start": torch.tensor(img),
            "reference_start": torch.tensor(wrong),
        }


def _to_chw_t(frames: list[np.ndarray]) -> np.ndarray:
    """SYNC_T frames S x S x 3 uint8 -> 3 x T x S x S float32 in [0, 1] (the reference's layout)."""
    assert len(frames) == SYNC_T
    stacked = np.stack(frames, axis=0)  # T x S x S x 3
    return np.ascontiguousarray(stacked.transpose(3, 0, 1, 2), dtype=np.float32) / np.float32(255.0)

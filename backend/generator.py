"""The generator contract: what turns (face crop, mel window) into a new mouth.

Two implementations exist: the Wav2Lip network (`backend.wav2lip_generator`) and the weightless
`mouth` engine (`backend.mouth`), which picks real mouth images from the avatar's own footage. The
engine does not know which one it runs; both take batches of `GeneratorInput` in output-frame order and
return face crops of the same size, in the same crop space, so the same compositor pastes them back.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class GeneratorInput:
    """One output frame's work item.

    face: the avatar frame's face crop, BGR uint8 (S, S, 3), S = `Generator.face_size` (the network's input size).
    mel:  the (80, 16) float32 mel window for this output frame (models.audio.mel_windows rule).
    avatar_index: which avatar frame the crop comes from (the mouth engine needs it; the network does not).
    speech: the silence gate's verdict for this frame.
    """

    face: np.ndarray
    mel: np.ndarray
    avatar_index: int
    speech: bool = True


class Generator(ABC):
    """Produces lip-synced face crops. Implementations may keep temporal state between calls."""

    name: str = "generator"
    face_size: int = 96
    crop: str = "head"  # which crop of the avatar package it expects: "head" (head_face/) or "body" (body_face/)

    @abstractmethod
    def generate(self, batch: list[GeneratorInput]) -> np.ndarray:
        """Return (B, S, S, 3) uint8 BGR faces for `batch`, in order."""

    def reset(self) -> None:
        """Forget temporal state (called on barge-in and at the start of each utterance)."""

    @property
    def preferred_batch(self) -> int:
        """Batch size that keeps latency low and throughput high on the current device."""
        return 4


class NullGenerator(Generator):
    """Returns the input faces unchanged: the pipeline's own cost, for tests and latency benchmarks."""

    name = "null"

    def __init__(self, face_size: int = 96, crop: str = "head"):
        self.face_size = face_size
        self.crop = crop

    def generate(self, batch: list[GeneratorInput]) -> np.ndarray:
        if not batch:
            return np.zeros((0, self.face_size, self.face_size, 3), np.uint8)
        return np.stack([item.face for item in batch])

"""The generator contract: what turns (face crop, mel window) into a new mouth, and what a generator declares.

Every generator (the Wav2Lip network, the weightless mouth engine, a test's stand-in) is a plugin behind this
one contract: the engine (backend/engine.py) never asks which one it runs. What the engine must know to drive
a generator correctly is declared on the class, as capabilities, instead of being probed:

* `handles_silence`: the generator renders silence itself (the mouth engine shows a resting mouth), so the
  engine runs it on every frame of an utterance, silent ones too; otherwise silent frames keep the footage.
* `native_size`: the face size it computes at (`face_size`); a detail or upscale stage can compare it with the
  face's size in the frame.
* `real_pixels`: its faces are real footage pixels (the mouth engine), so the detail stage (backend/detail/)
  that restores high frequencies after a low-resolution network is skipped.
* `needs_calibration`: it needs per-avatar preparation, done at preprocess time by `prepare_avatar(root)` (and
  lazily by the generator itself for older packages).
* `preferred_batch` (live), `throughput_batch` (offline), `device_type` and `round_batch(n)`: how the engine
  batches for it.

Generators take batches of `GeneratorInput` in output-frame order and return face crops of the input's size in
the same crop space, so one compositor pastes every generator's output back. `reset()` forgets temporal state;
the engine calls it on the render thread before the first frame of every utterance, never concurrently with
`generate()`. Adding a generator = one module + one entry in backend/generators/registry.py.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np


@dataclass(frozen=True, slots=True)
class GeneratorInput:
    """One output frame's work item.

    face: the avatar frame's face crop, BGR uint8 (S, S, 3) in the generator's crop space.
    mel:  the (80, 16) float32 mel window for this output frame (models.audio.mel_windows rule).
    avatar_index: which avatar frame the crop comes from (the mouth engine needs it; the network does not).
    speech: the silence gate's verdict for this frame.
    package: the package avatar_index refers to when it is not the generator's own avatar (an action clip's
    frames, backend/action_walk.py); None for the avatar's main footage.
    """

    face: np.ndarray
    mel: np.ndarray
    avatar_index: int
    speech: bool = True
    package: object = None


class Generator(ABC):
    """Produces lip-synced face crops. Implementations may keep temporal state between calls."""

    name: str = "generator"
    # capabilities, declared (see module docstring)
    handles_silence: ClassVar[bool] = False
    needs_calibration: ClassVar[bool] = False
    real_pixels: ClassVar[bool] = False  # its faces are the footage's own pixels: no detail stage after it
    face_size: int = 96  # native face size (the network's input); instances may set it from their weights
    crop: str = "head"  # the package crop it expects: "head" (head_face/), "heads" (whole head) or "body"
    device_type: str = "cpu"  # where it computes: "cpu" or "cuda"
    precision: str | None = None  # the arithmetic it runs in ("fp32", "int8", ...), None when not a network
    precision_reason: str = ""
    # generate() calls a live driver may run at once, each on its share of the CPU threads (stateless networks)
    parallel_calls: int = 1

    @abstractmethod
    def generate(self, batch: list[GeneratorInput]) -> np.ndarray:
        """Return (B, S, S, 3) uint8 BGR faces for `batch`, in order (S = the inputs' size)."""

    def reset(self) -> None:
        """Forget temporal state (the engine calls it before the first frame of each utterance)."""

    @property
    def per_avatar(self) -> bool:
        """Bound to the avatar it was built for (its calibration, or a network validated on that avatar):
        `serve` builds a new one when it switches avatars instead of reusing it."""
        return self.needs_calibration

    @property
    def native_size(self) -> int:
        return int(self.face_size)

    @property
    def identity(self) -> str | None:
        """What fixes the faces it draws (its weights and arithmetic), as a short string: it keys per-avatar
        caches of measurements made on it (the detail stage's softness, backend/detail/softness.py). None
        (the default): nothing is cached, it is measured at every start."""
        return None

    @property
    def preferred_batch(self) -> int:
        """Batch size that keeps latency low and throughput high on the current device."""
        return 4

    @property
    def throughput_batch(self) -> int:
        """Batch size when only throughput counts (`render`)."""
        return self.preferred_batch

    def round_batch(self, n: int) -> int:
        """The batch size to use instead of `n` (e.g. a multiple of the CPU streams a batch is split into)."""
        return max(1, int(n))

    @classmethod
    def prepare_avatar(cls, root: Path, progress: bool = False) -> str | None:
        """Per-avatar preparation, run by `preprocess` for every registered generator that declares
        `needs_calibration`; returns a warning for the user, or None (default: nothing to do)."""
        return None


class NullGenerator(Generator):
    """Returns the input faces unchanged: the pipeline's own cost, for tests and latency benchmarks."""

    name = "null"
    real_pixels = True

    def __init__(self, face_size: int = 96, crop: str = "head"):
        self.face_size = face_size
        self.crop = crop

    def generate(self, batch: list[GeneratorInput]) -> np.ndarray:
        if not batch:
            return np.zeros((0, self.face_size, self.face_size, 3), np.uint8)
        return np.stack([item.face for item in batch])

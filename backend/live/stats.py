"""Counters of the live loop, read by the status channel and the benchmarks."""
from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field

import numpy as np


JUDGED_FRAMES = 50  # an utterance this long (2 s) or longer says how much of its speech the renderer can draw


@dataclass
class LiveStats:
    published: int = 0
    repeated: int = 0  # published with the previous image (not rendered in time)
    late: int = 0  # published with the frame before's image, which missed its own pts by less than a frame
    skipped: int = 0  # planned but deliberately not rendered (could not be in time, or over capacity)
    rendered: int = 0
    speech_frames: int = 0
    latencies_ms: deque = field(default_factory=lambda: deque(maxlen=200))
    all_latencies_ms: list = field(default_factory=list)
    publish_times: deque = field(default_factory=lambda: deque(maxlen=64))
    render_times: deque = field(default_factory=lambda: deque(maxlen=64))
    keep_all: bool = False
    batches: Counter = field(default_factory=Counter)  # speech calls by frames rendered (the batch serve uses)
    # the network's share of the work: frames generated and the wall time of their calls, summed over workers.
    # Why: distinct fps / the network alone splits into the network's speed inside serve (generated frames per
    # second of a worker's call time, × workers: what the cores left it) and how busy the loop kept the workers
    generated: int = 0
    generate_ns: int = 0
    # (generated, skipped) where the current utterance started (utterance_edge)
    _at_start: tuple[int, int] | None = field(default=None, init=False, repr=False)

    def call(self, frames: int, generated: bool, dt_ns: int) -> None:
        """Count one render call of `frames` frames that took dt_ns (a speech call when `generated`)."""
        if generated:
            self.batches[frames] += 1
            self.generated += frames
            self.generate_ns += dt_ns
        self.rendered += frames

    def utterance_edge(self, speaking: bool) -> float | None:
        """Called where an utterance starts (speaking) and where it ends: at its end, the share of its speech frames
        the renderer drew (the rest were skipped and repeated the image before), or None for one shorter than
        JUDGED_FRAMES (too short to say anything about the machine)."""
        if speaking:
            self._at_start = (self.generated, self.skipped)
            return None
        if self._at_start is None:
            return None
        drawn, skipped = self.generated - self._at_start[0], self.skipped - self._at_start[1]
        self._at_start = None
        return drawn / (drawn + skipped) if drawn + skipped >= JUDGED_FRAMES else None

    def percentile(self, q: float) -> float | None:
        if not self.latencies_ms:
            return None
        return float(np.percentile(np.asarray(self.latencies_ms), q))

    @staticmethod
    def rate(times: deque, now_ns: int) -> float:
        """Events in the last second."""
        return float(sum(1 for t in list(times) if now_ns - t <= 1_000_000_000))

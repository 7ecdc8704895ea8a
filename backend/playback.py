"""Optional local playback of the avatar's audio through PortAudio (`serve --play-audio [DEVICE]`).

The publisher hands each 40 ms block over at its pts; the PortAudio callback plays blocks in order from a
short jitter buffer. If the device falls behind by more than `max_buffer_ms` the oldest blocks are dropped
(the stream to OBS is unaffected: it carries its own pts), so local playback never drifts away either.
"""
from __future__ import annotations

import logging
import threading
from collections import deque

import numpy as np

from backend.frames import SAMPLE_RATE

log = logging.getLogger(__name__)


class PlaybackSink:
    """sink(plan, image) for the live loop: queues plan.audio for the PortAudio output callback."""

    def __init__(self, device: str | None = None, max_buffer_ms: int = 200):
        from backend.portaudio import PortAudioDevice

        self._blocks: deque[np.ndarray] = deque()
        self._lock = threading.Lock()
        self._max_blocks = max(2, max_buffer_ms // 40)
        self._rest = np.zeros(0, np.float32)
        self.dropped = 0

        def callback(_data, frames):
            out = np.zeros(frames, np.float32)
            filled = 0
            with self._lock:
                while filled < frames:
                    if self._rest.size == 0:
                        if not self._blocks:
                            break
                        self._rest = self._blocks.popleft()
                    take = min(frames - filled, self._rest.size)
                    out[filled:filled + take] = self._rest[:take]
                    self._rest = self._rest[take:]
                    filled += take
            return out.tobytes()

        self._device = PortAudioDevice("--play-audio", device, output=True)
        self._device.open(callback, SAMPLE_RATE, frames_per_buffer=320)

    def __call__(self, plan, _image) -> None:
        with self._lock:
            self._blocks.append(np.asarray(plan.audio, np.float32))
            while len(self._blocks) > self._max_blocks:
                self._blocks.popleft()
                self.dropped += 1

    def close(self) -> None:
        self._device.close()

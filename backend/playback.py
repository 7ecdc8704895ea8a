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
from stream_wav2lip.errors import UserError

log = logging.getLogger(__name__)


def find_output_device(pa, wanted: str | None) -> int | None:
    if wanted in (None, "", "default"):
        return None
    if str(wanted).isdigit():
        return int(wanted)
    for i in range(pa.get_device_count()):
        info = pa.get_device_info_by_index(i)
        if info.get("maxOutputChannels", 0) > 0 and str(wanted).lower() in str(info.get("name", "")).lower():
            return i
    raise UserError(f"--play-audio {wanted}: no such output device")


class PlaybackSink:
    """sink(plan, image) for the live loop: queues plan.audio for the PortAudio output callback."""

    def __init__(self, device: str | None = None, max_buffer_ms: int = 200):
        try:
            import pyaudio
        except ImportError:
            raise UserError("--play-audio needs pyaudio (pip install 'stream-wav2lip[audio]')") from None
        self._pa = pyaudio.PyAudio()
        self._blocks: deque[np.ndarray] = deque()
        self._lock = threading.Lock()
        self._max_blocks = max(2, max_buffer_ms // 40)
        self._rest = np.zeros(0, np.float32)
        self.dropped = 0
        index = find_output_device(self._pa, device)

        def callback(_in, frames, _time, _status):
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
            return (out.tobytes(), pyaudio.paContinue)

        try:
            self._stream = self._pa.open(format=pyaudio.paFloat32, channels=1, rate=SAMPLE_RATE, output=True,
                                         output_device_index=index, frames_per_buffer=320, stream_callback=callback)
        except OSError as exc:
            self._pa.terminate()
            raise UserError(f"--play-audio {device or 'default'}: cannot open output device ({exc})") from None

    def __call__(self, plan, _image) -> None:
        with self._lock:
            self._blocks.append(np.asarray(plan.audio, np.float32))
            while len(self._blocks) > self._max_blocks:
                self._blocks.popleft()
                self.dropped += 1

    def close(self) -> None:
        try:
            self._stream.stop_stream()
            self._stream.close()
        finally:
            self._pa.terminate()

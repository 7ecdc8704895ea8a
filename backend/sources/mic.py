"""Microphone input through PortAudio (pyaudio), with a gate so that room noise leaves the avatar idle.

The gate opens when a 20 ms block is louder than `open_db`, keeps `preroll_ms` of audio from before the
opening (the first syllable's attack), and closes after `hang_ms` below `close_db`. Each opening is one
utterance, so a pause in speaking lets the avatar return to its idle loop.
"""
from __future__ import annotations

import logging
import threading
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from backend.sources.pcm import PcmDecoder
from backend.sources.queue import SpeechQueue, Utterance

log = logging.getLogger(__name__)
BLOCK = 320  # 20 ms at 16 kHz


def _level_db(block: np.ndarray) -> float:
    rms = float(np.sqrt(np.mean(np.square(block, dtype=np.float64)))) if block.size else 0.0
    return 20.0 * np.log10(max(rms, 1e-6))


@dataclass
class MicGate:
    """16 kHz float32 in (any chunk size) → utterances in `queue` while someone speaks."""

    queue: SpeechQueue
    open_db: float = -40.0
    close_db: float = -48.0
    hang_ms: int = 400
    preroll_ms: int = 60
    current: Utterance | None = None
    _rest: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    _preroll: deque = field(default_factory=deque)
    _quiet_ms: int = 0

    def push(self, pcm: np.ndarray) -> None:
        data = np.concatenate([self._rest, np.asarray(pcm, np.float32).reshape(-1)])
        whole = data.size - data.size % BLOCK
        self._rest = data[whole:]
        for start in range(0, whole, BLOCK):
            self._block(data[start:start + BLOCK])

    def _block(self, block: np.ndarray) -> None:
        level = _level_db(block)
        if self.current is not None and self.current.cancelled:
            self.current = None  # flushed (barge-in): the next loud block opens a new utterance
        if self.current is None:
            if level >= self.open_db:
                self.current = self.queue.open("mic")
                for old in self._preroll:
                    self.current.append(old)
                self._preroll.clear()
                self.current.append(block)
                self._quiet_ms = 0
            else:
                self._preroll.append(block)
                while len(self._preroll) * 20 > self.preroll_ms:
                    self._preroll.popleft()
            return
        self.current.append(block)
        self._quiet_ms = self._quiet_ms + 20 if level < self.close_db else 0
        if self._quiet_ms >= self.hang_ms:
            self.close()

    def close(self) -> None:
        if self.current is not None:
            self.current.end()
            self.current = None
        self._quiet_ms = 0


class MicrophoneSource:
    """Opens a PortAudio input stream; its callback thread feeds the gate. `close()` stops it."""

    def __init__(self, queue: SpeechQueue, device: str | None = None, open_db: float = -40.0):
        from backend.portaudio import PortAudioDevice

        self._device = PortAudioDevice("--mic", device, output=False)
        self.device_name = self._device.name
        rate = self._device.default_rate
        self.gate = MicGate(queue, open_db=open_db, close_db=open_db - 8)
        self._decoder = PcmDecoder(rate, 1, "f32")
        self._lock = threading.Lock()
        self.blocks = 0

        def callback(data, _frames):
            with self._lock:
                self.blocks += 1
                self.gate.push(self._decoder.feed(data))
            return None

        self._device.open(callback, rate, frames_per_buffer=max(64, rate // 50))
        log.info("microphone: %s at %d Hz", self.device_name, rate)

    def close(self) -> None:
        try:
            self._device.close()
        finally:
            with self._lock:
                self.gate.close()

"""Measure the audio/video offset in a recording of flash frames + beeps emitted at the same pts.

The backend's `av-sync` test pattern shows white frames and starts a 1 kHz beep at the same pts once a
second. In the recording, each flash onset (first frame whose mean luma jumps above `flash_luma`) is paired
with the nearest beep onset (first sample whose envelope rises above `beep_level` after silence).
offset = beep onset - flash onset, positive = audio late. Video time has the canvas frame granularity
(33 ms at 30 fps), so single offsets are quantised; the median over all pairs is reported.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass

import numpy as np


@dataclass
class AvOffset:
    offsets_ms: list[float]
    flashes: int
    beeps: int

    @property
    def median_ms(self) -> float:
        return statistics.median(self.offsets_ms) if self.offsets_ms else float("nan")


def flash_onsets(path: str, flash_luma: float = 200.0, roi: tuple[int, int, int, int] | None = None) -> list[float]:
    """Times of frames where the region `roi` = (top, bottom, left, right) turns bright."""
    import av

    times, prev_bright = [], False
    with av.open(path) as c:
        stream = c.streams.video[0]
        for frame in c.decode(stream):
            y = frame.to_ndarray(format="gray")
            if roi is not None:
                y = y[roi[0]:roi[1], roi[2]:roi[3]]
            bright = float(y.mean()) > flash_luma
            if bright and not prev_bright and frame.pts is not None:
                times.append(float(frame.pts * stream.time_base))
            prev_bright = bright
    return times


def beep_onsets(path: str, beep_level: float = 0.1, min_gap_s: float = 0.3) -> list[float]:
    import av

    chunks, t0 = [], None
    rate = 48000
    with av.open(path) as c:
        stream = c.streams.audio[0]
        for frame in c.decode(stream):
            if t0 is None and frame.pts is not None:
                t0 = float(frame.pts * stream.time_base)
            rate = frame.sample_rate
            a = frame.to_ndarray()
            if not frame.format.is_planar:
                a = a.reshape(-1, len(frame.layout.channels)).T
            a = a.astype(np.float32)
            if np.issubdtype(frame.to_ndarray().dtype, np.integer):
                a /= 32768.0
            chunks.append(np.abs(a).max(axis=0))
    if not chunks:
        return []
    env = np.concatenate(chunks)
    above = np.flatnonzero(env > beep_level)
    onsets, last = [], -1e9
    for i in above:
        t = i / rate
        if t - last > min_gap_s:
            onsets.append((t0 or 0.0) + t)
        last = t
    return onsets


def measure(path: str, max_pair_ms: float = 400.0, roi: tuple[int, int, int, int] | None = None) -> AvOffset:
    flashes = flash_onsets(path, roi=roi)
    beeps = beep_onsets(path)
    offsets = []
    for f in flashes:
        if not beeps:
            break
        nearest = min(beeps, key=lambda b: abs(b - f))
        if abs(nearest - f) * 1000 <= max_pair_ms:
            offsets.append(round((nearest - f) * 1000, 1))
    return AvOffset(offsets, len(flashes), len(beeps))


if __name__ == "__main__":
    import sys

    r = measure(sys.argv[1])
    print(f"flashes {r.flashes}, beeps {r.beeps}, offsets ms {r.offsets_ms}, median {r.median_ms:.1f} ms")

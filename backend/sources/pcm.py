"""Raw PCM bytes of any rate/channel count/sample format → 16 kHz mono float32, chunk by chunk.

A TTS engine streams whatever its voice produces (22.05 kHz s16, 24 kHz float...) in arbitrary chunk sizes,
so this decoder keeps the bytes of a partial sample frame for the next chunk and resamples with a streaming
soxr resampler (the same HQ filter `models.audio.load_audio` uses for files, so a streamed clip and the
same clip read from a file give the same samples up to the resampler's edge handling).

Float PCM is cleaned here, before anything else sees it (`finite_samples`): a NaN or an infinity from a buggy
TTS would otherwise spread through the resampler's filter (~30 ms of output per bad sample) into the mel
features and the audio handed to OBS.
"""
from __future__ import annotations

import numpy as np

from stream_wav2lip.errors import UserError

TARGET_RATE = 16000
FORMATS = {"s16": np.dtype("<i2"), "f32": np.dtype("<f4")}
HEADROOM = 8.0  # +18 dBFS: float samples beyond this are garbage, not audio (see finite_samples)


class PcmDecoder:
    """feed(bytes) → float32 mono 16 kHz samples available so far; finish() → the resampler's tail."""

    def __init__(self, rate: int, channels: int = 1, fmt: str = "s16"):
        if fmt not in FORMATS:
            raise UserError(f"pcm: unknown format {fmt!r} (use s16 or f32)")
        if not 1000 <= int(rate) <= 384000:
            raise UserError(f"pcm: sample rate {rate} out of range 1000..384000")
        if not 1 <= int(channels) <= 16:
            raise UserError(f"pcm: channel count {channels} out of range 1..16")
        self.rate, self.channels, self.dtype = int(rate), int(channels), FORMATS[fmt]
        self.frame_bytes = self.dtype.itemsize * self.channels
        self._pending = b""
        self._resampler = None
        if self.rate != TARGET_RATE:
            import soxr

            self._resampler = soxr.ResampleStream(self.rate, TARGET_RATE, 1, dtype="float32", quality="HQ")

    def feed(self, data: bytes) -> np.ndarray:
        data = self._pending + bytes(data)
        usable = len(data) - len(data) % self.frame_bytes
        self._pending = data[usable:]
        return self._convert(data[:usable], last=False)

    def finish(self) -> np.ndarray:
        self._pending = b""
        return self._convert(b"", last=True)

    def _convert(self, data: bytes, last: bool) -> np.ndarray:
        samples = np.frombuffer(data, dtype=self.dtype).reshape(-1, self.channels)
        mono = samples.astype(np.float32)
        if self.dtype.kind == "i":
            mono /= 32768.0
        else:
            mono = finite_samples(mono)  # before mixing (inf + -inf = NaN) and before the resampler
        mono = mono.mean(axis=1, dtype=np.float64).astype(np.float32) if self.channels > 1 else mono[:, 0]
        if self._resampler is None:
            return np.ascontiguousarray(mono)
        return np.asarray(self._resampler.resample_chunk(mono, last=last), dtype=np.float32)


def finite_samples(x: np.ndarray, limit: float = HEADROOM) -> np.ndarray:
    """Float samples made safe for the features and for OBS: NaN -> 0, +/-Inf -> +/-1, and anything beyond
    +/-`limit` clipped there. Full scale is +/-1, but TTS voices and resamplers overshoot a little, so only
    values no real audio has are touched. Returns `x` itself (no copy) when it is already clean."""
    if x.size == 0:
        return x
    lo, hi = x.min(), x.max()  # a NaN anywhere makes both NaN, and then both comparisons are False
    if lo >= -limit and hi <= limit:
        return x
    x = np.nan_to_num(x, nan=0.0, posinf=1.0, neginf=-1.0)
    return np.clip(x, -limit, limit, out=x)


def to_float_mono(samples: np.ndarray, channels: int = 1) -> np.ndarray:
    """Interleaved int16/float samples → float32 mono in [-1, 1)."""
    x = np.asarray(samples)
    x = x.astype(np.float32) / 32768.0 if x.dtype.kind == "i" else finite_samples(x.astype(np.float32))
    if channels > 1:
        x = x.reshape(-1, channels).mean(axis=1)
    return x

"""The ring header and slot header: constants, packing and the named meaning of every field.

Why a module of its own: the reader (inside OBS) and the writer (in the backend) must agree on every byte,
so the offsets and struct formats exist only here. The byte layout is drawn in this package's docstring and
in docs/shm-protocol.md; tests/live/test_shm_layout.py checks it with hard-coded offsets.

The header's four words at offsets 8-23 mean different things for the two kinds of ring; `RingHeader`
keeps them as `format_words` (that is what is on the wire) and names them with properties that refuse the
wrong kind, so `h.height * h.stride` reads as what it is and a video field is never read off an audio ring.
"""
from __future__ import annotations

import os
import struct
from dataclasses import dataclass

import numpy as np

LAYOUT_VERSION = 1
HEADER_SIZE = 4096
SLOT_HEADER_SIZE = 64
PAGE = 4096
VIDEO_MAGIC = b"S2LV"
AUDIO_MAGIC = b"S2LA"
RING_MAGICS = (VIDEO_MAGIC, AUDIO_MAGIC)
PIXFMT_BGRA8 = 1
SAMPLE_F32 = 1
SAMPLE_S16 = 2
FLAG_SPEECH = 1  # video: the generated mouth is shown; audio: utterance audio (not silence)
FLAG_REPEAT = 2  # video: the image repeats an earlier frame (the renderer missed this pts); audio: unused

HEADER_STRUCT = struct.Struct("<4sIIIIIIIQQQQ")  # magic .. writer pid: the first 64 bytes of the header
SLOT_STRUCT = struct.Struct("<QqQIIQ")  # seqlock, pts, index, flags, reserved, sequence number (40 bytes)
U64 = struct.Struct("<Q")
OFF_PUBLISHED = 40
OFF_HEARTBEAT = 48
OFF_PID = 56


def round_up(n: int, to: int = PAGE) -> int:
    """`n` rounded up to a multiple of `to` (slot sizes are whole pages)."""
    return (n + to - 1) // to * to


@dataclass(frozen=True)
class RingHeader:
    """The fixed part of a ring header (everything except the moving counters `published` and `heartbeat`)."""

    magic: bytes
    version: int
    format_words: tuple[int, int, int, int]  # offsets 8, 12, 16, 20: see the kind-specific properties below
    slots: int
    slot_size: int
    pid: int

    # ------------------------------------------------------------------ kind
    @property
    def is_video(self) -> bool:
        return self.magic == VIDEO_MAGIC

    @property
    def is_audio(self) -> bool:
        return self.magic == AUDIO_MAGIC

    def _word(self, index: int, video: bool, field: str) -> int:
        if self.is_video != video:
            kind = "video" if video else "audio"
            raise ValueError(f"{field} is a field of {kind} rings, not of a ring with magic {self.magic!r}")
        return self.format_words[index]

    # ------------------------------------------------------------------ video rings
    @property
    def width(self) -> int:
        """Video: pixels per row."""
        return self._word(0, True, "width")

    @property
    def height(self) -> int:
        """Video: rows."""
        return self._word(1, True, "height")

    @property
    def stride(self) -> int:
        """Video: bytes from one row to the next (4 * width today)."""
        return self._word(2, True, "stride")

    @property
    def pixel_format(self) -> int:
        """Video: `PIXFMT_BGRA8`."""
        return self._word(3, True, "pixel_format")

    # ------------------------------------------------------------------ audio rings
    @property
    def sample_rate(self) -> int:
        """Audio: samples per second per channel (Hz)."""
        return self._word(0, False, "sample_rate")

    @property
    def channels(self) -> int:
        """Audio: interleaved channels."""
        return self._word(1, False, "channels")

    @property
    def frames_per_block(self) -> int:
        """Audio: the most frames (samples per channel) one slot can hold."""
        return self._word(2, False, "frames_per_block")

    @property
    def sample_format(self) -> int:
        """Audio: `SAMPLE_F32` or `SAMPLE_S16`."""
        return self._word(3, False, "sample_format")

    @property
    def sample_dtype(self) -> type:
        """Audio: the numpy dtype of one sample."""
        return np.float32 if self.sample_format == SAMPLE_F32 else np.int16

    # ------------------------------------------------------------------ geometry
    @property
    def total_size(self) -> int:
        """Bytes of the whole segment."""
        return HEADER_SIZE + self.slots * self.slot_size

    @property
    def payload_size(self) -> int:
        """Bytes of a slot's payload that carry data (video: a whole image; audio: a full block)."""
        if self.is_video:
            return self.height * self.stride
        return self.frames_per_block * self.channels * np.dtype(self.sample_dtype).itemsize

    def slot_offset(self, sequence: int) -> int:
        """Byte offset of the slot that holds stream position `sequence` (its seqlock word)."""
        return HEADER_SIZE + (sequence % self.slots) * self.slot_size

    def video_pixels(self, payload: np.ndarray) -> np.ndarray:
        """(height, width, 4) BGRA view of a video slot's uint8 payload (padding at each row's end skipped)."""
        rows = payload[: self.height * self.stride].reshape(self.height, self.stride)
        return rows[:, : self.width * 4].reshape(self.height, self.width, 4)

    def audio_samples(self, payload: np.ndarray, frames: int) -> np.ndarray:
        """(frames, channels) samples of an audio slot's uint8 payload (`frames`: the slot's index field)."""
        channels = self.channels
        return payload.view(self.sample_dtype)[: frames * channels].reshape(frames, channels)


@dataclass(frozen=True)
class Slot:
    """One consistent copy of a slot: its header fields and its payload bytes (None from `poll_all(payload=False)`)."""

    pts_ns: int
    index: int  # video: avatar frame index; audio: frames (samples per channel) in this block
    flags: int
    sequence: int
    payload: np.ndarray | None  # uint8, owned copy


def video_header(width: int, height: int, slots: int = 4) -> RingHeader:
    """Header for a BGRA video ring of the given frame size (stride = 4 * width)."""
    if slots < 3:
        raise ValueError("the video ring needs at least 3 slots")
    stride = 4 * width
    return RingHeader(VIDEO_MAGIC, LAYOUT_VERSION, (width, height, stride, PIXFMT_BGRA8), slots,
                      round_up(SLOT_HEADER_SIZE + height * stride), os.getpid())


def audio_header(sample_rate: int = 16000, channels: int = 1, frames_per_block: int = 640,
                 slots: int = 128, sample_format: int = SAMPLE_F32) -> RingHeader:
    """Header for an audio ring; default = 40 ms blocks of 16 kHz mono float32, 5.12 s of history."""
    bytes_per_sample = 4 if sample_format == SAMPLE_F32 else 2
    payload = frames_per_block * channels * bytes_per_sample
    return RingHeader(AUDIO_MAGIC, LAYOUT_VERSION, (sample_rate, channels, frames_per_block, sample_format),
                      slots, round_up(SLOT_HEADER_SIZE + payload), os.getpid())


def pack_header(h: RingHeader, published: int = 0, heartbeat: int = 0) -> bytes:
    """The first 64 bytes of a ring."""
    return HEADER_STRUCT.pack(h.magic, h.version, *h.format_words, h.slots, 0, h.slot_size,
                              published, heartbeat, h.pid)


def unpack_header(buf) -> tuple[RingHeader, int, int]:
    """(fixed header, published, heartbeat) from the first 64 bytes of a ring."""
    magic, ver, w0, w1, w2, w3, slots, _r, slot_size, published, heartbeat, pid = HEADER_STRUCT.unpack_from(buf, 0)
    return RingHeader(magic, ver, (w0, w1, w2, w3), slots, slot_size, pid), published, heartbeat

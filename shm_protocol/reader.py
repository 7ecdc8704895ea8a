"""Reading a ring: the consumer side, safe to run inside OBS.

Why plain `mmap` and never `multiprocessing.shared_memory`: see `segments`. Why a seqlock and no lock: the
writer must never wait for a reader (a stalled OBS must not stall the backend), so a reader copies a slot,
checks that its seqlock word did not change meanwhile (odd = being written), and otherwise drops the copy.
"""
from __future__ import annotations

import mmap
import sys

import numpy as np

from shm_protocol.layout import (HEADER_SIZE, LAYOUT_VERSION, OFF_HEARTBEAT, OFF_PUBLISHED, RING_MAGICS,
                                 SLOT_HEADER_SIZE, SLOT_STRUCT, U64, Slot, unpack_header)
from shm_protocol.liveness import writer_is_stale
from shm_protocol.segments import open_mapping


def open_ring_mapping(name: str) -> mmap.mmap:
    """Map the existing ring `name` whole (on Windows its size is read from its header first)."""
    if sys.platform == "win32":  # pragma: no cover - Windows named mapping
        probe = open_mapping(name, HEADER_SIZE)
        header, _, _ = unpack_header(probe)
        probe.close()
        return open_mapping(name, header.total_size)
    return open_mapping(name)


class RingReader:
    """Reads a ring with plain mmap (never unlinks; safe inside OBS).

    `poll_latest()` returns the newest consistent slot not seen before (video: show the newest frame);
    `poll_all()` returns every slot published since the last call, in order (audio: play every block),
    skipping ahead when the reader fell more than N-1 slots behind.
    """

    def __init__(self, name: str):
        self.name = name
        self._view = None
        self._mm = open_ring_mapping(name)
        self.header, published, _hb = unpack_header(self._mm)
        if self.header.magic not in RING_MAGICS or self.header.version != LAYOUT_VERSION:
            self.close()
            raise ValueError(f"{name}: not a stream-wav2lip ring (magic {self.header.magic!r}, "
                             f"version {self.header.version})")
        self._view = memoryview(self._mm)
        self._next = published  # only newer data is returned

    # ------------------------------------------------------------------ state
    @property
    def published(self) -> int:
        """Slots published so far by the writer."""
        return U64.unpack_from(self._mm, OFF_PUBLISHED)[0]

    @property
    def heartbeat_ns(self) -> int:
        return U64.unpack_from(self._mm, OFF_HEARTBEAT)[0]

    @property
    def payload_size(self) -> int:
        return self.header.payload_size

    def writer_alive(self, now_ns: int | None = None) -> bool:
        return not writer_is_stale(self.header.pid, self.heartbeat_ns, now_ns)

    # ------------------------------------------------------------------ reading
    def read_slot(self, sequence: int, retries: int = 3, payload: bool = True) -> Slot | None:
        """Consistent copy of the slot holding stream position `sequence`, or None if overwritten/torn.
        `payload=False`: its header fields only (payload None), nothing copied."""
        base = self.header.slot_offset(sequence)
        start, size = base + SLOT_HEADER_SIZE, self.payload_size
        for _ in range(retries):
            lock, pts, index, flags, _r, seqno = SLOT_STRUCT.unpack_from(self._mm, base)
            if lock & 1:
                continue
            data = np.frombuffer(self._view[start:start + size], dtype=np.uint8).copy() if payload else None
            if U64.unpack_from(self._mm, base)[0] == lock:
                if seqno != sequence:
                    return None  # already overwritten by a newer lap
                return Slot(pts, index, flags, seqno, data)
        return None

    def borrow(self, sequence: int, margin: int = 2) -> tuple[np.ndarray, int] | None:
        """The payload of `sequence` in place (read-only view, no copy) and the slot's seqlock value, or None.

        Why: a consumer that copies the frame anyway (libobs copies in obs_source_output_video) need not copy
        it out of the ring first. Lent only while the writer has at least `margin` more slots to publish
        before it reaches this one again, so it cannot start overwriting it during a copy of a few
        milliseconds; else None (use `read_slot`). Check `unchanged(sequence, lock)` after use.
        """
        if self.published + 1 + margin > sequence + self.header.slots:
            return None
        base = self.header.slot_offset(sequence)
        lock, _pts, _index, _flags, _r, seqno = SLOT_STRUCT.unpack_from(self._mm, base)
        if lock & 1 or seqno != sequence:
            return None
        start = base + SLOT_HEADER_SIZE
        view = np.frombuffer(self._view[start:start + self.payload_size], dtype=np.uint8)
        view.flags.writeable = False
        return view, lock

    def unchanged(self, sequence: int, lock: int) -> bool:
        """Whether slot `sequence` still holds what it held when `borrow` returned `lock` (not rewritten since)."""
        return U64.unpack_from(self._mm, self.header.slot_offset(sequence))[0] == lock

    def poll_latest(self) -> Slot | None:
        """The newest consistent slot published since the last poll, or None."""
        published = self.published
        if published <= self._next:
            return None
        for seq in range(published - 1, max(published - self.header.slots, self._next) - 1, -1):
            slot = self.read_slot(seq)
            if slot is not None:
                self._next = seq + 1
                return slot
        return None

    def poll_all(self, payload: bool = True) -> list[Slot]:
        """Every slot published since the last call (see the class docstring); `payload=False`: headers only."""
        published = self.published
        start = max(self._next, published - self.header.slots + 1)
        out = []
        for seq in range(start, published):
            slot = self.read_slot(seq, payload=payload)
            if slot is not None:
                out.append(slot)
        self._next = max(self._next, published)
        return out

    def video_array(self, slot: Slot) -> np.ndarray:
        """(height, width, 4) BGRA view of a video slot's payload."""
        return self.header.video_pixels(slot.payload)

    def audio_array(self, slot: Slot) -> np.ndarray:
        """(frames, channels) samples of an audio slot (only the `index` frames actually written)."""
        return self.header.audio_samples(slot.payload, slot.index)

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        try:
            if self._view is not None:
                self._view.release()
                self._view = None
            self._mm.close()
        except (BufferError, ValueError):
            pass

    def __enter__(self) -> "RingReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

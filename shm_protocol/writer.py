"""Writing a ring: the producer side, used by the backend only.

Why it never waits: OBS may stall (a scene switch, a slow disk) and the backend's clock must keep going, so
the writer overwrites the oldest slot unconditionally; each slot's seqlock word tells a reader whether the
copy it took is whole. The writer owns its segment: it creates it untracked (see `segments`), refreshes
the heartbeat, unlinks it on close, and on start takes over a segment of the same name only when the
writer that left it there is dead (`liveness`).
"""
from __future__ import annotations

import numpy as np

from shm_protocol.layout import (HEADER_SIZE, OFF_HEARTBEAT, OFF_PUBLISHED, RING_MAGICS, SLOT_HEADER_SIZE,
                                 SLOT_STRUCT, U64, RingHeader, pack_header, unpack_header)
from shm_protocol.liveness import monotonic_ns, writer_is_stale
from shm_protocol.reader import open_ring_mapping
from shm_protocol.segments import create_untracked, unlink_name


def reclaim_ring_or_raise(name: str) -> None:
    """Remove the ring `name` left by a dead writer (pid gone or heartbeat 2 s old, or not a ring at all);
    FileExistsError if its writer is alive."""
    # read through plain mmap: opening with SharedMemory would register the name with this process's
    # resource tracker, which would unlink a *live* writer's segment when this process exits
    mm = open_ring_mapping(name)
    try:
        hdr, _pub, hb = unpack_header(mm)
        stale = hdr.magic not in RING_MAGICS or writer_is_stale(hdr.pid, hb)
    finally:
        mm.close()
    if not stale:
        raise FileExistsError(f"shared memory {name} is in use by a running backend (pid {hdr.pid})")
    unlink_name(name)


class RingWriter:
    """Creates and owns a ring; publishes slots without ever waiting for readers."""

    def __init__(self, name: str, header: RingHeader):
        self.name = name
        self.header = header
        try:
            self._shm = create_untracked(name, header.total_size)
        except FileExistsError:
            reclaim_ring_or_raise(name)
            self._shm = create_untracked(name, header.total_size)
        self._buf = self._shm.buf
        self._buf[:HEADER_SIZE] = bytes(HEADER_SIZE)
        self._buf[:64] = pack_header(header, 0, monotonic_ns())
        self.published = 0

    def slot_payload(self, sequence: int) -> memoryview:
        """The whole payload area of the slot that `sequence` occupies (writable)."""
        base = self.header.slot_offset(sequence) + SLOT_HEADER_SIZE
        return self._buf[base: base + self.header.slot_size - SLOT_HEADER_SIZE]

    def video_view(self, sequence: int) -> np.ndarray:
        """(height, width, 4) BGRA numpy view into the slot that `sequence` will occupy."""
        h = self.header
        return h.video_pixels(np.frombuffer(self.slot_payload(sequence), dtype=np.uint8, count=h.payload_size))

    def publish(self, pts_ns: int, index: int, flags: int = 0, fill=None,
                payload: bytes | np.ndarray | None = None) -> int:
        """Write one slot (seqlock odd → payload → header → even), then bump `published`.

        Either `payload` (bytes/array copied to the slot start) or `fill(view_numpy_uint8)` that writes in place.
        Returns the slot's stream sequence number.
        """
        seqno = self.published
        base = self.header.slot_offset(seqno)
        lock = U64.unpack_from(self._buf, base)[0]
        U64.pack_into(self._buf, base, lock + 1 if lock % 2 == 0 else lock + 2)
        if payload is not None:
            data = np.ascontiguousarray(payload).view(np.uint8).reshape(-1)
            np.frombuffer(self.slot_payload(seqno), dtype=np.uint8, count=data.size)[:] = data
        if fill is not None:
            fill(np.frombuffer(self.slot_payload(seqno), dtype=np.uint8))
        lock = U64.unpack_from(self._buf, base)[0]
        SLOT_STRUCT.pack_into(self._buf, base, lock, pts_ns, index, flags, 0, seqno)
        U64.pack_into(self._buf, base, lock + 1)  # even again: stable
        self.published = seqno + 1
        U64.pack_into(self._buf, OFF_PUBLISHED, self.published)
        self.heartbeat()
        return seqno

    def heartbeat(self, now_ns: int | None = None) -> None:
        """Tell readers (and a successor deciding whether to reclaim) that this writer is alive."""
        U64.pack_into(self._buf, OFF_HEARTBEAT, monotonic_ns() if now_ns is None else now_ns)

    def close(self, unlink: bool = True) -> None:
        if self._shm is None:
            return
        self._buf = None
        try:
            self._shm.close()
        except BufferError:  # a numpy view of a slot is still alive somewhere: the unlink matters more
            pass
        if unlink:
            unlink_name(self._shm.name)
        self._shm = None

    def __enter__(self) -> "RingWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

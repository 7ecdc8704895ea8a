"""Byte layout of the shared-memory rings between the backend and OBS (DESIGN.md §4), reader and writer.

Stdlib + numpy only: this module is imported inside OBS's own Python as well as by the backend, so the
layout is defined exactly once. The writer never waits for a reader; a reader never accepts a torn slot
(each slot is guarded by a seqlock: odd while being written, even when stable).

Header (4096 bytes, little-endian), shared by both rings::

    0  4s  magic            b"S2LV" (video) / b"S2LA" (audio)
    4  u32 layout version   1
    8  u32 a                video: width          audio: sample rate (Hz)
    12 u32 b                video: height         audio: channels
    16 u32 c                video: stride (bytes) audio: max frames (samples per channel) per block
    20 u32 d                video: pixel format   audio: sample format (1 = float32, 2 = s16)
                                   (1 = BGRA8)
    24 u32 slot count N
    28 u32 reserved
    32 u64 slot size in bytes (a multiple of 4096)
    40 u64 published        slots published so far; the newest is in slot (published - 1) mod N
    48 u64 heartbeat        writer's CLOCK_MONOTONIC ns, refreshed at least every 100 ms
    56 u64 writer pid

Slot i at 4096 + i * slot_size: a 64-byte slot header then the payload at offset 64::

    0  u64 seqlock          odd while written, even when stable
    8  i64 pts_ns           presentation time on CLOCK_MONOTONIC (the clock libobs uses)
    16 u64 index            video: avatar frame index   audio: frames (samples per channel) in this block
    24 u32 flags            bit 0 = speech (video: generated mouth shown; audio: utterance audio),
                            bit 1 = repeat (video: the previous image again, the renderer missed this pts)
    28 u32 reserved
    32 u64 sequence number  0-based position of this slot's content in the stream (published - 1 at write time)

Video payload: height x stride bytes of BGRA. Audio payload: frames x channels interleaved samples.
"""
from __future__ import annotations

import mmap
import os
import struct
import sys
import time
from dataclasses import dataclass

import numpy as np

LAYOUT_VERSION = 1
HEADER_SIZE = 4096
SLOT_HEADER_SIZE = 64
PAGE = 4096
VIDEO_MAGIC = b"S2LV"
AUDIO_MAGIC = b"S2LA"
PIXFMT_BGRA8 = 1
SAMPLE_F32 = 1
SAMPLE_S16 = 2
FLAG_SPEECH = 1
FLAG_REPEAT = 2  # video: the image repeats an earlier frame (the renderer missed this pts); audio: unused
HEARTBEAT_STALE_NS = 2_000_000_000  # a writer silent for 2 s is considered dead

_HEADER = struct.Struct("<4sIIIIIIIQQQQ")  # magic .. pid, 64 bytes
_SLOT = struct.Struct("<QqQIIQ")  # seq, pts, index, flags, reserved, sequence number (40 bytes)
_OFF_PUBLISHED = 40
_OFF_HEARTBEAT = 48
_U64 = struct.Struct("<Q")


def video_name(session: str) -> str:
    """Shared-memory name of a session's video ring."""
    return f"s2l_{session}_video"


def audio_name(session: str) -> str:
    """Shared-memory name of a session's audio ring."""
    return f"s2l_{session}_audio"


def monotonic_ns() -> int:
    """CLOCK_MONOTONIC in ns: the one clock of the product (libobs' os_gettime_ns uses the same)."""
    return time.monotonic_ns()


def _round_up(n: int, to: int = PAGE) -> int:
    return (n + to - 1) // to * to


@dataclass(frozen=True)
class RingHeader:
    """The fixed part of a ring header (everything except the moving counters)."""

    magic: bytes
    version: int
    a: int
    b: int
    c: int
    d: int
    slots: int
    slot_size: int
    pid: int

    @property
    def total_size(self) -> int:
        return HEADER_SIZE + self.slots * self.slot_size

    def slot_offset(self, sequence: int) -> int:
        """Byte offset of the slot that holds stream position `sequence` (its seqlock word)."""
        return HEADER_SIZE + (sequence % self.slots) * self.slot_size


@dataclass(frozen=True)
class Slot:
    """One consistent copy of a slot: its header fields and its payload bytes (None from `poll_all(payload=False)`)."""

    pts_ns: int
    index: int
    flags: int
    sequence: int
    payload: np.ndarray | None  # uint8, owned copy


def video_header(width: int, height: int, slots: int = 4) -> RingHeader:
    """Header for a BGRA video ring of the given frame size (stride = 4 * width)."""
    if slots < 3:
        raise ValueError("the video ring needs at least 3 slots")
    stride = 4 * width
    return RingHeader(VIDEO_MAGIC, LAYOUT_VERSION, width, height, stride, PIXFMT_BGRA8, slots,
                      _round_up(SLOT_HEADER_SIZE + height * stride), os.getpid())


def audio_header(sample_rate: int = 16000, channels: int = 1, frames_per_block: int = 640,
                 slots: int = 128, sample_format: int = SAMPLE_F32) -> RingHeader:
    """Header for an audio ring; default = 40 ms blocks of 16 kHz mono float32, 5.12 s of history."""
    bytes_per_sample = 4 if sample_format == SAMPLE_F32 else 2
    payload = frames_per_block * channels * bytes_per_sample
    return RingHeader(AUDIO_MAGIC, LAYOUT_VERSION, sample_rate, channels, frames_per_block, sample_format,
                      slots, _round_up(SLOT_HEADER_SIZE + payload), os.getpid())


def pack_header(h: RingHeader, published: int = 0, heartbeat: int = 0) -> bytes:
    return _HEADER.pack(h.magic, h.version, h.a, h.b, h.c, h.d, h.slots, 0, h.slot_size,
                        published, heartbeat, h.pid)


def unpack_header(buf) -> tuple[RingHeader, int, int]:
    """(fixed header, published, heartbeat) from the first 64 bytes of a ring."""
    magic, ver, a, b, c, d, slots, _r, slot_size, published, heartbeat, pid = _HEADER.unpack_from(buf, 0)
    return RingHeader(magic, ver, a, b, c, d, slots, slot_size, pid), published, heartbeat


def pid_alive(pid: int) -> bool:
    """True while process `pid` exists (Linux/macOS: signal 0; Windows: OpenProcess). A zombie counts as alive."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    if sys.platform == "win32":  # pragma: no cover - Windows
        import ctypes

        handle = ctypes.windll.kernel32.OpenProcess(0x1000, False, pid)
        if not handle:
            return False
        ctypes.windll.kernel32.CloseHandle(handle)
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def writer_is_stale(pid: int, heartbeat_ns: int, now_ns: int | None = None) -> bool:
    """A segment whose writer process is gone, or silent for 2 s, may be reclaimed."""
    now_ns = monotonic_ns() if now_ns is None else now_ns
    return (not pid_alive(pid)) or (now_ns - heartbeat_ns > HEARTBEAT_STALE_NS)


# ----------------------------------------------------------------------------------------------- reader
class RingReader:
    """Reads a ring with plain mmap (never unlinks; safe inside OBS).

    `poll_latest()` returns the newest consistent slot not seen before (video: show the newest frame);
    `poll_all()` returns every slot published since the last call, in order (audio: play every block),
    skipping ahead when the reader fell more than N-1 slots behind.
    """

    def __init__(self, name: str):
        self.name = name
        self._mm = _open_mapping(name)
        self.header, published, _hb = unpack_header(self._mm)
        expected = (VIDEO_MAGIC, AUDIO_MAGIC)
        if self.header.magic not in expected or self.header.version != LAYOUT_VERSION:
            self.close()
            raise ValueError(f"{name}: not a stream-wav2lip ring (magic {self.header.magic!r}, "
                             f"version {self.header.version})")
        self._view = memoryview(self._mm)
        self._next = published  # only newer data is returned

    # ------------------------------------------------------------------ state
    @property
    def published(self) -> int:
        return _U64.unpack_from(self._mm, _OFF_PUBLISHED)[0]

    @property
    def heartbeat_ns(self) -> int:
        return _U64.unpack_from(self._mm, _OFF_HEARTBEAT)[0]

    def writer_alive(self, now_ns: int | None = None) -> bool:
        return not writer_is_stale(self.header.pid, self.heartbeat_ns, now_ns)

    # ------------------------------------------------------------------ reading
    def read_slot(self, sequence: int, retries: int = 3, payload: bool = True) -> Slot | None:
        """Consistent copy of the slot holding stream position `sequence`, or None if overwritten/torn.
        `payload=False`: its header fields only (payload None), nothing copied."""
        base = self.header.slot_offset(sequence)
        start, size = base + SLOT_HEADER_SIZE, self.payload_size
        for _ in range(retries):
            seq1, pts, index, flags, _r, seqno = _SLOT.unpack_from(self._mm, base)
            if seq1 & 1:
                continue
            data = np.frombuffer(self._view[start:start + size], dtype=np.uint8).copy() if payload else None
            if _U64.unpack_from(self._mm, base)[0] == seq1:
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
        lock, _pts, _index, _flags, _r, seqno = _SLOT.unpack_from(self._mm, base)
        if lock & 1 or seqno != sequence:
            return None
        start = base + SLOT_HEADER_SIZE
        view = np.frombuffer(self._view[start:start + self.payload_size], dtype=np.uint8)
        view.flags.writeable = False
        return view, lock

    def unchanged(self, sequence: int, lock: int) -> bool:
        """Whether slot `sequence` still holds what it held when `borrow` returned `lock` (not rewritten since)."""
        return _U64.unpack_from(self._mm, self.header.slot_offset(sequence))[0] == lock

    def poll_latest(self) -> Slot | None:
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

    @property
    def payload_size(self) -> int:
        h = self.header
        if h.magic == VIDEO_MAGIC:
            return h.b * h.c
        return h.c * h.b * (4 if h.d == SAMPLE_F32 else 2)

    def video_array(self, slot: Slot) -> np.ndarray:
        """(height, width, 4) BGRA view of a video slot's payload."""
        h = self.header
        return slot.payload.reshape(h.b, h.c)[:, : h.a * 4].reshape(h.b, h.a, 4)

    def audio_array(self, slot: Slot) -> np.ndarray:
        """(frames, channels) samples of an audio slot (only the `index` frames actually written)."""
        h = self.header
        dtype = np.float32 if h.d == SAMPLE_F32 else np.int16
        return slot.payload.view(dtype)[: slot.index * h.b].reshape(slot.index, h.b)

    def close(self) -> None:
        try:
            if getattr(self, "_view", None) is not None:
                self._view.release()
                self._view = None
            self._mm.close()
        except (BufferError, ValueError):
            pass

    def __enter__(self) -> "RingReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _open_mapping(name: str) -> mmap.mmap:
    """Map an existing segment read/write without taking ownership (no resource tracker, no unlink)."""
    if sys.platform == "win32":  # pragma: no cover - Windows named mapping
        probe = mmap.mmap(-1, HEADER_SIZE, tagname=name)
        h, _, _ = unpack_header(probe)
        probe.close()
        return mmap.mmap(-1, h.total_size, tagname=name)
    path = f"/dev/shm/{name}"
    fd = os.open(path, os.O_RDWR)
    try:
        return mmap.mmap(fd, 0)
    finally:
        os.close(fd)


def segment_exists(name: str) -> bool:
    if sys.platform == "win32":  # pragma: no cover
        return False
    return os.path.exists(f"/dev/shm/{name}")


# ----------------------------------------------------------------------------------------------- writer
def create_untracked(name: str, size: int):
    """Create a `multiprocessing.shared_memory` segment that CPython's resource tracker does not know about.

    Why: after a `kill -9` of its creator, the tracker process unlinks every segment it was told about, *by
    name*, some time later, and by then a restarted backend of the same session may have created new segments
    under those names (it would silently lose them). The backend unlinks its own segments on exit, and stale ones
    of a crashed backend are reclaimed by pid/heartbeat (`writer_is_stale`) or by the OBS supervisor, so the
    tracker is not needed. Unlink such a segment with `unlink_name(shm.name)`.
    """
    from multiprocessing import shared_memory

    if sys.version_info >= (3, 13):
        return shared_memory.SharedMemory(name=name, create=True, size=size, track=False)
    shm = shared_memory.SharedMemory(name=name, create=True, size=size)
    untrack(shm)
    return shm


def untrack(shm) -> None:
    """Tell the resource tracker to forget `shm` (one created by other code, e.g. shared-memory-dict)."""
    if sys.platform == "win32":  # pragma: no cover - no resource tracker for named mappings
        return
    if sys.version_info >= (3, 13) and not getattr(shm, "_track", True):
        return
    from multiprocessing import resource_tracker

    resource_tracker.unregister(shm._name, "shared_memory")
    if sys.version_info >= (3, 13):
        shm._track = False  # its unlink() must not unregister a second time


def unlink_name(name: str) -> None:
    """Unlink the POSIX segment `name` (no-op if it is gone; on Windows mappings vanish with their handles)."""
    if sys.platform == "win32":  # pragma: no cover
        return
    import _posixshmem

    try:
        _posixshmem.shm_unlink("/" + name)
    except FileNotFoundError:
        pass


class RingWriter:
    """Creates and owns a ring; publishes slots without ever waiting for readers.

    Uses multiprocessing.shared_memory in the backend (the creating process), untracked by the resource
    tracker (see `create_untracked`), reclaiming a stale segment of a crashed writer with the same name (its
    pid is gone or its heartbeat is 2 s old).
    """

    def __init__(self, name: str, header: RingHeader):
        self.name = name
        self.header = header
        try:
            self._shm = create_untracked(name, header.total_size)
        except FileExistsError:
            self._reclaim_or_raise(name)
            self._shm = create_untracked(name, header.total_size)
        self._buf = self._shm.buf
        self._buf[:HEADER_SIZE] = bytes(HEADER_SIZE)
        self._buf[:64] = pack_header(header, 0, monotonic_ns())
        self.published = 0

    @staticmethod
    def _reclaim_or_raise(name: str) -> None:
        # read through plain mmap: opening with SharedMemory would register the name with this process's
        # resource tracker, which would unlink a *live* writer's segment when this process exits
        mm = _open_mapping(name)
        try:
            hdr, _pub, hb = unpack_header(mm)
            stale = hdr.magic not in (VIDEO_MAGIC, AUDIO_MAGIC) or writer_is_stale(hdr.pid, hb)
        finally:
            mm.close()
        if not stale:
            raise FileExistsError(f"shared memory {name} is in use by a running backend (pid {hdr.pid})")
        unlink_name(name)

    def slot_payload(self, sequence: int) -> memoryview:
        base = self.header.slot_offset(sequence) + SLOT_HEADER_SIZE
        return self._buf[base: base + self.header.slot_size - SLOT_HEADER_SIZE]

    def video_view(self, sequence: int) -> np.ndarray:
        """(height, width, 4) BGRA numpy view into the slot that `sequence` will occupy."""
        h = self.header
        raw = np.frombuffer(self.slot_payload(sequence), dtype=np.uint8, count=h.b * h.c)
        return raw.reshape(h.b, h.c)[:, : h.a * 4].reshape(h.b, h.a, 4)

    def publish(self, pts_ns: int, index: int, flags: int = 0, fill=None, payload: bytes | np.ndarray | None = None) -> int:
        """Write one slot (seqlock odd → payload → header → even), then bump `published`.

        Either `payload` (bytes/array copied to the slot start) or `fill(view_numpy_uint8)` that writes in place.
        Returns the slot's stream sequence number.
        """
        seqno = self.published
        h = self.header
        base = h.slot_offset(seqno)
        lock = _U64.unpack_from(self._buf, base)[0]
        _U64.pack_into(self._buf, base, lock + 1 if lock % 2 == 0 else lock + 2)
        if payload is not None:
            data = np.ascontiguousarray(payload).view(np.uint8).reshape(-1)
            np.frombuffer(self.slot_payload(seqno), dtype=np.uint8, count=data.size)[:] = data
        if fill is not None:
            fill(np.frombuffer(self.slot_payload(seqno), dtype=np.uint8))
        lock = _U64.unpack_from(self._buf, base)[0]
        _SLOT.pack_into(self._buf, base, lock, pts_ns, index, flags, 0, seqno)
        _U64.pack_into(self._buf, base, lock + 1)  # even again: stable
        self.published = seqno + 1
        _U64.pack_into(self._buf, _OFF_PUBLISHED, self.published)
        self.heartbeat()
        return seqno

    def heartbeat(self, now_ns: int | None = None) -> None:
        _U64.pack_into(self._buf, _OFF_HEARTBEAT, monotonic_ns() if now_ns is None else now_ns)

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

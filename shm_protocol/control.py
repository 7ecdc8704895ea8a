"""The control/status channel's bytes: one implementation for the backend (which owns the segments) and
for every client (the OBS plugin, `stream-wav2lip say`, tests), which attach with plain mmap.

Why JSON and no lock: any local process can write these segments, so nothing in them may ever be executed
(no pickle), and a lock shared between OBS and the backend could be left held by a crashed process. Instead
each segment has exactly one writer (the status: the backend; the mailbox: clients) and a reader accepts a
copy only when two consecutive reads agree.

Format (unchanged since the shared-memory-dict days, so older plugins and backends still understand it): a
segment holds ``json.dumps(d).encode()`` followed by one NUL byte; bytes after the first NUL are leftovers of
a longer earlier value and ignored. Sizes: status `STATUS_SIZE`, mailbox `COMMAND_SIZE` bytes.

- status (``sm_s2l_S_ctl``, written by the backend): keys `STATUS_KEYS`, ``state`` one of `STATES`,
  ``heartbeat`` CLOCK_MONOTONIC ns refreshed at least every 100 ms, ``cmd_ack`` the last executed command id.
- mailbox (``sm_s2l_S_cmd``, written by clients):
  ``{"commands": [{"id": 7, "cmd": "flush"}, {"id": 8, "cmd": "switch_avatar", "avatar": "/path"},
  {"id": 9, "cmd": "action", "name": "wave"}, ...]}``;
  ids increase by one, the last `MAILBOX_KEEP` are kept, and the backend executes every command whose id is
  above ``cmd_ack``, then sets ``cmd_ack`` to it.

Commands: ``start`` (resume after pause), ``pause`` (flush and ignore new speech/microphone until start),
``stop`` (graceful exit: the backend unlinks every segment and exits 0), ``flush`` (barge-in),
``switch_avatar`` with ``"avatar": "<package dir>"``.
"""
from __future__ import annotations

import json
import mmap
import os
import time

from shm_protocol.liveness import writer_is_stale
from shm_protocol.names import command_segment, status_segment
from shm_protocol.segments import create_untracked, open_mapping, segment_exists, unlink_name

STATUS_SIZE = 16384  # bytes of the status segment
COMMAND_SIZE = 8192  # bytes of the command mailbox
MAILBOX_KEEP = 16
COMMANDS = ("start", "stop", "pause", "flush", "switch_avatar", "action")
STATUS_KEYS = (
    "session", "pid", "state", "avatar", "avatar_path", "engine", "width", "height", "fps", "render_fps",
    "latency_ms", "latency_p95_ms", "queue_ms", "error", "heartbeat", "cmd_ack", "video_segment",
    "audio_segment", "video_generation", "api_port", "token_file", "frames_published", "frames_repeated",
    "frames_late", "actions", "last_action", "precision", "speech_fps", "batch", "detail",
)
STATES = ("starting", "loading", "idle", "speaking", "paused", "stopping", "stopped", "error")


# ------------------------------------------------------------------------------------------ the bytes
def encode(d: dict) -> bytes:
    """dict -> segment bytes (JSON + NUL)."""
    return json.dumps(d).encode() + b"\x00"


def decode(buf) -> dict:
    """Segment bytes -> dict (ValueError on a torn, empty or foreign segment)."""
    text = bytes(buf).split(b"\x00", 1)[0]
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError("segment does not hold a JSON object")
    return value


def store(buf, d: dict, name: str = "segment") -> None:
    """Write `d` into the writable buffer `buf` (an mmap or a memoryview) in one copy."""
    data = encode(d)
    if len(data) > len(buf):
        raise ValueError(f"{name}: {len(data)} bytes do not fit into {len(buf)}")
    buf[: len(data)] = data


def load(buf, attempts: int = 5, pause_s: float = 0.0002) -> dict | None:
    """The dict in `buf` once two consecutive reads agree and decode, or None (a writer is busy: retry later)."""
    previous = None
    for attempt in range(attempts):
        raw = bytes(buf).split(b"\x00", 1)[0]
        if raw == previous:
            try:
                return decode(raw)
            except ValueError:
                pass
        previous = raw
        if pause_s and attempt + 1 < attempts:
            time.sleep(pause_s)
    return None


# ------------------------------------------------------------------------------------------ by name
def _attach(name: str) -> mmap.mmap | None:
    """Map control segment `name`, or None if it does not exist (or is being created right now)."""
    size = STATUS_SIZE if name.endswith("_ctl") else COMMAND_SIZE  # used on Windows only
    try:
        return open_mapping(name, size)
    except (OSError, ValueError):  # missing, or a zero-length file that is being created
        return None


def read_segment(name: str, attempts: int = 5) -> dict | None:
    """The dict in segment `name`, or None if it does not exist or never read the same twice."""
    mm = _attach(name)
    if mm is None:
        return None
    try:
        return load(mm, attempts)
    finally:
        mm.close()


def write_segment(name: str, d: dict) -> bool:
    """Overwrite segment `name` with `d` (False if the segment does not exist)."""
    mm = _attach(name)
    if mm is None:
        return False
    try:
        store(mm, d, name)
        return True
    finally:
        mm.close()


def status_is_alive(status: dict | None, now_ns: int | None = None) -> bool:
    """True while the backend that wrote `status` runs: the rings' liveness rule (`writer_is_stale`) applied to
    the status's ``pid`` and ``heartbeat``, and its ``state`` is not "stopped"."""
    if not status:
        return False
    heartbeat, pid = status.get("heartbeat"), status.get("pid")
    if not isinstance(heartbeat, int) or not isinstance(pid, int):
        return False
    return not writer_is_stale(pid, heartbeat, now_ns) and status.get("state") != "stopped"


# ------------------------------------------------------------------------------------------ the owner
def reclaim_control_or_raise(session: str) -> list[str]:
    """Remove the control segments of a crashed backend of `session` (FileExistsError if a live backend other
    than this process owns them). Returns the names of the segments that existed and were removed."""
    status_name = status_segment(session)
    status = read_segment(status_name)
    if status is not None and status_is_alive(status) and status.get("pid") != os.getpid():
        raise FileExistsError(f"session {session!r} is in use by a running backend (pid {status.get('pid')})")
    reclaimed = []
    for name in (status_name, command_segment(session)):
        if segment_exists(name):
            reclaimed.append(name)
        unlink_name(name)
    return reclaimed


class OwnedSegment:
    """A control segment created and unlinked by this process (the backend), written with `store`."""

    def __init__(self, name: str, size: int, initial: dict):
        self.name = name
        self._shm = create_untracked(name, size)
        store(self._shm.buf, initial, name)

    def write(self, d: dict) -> None:
        """Replace the content with `d` (only this process may write this segment)."""
        store(self._shm.buf, d, self.name)

    def read(self) -> dict | None:
        """What a client wrote last, or None while it is writing (no pause: the caller polls again soon)."""
        return load(self._shm.buf, attempts=2, pause_s=0.0)

    def close(self, unlink: bool = True) -> None:
        """Release the mapping and (by default) remove the segment; idempotent."""
        if self._shm is None:
            return
        name, shm, self._shm = self.name, self._shm, None
        try:
            shm.close()
        except BufferError:  # pragma: no cover - a view is still exported: the unlink matters more
            pass
        if unlink:
            unlink_name(name)


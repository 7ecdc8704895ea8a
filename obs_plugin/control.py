"""The OBS side of the control/status channel: read the backend's status, post commands. Stdlib only.

The backend (`backend.ipc.control`) writes two `shared-memory-dict` segments with its JSON serializer; this
module reads and writes the very same bytes through plain `mmap`, because `multiprocessing.shared_memory`
inside OBS would start CPython's resource tracker, which unlinks the backend's segments when OBS exits.

Byte format (that of shared-memory-dict 0.7, JSON serializer): the segment holds ``json.dumps(d).encode()``
followed by one NUL byte; bytes after the first NUL are leftovers and ignored. There is no lock, so each
segment has exactly one writer and readers accept a copy only when two consecutive reads agree.

Segments of session S (on Linux files in /dev/shm; on Windows named mappings of the same name):

- ``sm_s2l_S_ctl`` status, written only by the backend: see `STATUS_KEYS`.
- ``sm_s2l_S_cmd`` command mailbox, written only by clients (the OBS script, tests):
  ``{"commands": [{"id": 7, "cmd": "flush"}, {"id": 8, "cmd": "switch_avatar", "avatar": "/path"}, ...]}``
  Ids increase by one; the mailbox keeps the last `MAILBOX_KEEP` commands; the backend executes every
  command whose id is above the status key ``cmd_ack`` and then sets ``cmd_ack`` to it.

Commands: ``start`` (resume after pause), ``pause`` (flush and ignore new speech/microphone until start),
``stop`` (graceful exit: the backend unlinks every segment and exits 0; send SIGTERM if it is still there
after a few seconds), ``flush`` (barge-in), ``switch_avatar`` with ``"avatar": "<package dir>"``.

The backend is dead when its status segment is missing, its ``pid`` is gone, its ``state`` is "stopped", or
its ``heartbeat`` (CLOCK_MONOTONIC ns, refreshed at least every 100 ms) is more than `HEARTBEAT_STALE_NS` old
(`status_is_alive`). The rings (``s2l_S_video``, ``s2l_S_audio``, see `obs_plugin.shm_layout`) carry the same
writer heartbeat and pid in their headers. Re-open the rings when the status ``pid`` or ``video_generation``
changes (a restarted backend, or an avatar of another size: the video ring is re-created under the same name).
"""
from __future__ import annotations

import json
import mmap
import os
import re
import sys
import time

from obs_plugin.shm_layout import writer_is_stale

STATUS_SIZE = 16384  # bytes of the status segment (the backend creates it with this size)
COMMAND_SIZE = 8192
MAILBOX_KEEP = 16
COMMANDS = ("start", "stop", "pause", "flush", "switch_avatar")
STATUS_KEYS = (
    "session", "pid", "state", "avatar", "avatar_path", "engine", "width", "height", "fps", "render_fps",
    "latency_ms", "latency_p95_ms", "queue_ms", "error", "heartbeat", "cmd_ack", "video_segment",
    "audio_segment", "video_generation", "api_port", "token_file", "frames_published", "frames_repeated",
)
STATES = ("starting", "loading", "idle", "speaking", "paused", "stopping", "stopped", "error")
_SESSION_RE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


def valid_session(session: str) -> str:
    """Session names become part of segment and file names: 1-32 of [A-Za-z0-9_-]."""
    if not _SESSION_RE.match(session or ""):
        raise ValueError(f"invalid session name {session!r}: use 1-32 letters, digits, '_' or '-'")
    return session


def session_from_label(label: str) -> str:
    """A valid session name derived from any text (e.g. an OBS source name): 'My Avatar!' -> 'My_Avatar_'."""
    cleaned = re.sub(r"[^A-Za-z0-9_-]", "_", label or "")[:32]
    return cleaned or "default"


def status_segment(session: str) -> str:
    """Segment name of the status dict (what shared-memory-dict calls it: 'sm_' + its name)."""
    return f"sm_s2l_{valid_session(session)}_ctl"


def command_segment(session: str) -> str:
    return f"sm_s2l_{valid_session(session)}_cmd"


# ------------------------------------------------------------------------------------------ raw access
def _open(name: str) -> mmap.mmap | None:
    if sys.platform == "win32":  # pragma: no cover - Windows named mapping (size must be given)
        size = STATUS_SIZE if name.endswith("_ctl") else COMMAND_SIZE
        try:
            return mmap.mmap(-1, size, tagname=name)
        except OSError:
            return None
    try:
        fd = os.open(f"/dev/shm/{name}", os.O_RDWR)
    except FileNotFoundError:
        return None
    try:
        return mmap.mmap(fd, 0)
    except (ValueError, OSError):  # zero-length file: being created right now
        return None
    finally:
        os.close(fd)


def decode(buf: bytes) -> dict:
    """shared-memory-dict JSON format -> dict (raises ValueError on a torn or foreign segment)."""
    text = bytes(buf).split(b"\x00", 1)[0]
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError("segment does not hold a JSON object")
    return value


def encode(d: dict) -> bytes:
    """dict -> shared-memory-dict JSON format."""
    return json.dumps(d).encode() + b"\x00"


def read_segment(name: str, attempts: int = 5) -> dict | None:
    """The dict in segment `name`, or None if it does not exist. Two equal consecutive reads are required."""
    mm = _open(name)
    if mm is None:
        return None
    try:
        previous = None
        for _ in range(attempts):
            raw = mm[:].split(b"\x00", 1)[0]
            if raw == previous:
                try:
                    return decode(raw)
                except ValueError:
                    pass
            previous = raw
            time.sleep(0.0002)
        return None
    finally:
        mm.close()


def write_segment(name: str, d: dict) -> bool:
    """Overwrite segment `name` with `d` (False if the segment does not exist)."""
    data = encode(d)
    mm = _open(name)
    if mm is None:
        return False
    try:
        if len(data) > len(mm):
            raise ValueError(f"{name}: {len(data)} bytes do not fit into {len(mm)}")
        mm[: len(data)] = data
        return True
    finally:
        mm.close()


def status_is_alive(status: dict | None, now_ns: int | None = None) -> bool:
    """True while the backend that wrote `status` runs: pid present and heartbeat younger than 2 s
    (the rings' liveness rule, `shm_layout.writer_is_stale`, applied to the status dict)."""
    if not status:
        return False
    heartbeat, pid = status.get("heartbeat"), status.get("pid")
    if not isinstance(heartbeat, int) or not isinstance(pid, int):
        return False
    return not writer_is_stale(pid, heartbeat, now_ns) and status.get("state") != "stopped"


# ------------------------------------------------------------------------------------------ client
class ControlClient:
    """Status and commands of one backend session; every call re-opens the segment (survives restarts)."""

    def __init__(self, session: str):
        self.session = valid_session(session)
        self.status_name = status_segment(session)
        self.command_name = command_segment(session)

    def status(self) -> dict | None:
        """The backend's latest status dict (keys: `STATUS_KEYS`), or None when no backend exists."""
        return read_segment(self.status_name)

    def alive(self) -> bool:
        return status_is_alive(self.status())

    def post(self, cmd: str, **args) -> int:
        """Queue a command; returns its id (wait for it with `wait_ack`). Raises if no backend is running."""
        if cmd not in COMMANDS:
            raise ValueError(f"unknown command {cmd!r} (expected one of {COMMANDS})")
        mailbox = read_segment(self.command_name)
        if mailbox is None:
            raise ConnectionError(f"no backend for session {self.session!r} (segment {self.command_name} missing)")
        commands = [c for c in mailbox.get("commands", []) if isinstance(c, dict) and isinstance(c.get("id"), int)]
        status = self.status() or {}
        last = max([c["id"] for c in commands] + [int(status.get("cmd_ack") or 0)])
        command = {"id": last + 1, "cmd": cmd, **args}
        commands = (commands + [command])[-MAILBOX_KEEP:]
        if not write_segment(self.command_name, {"commands": commands}):
            raise ConnectionError(f"backend for session {self.session!r} went away")
        return command["id"]

    def wait_ack(self, command_id: int, timeout: float = 2.0) -> bool:
        """True once the backend has executed command `command_id`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.status() or {}
            if int(status.get("cmd_ack") or 0) >= command_id:
                return True
            time.sleep(0.01)
        return False

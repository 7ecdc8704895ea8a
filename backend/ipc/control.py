"""The backend side of the control/status channel: `shared-memory-dict` with its JSON serializer.

Two dicts per session, each with a single writer because shared-memory-dict has no cross-process lock
(a read-modify-write by two processes would lose updates): the status dict written by the backend and the
command mailbox written by clients. Formats, names and the liveness rule are documented in
`obs_plugin.control`, which reads the same bytes through plain mmap inside OBS.

Never pickle: any local process could otherwise make OBS or the backend execute code.
"""
from __future__ import annotations

import logging
import os
import threading
import time

from obs_plugin import control as wire
from obs_plugin.shm_layout import unlink_name, untrack

log = logging.getLogger(__name__)

STATUS_SIZE = wire.STATUS_SIZE
COMMAND_SIZE = wire.COMMAND_SIZE


def _smd_name(segment: str) -> str:
    """shared-memory-dict adds 'sm_' in front of the name it is given."""
    assert segment.startswith("sm_")
    return segment[3:]


def reclaim_or_raise(session: str) -> None:
    """Remove the control segments of a crashed backend of `session`; refuse if one is alive."""
    status_name = wire.status_segment(session)
    status = wire.read_segment(status_name)
    if status is not None and wire.status_is_alive(status) and status.get("pid") != os.getpid():
        raise FileExistsError(f"session {session!r} is in use by a running backend (pid {status.get('pid')})")
    for name in (status_name, wire.command_segment(session)):
        if os.path.exists(f"/dev/shm/{name}"):
            log.warning("reclaiming stale segment %s", name)
        unlink_name(name)


class ControlChannel:
    """Publishes the status dict and reads commands posted by clients (the OBS script, tests)."""

    def __init__(self, session: str):
        from shared_memory_dict import SharedMemoryDict
        from shared_memory_dict.serializers import JSONSerializer

        self.session = wire.valid_session(session)
        reclaim_or_raise(session)
        self.status_name = wire.status_segment(session)
        self.command_name = wire.command_segment(session)
        serializer = JSONSerializer()
        self._status = SharedMemoryDict(_smd_name(self.status_name), STATUS_SIZE, serializer=serializer)
        untrack(self._status.shm)  # see obs_plugin.shm_layout.create_untracked: close() unlinks them
        self._commands = SharedMemoryDict(_smd_name(self.command_name), COMMAND_SIZE, serializer=serializer)
        untrack(self._commands.shm)
        self._lock = threading.Lock()  # the publisher and API threads both update the status
        self._values: dict = {"session": session, "pid": os.getpid(), "state": "starting", "error": "",
                              "heartbeat": time.monotonic_ns(), "cmd_ack": 0}
        self._commands.update({"commands": []})
        self._write()

    # ------------------------------------------------------------------ status
    def update(self, **fields) -> None:
        """Merge `fields` into the status and publish it (with a fresh heartbeat)."""
        if isinstance(fields.get("error"), str):
            fields["error"] = fields["error"][:500]  # the status must always fit its segment
        with self._lock:
            self._values.update(fields)
            self._write()

    def heartbeat(self) -> None:
        with self._lock:
            if self._status is not None:  # a beat may land while close() runs: never write a released buffer
                self._write()

    def _write(self) -> None:
        self._values["heartbeat"] = time.monotonic_ns()
        # one memcpy of the whole JSON (SharedMemoryDict.update would re-read first; we are the only writer)
        self._status._save_memory(self._values)

    def keep_alive(self, interval: float = 0.08) -> threading.Event:
        """Refresh the heartbeat from a thread until the returned event is set (while loading: the avatar
        and the model can take seconds, and a supervisor must not mistake that for a dead backend)."""
        done = threading.Event()

        def beat():
            while not done.wait(interval) and self._status is not None:
                self.heartbeat()

        threading.Thread(target=beat, name="s2l-heartbeat", daemon=True).start()
        return done

    @property
    def values(self) -> dict:
        with self._lock:
            return dict(self._values)

    # ------------------------------------------------------------------ commands
    def take_commands(self) -> list[dict]:
        """Commands posted since the last call (ids above cmd_ack), acknowledged as taken."""
        buf = self._commands.shm.buf
        first, second = bytes(buf).split(b"\x00", 1)[0], bytes(buf).split(b"\x00", 1)[0]
        try:
            if first != second:
                raise ValueError("changing")
            mailbox = wire.decode(first)
        except ValueError:
            return []  # torn read: a client is writing right now; next poll
        ack = int(self._values.get("cmd_ack") or 0)
        new = sorted((c for c in mailbox.get("commands", [])
                      if isinstance(c, dict) and isinstance(c.get("id"), int) and c["id"] > ack),
                     key=lambda c: c["id"])
        if new:
            self.update(cmd_ack=new[-1]["id"])
        return new

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        """Mark stopped, then unlink both segments."""
        if self._status is None:
            return
        try:
            self.update(state="stopped")
        except Exception:  # noqa: BLE001 - shutting down anyway
            pass
        with self._lock:
            for smd in (self._status, self._commands):
                name = smd.shm.name
                smd.cleanup()
                unlink_name(name)
            self._status = self._commands = None

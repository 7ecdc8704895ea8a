"""The backend side of the control/status channel: it creates and owns both segments of its session.

The bytes, names, liveness rule and reclaiming live in `shm_protocol.control`, the one implementation that
the OBS plugin and every other client use too. This class adds what only the owner needs: a status dict
that several backend threads update (the segment itself has exactly one writer: this process), a heartbeat
thread while loading, and taking each posted command exactly once.
"""
from __future__ import annotations

import logging
import os
import threading
import time

from shm_protocol import control as wire
from shm_protocol.names import command_segment, status_segment, valid_session

log = logging.getLogger(__name__)


class ControlChannel:
    """Publishes the status dict and reads commands posted by clients (the OBS script, tests)."""

    def __init__(self, session: str):
        self.session = valid_session(session)
        for name in wire.reclaim_control_or_raise(session):
            log.warning("reclaimed stale segment %s", name)
        self.status_name = status_segment(session)
        self.command_name = command_segment(session)
        self._lock = threading.Lock()  # the publisher and API threads both update the status
        self._values: dict = {"session": session, "pid": os.getpid(), "state": "starting", "error": "",
                              "heartbeat": time.monotonic_ns(), "cmd_ack": 0}
        self._status = wire.OwnedSegment(self.status_name, wire.STATUS_SIZE, self._values)
        try:
            self._commands = wire.OwnedSegment(self.command_name, wire.COMMAND_SIZE, {"commands": []})
        except BaseException:
            self._status.close()
            raise

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
        self._status.write(self._values)  # one copy of the whole JSON: we are the segment's only writer

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
        mailbox = self._commands.read()
        if mailbox is None:
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
            for segment in (self._status, self._commands):
                segment.close()
            self._status = self._commands = None

"""A client of one backend session: read its status, post commands to its mailbox.

Why every call re-opens the segment: the backend may restart at any time (a crash, an avatar switch by the
OBS supervisor) and re-create its segments under the same names; holding a mapping would keep reading the
dead one.
"""
from __future__ import annotations

import time

from shm_protocol.control import COMMANDS, MAILBOX_KEEP, read_segment, status_is_alive, write_segment
from shm_protocol.names import command_segment, status_segment, valid_session


class ControlClient:
    """Status and commands of one backend session (there must be one writer of the mailbox at a time)."""

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

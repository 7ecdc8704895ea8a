"""Session files: where a running `serve` leaves its API port and token for `say` (and other clients) to find.

Why a file and not a fixed port: the token must stay secret from other users, so it goes to a file only the
user can read (created 0600, in a 0700 folder), and several sessions can run side by side, one file each.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from stream_wav2lip.errors import UserError


def runtime_dir() -> Path:
    """Per-user folder for session files: $S2L_RUNTIME_DIR, $XDG_RUNTIME_DIR/stream-wav2lip, or the config dir."""
    if os.environ.get("S2L_RUNTIME_DIR"):
        return Path(os.environ["S2L_RUNTIME_DIR"])
    if sys.platform == "win32":  # pragma: no cover
        return Path(os.environ.get("LOCALAPPDATA", Path.home())) / "stream-wav2lip" / "run"
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and Path(xdg).is_dir():
        return Path(xdg) / "stream-wav2lip"
    return Path(os.environ.get("XDG_CONFIG_HOME", Path.home() / ".config")) / "stream-wav2lip" / "run"


def session_file(session: str) -> Path:
    return runtime_dir() / f"{session}.json"


def write_session_file(session: str, info: dict) -> Path:
    """Write the session's port+token file readable by the user only (created 0600, then renamed)."""
    folder = runtime_dir()
    folder.mkdir(parents=True, exist_ok=True)
    try:
        os.chmod(folder, 0o700)
    except OSError:
        pass
    path = session_file(session)
    tmp = folder / f".{session}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(info, f)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return path


def read_session_file(session: str) -> dict:
    path = session_file(session)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: no running backend for session {session!r} (start `stream-wav2lip serve "
                        f"--session {session}` first)") from None
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: unreadable session file ({exc})") from None

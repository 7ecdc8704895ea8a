"""Names of a session's shared-memory segments, derived in one place.

Why: the backend creates the segments and the OBS plugin (and its supervisor, which removes what a dead
backend left behind) finds them by name alone, so both must derive every name from the session with the same
rules. A session name ends up in file names under /dev/shm (and in Windows mapping names), hence the strict
alphabet.
"""
from __future__ import annotations

import re

_SESSION_RE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


def valid_session(session: str) -> str:
    """`session` itself when it is 1-32 of [A-Za-z0-9_-]; ValueError otherwise."""
    if not _SESSION_RE.match(session or ""):
        raise ValueError(f"invalid session name {session!r}: use 1-32 letters, digits, '_' or '-'")
    return session


def session_from_label(label: str) -> str:
    """A valid session name derived from any text (e.g. an OBS source name): 'My Avatar!' -> 'My_Avatar_'."""
    cleaned = re.sub(r"[^A-Za-z0-9_-]", "_", label or "")[:32]
    return cleaned or "default"


def video_name(session: str) -> str:
    """Segment name of a session's video ring."""
    return f"s2l_{session}_video"


def audio_name(session: str) -> str:
    """Segment name of a session's audio ring."""
    return f"s2l_{session}_audio"


def status_segment(session: str) -> str:
    """Segment name of a session's status (the 'sm_' prefix is kept from the shared-memory-dict days, so
    plugins and backends of either age find each other)."""
    return f"sm_s2l_{valid_session(session)}_ctl"


def command_segment(session: str) -> str:
    """Segment name of a session's command mailbox."""
    return f"sm_s2l_{valid_session(session)}_cmd"


def session_prefixes(session: str) -> tuple[str, ...]:
    """Every segment of `session` starts with one of these (rings: s2l_S_, control: sm_s2l_S_)."""
    return (f"s2l_{session}_", f"sm_s2l_{session}_")

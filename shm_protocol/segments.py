"""Creating, opening and removing named shared-memory segments without CPython's resource tracker.

Why not plain `multiprocessing.shared_memory` everywhere: attaching to a segment registers its name with the
resource tracker, which unlinks it when the attaching process exits. Inside OBS that would delete the live
backend's segments whenever OBS quits; in the backend, the tracker of a `kill -9`-ed process unlinks its
segments *by name* some time later, and by then a restarted backend of the same session may have created new
segments under those names. So readers map segments with plain `mmap`, the backend creates them untracked
and unlinks them itself, and what a crashed backend leaves behind is reclaimed by its successor (pid and
heartbeat, see `liveness`) or removed by the OBS supervisor once it knows the backend is dead.
"""
from __future__ import annotations

import mmap
import os
import sys

from shm_protocol.names import audio_name, session_prefixes, video_name

SHM_DIR = "/dev/shm"  # where POSIX shared memory appears as files on Linux


def open_mapping(name: str, windows_size: int = 0) -> mmap.mmap:
    """Map the existing segment `name` read/write without taking ownership (no tracker, never unlinked).

    Raises OSError when it does not exist and ValueError while it is still empty (being created). Windows
    named mappings have no size to ask for, so the caller says how much to map there.
    """
    if sys.platform == "win32":  # pragma: no cover - Windows named mapping
        return mmap.mmap(-1, windows_size, tagname=name)
    fd = os.open(f"{SHM_DIR}/{name}", os.O_RDWR)
    try:
        return mmap.mmap(fd, 0)
    finally:
        os.close(fd)


def segment_exists(name: str) -> bool:
    """Whether segment `name` exists (always False on Windows, where a mapping cannot be probed by name)."""
    if sys.platform == "win32":  # pragma: no cover
        return False
    return os.path.exists(f"{SHM_DIR}/{name}")


def create_untracked(name: str, size: int):
    """Create a zero-filled `multiprocessing.shared_memory` segment unknown to the resource tracker.

    Raises FileExistsError when the name is taken. Unlink it with `unlink_name(shm.name)` (see the module
    docstring for why the tracker must not know it).
    """
    from multiprocessing import shared_memory

    if sys.version_info >= (3, 13):
        return shared_memory.SharedMemory(name=name, create=True, size=size, track=False)
    shm = shared_memory.SharedMemory(name=name, create=True, size=size)
    untrack(shm)
    return shm


def untrack(shm) -> None:
    """Tell the resource tracker to forget `shm`."""
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


def session_segments(session: str) -> list[str]:
    """Every segment of `session`: its two rings and whatever else exists under its prefixes (control)."""
    names = {video_name(session), audio_name(session)}
    try:
        names.update(n for n in os.listdir(SHM_DIR) if n.startswith(session_prefixes(session)))
    except OSError:
        pass
    return sorted(names)


def unlink_session_segments(session: str) -> list[str]:
    """Remove every segment of `session` (only once its backend is known to be dead). Returns what was removed."""
    removed: list[str] = []
    if sys.platform == "win32":  # pragma: no cover - named mappings vanish with their last handle
        return removed
    for name in session_segments(session):
        try:
            os.unlink(f"{SHM_DIR}/{name}")
            removed.append(name)
        except OSError:
            pass
    return removed

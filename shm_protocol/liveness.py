"""Is the writer of a segment still there? The one rule for rings and for the status segment alike.

Why a rule of its own: shared memory outlives a crashed (`kill -9`) writer, and a restarted backend must be
able to take over the names its dead predecessor left behind without ever taking them from a live one. A
writer is alive while its process exists and it refreshes its heartbeat (CLOCK_MONOTONIC ns, at least every
100 ms); two seconds of silence count as dead.
"""
from __future__ import annotations

import os
import sys
import time

HEARTBEAT_STALE_NS = 2_000_000_000  # a writer silent for 2 s is considered dead


def monotonic_ns() -> int:
    """CLOCK_MONOTONIC in ns: the one clock of the product (libobs' os_gettime_ns uses the same)."""
    return time.monotonic_ns()


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

"""The one clock of `serve`, and a virtual one that lets tests run the live loop deterministically.

Output frame k has pts = t0 + k · 40 ms on CLOCK_MONOTONIC (the clock libobs uses). The clock owns every wait
of the live loop (`sleep_until`), so the same loop code runs on real time in `serve` and on virtual time in
tests: `VirtualClock` never sleeps, `LiveLoop.run_virtual` advances it from event to event, and a render
costs whatever virtual time the test says (`render_cost_ns`), 0 by default, so a test's loop never falls
behind unless the test wants it to.
"""
from __future__ import annotations

import threading
import time
from typing import Callable

from backend.frames import FRAME_NS


class Clock:
    """Real time: pts of output frame k on CLOCK_MONOTONIC."""

    virtual = False

    def __init__(self, t0_ns: int | None = None, now: Callable[[], int] = time.monotonic_ns):
        self.now = now
        self.t0 = now() if t0_ns is None else int(t0_ns)

    def pts(self, k: int) -> int:
        return self.t0 + k * FRAME_NS

    def index_at(self, t_ns: int) -> int:
        """The last frame whose pts is <= t_ns."""
        return (t_ns - self.t0) // FRAME_NS

    def sleep_until(self, t_ns: int, stop: threading.Event) -> bool:
        """Wait until t_ns or until `stop` is set; True when stopped."""
        delay = t_ns - self.now()
        if delay <= 0:
            return stop.is_set()
        return stop.wait(delay / 1e9)

    def render_time(self, started_ns: int, plans: list) -> int:
        """How long a render that started at started_ns took (it has just finished)."""
        return self.now() - started_ns


class VirtualClock(Clock):
    """Time that moves only when `set()` moves it. `render_cost_ns(plans)` is the virtual time a render takes."""

    virtual = True

    def __init__(self, t0_ns: int = 0, render_cost_ns: Callable[[list], int] | None = None):
        self.t = int(t0_ns)
        super().__init__(t0_ns, now=lambda: self.t)
        self.render_cost_ns = render_cost_ns or (lambda plans: 0)

    def set(self, t_ns: int) -> None:
        self.t = max(self.t, int(t_ns))

    def sleep_until(self, t_ns: int, stop: threading.Event) -> bool:
        raise RuntimeError("a virtual clock never sleeps: drive the loop with LiveLoop.run_virtual()")

    def render_time(self, started_ns: int, plans: list) -> int:
        return int(self.render_cost_ns(plans))

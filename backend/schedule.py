"""Which avatar frame is shown at each output frame.

Why ping-pong: an avatar clip rarely loops seamlessly, so walking it forward and then backward (0..n-1, n-2..1,
0, 1, ...) never shows a jump; the turn-around frame is not repeated, so motion does not stall for a frame.
The pure functions answer "frame k of the walk"; `ScheduleCursor` is the running position that `serve` keeps
across idle and speech so that speech never restarts the clip.
"""
from __future__ import annotations

LOOP_MODES = ("pingpong", "forward")


def pingpong_index(k: int, n: int, start: int = 0) -> int:
    """Avatar frame for step k of a ping-pong walk over n frames that begins at `start` going forward."""
    if n <= 0:
        raise ValueError("an avatar needs at least one frame")
    if n == 1:
        return 0
    period = 2 * n - 2
    p = (start % n + k) % period
    return p if p < n else period - p


def forward_index(k: int, n: int, start: int = 0) -> int:
    """Avatar frame for step k of a forward loop (n-1 is followed by 0)."""
    if n <= 0:
        raise ValueError("an avatar needs at least one frame")
    return (start % n + k) % n


def schedule_index(k: int, n: int, start: int = 0, loop: str = "pingpong") -> int:
    """Avatar frame for output step k; `loop` is "pingpong" or "forward"."""
    if loop == "pingpong":
        return pingpong_index(k, n, start)
    if loop == "forward":
        return forward_index(k, n, start)
    raise ValueError(f"unknown loop mode {loop!r} (expected one of {LOOP_MODES})")


def schedule(count: int, n: int, start: int = 0, loop: str = "pingpong") -> list[int]:
    """The first `count` avatar frame indices of a walk."""
    return [schedule_index(k, n, start, loop) for k in range(count)]


class ScheduleCursor:
    """A running position in the walk: `next()` returns the avatar frame for the next output frame."""

    def __init__(self, n: int, start: int = 0, loop: str = "pingpong"):
        if n <= 0:
            raise ValueError("an avatar needs at least one frame")
        if loop not in LOOP_MODES:
            raise ValueError(f"unknown loop mode {loop!r} (expected one of {LOOP_MODES})")
        self.n, self.start, self.loop = n, start % n, loop
        self.step = 0

    def peek(self, ahead: int = 0) -> int:
        """Avatar frame `ahead` steps after the next one, without moving."""
        return schedule_index(self.step + ahead, self.n, self.start, self.loop)

    def next(self) -> int:
        index = self.peek()
        self.step += 1
        return index

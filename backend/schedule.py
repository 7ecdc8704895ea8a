"""Which avatar frame is shown at each output frame.

Why ping-pong: an avatar clip rarely loops seamlessly, so walking it forward and then backward (0..n-1, n-2..1,
0, 1, ...) never shows a jump; the turn-around frame is not repeated, so motion does not stall for a frame.
The pure functions answer "frame k of the walk"; backend/idle_walk.py puts them (and the video-texture idle,
which never plays backwards) behind the one walk interface the engine uses.
"""
from __future__ import annotations

LOOP_MODES = ("pingpong", "forward")
WALK_MODES = ("auto", "texture") + LOOP_MODES  # backend/idle_walk.py
IDLE_HELP = ("how the avatar's footage plays between and under speech: auto (default: the video-texture idle, "
             "forward with seamless jumps, where the footage allows it, else pingpong), texture, pingpong "
             "(forward then backward) or forward (a plain loop)")


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

"""Which avatar frame is shown at each walk step: the video-texture idle, and the old walks behind one interface.

Why a texture: ping-pong plays every other pass backwards (a blink un-blinks). `TextureWalk` only ever plays
forward, and at the jumps of the package's table (`preprocess.idle_graph`) it may continue at another frame
that looks and moves like the one it replaces, with a short cross-fade. Jumps are taken at random (seeded,
so a render is reproducible) but not into a stretch played in the last minute, and whenever the walk starts
to retrace a sequence it played within the last minute it leaves it at the next jump: the same two seconds
do not come back within 60 s when the footage is long enough to allow it (30 s or more).

The engine reserves steps ahead of the shown frame for speech that is still being computed, so every walk
answers `index_at(step)` for any step, memoised: the walk is generated once, in step order, and a step
keeps its frame however often and in whatever order it is asked. Steps far behind the cursor are forgotten
(asking for one regenerates the walk from the start, deterministically).

Interface (also what `ScheduleWalk` gives for "pingpong"/"forward", the walk the engine uses):
`n`, `start`, `step` (settable), `peek(ahead)`, `next()`, `index_at(step)`, `frame_at(step) -> WalkStep`,
`hold(until_step)`, and `mode` ("texture" | "pingpong" | "forward") with `reason` (why not texture).
"""
from __future__ import annotations

import copy
import logging
import math
from array import array
from collections import deque
from dataclasses import dataclass

import numpy as np

from backend.schedule import LOOP_MODES, WALK_MODES, schedule_index
from preprocess.idle_graph import alive_frames, texture_usable

log = logging.getLogger(__name__)

FADE_STEPS = 3  # cross-fade across a jump: weights 3/4, 2/4, 1/4 of the old path
MIN_RUN_S = 1.0  # no voluntary jump sooner than this after the previous one
MEAN_EXTRA_RUN_S = 2.0  # then jumps come at about this mean interval (where the table offers them)
AVOID_S = 60.0  # a stretch played within this long is not jumped into, and a retraced sequence is left
STRETCH_S = 2.0  # the unit of "the same stretch"
KEEP_BEHIND_S = 120.0  # memo kept behind the cursor


@dataclass(frozen=True)
class WalkStep:
    """What the compositor shows at one step.

    image = (1 - weight) * frame[index] + weight * frame[other] (when other is not None). `index` is the
    frame whose face and geometry the generator and the compositor use; `other` is the frame the old path
    would have shown, fading out over the first steps after a jump. `clip` / `other_clip` name the action
    clip the frame belongs to (backend.action_walk); None is the main footage.
    """

    index: int
    other: int | None = None
    weight: float = 0.0
    clip: str | None = None
    other_clip: str | None = None


class _Cursor:
    """`peek`/`next` over `index_at` and a `step` cursor (the walks' common part)."""

    step: int

    def frame_at(self, step: int) -> "WalkStep":
        raise NotImplementedError

    def index_at(self, step: int) -> int:
        return self.frame_at(step).index

    def peek(self, ahead: int = 0) -> int:
        return self.index_at(self.step + ahead)

    def next(self) -> int:
        index = self.index_at(self.step)
        self.step += 1
        return index


class ScheduleWalk(_Cursor):
    """Ping-pong or forward loop (backend.schedule) behind the walk interface; no jumps, no blends."""

    def __init__(self, n: int, start: int = 0, loop: str = "pingpong"):
        if n <= 0:
            raise ValueError("an avatar needs at least one frame")
        if loop not in LOOP_MODES:
            raise ValueError(f"unknown loop mode {loop!r} (expected one of {LOOP_MODES})")
        self.n, self.start, self.loop, self.mode = n, start % n, loop, loop
        self.step = 0
        self.reason = ""
        self._seats: list[tuple[int, int]] = [(0, self.start)]  # (from step, frame there), ascending

    def index_at(self, step: int) -> int:
        for first, frame in reversed(self._seats):
            if step >= first:
                return schedule_index(step - first, self.n, frame, self.loop)
        raise ValueError(f"walk step {step} < 0")

    def seat(self, step: int, frame: int) -> None:
        """From `step` on, walk on from `frame` (an action returning to the main footage)."""
        if step <= self._seats[-1][0]:
            raise ValueError(f"walk step {step} is already seated")
        self._seats.append((int(step), int(frame) % self.n))

    def frame_at(self, step: int) -> WalkStep:
        return WalkStep(self.index_at(step))

    def hold(self, until_step: int) -> None:
        """Nothing to hold: these walks never jump."""


class TextureWalk(_Cursor):
    """Forward walk over n frames with jumps from a table (see module docstring)."""

    def __init__(self, n: int, sources, targets, costs=None, *, start: int = 0, seed: int = 0, fps: float = 25.0,
                 fade: int = FADE_STEPS, min_run_s: float = MIN_RUN_S, mean_extra_run_s: float = MEAN_EXTRA_RUN_S,
                 avoid_s: float = AVOID_S, stretch_s: float = STRETCH_S, wrap_target: int = 0,
                 keep_behind_s: float = KEEP_BEHIND_S, alive: np.ndarray | None = None):
        if n <= 0:
            raise ValueError("an avatar needs at least one frame")
        self.n, self.start, self.seed, self.mode, self.reason = n, start % n, int(seed), "texture", ""
        sources = np.asarray(sources, np.int64)
        targets = np.asarray(targets, np.int64)
        costs = np.zeros(len(sources)) if costs is None else np.asarray(costs, np.float64)
        inside = (sources >= 0) & (sources < n) & (targets >= 0) & (targets < n)
        sources, targets, costs = sources[inside], targets[inside], costs[inside]
        self.alive = alive if alive is not None and inside.all() else alive_frames(n, sources, targets)
        self.jumps: dict[int, list[tuple[int, float]]] = {}
        for i, j, c in zip(sources.tolist(), targets.tolist(), costs.tolist()):
            if self.alive[j]:
                self.jumps.setdefault(i, []).append((j, c))
        self.fade = max(0, int(fade))
        self.min_run = max(self.fade + 1, int(round(min_run_s * fps)))
        self.mean_extra = max(1.0, mean_extra_run_s * fps)
        self.window = max(1, int(round(avoid_s * fps)))
        self.stretch = max(1, int(round(stretch_s * fps)))
        self.slack = self.stretch // 2  # leave a retraced run this much before it could become a repeat
        # frames until the next jump source at or after each frame (n: none ahead)
        self._to_source = np.full(n + 1, n, np.int64)
        for i in range(n - 1, -1, -1):
            self._to_source[i] = 0 if i in self.jumps else self._to_source[i + 1] + 1
        self.wrap_target = int(wrap_target) % n
        self.keep_behind = max(self.window, int(round(keep_behind_s * fps)))
        self.step = 0
        self._reset()

    # ------------------------------------------------------------------ the walk interface
    def frame_at(self, step: int) -> WalkStep:
        step = int(step)
        if step < 0:
            raise ValueError(f"walk step {step} < 0")
        if step < self._base:
            return self._replay(step)
        while self._base + len(self._index) <= step:
            self._generate()
        self._trim()
        k = step - self._base
        other = self._other[k]
        return WalkStep(self._index[k], None if other < 0 else other, float(self._weight[k]))

    def seat(self, step: int, frame: int) -> None:
        """Show `frame` at `step` and walk on from there (an action returning to the main footage; no fade of
        its own: the caller fades). Only for a step not generated yet."""
        if step < self._generated:
            raise ValueError(f"walk step {step} was already generated")
        self._seats[int(step)] = int(frame) % self.n

    def hold(self, until_step: int) -> None:
        """Take no jump at the steps not generated yet that are < until_step, where the walk can go on (a dead
        end still jumps). The engine calls it with onset step + 1 when it reserves a speech onset, so speech
        starts on the frame the idle was heading for. Steps already generated keep their frames (a memoised
        walk never changes its answer); a regenerated old step (older than the memo) ignores holds."""
        self._hold_until = max(self._hold_until, int(until_step))

    # ------------------------------------------------------------------ generation
    def _reset(self) -> None:
        self._rng = np.random.default_rng(self.seed)
        self._base = 0
        self._index = array("i")
        self._other = array("i")
        self._weight = array("f")
        self._occ: dict[int, deque[int]] = {}  # frame -> steps it was shown at within the window
        self._last = np.full(self.n, -(10 ** 12), np.int64)  # last step each frame was shown
        self._runs: dict[int, int] = {}  # delay d -> steps the walk has been retracing what it showed d ago
        self._since_jump = 0
        self._since_chance = 0
        self._hold_until = 0
        self._seats: dict[int, int] = {}
        self._fade_left = 0
        self._fade_from = 0  # the old path's next frame during a fade
        self._cur = -1  # frame at the last generated step
        self._generated = 0  # steps generated so far (the next one's number)
        self.rescues = 0

    def _replay(self, step: int) -> WalkStep:
        """A step older than the memo: regenerate from step 0 in a throw-away copy (deterministic)."""
        twin = copy.copy(self)  # shares the read-only tables; _reset gives it its own walk state
        twin.step = 0
        twin._reset()
        twin.keep_behind = step + 1
        return twin.frame_at(step)

    def _trim(self) -> None:
        drop = self.step - self.keep_behind - self._base
        if drop > 4096:  # in chunks: deleting from the front of an array costs a copy
            del self._index[:drop], self._other[:drop], self._weight[:drop]
            self._base += drop

    def _generate(self) -> None:
        s = self._generated
        other, weight = -1, 0.0
        if s in self._seats:
            frame = self._seats.pop(s)
            self._fade_left = 0
            self._since_jump = 0
        elif s == 0:
            frame = self.start
        else:
            frame, jumped = self._choose_next(s)
            if jumped:
                self._fade_left = self.fade
                self._fade_from = min(self._cur + 1, self.n - 1)
            elif self._fade_left > 0:
                self._fade_from = min(self._fade_from + 1, self.n - 1)
            if self._fade_left > 0:
                other = self._fade_from
                weight = self._fade_left / (self.fade + 1)
                self._fade_left -= 1
        self._show(s, frame)
        self._index.append(frame)
        self._other.append(other)
        self._weight.append(weight)
        self._generated = s + 1

    def _show(self, s: int, frame: int) -> None:
        """Book-keeping of step s showing `frame`: recency, occurrences and the retraced runs."""
        occ = self._occ.setdefault(frame, deque())
        while occ and occ[0] < s - self.window:
            occ.popleft()
        runs = {}
        for p in occ:
            d = s - p
            runs[d] = self._runs.get(d, 0) + 1
        self._runs = runs
        occ.append(s)
        self._last[frame] = s
        self._cur = frame

    def _continues(self, s: int, frame: int) -> int:
        """How long a retraced run would be if step s showed `frame` (0: it retraces nothing)."""
        best = 0
        for p in self._occ.get(frame, ()):
            d = s - p
            if d <= self.window:
                best = max(best, self._runs.get(d, 0) + 1)
        return best

    def _would_repeat(self, s: int, natural: int) -> bool:
        """Going on to `natural` retraces a recent run that will reach a whole stretch before the next chance
        to leave it (the next jump source after this one)."""
        run = self._continues(s, natural)
        if run == 0:
            return False
        ahead = int(self._to_source[natural + 1]) + 1 if natural + 1 < self.n else self.n
        return run + ahead >= self.stretch - self.slack

    def _choose_next(self, s: int) -> tuple[int, bool]:
        """(frame for step s, whether it is a jump)."""
        cur = self._cur
        self._since_jump += 1
        self._since_chance += 1
        natural = cur + 1 if cur + 1 < self.n and (self.alive[cur + 1] or not self.alive[cur]) else None
        options = self.jumps.get(cur, [])
        if not options:
            if natural is None:  # cornered at the end (a start after the last jump back): the least-bad cut
                self.rescues += 1
                self._since_jump = 0
                return self.wrap_target, True
            return natural, False
        if natural is not None and s < self._hold_until:
            return natural, False
        forced = natural is None or (self._since_jump > self.fade and self._would_repeat(s, natural))
        take = forced
        if not take and self._since_jump >= self.min_run:
            chance = 1.0 - math.exp(-self._since_chance / self.mean_extra)
            take = bool(self._rng.random() < chance)
        self._since_chance = 0
        if not take:
            return natural, False
        target = self._pick(s, options)
        if target is None and forced:  # every jump retraces too: the one that retraces least, if it beats going on
            target = min(options, key=lambda o: (self._continues(s, o[0]), self._last[o[0]]))[0]
            if natural is not None and self._continues(s, target) >= self._continues(s, natural):
                target = None
        if target is None:
            return natural, False
        self._since_jump = 0
        return target, True

    def _pick(self, s: int, options: list[tuple[int, float]]) -> int | None:
        """A jump target: at random (favouring cheap jumps) among those whose stretch was not played within the
        window; else the one played longest ago that does not retrace a recent run; None if every one does."""
        fresh, stale = [], []
        for j, c in options:
            last = int(self._last[j:j + self.stretch].max())
            if s - last > self.window:
                fresh.append((j, c))
            elif self._continues(s, j) <= 1:
                stale.append((last, j))
        if fresh:
            w = np.array([1.0 / (1.0 + c) for _, c in fresh])
            return fresh[int(self._rng.choice(len(fresh), p=w / w.sum()))][0]
        if stale:
            return min(stale)[1]
        return None


def make_walk(package, mode: str = "auto", start: int = 0, seed: int = 0, graph=None, **options):
    """The walk for an AvatarPackage: "auto" (texture when its jump table allows, else ping-pong), "texture"
    (falls back to ping-pong, with a warning, on footage without jumps), "pingpong" or "forward".

    graph: a preprocess.idle_graph.IdleGraph to use instead of the package's own (benches, tests);
    options: TextureWalk's tuning (fade, min_run_s, mean_extra_run_s, avoid_s, stretch_s).
    """
    if mode not in WALK_MODES:
        raise ValueError(f"unknown idle mode {mode!r} (expected one of {WALK_MODES})")
    n = package.frame_count
    if mode in LOOP_MODES:
        return ScheduleWalk(n, start, mode)
    graph = graph if graph is not None else package.idle_graph()
    alive = alive_frames(n, graph.sources, graph.targets)
    ok, why = texture_usable(n, graph.sources, graph.targets, package.fps, alive=alive)
    if not ok:
        if mode == "texture":
            log.warning("%s: no video-texture idle (%s); ping-pong instead", package.name, why)
        walk = ScheduleWalk(n, start, "pingpong")
        walk.reason = why
        return walk
    return TextureWalk(n, graph.sources, graph.targets, graph.costs, start=start, seed=seed, fps=package.fps,
                       wrap_target=graph.wrap_target, alive=alive, **options)


def repeated_steps(seq: list[int], stretch: int, window: int) -> int:
    """Steps whose next `stretch` frames equal those shown at some step within the previous `window` steps:
    the measure of the walk's "no same stretch again within a minute" promise (bench/idle.py, the tests)."""
    last: dict[tuple, int] = {}
    count = 0
    for s in range(len(seq) - stretch + 1):
        key = tuple(seq[s:s + stretch])
        if key in last and s - last[key] <= window:
            count += 1
        last[key] = s
    return count

"""Actions on cue: the idle walk leaves the main footage for an action clip and comes back, without a cut.

Why a wrapper: the idle walk (backend.idle_walk) knows only the main footage. `ActionWalk` lays action
segments over it: on `cue(name)` it looks along the walk's next second for the main frame with the
best-matching entry into the clip (preprocess.actions), plays the clip from there to its best-matching exit
and seats the main walk on the exit's main frame. Both crossings are cross-faded like an idle jump. Speech
during an action goes on on the action's frames: `frame_at(step).clip` names the clip whose package
(`<avatar>/actions/<name>/`) holds the frame, so the generator and the compositor use that clip's face and
geometry.

Same interface as the idle walks (n, start, step, peek, next, index_at, frame_at, hold) plus `cue`. A step
already asked for never changes: a cue starts after the last step handed out (and after an action still
scheduled).
"""
from __future__ import annotations

from dataclasses import dataclass

from backend.idle_walk import FADE_STEPS, WalkStep, _Cursor

ENTRY_WINDOW_S = 1.0  # how far ahead a cue looks for a good entry
DELAY_COST = 0.05  # per step of waiting, in cost units (a slightly worse entry now beats a perfect one later)
LATE_EXIT_COST = 0.02  # per action frame skipped at the end


@dataclass(frozen=True)
class ActionClip:
    """The transitions of one action clip (from preprocess.actions)."""

    name: str
    length: int
    entries: dict[int, tuple[int, float]]  # main frame i -> (action frame shown after it, cost)
    exits: dict[int, list[tuple[int, float]]]  # action frame b -> [(main frame shown after it, cost)], best first

    @classmethod
    def from_table(cls, name: str, table: dict) -> "ActionClip":
        entries = {int(i): (int(a), float(c)) for i, a, c, _d in table["entries"]}
        exits: dict[int, list[tuple[int, float]]] = {}
        for b, j, c, _d in table["exits"]:
            exits.setdefault(int(b), []).append((int(j), float(c)))
        for options in exits.values():
            options.sort(key=lambda o: o[1])
        return cls(name, int(table["frames"]), entries, exits)


@dataclass(frozen=True)
class Segment:
    """Steps [first, end) show action frames entry, entry+1, ..., exit_from; step `end` shows main exit_to."""

    name: str
    first: int
    entry: int
    exit_from: int
    exit_to: int

    @property
    def end(self) -> int:
        return self.first + self.exit_from - self.entry + 1


class ActionWalk(_Cursor):
    """An idle walk with action clips played on cue (see module docstring)."""

    def __init__(self, base, clips: dict[str, ActionClip], fps: float = 25.0, fade: int = FADE_STEPS,
                 entry_window_s: float = ENTRY_WINDOW_S):
        self.base = base
        self.clips = dict(clips)
        self.n, self.start, self.mode = base.n, base.start, base.mode
        self.reason = getattr(base, "reason", "")
        self.fade = max(0, int(fade))
        self.entry_window = max(1, int(round(entry_window_s * fps)))
        self.segments: list[Segment] = []
        self._asked = -1
        self._step = 0

    @property
    def step(self) -> int:
        return self._step

    @step.setter
    def step(self, value: int) -> None:
        self._step = int(value)
        self.base.step = int(value)

    # ------------------------------------------------------------------ the walk interface
    def frame_at(self, step: int) -> WalkStep:
        step = int(step)
        self._asked = max(self._asked, step)
        for seg in reversed(self.segments):
            if seg.first <= step < seg.end:
                k = step - seg.first
                if k < self.fade:  # fading in over the main path it left
                    return WalkStep(seg.entry + k, self.base.index_at(step), (self.fade - k) / (self.fade + 1),
                                    clip=seg.name)
                return WalkStep(seg.entry + k, clip=seg.name)
            if seg.end <= step < seg.end + self.fade:  # fading out over the clip's own continuation
                k = step - seg.end
                st = self.base.frame_at(step)
                other = min(seg.exit_from + 1 + k, self.clips[seg.name].length - 1)
                return WalkStep(st.index, other, (self.fade - k) / (self.fade + 1), other_clip=seg.name)
            if step >= seg.end:
                break
        return self.base.frame_at(step)

    def hold(self, until_step: int) -> None:
        self.base.hold(until_step)

    # ------------------------------------------------------------------ cues
    def cue(self, name: str, at_step: int | None = None) -> Segment:
        """Schedule action `name` as soon as possible from `at_step` (default: the next step not handed out)."""
        clip = self.clips.get(name)
        if clip is None:
            known = ", ".join(sorted(self.clips)) or "none"
            raise ValueError(f"unknown action {name!r} (this avatar has: {known})")
        first_free = max(self._asked + 1, self._step if at_step is None else int(at_step))
        if self.segments:
            first_free = max(first_free, self.segments[-1].end + self.fade + 1)
        window = max(1, min(self.entry_window, clip.length // 2))
        best = None
        for t in range(max(0, first_free - 1), max(0, first_free - 1) + window):
            entry = clip.entries.get(self.base.index_at(t))  # main footage there: past any earlier action
            if entry is None:
                continue
            score = entry[1] + DELAY_COST * (t - first_free)
            if best is None or score < best[0]:
                best = (score, t, entry[0])
        if best is None:
            raise ValueError(f"action {name!r} has no entry from the frames ahead")
        _, t, entry = best
        first = t + 1
        alive = getattr(self.base, "alive", None)
        choices = []
        for b, options in clip.exits.items():
            if b <= entry + self.fade:
                continue
            for j, cost in options:
                if alive is None or alive[j]:
                    choices.append((cost + LATE_EXIT_COST * (clip.length - 1 - b), b, j))
                    break
        if not choices:
            raise ValueError(f"action {name!r} has no exit back to the idle")
        for _score, b, j in sorted(choices):
            seg = Segment(name, first, entry, b, j)
            try:
                self.base.seat(seg.end, j)
            except ValueError:  # the main walk already went past that step (a very short clip): try another exit
                continue
            self.segments.append(seg)
            return seg
        raise ValueError(f"action {name!r} is too short to leave and rejoin the idle here")


def with_actions(walk, package, fps: float | None = None) -> ActionWalk:
    """`walk` (backend.idle_walk.make_walk) with the package's action clips (none: cue raises ValueError)."""
    from preprocess.actions import load_transitions

    clips = {name: ActionClip.from_table(name, table) for name, table in load_transitions(package.root).items()}
    return ActionWalk(walk, clips, fps=fps or package.fps)

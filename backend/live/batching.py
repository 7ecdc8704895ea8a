"""How many speech frames `serve` renders per network call, and how many it plans around them.

Why (issue 15): a bigger batch makes the network faster per frame (wav2lip96 fp32 on 2 EPYC cores: 13.5 fps
at batch 1, 15.9 at 4) but costs latency twice on a live stream: the batch's first frame waits for the
last one's audio (40 ms a frame), and every frame is planned one render time (with a margin) before it is
shown. Streamed latency is the mel look-ahead (212.5 ms, fixed by the network) plus these two, so the loop
picks, from measured render times, the batch with the best throughput whose wait + lead fits a budget. Frames
already there cost no wait: a file queued whole (or a TTS stream faster than real time) batches as far as
the largest lead allows.

Below 25 fps of capacity a batch of `b` rendered frames is spread over `n = round(b / rate)` planned
frames (rate = capacity / 25), so the network still runs full batches while the frames it draws are spaced
evenly and the ones between repeat; the spread frames count in the wait too. A batch of one needs no
spreading: the loop starts the next call at once, on the next frame that can still be ready in time.

`BatchTimes` keeps the render time of every batch size as the warm-up measured it alone (best of two, a clean
shape: interpolated between measured sizes, scaled from the nearest beyond), times one running factor that
every call of the chosen size updates (how much slower than alone the network runs inside `serve`, with the
compositing and the publisher beside it). Why one factor and not a mean per size: a size not chosen is never
measured again, so one slow early call of batch 2 kept batch 2 looking slower than batch 1 for the rest of
the run (int8 streamed at batch 1: 19-21 distinct fps where batch 2 gives 25, measured).
"""
from __future__ import annotations

from typing import Callable, NamedTuple

from backend.frames import FRAME_NS


# a renderer this many times faster than the 25 fps clock (the mouth engine, the null generator, a GPU network)
# does not wait for a live stream's audio to batch: a bigger batch is still faster per frame, but the CPU it
# saves is negligible and each frame in it costs 40 ms of latency (the mouth engine streamed at batch 2: 316 ms
# p95, at batch 1: 272 ms). Audio that is all there (a queued file) still batches: no wait
AMPLE_CAPACITY = 4.0


class BatchTimes:
    """Render time (ns) of a speech batch by the number of frames it renders: a measured shape times a factor."""

    def __init__(self, measured: list[tuple[int, int]] = ()):
        self._ns: dict[int, float] = {}  # the shape: each size's time as measured alone (or set)
        for ns, frames in measured:
            self._ns[max(1, int(frames))] = float(ns)
        if not self._ns:  # nothing measured (a loop without a warm-up): 10 ms a call + 25 ms a frame
            self._ns = {1: 35e6, 4: 110e6}
        self.factor = 1.0  # measured time / the shape's, a running mean over the calls made

    def update(self, frames: int, ns: float) -> None:
        """Fold in one render of `frames`; an outlier (4x the mean: a stall) moves the mean halfway."""
        ratio = float(ns) / self._shape(frames)
        old = self.factor
        self.factor = 0.8 * old + 0.2 * ratio if ratio < 4 * old else 0.5 * old + 0.5 * ratio

    def estimate(self, frames: int) -> float:
        """Render time of a batch of `frames` now."""
        return self._shape(frames) * self.factor

    def _shape(self, frames: int) -> float:
        """Measured alone; else between two measured sizes, on the line through them; else scaled from the
        nearest measured size in proportion."""
        frames = max(1, int(frames))
        if frames in self._ns:
            return self._ns[frames]
        below = [b for b in self._ns if b < frames]
        above = [b for b in self._ns if b > frames]
        if below and above:
            lo, hi = max(below), min(above)
            return self._ns[lo] + (self._ns[hi] - self._ns[lo]) * (frames - lo) / (hi - lo)
        nearest = max(below) if below else min(above)
        return self._ns[nearest] * frames / nearest

    def set(self, frames: int, ns: float) -> None:
        """Make one size's estimate `ns` now (tests, a known cost)."""
        self._ns[max(1, int(frames))] = float(ns) / self.factor


class BatchChoice(NamedTuple):
    rendered: int  # frames the network draws per call
    planned: int  # frames planned per call (the rendered ones spread among them; the others repeat)
    render_ns: float  # the estimated render time of that call
    rate: float  # distinct frames per output frame the renderer sustains (1.0 = all 25 fps)


def choose_batch(times: BatchTimes, max_batch: int, budget_ns: float,
                 lead_ns: Callable[[float, int], float], available: int = 1,
                 queued_budget_ns: float | None = None, parallel: int = 1) -> BatchChoice:
    """The batch with the most frames per second whose wait for audio + lead fits `budget_ns` (batch 1 if
    none does). lead_ns(render_ns, frames): how long before its pts a call of that render time must start;
    available: speech frames already there (a queued file's are all there: no wait for them); a batch of
    frames all there needs only its lead to fit `queued_budget_ns` (default: the same budget): queued audio
    has no arrival to be late against, and a longer lead only delays its start. parallel: calls running side
    by side (each takes render_ns; together they draw `parallel` times the frames)."""
    best = None
    for b in range(1, max(1, int(max_batch)) + 1):
        render = max(times.estimate(b), 1.0)  # ns; a virtual clock's renders may cost nothing
        rate = min(1.0, parallel * b * FRAME_NS / render)
        # one frame a call needs no spreading: the next call starts at once, on the next frame still in time
        planned = b if b == 1 else min(max_batch, max(b, round(b / rate)))
        wait = max(0, planned - max(1, available)) * FRAME_NS
        if wait and best is not None and parallel * best.rendered * FRAME_NS >= AMPLE_CAPACITY * best.render_ns:
            break  # already AMPLE_CAPACITY x the clock: waiting for more audio would buy latency, nothing else
        limit = budget_ns if wait or queued_budget_ns is None else max(budget_ns, queued_budget_ns)
        if b > 1 and wait + lead_ns(render, b) > limit:
            continue
        choice = BatchChoice(b, planned, render, rate)
        if best is None or b / render > best.rendered / best.render_ns * 1.02:  # 2 %: not worth the latency
            best = choice
    return best


def spread(count: int, choice: BatchChoice) -> set[int]:
    """Which of `count` planned speech frames a call renders: its share (choice.rendered of choice.planned,
    at least one), evenly spaced from the first."""
    if count <= 0:
        return set()
    drawn = min(count, max(1, round(count * choice.rendered / choice.planned)))
    return {(j * count) // drawn for j in range(drawn)}

"""`serve`'s compositing thread: rendered plans composed in order while the network computes the next ones.

Why (issue 15): compositing a 720p frame takes 5-10 ms on the CPU (with the detail stage); on the render
worker it made every network call that much longer and left the network idle meanwhile. Here the worker
only runs the network and hands the plans over; this thread composes them in plan order (the detail stage's
temporal state needs that order) while the next call runs, and a frame counts as ready when its image is.
The loop's lead covers the network and the compositing (`per_frame_ns`). Where the network runs on a GPU the
two overlap fully; on a 2-core CPU whose cores the network already fills, measured, it neither helped nor
hurt (docs/benchmarks.md). Normal priority: an idle-priority thread composed too slowly next to the
network's threads and could starve next to OBS's encoder.

With several render workers (one single-threaded network call per core, see backend/live/loop.py) the
faces arrive out of order: plans are queued in plan order when planned (`put`) and composed once their
face is there (`generated`).

Under the virtual clock the loop composes inline instead (deterministic tests; the clock charges the cost).
"""
from __future__ import annotations

import logging
import threading
from collections import deque
from typing import Callable

log = logging.getLogger(__name__)


class Composer:
    """compose(engine, plan) in plan order on a thread; `on_ready(plan, now_ns)` after each image is set."""

    def __init__(self, now: Callable[[], int], on_ready: Callable[[object, int], None]):
        self._now, self._on_ready = now, on_ready
        self._todo: deque = deque()  # [engine, plan, face generated], in plan order
        self._cv = threading.Condition()
        self._closed = False
        self.per_frame_ns = 8e6  # running mean of one frame's compositing (the loop's lead adds it)
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="s2l-compose", daemon=True)
        self._thread.start()

    def put(self, engine, plans: list) -> None:
        """Queue `plans` (those not skipped) after everything put before; composed once `generated`."""
        with self._cv:
            self._todo.extend([engine, p, False] for p in plans if not p.skip)

    def generated(self, plans: list) -> None:
        """The faces of `plans` are there (or none was needed): they may be composed."""
        with self._cv:
            done = {id(p) for p in plans}
            for entry in self._todo:
                if id(entry[1]) in done:
                    entry[2] = True
            self._cv.notify()

    def close(self, timeout: float = 3.0) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._closed and not (self._todo and self._todo[0][2]):
                    self._cv.wait()
                if self._closed:
                    return
                engine, plan, _ = self._todo.popleft()
            if not self._compose(engine, plan):
                return
            del engine, plan

    def _compose(self, engine, plan) -> bool:
        """Compose one frame; False after a failure (reported through `error`, the loop then stops)."""
        t = self._now()
        try:
            image = engine.compose(plan)
        except BaseException as exc:  # noqa: BLE001 - reported by the loop
            log.exception("compositing frame %d failed", plan.k)
            self.error = exc
            return False
        done = self._now()
        dt, mean = done - t, self.per_frame_ns
        self.per_frame_ns = 0.9 * mean + 0.1 * dt if dt < 4 * mean else 0.5 * mean + 0.5 * dt
        plan.rendered_ns = done  # before the image: the publisher reads the image first
        plan.image = image
        self._on_ready(plan, done)
        return True

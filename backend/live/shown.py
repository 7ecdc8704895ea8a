"""What each frame `serve` publishes shows: its own image, the frame before's late one, the previous image again,
or the footage.

Why a module of its own: this is the one place where the live path departs from the plan (a renderer slower
than 25 fps, or a call that ran long), and each case has a rule worth keeping in one sight:

* its own image, when it was composed by its pts;
* a face that missed its own pts by less than a frame is shown at the next pts instead of a repeat there (40 ms
  late beats the older image a repeat shows, and the network's call counts): `LiveStats.late`;
* else a speech frame repeats the previous image (its audio goes on, never stretched): `LiveStats.repeated`;
* a frame with nothing to generate (idle), or the very first one, shows the walk's footage.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from backend.frames import FramePlan
from backend.live.stats import LiveStats


class ShownImages:
    """`image_for(plan, now, footage)` in publishing order; keeps the last image and the last late frame."""

    def __init__(self, stats: LiveStats):
        self.stats = stats
        self._last_image: np.ndarray | None = None
        self._last_shown: tuple[int, bool] = (0, False)  # (avatar frame, generated) of the last image
        self._late: FramePlan | None = None  # the last frame whose image missed its pts (shown next, if ready)

    def image_for(self, plan: FramePlan, now: int,
                  footage: Callable[[FramePlan], np.ndarray]) -> tuple[np.ndarray, FramePlan]:
        """The image frame `plan` goes out with, and the plan that image was made for (its latency is the one
        measured). Sets `plan.shown_index`, `plan.shown_generated` and `plan.repeated`."""
        fresh = plan.image is not None and not plan.skip and plan.rendered_ns <= now
        image = plan.image if fresh else None
        plan.shown_index, plan.shown_generated = plan.avatar_index, fresh and plan.face is not None
        late, shown = self._late, plan
        self._late = plan if plan.generate and not plan.skip and not fresh else None
        if image is None and plan.generate and late is not None and late.image is not None \
                and late.rendered_ns <= now:  # the frame before missed its pts by < 40 ms: show it now
            image, shown = late.image, late
            plan.shown_index, plan.shown_generated = late.avatar_index, late.face is not None
            self.stats.late += 1
        elif image is None:
            if not plan.generate or self._last_image is None:
                image = footage(plan)
                plan.shown_generated = False
            else:  # not rendered in time: the previous image again, the audio goes on
                image = self._last_image
                plan.shown_index, plan.shown_generated = self._last_shown
                plan.repeated = True
                self.stats.repeated += 1
        self._last_shown = (plan.shown_index, plan.shown_generated)
        self._last_image = image
        return image, shown

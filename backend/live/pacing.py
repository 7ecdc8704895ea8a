"""How far ahead of its pts `serve` plans a frame, and how big a speech call is: the live loop's timing policy.

backend/live/loop.py runs the threads and decides *when to act*; this file holds the numbers it acts on,
from measured render times (backend/live/batching.py):

* **lead**: a call starts its render time (plus its frames' compositing) × LEAD_MARGIN before the pts of its
  first frame, and never later than the audio lead + a wake-up margin (the frame's audio block goes out then);
* **busy**: a frame is worth rendering only when it can be ready BUSY_MARGIN × the render time before its pts
  (else it repeats the previous image and the call would be wasted);
* **fitting**: a call no larger than its first frame's time left allows (a smaller call, not skipped frames);
* **wait**: on a live stream an utterance's first frame is planned that much further ahead: a jitter margin for
  audio arriving late, and where it batches, the time the batch's other frames (arriving 40 ms apart) need.
"""
from __future__ import annotations

from backend.frames import FRAME_NS
from backend.live.batching import BatchChoice, BatchTimes, choose_batch

QUEUED_BUDGET_MS = 300.0  # the lead a batch of audio that is all there may take (it only delays the start)
# what a live stream's speech call may add to its latency (wait for its batch's audio + lead): the streamed p95
# target (450 ms) less the mel look-ahead (212.5 ms) and what the start of an utterance adds on top (the 20 ms
# chunk its audio arrives in, the worker's wake-up, LIVE_JITTER_MS, the next frame on the 40 ms grid: 40-80 ms).
# At 200 ms a fast CPU took int8 at batch 3 (wait 80 + lead 110 ms) and streamed at 472-481 ms p95 (session 13)
STREAMED_BUDGET_MS = 160.0
# the lead over the measured render time (a call 25 % slower than its mean still makes its pts; measured in
# serve, the 90th percentile of a call is ~1.15-1.2x its median); each 10 % costs ~12 ms of latency at batch 1
LEAD_MARGIN = 1.25
BUSY_MARGIN = 1.1  # a frame is worth rendering when it can be ready this far within its pts (else it repeats)
# a live utterance's frames are planned this much after their audio is due, so a chunk that comes a little late
# (a microphone's or a network's jitter) is still there when its frame is planned. Without it the margin was only
# where the 40 ms grid happened to put the first frame (0-40 ms), and a later chunk made the loop plan an idle
# frame inside the speech: 40 ms of silence in the words and 40 ms more latency for the rest of the utterance
LIVE_JITTER_MS = 20.0


class Pacer:
    """The loop's timing numbers (module docstring). `composer` (per-frame compositing time) and `workers`
    (calls side by side) are set by the loop when it starts its threads."""

    def __init__(self, warm_batch, *, min_lead_ns: int, max_lead_ns: int, audio_lead_ns: int,
                 batch_budget_ns: int):
        self.batch_times = BatchTimes(warm_batch or ())  # from the warm-up's measurements, not a guess
        self.min_lead_ns, self.max_lead_ns, self.audio_lead_ns = min_lead_ns, max_lead_ns, audio_lead_ns
        self.batch_budget_ns = batch_budget_ns
        self.queued_budget_ns = int(QUEUED_BUDGET_MS * 1e6)
        self.idle_ns = 5e6  # an idle frame's render time
        self.composer = None
        self.workers = 1  # calls side by side (the warm-up timed one as a worker runs it)

    def lead_for(self, render_ns: float, frames: int = 1) -> int:
        """How long before its pts a call of this render time (and its frames' compositing) starts."""
        if self.composer is not None:
            render_ns += frames * self.composer.per_frame_ns
        render = min(self.max_lead_ns, max(self.min_lead_ns, LEAD_MARGIN * render_ns + 5e6))
        return int(max(render, self.audio_lead_ns + self.min_lead_ns))

    def batch(self, max_batch: int, live: bool, available: int) -> BatchChoice:
        """The speech call's batch now (measured times, the latency budget; a queued file's frames are all
        there, a live stream's arrive 40 ms apart)."""
        return choose_batch(self.batch_times, max_batch, self.batch_budget_ns, self.lead_for,
                            parallel=self.workers, available=1 if live else available,
                            queued_budget_ns=self.queued_budget_ns)

    def fitting(self, choice: BatchChoice, time_left_ns: int, live: bool) -> BatchChoice:
        """`choice`, or the largest smaller call whose first frame can still be ready in time (`time_left_ns`
        to its pts) when `choice`'s cannot. Why: at an utterance's end the rest of its audio is all there at
        once and a queued-size batch becomes the best rate, but its first frame is already close: skipping
        frames for a call size the next one could not reach repeated the last 1-4 frames of every utterance."""
        while choice.rendered > 1 and self.busy(choice) > time_left_ns:
            choice = self.batch(choice.rendered - 1, live, choice.rendered - 1)
        return choice

    def lead(self, choice: BatchChoice | None, first: bool = False, live: bool = False) -> int:
        """How far ahead of its pts the next frame is planned: an idle one (choice None), a speech call, or an
        utterance's first frame (plus the wait for its batch on a live stream)."""
        if choice is None:
            return self.lead_for(self.idle_ns)
        lead = self.lead_for(choice.render_ns, choice.rendered)
        return lead + self.wait(choice, live) if first else lead

    @staticmethod
    def wait(choice: BatchChoice, live: bool) -> int:
        """How much later than its lead a live stream's utterance starts: the wait for the rest of a batch (its
        frames arrive 40 ms apart) and LIVE_JITTER_MS for audio that comes late; none for queued audio."""
        if not live:
            return 0
        return int(LIVE_JITTER_MS * 1e6) + ((choice.planned - 1) * FRAME_NS if choice.planned > 1 else 0)

    def busy(self, choice: BatchChoice) -> int:
        """How far within its pts a frame must be for this call to be worth it: never more than the lead, else
        a renderer slower than the lead could never start an utterance (it renders only a share)."""
        compose = self.composer.per_frame_ns * choice.rendered if self.composer is not None else 0.0
        return int(min(BUSY_MARGIN * (choice.render_ns + compose) + 2e6,
                       self.lead_for(choice.render_ns, choice.rendered) - self.min_lead_ns))

    def measured(self, chosen: int, rendered: int, generated: bool, dt: float) -> None:
        """Fold in a call's time. Only a call of the size chosen counts: an utterance's last, partial batch is no
        measure of the steady state (its one fast call would pull the estimates down)."""
        if generated:
            if rendered == chosen:
                self.batch_times.update(rendered, dt)
        elif rendered:
            ema = self.idle_ns
            self.idle_ns = 0.8 * ema + 0.2 * dt if dt < 4 * ema else 0.5 * ema + 0.5 * dt

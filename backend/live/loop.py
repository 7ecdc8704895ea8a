"""`serve`'s driver of the engine: a render worker and a publisher on one clock.

Why it is shaped like this (what frames show is decided by backend/engine.py; this file decides only *when*):

* **One clock.** Output frame k has pts = t0 + k · 40 ms. The publisher is the single A/V synchroniser: at
  pts_k it writes video frame k, and `audio_lead` earlier (60 ms in `serve`) audio block k, stamped with the
  same pts_k, so the A/V offset is constant to the sample, for hours. Audio goes out ahead because a consumer
  that mixes audio (OBS) must have each block *before* its timestamp.
* **Plan late, render just in time.** The worker asks the engine for frame k's plan only shortly before pts_k
  (the measured render time, or the audio lead plus a margin, whichever is longer): a speech batch when the
  engine has one, else an idle frame. Speech arriving now starts about one lead later. Within an utterance a
  full batch may start earlier (up to `max_lead_ms` ahead), so a renderer slower than 25 fps never waits.
* **Parallel calls.** A network on a multi-core CPU (fp32 and int8, ONNX Runtime sessions) runs as one
  single-threaded call per core, each on its own render worker, side by side (`Generator.parallel_calls`):
  a call with all threads waits at every layer for the slowest of them, and in `serve` something always
  interrupts one (the publisher, the compositing, OBS); independent calls only lose the time taken from
  them. Plans stay in order: the composer composes each frame once its face is there.
* **Batch within the latency budget.** Each speech call renders the batch with the best measured throughput
  whose wait for audio plus lead fits `batch_budget_ms` (backend/live/batching.py): batch 1 for wav2lip96
  on 2 CPU cores streamed (fp32 and int8), bigger for queued audio, a GPU or the mouth engine.
* **Never stretch audio.** A frame not rendered by its pts is published with the previous image and its own
  audio block, or with the frame before's image when that missed its own pts by less than a frame
  (backend/live/shown.py). A renderer slower than 25 fps renders the share of frames it can, spread evenly
  over a batch planned that much wider, and the frames between repeat; the worker never waits while speech
  is due, so the network runs back to back. A stalled stream gets idle frames (a pause), never stretched
  audio.
* **Barge-in.** `flush()` empties the queue and the engine and re-plans every frame whose audio is not out
  yet as idle; published audio cannot be taken back, so up to `audio_lead` of old speech still plays.

`start()` runs the two on threads with real time; `run_virtual()` runs the same steps on a `VirtualClock`
in the caller's thread, deterministically (the tests).
"""
from __future__ import annotations

import logging
import threading
from typing import Callable


from backend.frames import SAMPLES_PER_FRAME, FramePlan
from backend.live.batching import BatchChoice, BatchTimes, spread
from backend.live.clock import Clock
from backend.live.composer import Composer
from backend.live.feeder import QueueFeeder
from backend.live.pacing import STREAMED_BUDGET_MS, Pacer
from backend.live.shown import ShownImages
from backend.live.stats import LiveStats
from backend.sources.queue import SpeechQueue

log = logging.getLogger(__name__)
POLL_NS = 5_000_000  # the worker looks for new speech, flushes and switches at least this often


class LiveLoop:
    """See module docstring.

    engine: a backend.engine.Engine (its t0 is set to the clock's). sinks: callables sink(plan, image) called
    at pts for every frame, in order (video ring, playback, preview); audio_sinks: callables sink(plan)
    called `audio_lead_ms` before pts (the audio ring), plan.image not there yet. batch_budget_ms: what a
    speech call may add to the streamed latency (its wait for audio + its lead; backend/live/batching.py).
    """

    def __init__(self, queue: SpeechQueue, engine, sinks: list, *, clock: Clock | None = None,
                 min_lead_ms: float = 12.0, max_lead_ms: float = 400.0, audio_sinks: list = (),
                 audio_lead_ms: float = 0.0, batch_budget_ms: float = STREAMED_BUDGET_MS):
        if not 0 <= audio_lead_ms <= 1000:
            raise ValueError(f"audio lead {audio_lead_ms} ms: use 0..1000")
        self.queue = queue
        self.clock = clock or Clock()
        self.feeder = QueueFeeder(queue, now=self.clock.now)
        self._spans: list[tuple[int, object]] = []  # (first frame, engine) of every adopted engine still in use
        self.engine = self._adopt(engine, 0)
        self.sinks, self.audio_sinks = list(sinks), list(audio_sinks)
        self.audio_lead_ns = int(audio_lead_ms * 1e6)
        self.min_lead_ns, self.max_lead_ns = int(min_lead_ms * 1e6), int(max_lead_ms * 1e6)
        self.stats = LiveStats()
        self.shown = ShownImages(self.stats)  # what each published frame shows (backend/live/shown.py)
        self._lock = threading.Lock()
        self._planned: dict[int, FramePlan] = {}
        self._ka = self._kv = 0  # next audio block / video frame the publisher writes
        self.pacer = Pacer(engine.warm_batch, min_lead_ns=self.min_lead_ns, max_lead_ns=self.max_lead_ns,
                           audio_lead_ns=self.audio_lead_ns, batch_budget_ns=int(batch_budget_ms * 1e6))
        self._busy_until = 0  # the worker's render in progress ends then (virtual time)
        self._in_speech = False  # the last frame planned was a speech frame
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.composer: Composer | None = None  # real time: compositing on its own thread (start())
        self.workers = 1  # render workers: one per parallel network call the generator allows (start())
        self._pending_switch = None
        self.error: BaseException | None = None
        self.speaking = False

    # ------------------------------------------------------------------ control
    def start(self) -> None:
        self.composer = self.pacer.composer = Composer(self.clock.now, self._composed)
        self.workers = max(1, int(getattr(self.engine.generator, "parallel_calls", 1)))
        threads = before = None
        if self.workers > 1:  # one network call per worker, on its share of the threads (module docstring)
            from backend.cpu_streams import thread_count

            before = thread_count()
            threads = max(1, before // self.workers)
            self.pacer.workers = self.workers
        ready = threading.Barrier(self.workers + 1)
        self._threads = [threading.Thread(target=self._guard(self._worker_thread), args=(threads, ready),
                                          name=f"s2l-render-{i}", daemon=True) for i in range(self.workers)]
        self._threads.append(threading.Thread(target=self._guard(self._publisher_thread), name="s2l-clock",
                                              daemon=True))
        for t in self._threads:
            t.start()
        ready.wait(timeout=10)
        if before is not None:  # the workers' counts also set the one new threads start with
            from backend.cpu_streams import use_threads

            use_threads(before)

    def stop(self, timeout: float = 3.0) -> None:
        """Stop both threads (callable from any thread)."""
        self._stop.set()
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(timeout)
        if self.composer is not None:
            self.composer.close(timeout)

    @property
    def running(self) -> bool:
        return not self._stop.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._stop.wait(timeout)

    def flush(self) -> int:
        """Barge-in: drop queued speech and every planned frame whose audio is not out yet (re-planned idle)."""
        with self._lock:
            dropped = self.queue.flush()
            self.feeder.drop()
            self.engine.flush()
            self._drop_planned()
        return dropped

    def cue(self, name: str) -> int:
        """Play action `name` from the first frame not planned yet (at its best entry); returns that frame."""
        with self._lock:
            return self.engine.cue(name)

    def switch_avatar(self, engine) -> None:
        """Show `engine`'s avatar from the next unplanned frame on (queued speech is dropped with the old one)."""
        with self._lock:
            self.queue.flush()
            self.feeder.drop()
            self._drop_planned()
            self._pending_switch = engine

    def queued_samples(self) -> int:
        """Speech not yet published: queued, in the engine, and planned for frames still ahead."""
        with self._lock:
            planned = sum(1 for p in self._planned.values() if p.speech)
            frames = self.engine.speech_pending + planned
            return self.feeder.queued_samples() + SAMPLES_PER_FRAME * frames

    @property
    def want(self) -> int:
        """Speech frames the engine should hold: a full batch and its look-ahead, with a margin."""
        return max(8, self.engine.batch_size + self.engine.planner.lookahead + 2)

    def _adopt(self, engine, k: int):
        engine.t0_ns = self.clock.t0
        engine.first_k = engine.next_k = int(k)
        self._spans.append((int(k), engine))
        return engine

    def _planner_of(self, k: int):
        """The engine that planned frame k (under the lock). After an avatar switch, frames planned before it
        are still published (their audio is out): their footage must come from the old avatar's package, whose
        frame indices they carry (the new one's would be another picture, or past its last frame). Spans of
        engines no frame will be published from again are dropped here."""
        while len(self._spans) > 1 and self._spans[1][0] <= k:
            self._spans.pop(0)
        return self._spans[0][1]

    def _drop_planned(self) -> None:
        first = self._ka  # frames whose audio is out play as planned
        self._planned = {k: p for k, p in self._planned.items() if k < first}
        self.engine.skip_to(first)

    def _guard(self, fn):
        def run(*args):
            try:
                fn(*args)
            except BaseException as exc:  # noqa: BLE001 - reported through status, then stop
                log.exception("live loop thread %s failed", threading.current_thread().name)
                self.error = exc
                self._stop.set()
        return run

    # ------------------------------------------------------------------ drivers
    def _worker_thread(self, threads: int | None = None, ready: threading.Barrier | None = None) -> None:
        if threads is not None:
            from backend.cpu_streams import use_threads

            use_threads(threads)
        if ready is not None:
            ready.wait(timeout=10)
        while not self._stop.is_set():
            wake = self.worker_step()
            if wake > self.clock.now() and self.clock.sleep_until(min(wake, self.clock.now() + POLL_NS), self._stop):
                break

    def _publisher_thread(self) -> None:
        while not self._stop.is_set():
            if self.clock.sleep_until(self.publisher_step(), self._stop):
                break

    def run_virtual(self, frames: int, between: Callable[["LiveLoop"], None] | None = None) -> None:
        """Run on the `VirtualClock` until `frames` video frames are published; `between(loop)` is called
        before every event (a test queues speech or flushes there, at the virtual time it reads)."""
        worker_at = publisher_at = self.clock.now()
        while self._kv < frames and not self._stop.is_set():
            if worker_at <= publisher_at:
                self.clock.set(worker_at)
                if between is not None:
                    between(self)
                nxt = self.worker_step()
                worker_at = max(nxt, self.clock.now() + 1) if nxt <= self.clock.now() else min(
                    nxt, self.clock.now() + POLL_NS)
            else:
                self.clock.set(publisher_at)
                if between is not None:
                    between(self)
                publisher_at = self.publisher_step()

    # ------------------------------------------------------------------ render worker
    @property
    def batch_times(self) -> BatchTimes:
        return self.pacer.batch_times

    def batch(self) -> BatchChoice:
        """The speech call's batch now (backend/live/pacing.py)."""
        return self.pacer.batch(self.engine.batch_size, self.feeder.live, self.engine.speech_pending)

    def _lead_ns(self, speech: bool, choice: BatchChoice | None = None) -> int:
        """How far ahead of its pts the next frame is planned (an idle frame, or speech in `choice`)."""
        if not speech:
            return self.pacer.lead(None)
        return self.pacer.lead(choice or self.batch(), first=not self._in_speech, live=self.feeder.live)

    def worker_step(self) -> int:
        """Plan and render the next frames when their time has come; returns when to run again."""
        now = self.clock.now()
        if now < self._busy_until:
            return self._busy_until
        with self._lock:
            if self._pending_switch is not None:
                self.engine, self._pending_switch = self._adopt(self._pending_switch, self.engine.next_k), None
            engine = self.engine
            if engine.next_k < self._ka:  # the publisher overtook us: continue after it
                engine.skip_to(self._ka)
            self.feeder.pull(engine, self.want)
            speech = engine.speech_ready
            choice = self.batch()  # once per step: the lead and the plan use the same
            if speech and self._in_speech:  # a smaller call rather than skipping frames a big one cannot reach
                choice = self.pacer.fitting(choice, engine.pts(engine.next_k) - now, self.feeder.live)
            due = engine.pts(engine.next_k) - self._lead_ns(speech, choice)
            # within an utterance a full batch may start early (up to max_lead): a worker that waited for the
            # last moment would idle after every frame it had to skip
            early = speech and self._in_speech and engine.pts(engine.next_k) - self.max_lead_ns <= now
            if due > now and not early:
                return due
            plans = self._plan(engine, now, speech, choice, force=due <= now)
            if not plans:  # early, and no full batch there yet
                return min(due, now + POLL_NS)
            if self.composer is not None:  # queued in plan order; composed once generated
                self.composer.put(engine, plans)
        if self.composer is not None and self.composer.error is not None:
            raise self.composer.error
        started = self.clock.now()
        rendered = [p for p in plans if not p.skip]
        # outside the lock: a flush meanwhile only drops these plans
        if self.composer is None:  # virtual time: generate and compose here, the clock charges the cost
            engine.render(plans)
            dt = self.clock.render_time(started, plans)
            done = started + dt
            for p in rendered:
                p.rendered_ns = done
            self.stats.render_times.extend([done] * len(rendered))
        else:  # the network here, the compositing on the composer's thread meanwhile
            engine.generate(plans)
            done = self.clock.now()
            dt = done - started
            self.composer.generated(rendered)
        generated = any(p.generate for p in rendered)
        self.pacer.measured(choice.rendered, len(rendered), generated, dt)
        self.stats.call(len(rendered), generated, dt)
        self._busy_until = done
        return done

    def _composed(self, plan, now_ns: int) -> None:
        self.stats.render_times.append(now_ns)

    def _plan(self, engine, now: int, speech: bool, choice: BatchChoice, force: bool = True) -> list[FramePlan]:
        """The next batch (or idle frame), registered for the publisher; [] when not forced and no full speech
        batch is there yet. Called with the lock held.

        Speech frames a render could not finish before their pts are planned (their audio must play) but not
        rendered; at the start of an utterance one more idle frame is planned instead (speech starts 40 ms
        later rather than on a repeated image). Below 25 fps of capacity, the share of speech frames the renderer
        can do is rendered, evenly (18 fps of capacity shows 18 distinct frames/s) over a batch
        planned that much wider (`choice`); the others repeat the previous image."""
        busy = self.pacer.busy(choice)
        # an utterance starts a frame later rather than on a frame it cannot render in time (or, live, batch)
        wait = self.pacer.wait(choice, self.feeder.live)
        if speech and not self._in_speech and engine.pts(engine.next_k) < now + busy + wait:
            speech = False
        while speech and engine.pts(engine.next_k) < now + busy:
            late = engine.plan(force=True, limit=1)
            if not late:
                break
            for p in late:
                p.skip = True
            self._register(late)
            self.stats.skipped += len(late)
            speech = engine.speech_ready
        plans = engine.plan(force=force, limit=choice.planned) if speech else []
        if not plans and speech and not force:
            return []
        if not plans:
            plans = [engine.plan_idle()]
        generated = [p for p in plans if p.generate]
        drawn = spread(len(generated), choice)
        for i, p in enumerate(generated):
            if i not in drawn:
                p.skip = True
                self.stats.skipped += 1
        self._register(plans)
        if plans[-1].speech != self._in_speech and (drawn := self.stats.utterance_edge(plans[-1].speech)) is not None:
            engine.fit_to_clock(drawn, choice.rate)  # an utterance ended: detail "auto" may be given up
        self._in_speech = plans[-1].speech
        return plans

    def _register(self, plans: list[FramePlan]) -> None:
        for p in plans:
            if p.speech and p.mel is not None:
                p.entered_ns = self.feeder.entered_ns(p.speech_id, p.mel.index * SAMPLES_PER_FRAME)
            self._planned[p.k] = p

    # ------------------------------------------------------------------ publisher (the clock)
    def publisher_step(self) -> int:
        """Publish every audio block and video frame that is due; returns when the next one is.

        Two cursors on one clock: audio block ka at pts(ka) − audio_lead, video frame kv at pts(kv). Audio is
        never behind video, so every frame's plan is final by the time its video goes out."""
        while True:
            audio_due = self.clock.pts(self._ka) - self.audio_lead_ns
            video_due = self.clock.pts(self._kv)
            if min(audio_due, video_due) > self.clock.now():
                return min(audio_due, video_due)
            if audio_due <= video_due:
                self._publish_audio(self._ka)
                self._ka += 1
            else:
                self._publish_video(self._kv)
                self._kv += 1

    def _publish_audio(self, k: int) -> None:
        with self._lock:
            plan = self._planned.get(k)
            if plan is None:  # the worker is behind: plan it here (not rendered) so its audio is not lost
                engine = self.engine
                engine.skip_to(k)
                self.feeder.pull(engine, self.want)  # speech goes on even while the worker is stuck in a render
                plans = engine.plan(force=True, limit=1) or [engine.plan_idle()]
                for p in plans:
                    p.skip = True
                self._register(plans)
                plan = plans[0]
        for sink in self.audio_sinks:
            sink(plan)

    def _publish_video(self, k: int) -> None:
        now = self.clock.now()
        with self._lock:
            plan = self._planned.pop(k)  # its audio went out first, so it is planned
            engine = self._planner_of(k)
        image, shown = self.shown.image_for(plan, now, engine.footage)
        for sink in self.sinks:
            sink(plan, image)
        self.stats.published += 1
        new = not plan.repeated  # a new image: its own, a late one, or footage
        if new:
            self.stats.publish_times.append(now)
        self.speaking = plan.speech
        if plan.speech:
            self.stats.speech_frames += 1
            if shown.entered_ns is not None and new:  # a repeat is not "its frame"
                lat = (now - shown.entered_ns) / 1e6
                self.stats.latencies_ms.append(lat)
                if self.stats.keep_all:
                    self.stats.all_latencies_ms.append(lat)

"""The real-time loop of `serve`: one clock, a planner, a render worker and a publisher.

Why it is shaped like this:

* **One clock.** Output frame k has pts = t0 + k * 40 ms on CLOCK_MONOTONIC (libobs' clock). The publisher
  thread is the only thing that waits: at pts_k it writes video frame k, and `audio_lead` earlier (60 ms in
  `serve`) audio block k (the 640 samples planned for frame k), stamped with the same pts_k. Both carry the
  frame's pts, so the A/V offset is constant to the sample, for hours; the audio goes out ahead because a
  consumer that mixes audio (OBS) must have each block *before* its timestamp -- audio that arrives just in
  time makes libobs grow its audio buffering mid-stream, which shifts audio against video.
* **Plan late, render just in time.** What frame k shows (idle footage, or utterance frame i with its mel
  window and audio block) is decided by `Timeline.plan()` only shortly before pts_k: the render lead (measured
  from recent render times) or the audio lead plus a small margin, whichever is longer, because the audio
  block must exist when it is published. Speech arriving now therefore starts about one lead later (plus the
  0.2 s look-ahead the features need when audio arrives in real time).
* **Never stretch audio.** If a frame is not rendered by its pts the publisher repeats the previous image but
  still publishes that frame's audio block; if the publisher itself is late it catches up without skipping
  audio. If a real-time stream stalls, the planner inserts idle frames (silence) and continues the utterance
  after them: a pause, never a stretch.
* **Barge-in is a frame.** `flush()` cancels the queue and pushes a FlushFrame through the stages; frames
  already planned but whose audio is not yet published are re-planned as idle. Published audio cannot be taken
  back, so up to `audio_lead` (60 ms by default) of the old speech still plays after a flush, with its own frames.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from backend.frames import (FRAME_NS, SAMPLES_PER_FRAME, AudioFrame, AudioOutFrame, FaceFrame, FlushFrame,
                            MelFrame, SpeechEndFrame, SpeechStartFrame)
from backend.compositor import CROP_SPACES
from backend.generator import Generator, GeneratorInput
from backend.schedule import schedule_index
from backend.sources.queue import SpeechQueue, Utterance

log = logging.getLogger(__name__)
SILENCE = np.zeros(SAMPLES_PER_FRAME, np.float32)
SILENCE.setflags(write=False)
PULL_SAMPLES = 8000  # audio pushed through the features stage per planning step (0.5 s)


class Clock:
    """pts of output frame k on CLOCK_MONOTONIC; `now()` can be replaced in tests."""

    def __init__(self, t0_ns: int | None = None, now: Callable[[], int] = time.monotonic_ns):
        self.now = now
        self.t0 = now() if t0_ns is None else t0_ns

    def pts(self, k: int) -> int:
        return self.t0 + k * FRAME_NS

    def index_at(self, t_ns: int) -> int:
        """The last frame whose pts is <= t_ns."""
        return (t_ns - self.t0) // FRAME_NS


@dataclass(eq=False)
class FramePlan:
    """Everything decided about output frame k before it is rendered."""

    k: int
    pts_ns: int
    avatar_index: int
    audio: np.ndarray  # 640 float32 samples that play with this frame
    speech: bool = False  # audio comes from an utterance
    mel: MelFrame | None = None
    blend: float = 0.0  # how much generated mouth to show (0 = footage)
    entered_ns: int | None = None  # when this frame's first sample entered (latency)
    image: np.ndarray | None = None  # BGR, filled by the render worker
    rendered_ns: int = 0
    # what was actually published (set by the publisher; differs from the plan when a frame was repeated)
    shown_index: int = -1
    shown_generated: bool = False
    repeated: bool = False
    package: object = None  # the avatar package it was planned on (an avatar switch may come before it plays)


@dataclass
class AvatarView:
    """What the timeline and renderer need of an avatar package (swapped as a whole on switch-avatar)."""

    package: object
    generator: Generator
    compositor: object
    loop: str = "pingpong"
    start: int = 0

    @property
    def frame_count(self) -> int:
        return self.package.frame_count


class Timeline:
    """Decides, in order, what each output frame shows and which audio plays with it.

    Speech: utterances are taken from the queue in order and their audio pushed through the features stage;
    each (MelFrame, AudioOutFrame) pair it emits becomes one speech frame. When the current utterance has no
    frame ready (its audio has not arrived yet) the frame is idle with silence: a pause, never a stretch.
    """

    def __init__(self, queue: SpeechQueue, view: AvatarView, clock: Clock, features=None, ramp: int = 3):
        from backend.features import FeatureStage

        self.queue, self.view, self.clock = queue, view, clock
        self.features = features if features is not None else FeatureStage()
        self.ramp = ramp
        self.next_k = 0
        self.k_base = 0  # output frame where the current avatar's walk starts
        self.generation = queue.generation
        self.current: Utterance | None = None
        self._pending = np.zeros(0, np.float32)  # taken from the current utterance, not yet featurised
        self._ready: deque = deque()  # (utterance, MelFrame, AudioOutFrame)
        self._past_speech: deque = deque(maxlen=ramp)
        self.max_ready = 8

    # ------------------------------------------------------------------ planning
    def plan(self) -> FramePlan:
        """Plan frame `next_k` and advance."""
        self._sync_flush()
        self._pull()
        k = self.next_k
        self.next_k += 1
        view = self.view
        avatar_index = schedule_index(k - self.k_base, view.frame_count, view.start, view.loop)
        if self._ready:
            utt, mel, audio = self._ready.popleft()
            blend = self._blend(mel.speech)
            self._past_speech.append(mel.speech)
            pcm = np.zeros(SAMPLES_PER_FRAME, np.float32)
            pcm[:audio.pcm.size] = audio.pcm[:SAMPLES_PER_FRAME]
            return FramePlan(k, self.clock.pts(k), avatar_index, pcm, True, mel, blend,
                             utt.entered_ns(mel.index * SAMPLES_PER_FRAME), package=view.package)
        self._past_speech.append(False)
        return FramePlan(k, self.clock.pts(k), avatar_index, SILENCE, package=view.package)

    def speech_ready(self) -> bool:
        """True when the next frame would be a speech frame (lets the worker fill a micro-batch)."""
        self._sync_flush()
        self._pull()
        return bool(self._ready)

    def _blend(self, speech: bool) -> float:
        """1 while speaking; ramps over `ramp` frames after speech, and before it when the future is known."""
        if speech:
            return 1.0
        best = 0.0
        for d, flag in enumerate(reversed(self._past_speech), start=1):
            if flag:
                best = max(best, 1.0 - d / self.ramp)
                break
        for d, (_u, mel, _a) in enumerate(list(self._ready)[: self.ramp - 1], start=1):
            if mel.speech:
                best = max(best, 1.0 - d / self.ramp)
                break
        return best

    def _pull(self) -> None:
        """Move audio from the queue through the features stage until enough frames are ready.

        At most `PULL_SAMPLES` are pushed per step, so a long file never holds the planner (and the lock the
        publisher needs) for more than a few milliseconds.
        """
        while len(self._ready) < self.max_ready:
            if self.current is None:
                utt = self.queue.head()
                if utt is None:
                    return
                self.current, self._pending = utt, np.zeros(0, np.float32)
                utt.started_ns = time.monotonic_ns()
                self.features.push(SpeechStartFrame(pts_ns=0, speech_id=utt.id))
            utt = self.current
            if self._pending.size == 0:
                self._pending, _ended = utt.take_new()
            piece, self._pending = self._pending[:PULL_SAMPLES], self._pending[PULL_SAMPLES:]
            out = []
            if piece.size:
                out += self.features.push(AudioFrame(pts_ns=0, pcm=piece, speech_id=utt.id))
            elif utt.ended and utt.taken >= utt.n:
                out += self.features.push(SpeechEndFrame(pts_ns=0, speech_id=utt.id))
                self.queue.pop_head(utt)
                self.current = None
            self._collect(utt, out)
            if self.current is not None and not piece.size:
                return  # waiting for more audio of a live stream

    def _collect(self, utt: Utterance, frames: list) -> None:
        pending_mel = None
        for f in frames:
            if isinstance(f, MelFrame):
                pending_mel = f
            elif pending_mel is not None and isinstance(f, AudioOutFrame):
                self._ready.append((utt, pending_mel, f))
                pending_mel = None

    # ------------------------------------------------------------------ barge-in / avatar switch
    def _sync_flush(self) -> None:
        if self.queue.generation != self.generation:
            self.generation = self.queue.generation
            self.features.push(FlushFrame(pts_ns=0))
            self._ready.clear()
            self.current = None
            self._pending = np.zeros(0, np.float32)
            self.view.generator.reset()

    def rewind(self, k: int) -> None:
        """Re-plan from frame k (frames after it were dropped by a flush or an avatar switch)."""
        self.next_k = min(self.next_k, k)

    def switch(self, view: AvatarView, k: int) -> None:
        self.view = view
        self.k_base = k
        self.next_k = k

    def queued_samples(self) -> int:
        """Speech samples not yet planned: in the queue plus frames waiting in the features output."""
        return self.queue.queued_samples() + SAMPLES_PER_FRAME * len(self._ready)


def face_crop(generator) -> str:
    """The package crop that feeds `generator` ("head", "heads" or "body")."""
    return generator.crop if generator.crop in CROP_SPACES else "head"


class Renderer:
    """FramePlans → images: footage for idle frames, generator + compositor for speech (micro-batches)."""

    def __init__(self, view: AvatarView):
        self.view = view

    def render(self, plans: list[FramePlan]) -> None:
        view = self.view
        gen = view.generator
        todo = [p for p in plans if p.mel is not None and p.blend > 0.0]
        faces = None
        if todo:
            batch = [GeneratorInput(face=self._face(p.avatar_index), mel=p.mel.mel, avatar_index=p.avatar_index,
                                    speech=p.mel.speech) for p in todo]
            faces = gen.generate(batch)
        by_plan = {id(p): faces[i] for i, p in enumerate(todo)} if todo else {}
        for p in plans:
            face = by_plan.get(id(p))
            if face is None:
                p.image = view.package.frame(p.avatar_index)
            else:
                ff = FaceFrame(pts_ns=p.pts_ns, index=p.k, avatar_index=p.avatar_index, face=face, crop=gen.crop,
                               blend=p.blend, speech=bool(p.mel.speech))
                p.image = view.compositor.compose(ff)
            p.rendered_ns = time.monotonic_ns()

    def warm_up(self) -> None:
        """Run every stage once (imports scipy.fft, builds compositor caches, wakes the network) so the first
        real utterance is not late by their one-off costs."""
        from backend.features import FeatureStage

        fs = FeatureStage()
        rng = np.random.default_rng(0)
        out = fs.push(AudioFrame(pts_ns=0, pcm=(0.1 * rng.standard_normal(8000)).astype(np.float32)))
        out += fs.push(SpeechEndFrame(pts_ns=0))
        mels = [f for f in out if isinstance(f, MelFrame)][: 4]
        n = self.view.frame_count
        plans = [FramePlan(i, 0, i % n, SILENCE, True, m, 1.0) for i, m in enumerate(mels)]
        self.render(plans)
        self.view.generator.reset()

    def _face(self, avatar_index: int) -> np.ndarray:
        import cv2

        gen = self.view.generator
        face = self.view.package.face(avatar_index, face_crop(gen))
        if face.shape[0] != gen.face_size:
            face = cv2.resize(face, (gen.face_size, gen.face_size), interpolation=cv2.INTER_AREA)
        return face


@dataclass
class LiveStats:
    """Counters the status channel and the benchmark read."""

    published: int = 0
    repeated: int = 0  # published with the previous image (not rendered in time)
    skipped: int = 0  # not even tried: could not have been rendered before their pts
    rendered: int = 0
    speech_frames: int = 0
    latencies_ms: deque = field(default_factory=lambda: deque(maxlen=200))
    all_latencies_ms: list = field(default_factory=list)
    publish_times: deque = field(default_factory=lambda: deque(maxlen=64))
    render_times: deque = field(default_factory=lambda: deque(maxlen=64))
    keep_all: bool = False

    def percentile(self, q: float) -> float | None:
        if not self.latencies_ms:
            return None
        return float(np.percentile(np.asarray(self.latencies_ms), q))

    @staticmethod
    def rate(times: deque, now_ns: int) -> float:
        recent = [t for t in times if now_ns - t <= 1_000_000_000]
        return float(len(recent))


class LiveLoop:
    """Runs the render worker and the publisher (the clock) until `stop()`.

    `sinks` are callables sink(plan, image) invoked by the publisher at pts for every frame, in order, with
    the frame's audio in plan.audio (video ring, local playback, preview). `audio_sinks` are callables
    sink(plan) invoked `audio_lead_ms` before pts for every frame, in order (the audio ring): plan.pts_ns is
    still the frame's pts, plan.image is not there yet.
    """

    def __init__(self, queue: SpeechQueue, view: AvatarView, sinks: list, *, batch_size: int = 4,
                 clock: Clock | None = None, on_tick: Callable[["LiveLoop"], None] | None = None,
                 min_lead_ms: float = 12.0, max_lead_ms: float = 400.0, audio_sinks: list = (),
                 audio_lead_ms: float = 0.0):
        self.queue = queue
        self.clock = clock or Clock()
        self.timeline = Timeline(queue, view, self.clock)
        self.renderer = Renderer(view)
        self.sinks = list(sinks)
        self.audio_sinks = list(audio_sinks)
        if not 0 <= audio_lead_ms <= 1000:
            raise ValueError(f"audio lead {audio_lead_ms} ms: use 0..1000")
        self.audio_lead_ns = int(audio_lead_ms * 1e6)
        self.batch_size = max(1, min(4, int(batch_size)))
        self.on_tick = on_tick
        self.min_lead_ns = int(min_lead_ms * 1e6)
        self.max_lead_ns = int(max_lead_ms * 1e6)
        self.stats = LiveStats()
        self._lock = threading.Lock()
        self._planned: dict[int, FramePlan] = {}
        self._published_k = -1  # last frame whose video went out
        self._audio_k = -1  # last frame whose audio went out (>= _published_k; its plan is final)
        self._last_image: np.ndarray | None = None
        self._last_shown: tuple[int, bool] = (0, False)
        self._render_ema_ns = {False: 5e6, True: 30e6}  # idle / speech batch render time
        self._frame_ema_ns = 5e6  # render time per speech frame (decides the share rendered when slower than 25 fps)
        self._render_credit = 1.0  # fraction-of-a-frame budget for spreading renders evenly (see _render_worker)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._pending_switch: AvatarView | None = None
        self.error: BaseException | None = None
        self.speaking = False

    # ------------------------------------------------------------------ control
    def start(self) -> None:
        self._threads = [threading.Thread(target=self._guard(self._render_worker), name="s2l-render", daemon=True),
                         threading.Thread(target=self._guard(self._publisher), name="s2l-clock", daemon=True)]
        for t in self._threads:
            t.start()

    def stop(self, timeout: float = 3.0) -> None:
        """Stop both threads (callable from one of them, e.g. a stop command handled on the clock thread)."""
        self._stop.set()
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(timeout)

    @property
    def running(self) -> bool:
        return not self._stop.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._stop.wait(timeout)

    def flush(self) -> int:
        """Barge-in: drop queued speech and every planned frame whose audio is not out yet (re-planned idle).

        Frames whose audio block was already published (at most `audio_lead` ahead) still play as planned."""
        with self._lock:
            dropped = self.queue.flush()
            self._drop_planned()
        return dropped

    def queued_samples(self) -> int:
        """Speech not yet published: queued, in the features stage, and planned for frames still ahead."""
        with self._lock:
            planned = sum(1 for p in self._planned.values() if p.speech)
            return self.timeline.queued_samples() + SAMPLES_PER_FRAME * planned

    def switch_avatar(self, view: AvatarView) -> None:
        """Show `view` from the next unplanned frame on (queued speech is dropped: it was planned for the old one)."""
        with self._lock:
            self.queue.flush()
            self._drop_planned()
            self._pending_switch = view

    def _drop_planned(self) -> None:
        first = self._audio_k + 1
        self._planned = {k: p for k, p in self._planned.items() if k < first}
        self.timeline.rewind(first)
        self.timeline._sync_flush()

    def _guard(self, fn):
        def run():
            try:
                fn()
            except BaseException as exc:  # noqa: BLE001 - reported through status, then stop
                log.exception("live loop thread %s failed", threading.current_thread().name)
                self.error = exc
                self._stop.set()
        return run

    # ------------------------------------------------------------------ render worker
    def _lead_ns(self, speech: bool) -> int:
        """How long before its pts a frame is planned (and its render started): enough for the render, and
        at least the audio lead (+ a margin for this thread's wake-up), since the audio block goes out then."""
        render = min(self.max_lead_ns, max(self.min_lead_ns, 1.5 * self._render_ema_ns[speech] + 5e6))
        return int(max(render, self.audio_lead_ns + self.min_lead_ns))  # render >= min_lead_ns already

    def _render_worker(self) -> None:
        while not self._stop.is_set():
            now = self.clock.now()
            with self._lock:
                if self._pending_switch is not None:
                    view, self._pending_switch = self._pending_switch, None
                    self.timeline.switch(view, self.timeline.next_k)
                    self.renderer = Renderer(view)
                k = self.timeline.next_k
                if k <= self._audio_k:  # the publisher overtook us: continue after it
                    self.timeline.next_k = k = self._audio_k + 1
                speech = self.timeline.speech_ready()
                wake = self.clock.pts(k) - self._lead_ns(speech)
                if wake > now:
                    plans = None
                else:
                    # frames a render could not finish before their pts are planned (their audio must
                    # play) but not rendered: the publisher repeats the last image (the clock drops them)
                    busy = int(self._render_ema_ns[speech])
                    while speech and self.clock.pts(self.timeline.next_k) < now + busy:
                        self._plan_next()
                        self.stats.skipped += 1
                        speech = self.timeline.speech_ready()
                    plans = [self._plan_next()]
                    # a renderer slower than 25 fps renders the fraction of frames it can (evenly spread by a
                    # credit accumulator, so 18 fps of capacity shows 18 distinct frames/s, not 12.5 as a
                    # whole-number stride would); the frames between are planned (their audio plays) and
                    # repeat the previous image. Every planned speech frame earns `rate`, every rendered one
                    # costs 1 (the batch's first too); the surplus is capped only after paying, at one frame.
                    rate = min(1.0, FRAME_NS / max(1.0, self._frame_ema_ns))
                    if plans[0].mel is not None:
                        self._render_credit = min(1.0, self._render_credit + rate - 1.0)
                    while plans[-1].mel is not None and len(plans) < self.batch_size:
                        if not self.timeline.speech_ready():
                            break
                        plan = self._plan_next()
                        if plan.mel is None:
                            plans.append(plan)
                            break
                        self._render_credit += rate
                        if self._render_credit >= 1.0:
                            self._render_credit -= 1.0
                            plans.append(plan)
                        else:
                            self.stats.skipped += 1
                        self._render_credit = min(1.0, self._render_credit)
                    renderer = self.renderer
            if plans is None:
                time.sleep(min(0.005, max(0.0005, (wake - now) / 1e9)))
                continue
            t = time.monotonic_ns()
            renderer.render(plans)
            dt = time.monotonic_ns() - t
            speech_batch = any(p.mel is not None for p in plans)
            ema = self._render_ema_ns[speech_batch]
            self._render_ema_ns[speech_batch] = 0.8 * ema + 0.2 * dt if dt < 4 * ema else 0.5 * ema + 0.5 * dt
            if speech_batch:
                self._frame_ema_ns = 0.8 * self._frame_ema_ns + 0.2 * dt / len(plans)
            self.stats.rendered += len(plans)
            self.stats.render_times.extend([time.monotonic_ns()] * len(plans))

    # ------------------------------------------------------------------ publisher (the clock)
    def _publisher(self) -> None:
        """Two cursors on one clock: audio block `ka` at pts(ka) - audio_lead, video frame `kv` at pts(kv).

        Audio is never behind video (ka > kv whenever frame kv goes out), so every frame's plan is final by
        the time its video is published."""
        ka = kv = 0
        while not self._stop.is_set():
            audio_due = self.clock.pts(ka) - self.audio_lead_ns
            video_due = self.clock.pts(kv)
            delay = min(audio_due, video_due) - self.clock.now()
            if delay > 0:
                if self._stop.wait(delay / 1e9):
                    break
                continue
            if audio_due <= video_due:  # always so while ka <= kv: a frame's audio before its video
                self._publish_audio(ka)
                ka += 1
            else:
                self._publish_video(kv)
                kv += 1

    def _plan_next(self) -> FramePlan:
        """Plan the timeline's next frame and remember it for the publisher. Called with the lock held."""
        plan = self.timeline.plan()
        self._planned[plan.k] = plan
        return plan

    def _publish_audio(self, k: int) -> None:
        with self._lock:
            plan = self._planned.get(k)
            if plan is None:  # the render worker is behind: plan it here so its audio is not lost
                self.timeline.next_k = k
                plan = self._plan_next()
            self._audio_k = k
        for sink in self.audio_sinks:
            sink(plan)

    def _publish_video(self, k: int) -> None:
        with self._lock:
            plan = self._planned.pop(k)  # its audio went out first, so it is planned
            self._published_k = k
        image = plan.image
        fresh = image is not None
        plan.shown_index, plan.shown_generated = plan.avatar_index, plan.mel is not None and plan.blend > 0
        if image is None:
            if plan.mel is None or plan.blend <= 0 or self._last_image is None:
                package = plan.package if plan.package is not None else self.renderer.view.package
                image = package.frame(plan.avatar_index)
                plan.shown_generated = False
            else:  # not rendered in time: show the previous image again, audio goes on
                image = self._last_image
                plan.shown_index, plan.shown_generated = self._last_shown
                plan.repeated = True
                self.stats.repeated += 1
        self._last_shown = (plan.shown_index, plan.shown_generated)
        self._last_image = image
        for sink in self.sinks:
            sink(plan, image)
        now = self.clock.now()
        self.stats.published += 1
        if fresh or plan.mel is None:
            self.stats.publish_times.append(now)
        self.speaking = plan.speech
        if plan.speech:
            self.stats.speech_frames += 1
            if plan.entered_ns is not None and (fresh or plan.blend <= 0):  # a repeat is not "its frame"
                lat = (now - plan.entered_ns) / 1e6
                self.stats.latencies_ms.append(lat)
                if self.stats.keep_all:
                    self.stats.all_latencies_ms.append(lat)
        if self.on_tick is not None:
            self.on_tick(self)

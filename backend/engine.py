"""The engine: the one place that decides and draws what every output frame shows.

`render` and `serve` are two drivers of this class and nothing else: `render` pushes a file's speech and takes
plans as fast as they come; `serve` pushes speech as it arrives and takes plans from its clock, shortly
before each frame's pts. Both get the same frames for the same input and start state
(tests/backend/test_parity.py), because every decision is made here, from the content alone:

* which avatar frame output frame k shows: the walk (backend/idle_walk.py: the video-texture idle, or
  ping-pong) at step k − `first_k`, for idle and speech frames alike, so starting to talk never makes the clip
  jump, with the walk's cross-fade across its jumps;
* speech or silence and the blend ramp, the pairing of each mel window with its 40 ms of audio, and how
  frames are cut into generator batches (backend/planner.py, fed by backend/features.py);
* when the generator is reset: before the first generated frame of every utterance, on the thread that
  renders, so a flush on another thread can never reset it in the middle of `generate()`;
* the generated face and the compositing (backend/compositor.py).

Driving it: `push()` speech frames in; `plan()` returns the next speech batch (or [] when none may go yet),
`plan_idle()` one idle frame; `render(plans)` (generate + compose, BGR) or `generate(plans)` + `pair(plan)`
(compose later on another thread, render's mp4 path); `serve` composes I420 frames from the avatar's
decoded-frame cache instead of BGR (`show_i420`: the same picture, no JPEG decoded while live). Output frame k
has pts = t0 + k · 40 ms and carries the 640 samples planned for it, so audio and video cannot drift. Plans
must be taken and rendered in order from one thread; `push`/`flush` may come from the same thread only (serve
holds a lock around both).
"""
from __future__ import annotations

import logging
import time
from dataclasses import replace

import numpy as np

from backend.compositor import Compositor
from backend.cpu_streams import thread_count, use_threads
from backend.features import FeatureStage, SilenceGate
from backend.frames import (DETAIL_MODES, FRAME_NS, SAMPLES_PER_FRAME, AudioOutFrame, FaceFrame, FlushFrame, Frame,
                            FramePlan, StageStats, VideoFrame)
from backend.generators.base import Generator, GeneratorInput
from backend.action_walk import with_actions
from backend.idle_walk import make_walk
from backend.planner import Planner, SpeechItem
from backend.schedule import LOOP_MODES
from backend.yuv import I420, FramePool

log = logging.getLogger(__name__)

SILENCE = np.zeros(SAMPLES_PER_FRAME, np.float32)
SILENCE.setflags(write=False)
Pair = tuple[VideoFrame, AudioOutFrame]


class Engine:
    """See module docstring.

    package: an opened `AvatarPackage`; generator: any registered `Generator`.
    crop: which package crop feeds the generator (default the generator's own).
    batch_size: generator batch (default the generator's preferred one, rounded by `round_batch`).
    loop/start_frame: the avatar walk, "auto" (the video-texture idle where the package's jump table allows,
    else ping-pong), "texture", "pingpong" or "forward" (backend/idle_walk.py); first_k: the output frame at
    which the walk is at its step 0
    (serve starts a new engine at frame k when it switches avatars); t0_ns: pts of output frame 0.
    silence_gate: False → every frame counts as speech. ramp/lookahead: see backend/planner.py.
    background: a backend.background.Background (None or "original": the footage as filmed).
    detail: "on" (restore the avatar's own high-frequency detail after a network whose native size is below
    the face's size on screen, backend/detail/), "auto" (the same, until a live driver finds the renderer below
    its clock: `fit_to_clock`) or "off".
    """

    def __init__(self, package, generator: Generator, *, crop: str | None = None, batch_size: int | None = None,
                 loop: str = "auto", start_frame: int = 0, first_k: int = 0, t0_ns: int = 0,
                 silence_gate: bool | SilenceGate = True, ramp: int = 3, lookahead: int | None = None,
                 enhancer=None, colour_match: bool = True, frame_cache=None, background=None,
                 detail: str = "auto"):
        self.package = package
        self.generator = generator
        self.crop = crop or generator.crop
        gate = silence_gate if isinstance(silence_gate, SilenceGate) else SilenceGate(enabled=bool(silence_gate))
        self.features = FeatureStage(gate)
        self.batch_size = generator.round_batch(batch_size or generator.preferred_batch)
        self.planner = Planner(handles_silence=generator.handles_silence, batch_size=self.batch_size, ramp=ramp,
                               lookahead=lookahead)
        self.compositor = Compositor(package, colour=colour_match, enhancer=enhancer, frame_cache=frame_cache)
        self.compositor.detail = make_detail(detail, package, self.crop, generator)
        self.detail_mode = detail
        self.detail_note = ""  # why the detail stage was given up, if it was (fit_to_clock)
        if background is not None and background.needs_matte:  # backend/backdrop.py
            from backend.backdrop import Backdrop

            self.compositor.backdrop = Backdrop(background, package)
        self.start_frame, self.first_k = int(start_frame), int(first_k)
        if loop not in LOOP_MODES and not hasattr(package, "idle_graph"):  # a package held in memory (tests)
            loop = "pingpong"
        self.walk = make_walk(package, loop, start=self.start_frame)
        if hasattr(package, "root"):  # action clips played on cue over the idle (backend/action_walk.py)
            self.walk = with_actions(self.walk, package)
        self.t0_ns = int(t0_ns)
        self.next_k = self.first_k  # the next output frame to plan
        self._reset_due = True  # the generator is reset before the next generated frame
        self.warm_batch: list[tuple[int, int]] = []  # (ns, frames): the generator alone, measured by warm_up()
        self.stats = {name: StageStats() for name in ("features", "generate", "compositor")}
        self.i420 = False  # compose/footage return I420 frames (show_i420)

    # ------------------------------------------------------------------ input
    def push(self, frame: Frame) -> None:
        """AudioFrame / SpeechStartFrame / SpeechEndFrame / FlushFrame."""
        if isinstance(frame, FlushFrame):
            self.flush()
            return
        t = time.perf_counter_ns()
        out = self.features.push(frame)
        self._count("features", t, len(out))
        for f in out:
            self.planner.push(f)

    def flush(self) -> None:
        """Barge-in: drop the open utterance and every speech frame not planned yet (the next one is idle)."""
        self.features.flush()
        self.planner.flush()

    @property
    def speech_ready(self) -> bool:
        """A speech frame is decided and waiting (the next plan would be speech, if a batch may go)."""
        return self.planner.ready > 0

    @property
    def speech_pending(self) -> int:
        """Speech frames pushed in but not planned yet (decided or still waiting for their look-ahead)."""
        return self.planner.pending

    # ------------------------------------------------------------------ planning
    def pts(self, k: int) -> int:
        return self.t0_ns + k * FRAME_NS

    def plan(self, force: bool = False, limit: int | None = None) -> list[FramePlan]:
        """The next speech batch as plans for frames next_k, next_k + 1, ...; [] when none may go yet
        (`limit`: see Planner.take_batch)."""
        return [self._plan_speech(item) for item in self.planner.take_batch(force, limit)]

    def plan_idle(self) -> FramePlan:
        """Frame next_k as an idle frame: the walk's footage and 40 ms of silence."""
        k = self._take_k()
        return self._walk_plan(k, SILENCE)

    @property
    def actions(self) -> list[str]:
        """The action clips this avatar can play on cue."""
        return sorted(getattr(self.walk, "clips", {}))

    def cue(self, name: str, at_k: int | None = None) -> int:
        """Play action `name` from the best entry at or after frame `at_k` (default: the next frame not planned
        yet); returns the frame where it starts. Speech meanwhile goes on, lip-synced on the action's frames."""
        from stream_wav2lip.errors import UserError

        if not hasattr(self.walk, "cue"):
            raise UserError(f"{self.package.name}: this avatar has no actions")
        try:
            segment = self.walk.cue(name, None if at_k is None else max(0, at_k - self.first_k))
        except ValueError as exc:
            raise UserError(f"{self.package.name}: {exc}") from None
        return segment.first + self.first_k

    def _walk_plan(self, k: int, audio: np.ndarray, **fields) -> FramePlan:
        step = self.walk.frame_at(k - self.first_k)
        return FramePlan(k, self.pts(k), step.index, audio, other_index=step.other, other_weight=step.weight,
                         clip=step.clip, other_clip=step.other_clip, package=self._clip_package(step.clip),
                         **fields)

    def _clip_package(self, clip: str | None):
        return self.package if clip is None else self.package.action(clip)

    def skip_to(self, k: int) -> None:
        """Plan from frame k on (serve: the frames before it were already published, or dropped by a flush)."""
        self.next_k = max(int(k), self.first_k)

    def _take_k(self) -> int:
        k = self.next_k
        self.next_k += 1
        return k

    def _plan_speech(self, item: SpeechItem) -> FramePlan:
        k = self._take_k()
        if item.first:  # speech starts on the frame the idle was heading for, never on a jump
            self.walk.hold(k - self.first_k + 1)
        audio = item.audio if item.audio is not None else SILENCE
        return self._walk_plan(k, audio, samples=item.samples, speech=True, mel=item.mel, blend=item.blend,
                               generate=item.generate, first=item.first, speech_id=item.speech_id)

    # ------------------------------------------------------------------ rendering
    def generate(self, plans: list[FramePlan]) -> None:
        """Run the generator on the plans that need it (in one batch), setting `plan.face`."""
        if any(p.first for p in plans):
            self._reset_due = True
        todo = [p for p in plans if p.generate and not p.skip]
        if not todo:
            return
        t = time.perf_counter_ns()
        if self._reset_due:
            self.generator.reset()
            self._reset_due = False
        faces = self.generator.generate(self._inputs(todo))
        for p, face in zip(todo, faces):
            p.face = face
        self._count("generate", t, len(todo))

    def _inputs(self, plans: list[FramePlan]) -> list[GeneratorInput]:
        return [GeneratorInput(face=p.package.face(p.avatar_index, self.crop), mel=p.mel.mel,
                               avatar_index=p.avatar_index, speech=p.mel.speech,
                               package=None if p.clip is None else p.package) for p in plans]

    def face_frame(self, plan: FramePlan) -> FaceFrame:
        return FaceFrame(pts_ns=plan.pts_ns, index=plan.k, avatar_index=plan.avatar_index, face=plan.face,
                         crop=self.crop, blend=plan.blend if plan.face is not None else 0.0,
                         speech=bool(plan.mel is not None and plan.mel.speech), other_index=plan.other_index,
                         other_weight=plan.other_weight, clip=plan.clip, other_clip=plan.other_clip,
                         first=plan.first)

    def show_i420(self, frame_cache=None) -> bool:
        """Compose and show frames as I420 (`serve`; backend/yuv.py): from the package's decoded-frame cache, or
        without one decoded from the JPEGs straight to I420; `compose` and `footage` then return `I420` frames
        (one conversion into OBS's ring). Only for an even frame size where nothing is laid behind the person
        (a backdrop works on BGR pixels). True when switched."""
        comp, package = self.compositor, self.package
        if comp.backdrop is not None or package.width % 2 or package.height % 2:
            return False
        comp.frame_cache, comp.frame_pool = frame_cache, FramePool(packed=True)
        self.i420 = True
        return True

    def compose(self, plan: FramePlan) -> np.ndarray | I420:
        """The finished frame: BGR (a read-only view of the footage when nothing is blended), or I420 after
        `show_i420`."""
        t = time.perf_counter_ns()
        image = self._draw(self.face_frame(plan))
        self._count("compositor", t, 1)
        return image

    def footage(self, plan: FramePlan) -> np.ndarray | I420:
        """The frame as it looks without a generated mouth (serve's stand-in for a frame it could not render):
        the walk's footage, cross-faded and over the backdrop as a rendered one would be. Touches no cache the
        render thread writes and no state of the composing thread's (`first` is left to it), so the publisher
        may call it."""
        return self._draw(replace(self.face_frame(plan), face=None, blend=0.0, first=False))

    def _draw(self, ff: FaceFrame) -> np.ndarray | I420:
        return self.compositor.compose_i420(ff) if self.i420 else self.compositor.compose(ff)

    def render(self, plans: list[FramePlan]) -> None:
        """generate + compose: fills `plan.image` of every plan not marked `skip`."""
        self.generate(plans)
        for p in plans:
            if not p.skip:
                p.image = self.compose(p)
                p.rendered_ns = time.monotonic_ns()

    def pair(self, plan: FramePlan) -> Pair:
        """(VideoFrame with the compositing left `pending`, its AudioOutFrame), for a compositor on another
        thread (backend.post.PostWorker calls `compositor.finish`/`finish_i420`)."""
        ff = self.face_frame(plan)
        video = VideoFrame(pts_ns=plan.pts_ns, index=plan.k, avatar_index=plan.avatar_index, image=None,
                           speech=ff.speech, pending=ff)
        return video, AudioOutFrame(pts_ns=plan.pts_ns, pcm=plan.audio, speech=plan.speech)

    def warm_up(self) -> None:
        """Run the features, generator and compositor once (imports, caches, the network's first call) so the
        first real utterance is not late by their one-off costs; leaves no state behind."""
        from backend.frames import AudioFrame, SpeechEndFrame

        probe = Engine(self.package, self.generator, crop=self.crop, batch_size=min(4, self.batch_size),
                       loop="pingpong", detail="off")  # no stage of its own: it composes with this engine's
        probe.compositor = self.compositor  # the caches it builds are this engine's
        rng = np.random.default_rng(0)
        probe.push(AudioFrame(pts_ns=0, pcm=(0.1 * rng.standard_normal(6400)).astype(np.float32)))
        probe.push(SpeechEndFrame(pts_ns=0))
        first = probe.plan(force=True)
        probe.render(first)  # the first call pays one-off costs
        # the generator alone at every batch size up to this engine's (best of two), as one of serve's render
        # workers runs it (on its share of the threads when calls run side by side): serve's first estimates
        inputs = self._inputs([p for p in first if p.generate])
        self.warm_batch = []
        parallel = max(1, int(getattr(self.generator, "parallel_calls", 1)))
        before = thread_count() if parallel > 1 else None
        if before is not None:
            use_threads(max(1, before // parallel))
        try:
            for b in range(1, self.batch_size + 1) if inputs else ():
                batch = [inputs[i % len(inputs)] for i in range(b)]
                self.warm_batch.append((min(self._timed(batch) for _ in range(2)), b))
        finally:
            if before is not None:
                use_threads(before)
        self.generator.reset()
        if self.compositor.detail is not None:  # its exemplar library (built once per avatar, then cached)
            self.compositor.detail.library

    def fit_to_clock(self, drawn: float, estimated: float = 0.0) -> bool:
        """A live driver's word at the end of an utterance: `drawn` is the share of its speech frames the renderer
        drew at the clock's 25 fps (1.0: all of them), `estimated` the share its pacer expects now. With detail
        "auto", a renderer below DETAIL_MIN_RATE by both gives up the detail stage for the rest of the session,
        from the next utterance on; True when it did. The larger of the two decides, so neither one stall in the
        utterance nor one slow estimate at its end does.

        Why: there every frame the stage costs is a frame the network does not draw. Measured in `serve` with
        wav2lip96 fp32 on a CPU held to 1.2 cores (bench/slow_cpu.sh, docs/benchmarks.md): 0.82-0.89 of the
        network alone in distinct speech frames (a queued file) with the stage, 0.92-0.93 without: its own 0.03
        of a core, and the network's working set pushed out of the caches. A choppier mouth is worse than a
        softer one, and the stage is meant never to lower serve's rate. Decided between utterances (never
        mid-word) and once: the stage does not come and go with the load. "on" keeps it."""
        rate = max(drawn, estimated)
        if self.detail_mode != "auto" or self.compositor.detail is None or self.detail_note or rate >= DETAIL_MIN_RATE:
            return False
        self.compositor.retire_detail = True  # the compositor drops it at the next utterance's first frame
        self.detail_note = (f"off: the network draws {25.0 * rate:.1f} of the 25 speech frames/s here, "
                            "so their CPU goes to the frames (--detail on keeps it)")
        log.warning("mouth detail %s", self.detail_note)
        return True

    @property
    def detail_status(self) -> str:
        """The detail stage for serve's status and render's summary: "on, band cut at σ 0.60", "off", or
        "off: <why>" once `fit_to_clock` gave it up."""
        stage = self.compositor.detail
        return self.detail_note or ("off" if stage is None else f"on, band cut at σ {stage.softness:.2f}")

    def _timed(self, batch: list[GeneratorInput]) -> int:
        """ns the generator takes for `batch`."""
        t = time.perf_counter_ns()
        self.generator.generate(batch)
        return time.perf_counter_ns() - t

    def _count(self, name: str, t_ns: int, frames: int) -> None:
        st = self.stats[name]
        st.busy_ns += time.perf_counter_ns() - t_ns
        st.frames_in += 1
        st.frames_out += frames


DETAIL_MIN_RATE = 0.95  # "auto" gives up the detail stage when a live renderer draws fewer speech frames than this


def make_detail(mode: str, package, crop: str, generator):
    """The detail stage for this avatar and generator, or None (off, a generator of real pixels, a face no
    larger on screen than the network draws it, or a package held in memory)."""
    if mode not in DETAIL_MODES:
        raise ValueError(f"unknown detail mode {mode!r} (expected one of {DETAIL_MODES})")
    if mode == "off" or generator.real_pixels or not hasattr(package, "root"):
        return None
    from backend.detail.softness import library_softness, measure_softness
    from backend.detail.stage import DetailStage

    stage = DetailStage(package, crop, generator.native_size)  # cheap: its library is loaded on first use
    if not stage.enabled:
        return None
    # the band is cut at the generator's own softness, measured on a few of the avatar's faces (one batch, here on
    # the driver's thread: the generator is never called from the compositing thread), before the library loads
    stage.softness = library_softness(measure_softness(generator, package, crop))
    return stage

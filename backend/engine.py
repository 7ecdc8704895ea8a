"""The engine: one timeline of speech in, (VideoFrame, AudioOutFrame) pairs out, on one clock.

Stages: features → generate → compositor (each a `push`/`flush` class, see their modules). The engine only
wires them, keeps the avatar schedule and the output timeline, and pairs every video frame with the
audio block rendered for it:

* output frame k (speech or idle) has pts = t0 + k · 40 ms, and its AudioOutFrame has the same pts;
  speech frame i of an utterance carries samples [640 i, 640 (i+1)) of that utterance, idle frames carry
  40 ms of silence. Audio is released only together with its frame, so the two cannot drift.
* Idle frames (`idle()`) walk the avatar schedule with the footage mouth; speech frames continue the same
  walk, so starting to talk never makes the clip jump.
* No sleeping, no pacing: `render` drains as fast as it can, `serve` calls `poll()` / `idle()` from its
  own real-time clock. `onset_lead` (frames) lets serve reserve schedule steps for the speech that is still
  being computed while idle frames are being shown.

Not thread-safe: drive one Engine from one thread.
"""
from __future__ import annotations

import time
from collections import deque
from dataclasses import replace

import numpy as np

from backend.compositor import Compositor
from backend.features import FeatureStage, SilenceGate
from backend.frames import (FRAME_NS, SAMPLES_PER_FRAME, AudioOutFrame, FlushFrame, Frame, MelFrame, SpeechEndFrame,
                            StageStats, VideoFrame)
from backend.generate_stage import GenerateStage
from backend.generator import Generator
from backend.schedule import ScheduleCursor, schedule_index

Pair = tuple[VideoFrame, AudioOutFrame]


class Engine:
    """See module docstring.

    package: an opened `AvatarPackage`; generator: any `Generator` (network, mouth engine, NullGenerator).
    crop: which package crop feeds the generator ("head" or "body"; default the generator's own).
    silence_gate: False → every frame counts as speech (the generator runs for all of them).
    compose_later: pairs come out with `VideoFrame.pending` instead of an image; the caller composes them
    with `engine.compositor.finish()` (on another thread: `backend.post.PostWorker`).
    frame_cache: a backend.frame_cache.FrameCache the compositor's I420 path reads frames from.
    """

    def __init__(self, package, generator: Generator, *, crop: str | None = None, batch_size: int | None = None,
                 loop: str = "pingpong", start_frame: int = 0, silence_gate: bool | SilenceGate = True,
                 ramp: int = 3, lookahead: int | None = None, t0_ns: int = 0, onset_lead: int = 0,
                 enhancer=None, colour_match: bool = True, compose_later: bool = False, frame_cache=None):
        self.package = package
        self.generator = generator
        self.crop = crop or generator.crop
        gate = silence_gate if isinstance(silence_gate, SilenceGate) else SilenceGate(enabled=bool(silence_gate))
        self.features = FeatureStage(gate)
        self.generate = GenerateStage(generator, self._face_of, self._assign, batch_size=batch_size, ramp=ramp,
                                      lookahead=lookahead, crop=self.crop)
        self.compositor = Compositor(package, colour=colour_match, enhancer=enhancer, deferred=compose_later,
                                     frame_cache=frame_cache)
        self.cursor = ScheduleCursor(package.frame_count, start_frame, loop)
        self.onset_lead = max(0, int(onset_lead))
        self.t0_ns = int(t0_ns)
        self.slot = 0  # next output frame number on the timeline
        self._assigned_until = 0  # schedule steps promised to speech frames already in the pipeline
        self._steps: deque[int] = deque()  # schedule step of each speech frame in flight, in order
        self._video: VideoFrame | None = None  # composited frame waiting for its audio block
        self._ready: deque[tuple[VideoFrame, AudioOutFrame, int]] = deque()  # (video, audio, schedule step)
        self.stats = {name: StageStats() for name in ("features", "generate", "compositor")}
        self.utterances_done = 0

    # ------------------------------------------------------------------ input
    def push(self, frame: Frame) -> None:
        """AudioFrame / SpeechStartFrame / SpeechEndFrame / FlushFrame. Generates whatever becomes ready."""
        if isinstance(frame, FlushFrame):
            self.flush()
            return
        self._run(self._timed("features", self.features.push, frame))

    def flush(self) -> None:
        """Barge-in: drop queued speech and undelivered speech frames; the next frame is idle."""
        self.features.flush()
        self.generate.flush()
        self._ready.clear()
        self._video = None
        self._steps.clear()
        self._assigned_until = self.cursor.step

    # ------------------------------------------------------------------ output
    def poll(self, force: bool = False) -> list[Pair]:
        """Pairs ready now, in timeline order. force=True also runs a partial generator batch (latency bound)."""
        if force:
            self._run(self._timed("generate", lambda _f: self.generate.run_pending(), None), stage_from=2)
        out = []
        while self._ready:  # slots and the schedule position are taken when the caller takes the frames
            video, audio, step = self._ready.popleft()
            self.cursor.step = max(self.cursor.step, step + 1)
            pts = self._next_pts()
            # the compositor's frame, re-stamped on the output timeline (every other field carried as it is)
            out.append((replace(video, pts_ns=pts, index=self.slot - 1),
                        AudioOutFrame(pts_ns=pts, pcm=audio.pcm, speech=audio.speech)))
        return out

    def drain(self) -> list[Pair]:
        """Everything that can be produced from the input so far (push a SpeechEndFrame first to finish)."""
        return self.poll(force=True)

    def __iter__(self):
        return iter(self.drain())

    def idle(self, count: int = 1) -> list[Pair]:
        """`count` idle frames: the next avatar frames of the schedule with their own mouth, and silence."""
        out = []
        for _ in range(count):
            index = self.cursor.next()
            self._assigned_until = max(self._assigned_until, self.cursor.step)
            image = self.package.frame(index).view()
            image.flags.writeable = False
            pts = self._next_pts()
            out.append((VideoFrame(pts_ns=pts, index=self.slot - 1, avatar_index=index, image=image, speech=False),
                        AudioOutFrame(pts_ns=pts, pcm=np.zeros(SAMPLES_PER_FRAME, np.float32), speech=False)))
        return out

    def advance_to(self, pts_ns: int) -> None:
        """Skip timeline slots so the next frame's pts is >= pts_ns (for a real-time caller that fell behind)."""
        need = -(-(int(pts_ns) - self.t0_ns) // FRAME_NS)
        self.slot = max(self.slot, need)

    @property
    def next_pts(self) -> int:
        return self.t0_ns + self.slot * FRAME_NS

    @property
    def speaking(self) -> bool:
        """Speech is open, queued or waiting to be taken."""
        return self.features.active or self.generate.pending > 0 or bool(self._ready) or self._video is not None

    @property
    def ready_count(self) -> int:
        return len(self._ready)

    # ------------------------------------------------------------------ wiring
    def _run(self, frames: list[Frame], stage_from: int = 1) -> None:
        for f in frames:
            produced = [f]
            if stage_from <= 1:
                produced = self._timed("generate", self.generate.push, f)
            for g in produced:
                for h in self._timed("compositor", self.compositor.push, g):
                    self._collect(h)

    def _collect(self, frame: Frame) -> None:
        if isinstance(frame, VideoFrame):
            self._video = frame
        elif isinstance(frame, AudioOutFrame):
            video, self._video = self._video, None
            if video is None:
                return
            step = self._steps.popleft() if self._steps else self.cursor.step
            self._ready.append((video, frame, step))
        elif isinstance(frame, SpeechEndFrame):
            self.utterances_done += 1

    def _assign(self, mel: MelFrame) -> int:
        lead = self.onset_lead if not (self._steps or self._ready) else 0  # lead only for the first frame
        step = max(self.cursor.step + lead, self._assigned_until)
        self._assigned_until = step + 1
        self._steps.append(step)
        return schedule_index(step, self.cursor.n, self.cursor.start, self.cursor.loop)

    def _face_of(self, avatar_index: int) -> np.ndarray:
        return self.package.face(avatar_index, self.crop)

    def _next_pts(self) -> int:
        pts = self.t0_ns + self.slot * FRAME_NS
        self.slot += 1
        return pts

    def _timed(self, name: str, fn, frame) -> list[Frame]:
        t = time.perf_counter_ns()
        out = fn(frame)
        st = self.stats[name]
        st.busy_ns += time.perf_counter_ns() - t
        st.frames_in += 1
        st.frames_out += len(out)
        return out


"""Typed frames that flow one way through the engine: source → features → planner → generator → compositor → sinks.

Every frame carries `pts_ns`, a time on the one output timeline (CLOCK_MONOTONIC ns in `serve`,
ns from the start of the file in `render`). Video frame k of a timeline starting at t0 has
pts = t0 + k * 40 ms; the audio sample that starts at the same pts is played with it. Nothing else
decides timing: `serve`'s publisher paces on pts, no stage sleeps.

`FramePlan` is the engine's decision about one output frame (which avatar frame, which audio, how much
generated mouth); both drivers (render, serve) receive plans from the engine and hand them back to it to be
rendered. `FlushFrame` overtakes queued data: every stage that receives one drops what it holds.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

FPS = 25
# the detail stage's modes (backend/engine.py make_detail, Engine.fit_to_clock; the CLIs' --detail)
DETAIL_MODES = ("auto", "on", "off")
FRAME_NS = 1_000_000_000 // FPS  # 40 ms
SAMPLE_RATE = 16000
SAMPLES_PER_FRAME = SAMPLE_RATE // FPS  # 640


@dataclass(frozen=True, slots=True)
class Frame:
    """Base of everything that moves through the engine."""

    pts_ns: int


@dataclass(frozen=True, slots=True)
class AudioFrame(Frame):
    """Speech PCM entering the engine: 16 kHz mono float32, already resampled at the source edge."""

    pcm: np.ndarray
    speech_id: int = 0


@dataclass(frozen=True, slots=True)
class SpeechStartFrame(Frame):
    """A new utterance begins at pts (file queued, TTS stream opened, microphone gate opened)."""

    speech_id: int = 0


@dataclass(frozen=True, slots=True)
class SpeechEndFrame(Frame):
    """The utterance `speech_id` has no more audio after pts."""

    speech_id: int = 0


@dataclass(frozen=True, slots=True)
class FlushFrame(Frame):
    """Barge-in: drop all queued speech now; the avatar returns to idle."""


@dataclass(frozen=True, slots=True)
class MelFrame(Frame):
    """Audio features for one output video frame: the 16-step mel window that starts at int(80*i/25).

    `speech` is the silence gate (False → keep the footage's own mouth); `level` is the window's
    loudness in dBFS, for cross-fades and the mouth engine's confidence; `ahead`: the gate of the following
    frames of the utterance already known when this one is out (their audio is inside this window), so the
    planner decides a ramp without waiting for their windows (backend/features.py).
    """

    index: int  # output frame number on this timeline
    mel: np.ndarray  # (80, 16) float32
    speech: bool = True
    level_db: float = 0.0
    speech_id: int = 0
    ahead: tuple[bool, ...] = ()


@dataclass(frozen=True, slots=True)
class FaceFrame(Frame):
    """A generated face crop for output frame `index`, to be composited onto avatar frame `avatar_index`.

    `face` is BGR uint8 (S, S, 3) in the crop space given by `crop` ("head" = head_face, "body" = body_face);
    `blend` in [0, 1] is how much of it to show (0 = pure footage, used for silence cross-fades).
    """

    index: int
    avatar_index: int
    face: np.ndarray | None
    crop: str = "head"
    blend: float = 1.0
    speech: bool = True
    other_index: int | None = None  # the idle's cross-fade across a jump: this frame shows through by
    other_weight: float = 0.0  # other_weight (backend/idle_walk.py)
    clip: str | None = None  # the action clip avatar_index belongs to (None: the main footage)
    other_clip: str | None = None  # the clip other_index belongs to
    first: bool = False  # the first frame of an utterance: stages with temporal state start afresh
    plain: np.ndarray | None = None  # the face before the detail stage (the compositor's change weight judges it)
    colour_matched: bool = False  # the compositor matched its colours already (before the detail stage)


@dataclass(frozen=True, slots=True)
class VideoFrame(Frame):
    """A finished full frame, BGR uint8 (H, W, 3), ready for sinks.

    `pending` is set (and `image` is None) when the engine left the compositing to the sink side: `render`
    composes and encodes on a worker thread so that both overlap with the network (see backend.post).
    `yuv` (a backend.yuv.I420, `image` None) is the same frame as I420 planes: the mp4-only fast path.
    """

    index: int
    avatar_index: int
    image: np.ndarray | None
    speech: bool = False
    pending: FaceFrame | None = None
    yuv: object | None = None


@dataclass(frozen=True, slots=True)
class AudioOutFrame(Frame):
    """Audio to be played with the video: one block (normally 40 ms) of 16 kHz mono float32 at pts."""

    pcm: np.ndarray
    speech: bool = False


@dataclass(eq=False)
class FramePlan:
    """Everything the engine decided about output frame k before it is rendered (backend/engine.py).

    audio: the 640 samples that play with the frame (silence for idle frames); `samples` of them are real
    (fewer only in the last frame of an utterance). generate: the generator runs for this frame; first: the
    first frame of an utterance (the generator is reset before the utterance's first generated frame).
    The render fills `face` (the generated crop) and `image` (the composed frame: BGR, or I420 where the engine
    shows its frame cache, `Engine.show_i420`); a driver that chooses not to render a frame (serve, behind its
    clock) sets `skip` and shows the previous image instead.
    """

    k: int
    pts_ns: int
    avatar_index: int
    audio: np.ndarray
    samples: int = SAMPLES_PER_FRAME
    other_index: int | None = None  # cross-fade across an idle jump (FaceFrame.other_index)
    other_weight: float = 0.0
    clip: str | None = None  # an action clip's frame (FaceFrame.clip)
    other_clip: str | None = None
    speech: bool = False  # the audio comes from an utterance
    mel: MelFrame | None = None
    blend: float = 0.0  # how much generated mouth is shown (0 = the footage)
    generate: bool = False
    first: bool = False
    speech_id: int = 0
    package: object = None  # the avatar package it was planned on (serve may switch avatars meanwhile)
    face: np.ndarray | None = None
    image: object = None  # np.ndarray (BGR) | backend.yuv.I420
    skip: bool = False
    rendered_ns: int = 0
    # serve's publisher: what was actually shown (differs from the plan when a frame was repeated)
    shown_index: int = -1
    shown_generated: bool = False
    repeated: bool = False
    entered_ns: int | None = None  # when the frame's first sample entered the backend (latency)


@dataclass(slots=True)
class StageStats:
    """Counters every stage keeps, shown by `serve` status and the benchmarks."""

    frames_in: int = 0
    frames_out: int = 0
    busy_ns: int = 0
    extra: dict = field(default_factory=dict)

"""Generator stage: MelFrames (+ their audio blocks) in, FaceFrames (+ the same audio blocks) out.

Why it batches: a network is 20-40 % faster per frame in batches of 4-8 than one by one, while live use
wants small batches for latency; `batch_size` sets the trade-off and `run_pending()` (called by the engine
when its caller's deadline comes, or at the end of an utterance) bounds the latency of a partial batch.

Silence: frames whose blend is 0 keep the footage mouth, so the generator does not run for them. At speech
boundaries the blend ramps over `ramp` frames (0 → 1/3 → 2/3 → 1 for ramp 3). The ramp up starts before
the first speech frame when `lookahead` frames of the future are known (default ramp − 1), so the mouth is
fully driven by the time the sound starts; `lookahead=0` gives a causal ramp (lowest latency).

Each frame's audio block travels with it and is emitted right after its FaceFrame.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Callable

import numpy as np

from backend.frames import AudioOutFrame, FaceFrame, FlushFrame, Frame, MelFrame, SpeechEndFrame, SpeechStartFrame
from backend.generator import Generator, GeneratorInput


@dataclass
class _Item:
    mel: MelFrame
    audio: AudioOutFrame | None
    avatar_index: int
    blend: float = -1.0  # < 0: not decided yet


class GenerateStage:
    """See module docstring. `assign(mel_frame) -> avatar_index` decides which avatar frame each output
    frame shows (the engine's schedule); `face_of(avatar_index) -> (S, S, 3) uint8` gives its face crop."""

    def __init__(self, generator: Generator, face_of: Callable[[int], np.ndarray],
                 assign: Callable[[MelFrame], int], *, batch_size: int | None = None, ramp: int = 3,
                 lookahead: int | None = None, crop: str | None = None):
        self.generator = generator
        self.face_of = face_of
        self.assign = assign
        self.batch_size = max(1, int(batch_size or generator.preferred_batch))
        self.ramp = max(1, int(ramp))
        self.lookahead = self.ramp - 1 if lookahead is None else max(0, min(int(lookahead), self.ramp - 1))
        self.crop = crop or generator.crop
        # a generator that renders silence itself (the mouth engine's resting mouth) runs on every speech frame
        self.always = bool(getattr(generator, "handles_silence", False))
        self._undecided: deque[_Item] = deque()  # waiting for `lookahead` future speech flags
        self._ready: deque[_Item] = deque()  # blend known, waiting for a batch
        self._past: deque[bool] = deque(maxlen=self.ramp)  # speech flags of the frames already decided
        self.generated = 0
        self.skipped = 0

    # ------------------------------------------------------------------ stage API
    def push(self, frame: Frame) -> list[Frame]:
        if isinstance(frame, MelFrame):
            item = _Item(frame, None, self.assign(frame))
            self._undecided.append(item)
            self._decide(final=False)
            return self._emit(force=False)
        if isinstance(frame, AudioOutFrame):
            target = self._undecided[-1] if self._undecided else (self._ready[-1] if self._ready else None)
            if target is not None and target.audio is None:
                target.audio = frame
                return []
            return [frame]  # audio with no pending face (should not happen): keep it flowing
        if isinstance(frame, SpeechStartFrame):
            out = self._finish_utterance()
            self.generator.reset()
            self._past.clear()
            return out + [frame]
        if isinstance(frame, SpeechEndFrame):
            return self._finish_utterance() + [frame]
        if isinstance(frame, FlushFrame):
            return self.flush() + [frame]
        return self._emit(force=True) + [frame]

    def run_pending(self) -> list[Frame]:
        """Run the generator on a partial batch now (latency bound); frames still waiting for look-ahead stay."""
        return self._emit(force=True)

    def flush(self) -> list[Frame]:
        """Barge-in: drop every queued frame (and its audio)."""
        self._undecided.clear()
        self._ready.clear()
        self._past.clear()
        self.generator.reset()
        return []

    @property
    def pending(self) -> int:
        return len(self._undecided) + len(self._ready)

    # ------------------------------------------------------------------ internals
    def _finish_utterance(self) -> list[Frame]:
        self._decide(final=True)
        return self._emit(force=True)

    def _decide(self, final: bool) -> None:
        """Give a blend to every frame whose `lookahead` future is known (all of them when `final`)."""
        while self._undecided and (final or len(self._undecided) > self.lookahead):
            item = self._undecided.popleft()
            future = [it.mel.speech for it in list(self._undecided)[:self.lookahead]]
            item.blend = self._blend(item.mel.speech, future)
            self._past.append(item.mel.speech)
            self._ready.append(item)

    def _blend(self, speech: bool, future: list[bool]) -> float:
        if speech or self.always:
            return 1.0
        r = self.ramp
        best = 0.0
        for d, flag in enumerate(reversed(self._past), start=1):  # ramp down after speech
            if flag:
                best = max(best, 1.0 - d / r)
                break
        for d, flag in enumerate(future, start=1):  # ramp up before speech
            if flag:
                best = max(best, 1.0 - d / r)
                break
        return max(0.0, best)

    def _emit(self, force: bool) -> list[Frame]:
        out: list[Frame] = []
        while self._ready:
            head = self._ready[0]
            if head.blend <= 0.0:
                self._ready.popleft()
                self.skipped += 1
                out += self._face_frame(head, None)
                continue
            need = [it for it in self._ready if it.blend > 0.0][:self.batch_size]
            if len(need) < self.batch_size and not force:
                break
            faces = self._generate(need)
            by_id = {id(it): face for it, face in zip(need, faces)}
            last = need[-1]
            while self._ready:
                it = self._ready.popleft()
                out += self._face_frame(it, by_id.get(id(it)))
                if it is last:
                    break
        return out

    def _generate(self, items: list[_Item]) -> np.ndarray:
        batch = [GeneratorInput(face=self.face_of(it.avatar_index), mel=it.mel.mel, avatar_index=it.avatar_index,
                                speech=it.mel.speech) for it in items]
        faces = self.generator.generate(batch)
        self.generated += len(items)
        return faces

    def _face_frame(self, item: _Item, face: np.ndarray | None) -> list[Frame]:
        mel = item.mel
        ff = FaceFrame(pts_ns=mel.pts_ns, index=mel.index, avatar_index=item.avatar_index, face=face,
                       crop=self.crop, blend=item.blend if face is not None else 0.0, speech=mel.speech)
        return [ff] + ([item.audio] if item.audio is not None else [])

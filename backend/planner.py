"""The planner: the speech frames of utterances, their blend ramp, and how they are cut into generator batches.

Everything here decides what a speech frame shows from the content alone (never from timing), so `render`
and `serve` make the same decisions and show the same frames; tests/backend/test_parity.py holds them to it.

Input: what the features stage emits (SpeechStart, MelFrame + AudioOutFrame pairs, SpeechEnd) and flushes.
Each (MelFrame, AudioOutFrame) pair becomes one `SpeechItem`: one output frame of an utterance.

Blend: 1 on speech frames (on every frame of an utterance for a generator that `handles_silence`), a ramp
over `ramp` frames into and out of speech (0 → 1/3 → 2/3 → 1 for ramp 3), 0 elsewhere (the footage's own
mouth; the generator does not run). The ramp into speech starts before the first speech frame when
`lookahead` future frames are known (default ramp − 1), so a silent item is decided only once that much of
its utterance's future has arrived (or the utterance has ended); `lookahead=0` is causal. The future is the
gate's flags the MelFrame carries (`ahead`: the features stage judges each 40 ms block as soon as its samples
are there, well before that frame's own mel window is complete), so on real audio the look-ahead costs no
time; only MelFrames without them (tests) wait for the next frames. A speech item is
blended fully whatever follows, so it is decided at once: a live stream's speech does not wait the
look-ahead.

Batches (`take_batch`): a frame with blend 0 goes alone (nothing to generate); otherwise consecutive generated
frames of one utterance, up to `batch_size`. A batch is complete when it is full, or when the next decided
frame is not generated, or at the utterance's last frame; an incomplete one goes only when the driver forces
it (serve at its deadline while a live stream has not delivered the rest). Batches never span utterances, so
the generator's reset before an utterance never falls inside a batch.
"""
from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass

import numpy as np

from backend.frames import (SAMPLES_PER_FRAME, AudioOutFrame, FlushFrame, Frame, MelFrame, SpeechEndFrame,
                            SpeechStartFrame)


@dataclass(eq=False)
class SpeechItem:
    """One output frame of an utterance, as decided by the planner."""

    mel: MelFrame
    audio: np.ndarray | None = None  # 640 samples (zero-padded at the utterance's end)
    samples: int = 0  # real samples in `audio`
    blend: float = -1.0  # < 0: not decided yet
    first: bool = False  # first frame of its utterance
    last: bool = False  # last frame of its utterance

    @property
    def generate(self) -> bool:
        return self.blend > 0.0

    @property
    def speech_id(self) -> int:
        return self.mel.speech_id


class Planner:
    """See module docstring."""

    def __init__(self, *, handles_silence: bool = False, batch_size: int = 4, ramp: int = 3,
                 lookahead: int | None = None):
        self.always = bool(handles_silence)
        self.batch_size = max(1, int(batch_size))
        self.ramp = max(1, int(ramp))
        self.lookahead = self.ramp - 1 if lookahead is None else max(0, min(int(lookahead), self.ramp - 1))
        self._undecided: deque[SpeechItem] = deque()  # waiting for `lookahead` future frames
        self._decided: deque[SpeechItem] = deque()
        self._past: deque[bool] = deque(maxlen=self.ramp)  # speech flags of decided frames of this utterance
        self._first_next = False

    # ------------------------------------------------------------------ input
    def push(self, frame: Frame) -> None:
        if isinstance(frame, MelFrame):
            self._undecided.append(SpeechItem(frame, first=self._first_next))
            self._first_next = False
            self._decide(final=False)
        elif isinstance(frame, AudioOutFrame):
            target = self._undecided[-1] if self._undecided else (self._decided[-1] if self._decided else None)
            if target is not None and target.audio is None:
                target.samples = min(frame.pcm.size, SAMPLES_PER_FRAME)
                block = np.zeros(SAMPLES_PER_FRAME, np.float32)
                block[:target.samples] = frame.pcm[:SAMPLES_PER_FRAME]
                target.audio = block
        elif isinstance(frame, SpeechStartFrame):
            self._end_utterance()
            self._past.clear()
            self._first_next = True
        elif isinstance(frame, SpeechEndFrame):
            self._end_utterance()
        elif isinstance(frame, FlushFrame):
            self.flush()

    def flush(self) -> None:
        """Barge-in: drop every frame not taken yet."""
        self._undecided.clear()
        self._decided.clear()
        self._past.clear()
        self._first_next = False

    # ------------------------------------------------------------------ output
    @property
    def ready(self) -> int:
        """Decided frames waiting to be taken."""
        return len(self._decided)

    @property
    def pending(self) -> int:
        """Every frame not taken yet, decided or not."""
        return len(self._undecided) + len(self._decided)

    def take_batch(self, force: bool = False, limit: int | None = None) -> list[SpeechItem]:
        """The next unit of work (see module docstring); [] when none may go yet. `limit` caps a batch below
        `batch_size` (serve's batch within its latency budget; its publisher, planning frames the worker could
        not get to, takes one at a time); a forced batch goes with what there is."""
        decided = self._decided
        if not decided and force and self._undecided:
            self._decide(final=True)  # a live stream at its newest frame: decide with the future known so far
        if not decided:
            return []
        if not decided[0].generate:
            return [decided.popleft()]
        size = self.batch_size if limit is None else max(1, min(self.batch_size, int(limit)))
        count, complete = 0, False
        for item in decided:
            if not item.generate:
                complete = True
                break
            count += 1
            if count == size or item.last:
                complete = True
                break
        if not (complete or force):
            return []
        return [decided.popleft() for _ in range(count)]

    # ------------------------------------------------------------------ internals
    def _end_utterance(self) -> None:
        self._decide(final=True)
        if self._decided and not self._decided[-1].last:
            self._decided[-1].last = True

    def _decide(self, final: bool) -> None:
        # a speech frame's blend is 1 whatever follows: only a silent one waits for its future (a ramp up), which
        # it knows from the gate's flags ahead (MelFrame.ahead) or else from the frames after it
        while self._undecided:
            mel = self._undecided[0].mel
            if not (final or mel.speech or len(mel.ahead) >= self.lookahead or len(self._undecided) > self.lookahead):
                break
            item = self._undecided.popleft()
            following = [it.mel.speech for it in itertools.islice(self._undecided, self.lookahead)]
            future = list(mel.ahead[:self.lookahead]) if len(mel.ahead) >= len(following) else following
            item.blend = self._blend(item.mel.speech, future)
            self._past.append(item.mel.speech)
            self._decided.append(item)

    def _blend(self, speech: bool, future: list[bool]) -> float:
        if speech or self.always:
            return 1.0
        best = 0.0
        for d, flag in enumerate(reversed(self._past), start=1):  # ramp down after speech
            if flag:
                best = max(best, 1.0 - d / self.ramp)
                break
        for d, flag in enumerate(future, start=1):  # ramp up before speech
            if flag:
                best = max(best, 1.0 - d / self.ramp)
                break
        return max(0.0, best)

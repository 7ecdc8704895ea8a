"""The input side of `serve`: utterances from the speech queue pushed into the engine, in order.

Why it is a separate piece: sources (files, TTS streams, the microphone) append to utterances from their
own threads whenever audio arrives; the engine must be fed from the live loop's thread, under its lock. The
feeder keeps the engine holding `want` frames of speech when that much audio exists, so the engine's batches
are the same as when `render` pushes a whole file (the engine decides them from the content; a batch is cut
short only when a live stream has not delivered the rest yet). At most `PULL_SAMPLES` are pushed per step,
so a long file never holds the loop's lock for more than a few milliseconds.
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np

from backend.frames import AudioFrame, SpeechEndFrame, SpeechStartFrame
from backend.sources.queue import SpeechQueue, Utterance

PULL_SAMPLES = 8000  # 0.5 s per step


class QueueFeeder:
    """`pull(engine, want)`: push queued speech into `engine` until it holds `want` frames or none is left."""

    def __init__(self, queue: SpeechQueue, now=None):
        import time

        self.queue = queue
        self.now = now or time.monotonic_ns
        self.current: Utterance | None = None
        self._pending = np.zeros(0, np.float32)  # taken from the current utterance, not pushed yet
        self.generation = queue.generation
        self._recent: OrderedDict[int, Utterance] = OrderedDict()  # speech_id -> utterance (latency lookup)

    def pull(self, engine, want: int) -> None:
        if self.queue.generation != self.generation:  # the queue was flushed behind our back
            self.drop()
            engine.flush()
        steps = 0
        while engine.speech_pending < want and steps < 8:
            steps += 1
            if self.current is None:
                utt = self.queue.head()
                if utt is None:
                    return
                self.current, self._pending = utt, np.zeros(0, np.float32)
                utt.started_ns = self.now()
                self._remember(utt)
                engine.push(SpeechStartFrame(pts_ns=0, speech_id=utt.id))
            utt = self.current
            if self._pending.size == 0:
                self._pending, _ended = utt.take_new()
            piece, self._pending = self._pending[:PULL_SAMPLES], self._pending[PULL_SAMPLES:]
            if piece.size:
                engine.push(AudioFrame(pts_ns=0, pcm=piece, speech_id=utt.id))
            elif utt.ended and utt.taken >= utt.n:
                engine.push(SpeechEndFrame(pts_ns=0, speech_id=utt.id))
                self.queue.pop_head(utt)
                self.current = None
            else:
                return  # a live stream: waiting for more audio

    @property
    def live(self) -> bool:
        """The utterance being fed is still arriving (a stream not ended yet): its next frames wait for audio."""
        utt = self.current if self.current is not None else self.queue.head()
        return utt is not None and not utt.ended

    def drop(self) -> None:
        """Forget the utterance being fed (after a flush)."""
        self.generation = self.queue.generation
        self.current = None
        self._pending = np.zeros(0, np.float32)

    def entered_ns(self, speech_id: int, sample: int) -> int | None:
        """When sample `sample` of utterance `speech_id` entered the backend (for the latency figures)."""
        utt = self._recent.get(speech_id)
        return None if utt is None else utt.entered_ns(sample)

    def queued_samples(self) -> int:
        """Speech samples not pushed into the engine yet."""
        return self.queue.queued_samples() + int(self._pending.size)

    def _remember(self, utt: Utterance) -> None:
        self._recent[utt.id] = utt
        while len(self._recent) > 16:
            self._recent.popitem(last=False)

"""The speech queue: utterances in arrival order, filled by sources, consumed by the live loop.

An `Utterance` is a growing 16 kHz buffer plus the arrival time of each chunk, so the live loop can measure
latency as "sample entered → its frame published". For audio that arrives faster than real time (a file,
a fast TTS) a sample counts as entered no earlier than `start + its position / 16 kHz` (start = first arrival, or when
the loop got to the utterance after the speech queued before it): it could not have been heard earlier, so
the figure is the pipeline's delay; waiting behind earlier speech is reported separately as queue_ms.

Barge-in: `flush()` cancels every utterance (a stream still sending is ignored from then on).

Every appended chunk is cleaned (`pcm.finite_samples`: NaN/Inf -> finite, absurd values clipped) whatever the
source, so the features and the audio ring never see a non-finite sample.
"""
from __future__ import annotations

import bisect
import itertools
import threading
import time
from collections import deque

import numpy as np

from backend.sources.pcm import finite_samples

SAMPLE_RATE = 16000
_ids = itertools.count(1)


class Utterance:
    """One piece of speech: a file, one streamed TTS sentence, or one microphone gate opening."""

    def __init__(self, origin: str, label: str = ""):
        self.id = next(_ids)
        self.origin, self.label = origin, label
        self._lock = threading.Lock()
        self._pending: list[np.ndarray] = []  # appended, not yet taken
        self._ends: list[int] = []  # cumulative sample count after each chunk
        self._arrivals: list[int] = []  # monotonic ns of each chunk
        self.n = 0
        self.ended = False
        self.cancelled = False
        self.taken = 0  # samples already handed to the live loop
        self.started_ns = 0  # when the live loop began playing it (after what was queued before it)

    def append(self, pcm: np.ndarray, now_ns: int | None = None) -> None:
        pcm = finite_samples(np.ascontiguousarray(pcm, dtype=np.float32).reshape(-1))
        if pcm.size == 0:
            return
        with self._lock:
            if self.ended or self.cancelled:
                return
            self._pending.append(pcm)
            self.n += pcm.size
            self._ends.append(self.n)
            self._arrivals.append(time.monotonic_ns() if now_ns is None else now_ns)

    def end(self) -> None:
        with self._lock:
            self.ended = True

    def take_new(self) -> tuple[np.ndarray, bool]:
        """Samples not taken before, and whether the utterance has ended (consumer side)."""
        with self._lock:
            done = self.ended
            if not self._pending:
                return np.zeros(0, np.float32), done
            parts, self._pending = self._pending, []
            self.taken = self.n
        return np.concatenate(parts) if len(parts) > 1 else parts[0], done

    def entered_ns(self, sample: int) -> int:
        """When sample `sample` entered: its chunk's arrival, but not before it was due, i.e. the utterance's
        start (first arrival, or when the live loop got to it after earlier speech) + position / rate."""
        with self._lock:
            if not self._arrivals:
                return time.monotonic_ns()
            i = min(bisect.bisect_right(self._ends, sample), len(self._ends) - 1)
            arrival = self._arrivals[i]
            due = max(self._arrivals[0], self.started_ns) + sample * 1_000_000_000 // SAMPLE_RATE
        return max(arrival, due)

    @property
    def remaining(self) -> int:
        return self.n - self.taken


class SpeechQueue:
    """Thread-safe FIFO of utterances. Producers: sources. Consumer: the live loop."""

    def __init__(self):
        self._lock = threading.Lock()
        self._items: deque[Utterance] = deque()
        self.generation = 0  # bumped by every flush
        self.paused = False

    def open(self, origin: str, label: str = "") -> Utterance:
        u = Utterance(origin, label)
        with self._lock:
            if self.paused:
                u.cancelled = True
            else:
                self._items.append(u)
        return u

    def add(self, pcm: np.ndarray, origin: str = "file", label: str = "") -> Utterance:
        u = self.open(origin, label)
        u.append(pcm)
        u.end()
        return u

    def head(self) -> Utterance | None:
        with self._lock:
            while self._items and self._items[0].cancelled:
                self._items.popleft()
            return self._items[0] if self._items else None

    def pop_head(self, u: Utterance) -> None:
        with self._lock:
            if self._items and self._items[0] is u:
                self._items.popleft()

    def flush(self) -> int:
        """Cancel everything queued or playing; returns how many utterances were dropped."""
        with self._lock:
            dropped = len(self._items)
            for u in self._items:
                u.cancelled = True
            self._items.clear()
            self.generation += 1
        return dropped

    def queued_samples(self) -> int:
        with self._lock:
            return sum(u.n - u.taken for u in self._items)

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

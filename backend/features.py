"""Features stage: speech PCM in, one `MelFrame` (+ its 40 ms audio block) per output video frame out.

Why incremental: `serve` hears audio as it arrives and cannot wait for the end of an utterance, yet the
mouth must be exactly what the offline reference would produce. `MelStream` therefore computes only the new
mel columns as samples arrive -- pre-emphasis carried across chunks, the reflect padding at the start of
the utterance, and the reflect padding at its end applied once `SpeechEnd` says where the end is -- and
gives the same numbers as `models.audio.melspectrogram` on the whole utterance (tested for equality).

Frame i of an utterance gets the window starting at mel column int(80*i/25); at the first i whose window
would run past the end, and for every later frame, the last 16 columns (the reference end-of-audio rule).
An utterance of n samples lasts ceil(n/640) video frames, so video and audio durations agree to a frame.

Each MelFrame is followed by an `AudioOutFrame` holding the samples [640 i, 640 (i+1)) that play with
that video frame; later stages keep the pair together, so audio is released only with its frame.
The silence gate (RMS level of that block, with hysteresis and a hang-over) sets MelFrame.speech. It runs on
each 40 ms block as soon as the block's samples are there, which is ~170 ms before the block's own mel window
is complete, so every MelFrame also carries the gate's flags of the blocks after it that are already known
(`MelFrame.ahead`, at least 4 of them inside an utterance). Why: the planner's ramp into speech looks 2 frames
ahead; taking that from the next MelFrames made every silent frame wait 80 ms for their windows, and a live
stream starting with silence (most TTS output) carried those 80 ms of latency for its whole length.
"""
from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass

import numpy as np

from backend.frames import (FRAME_NS, SAMPLES_PER_FRAME, AudioFrame, AudioOutFrame, FlushFrame, Frame, MelFrame,
                            SpeechEndFrame, SpeechStartFrame)
from models import audio as mel_audio

HOP = mel_audio.HOP
N_FFT = mel_audio.N_FFT
WINDOW_STEPS = mel_audio.WINDOW_STEPS
AHEAD_FLAGS = 8  # gate flags of the following blocks a MelFrame carries at most (the planner needs ramp - 1)


def frames_for_samples(num_samples: int) -> int:
    """Video frames an utterance of `num_samples` occupies: ceil(n / 640), at least one."""
    return max(1, -(-int(num_samples) // SAMPLES_PER_FRAME))


def level_db(block: np.ndarray) -> float:
    """RMS level in dBFS (full scale = 1.0); -120 for digital silence."""
    if block.size == 0:
        return -120.0
    rms = float(np.sqrt(np.mean(np.square(block, dtype=np.float64))))
    return max(-120.0, 20.0 * np.log10(max(rms, 1e-6)))


@dataclass
class SilenceGate:
    """Energy gate with hysteresis: opens at `open_db`, closes after `hang_frames` frames below `close_db`.

    The hang-over keeps the mouth generated through the short pauses between words, so it does not flicker
    back to the footage mid-sentence.
    """

    open_db: float = -42.0
    close_db: float = -50.0
    hang_frames: int = 5
    enabled: bool = True
    _open: bool = False
    _below: int = 0

    def reset(self) -> None:
        self._open, self._below = False, 0

    def __call__(self, level: float) -> bool:
        if not self.enabled:
            return True
        if level >= self.open_db:
            self._open, self._below = True, 0
        elif self._open and level < self.close_db:
            self._below += 1
            if self._below > self.hang_frames:
                self._open, self._below = False, 0
        elif self._open:
            self._below = 0
        return self._open


class MelStream:
    """Mel columns of one utterance, computed as its samples arrive (see module docstring).

    Keeps only the samples still needed (a few hundred ms), so a microphone utterance can last for hours.
    """

    def __init__(self):
        self.n = 0  # samples received
        self.finished = False
        self._last_x = 0.0  # previous raw sample, for pre-emphasis across chunks
        self._raw = np.zeros(0, np.float32)  # raw samples from _base (for the gate / audio blocks)
        self._emph = np.zeros(0, np.float64)  # pre-emphasised samples from _base
        self._base = 0
        self._mel = np.zeros((mel_audio.NUM_MELS, 0), np.float32)  # columns from _mel_base
        self._mel_base = 0
        self.columns = 0  # final mel columns computed so far

    # ------------------------------------------------------------------ input
    def push(self, pcm: np.ndarray) -> None:
        if self.finished:
            raise RuntimeError("push after finish")
        x = np.asarray(pcm, dtype=np.float32).reshape(-1)
        if x.size == 0:
            return
        x64 = x.astype(np.float64)
        emph = x64.copy()
        emph[0] -= mel_audio.PREEMPHASIS * self._last_x
        emph[1:] -= mel_audio.PREEMPHASIS * x64[:-1]
        self._last_x = float(x64[-1])
        self._raw = np.concatenate([self._raw, x])
        self._emph = np.concatenate([self._emph, emph])
        self.n += x.size
        self._compute_columns(self._stable_columns())

    def finish(self) -> None:
        """No more samples: the right-edge reflect padding is now known; compute the last columns."""
        if self.finished:
            return
        self.finished = True
        total = mel_audio.num_mel_frames(self.n) if self.n else 0
        if self.n <= N_FFT // 2:  # shorter than half an FFT: the reflect pad folds more than once
            if self.n:
                mel = mel_audio.melspectrogram(self._raw_since(0))
                self._append_mel(mel[:, self.columns:total])
            self.columns = total
            return
        self._compute_columns(total)

    # ------------------------------------------------------------------ queries
    @property
    def total_columns(self) -> int | None:
        """T = 1 + n // 200 once finished, else None."""
        return mel_audio.num_mel_frames(self.n) if self.finished and self.n else (0 if self.finished else None)

    def mel(self, start: int, stop: int) -> np.ndarray:
        """Columns [start, stop) (must be computed and not yet dropped)."""
        lo, hi = start - self._mel_base, stop - self._mel_base
        if lo < 0 or hi > self._mel.shape[1]:
            raise IndexError(f"mel columns [{start}, {stop}) not held (have {self._mel_base}..{self.columns})")
        return self._mel[:, lo:hi]

    def samples(self, start: int, stop: int) -> np.ndarray:
        """Raw samples [start, stop) clipped to what was received."""
        stop = min(stop, self.n)
        if start < self._base:
            raise IndexError(f"samples from {start} already dropped (base {self._base})")
        return self._raw[start - self._base:max(start, stop) - self._base]

    def forget_before(self, column: int, sample: int) -> None:
        """Drop mel columns before `column` and samples before `sample` (no longer needed)."""
        # a later SpeechEnd may move the next window back to the last 16 columns (end-of-audio rule)
        drop = min(column, self.columns - WINDOW_STEPS) - self._mel_base
        if drop > 0:
            self._mel = self._mel[:, drop:]
            self._mel_base += drop
        # keep what the next columns' frames (with left reflection) and the audio blocks still need
        keep_from = min(sample, max(0, self.columns * HOP - N_FFT // 2 - 1))
        if self.n <= N_FFT // 2 and not self.finished:
            return  # the whole utterance may still be needed by finish()
        drop = keep_from - self._base
        if drop > 0:
            self._raw = self._raw[drop:]
            self._emph = self._emph[drop:]
            self._base += drop

    # ------------------------------------------------------------------ internals
    def _raw_since(self, start: int) -> np.ndarray:
        return self._raw[start - self._base:]

    def _stable_columns(self) -> int:
        """Columns whose 800-sample frame lies inside the received samples (no right reflection needed)."""
        if self.n <= N_FFT // 2:  # column 0 reads the reflected sample 400
            return 0
        return (self.n - N_FFT // 2) // HOP + 1

    def _compute_columns(self, upto: int) -> None:
        start = self.columns
        if upto <= start:
            return
        n = self.n
        index = (np.arange(start, upto) * HOP - N_FFT // 2)[:, None] + np.arange(N_FFT)[None, :]
        index = np.abs(index)  # reflect at the start of the utterance
        if self.finished:
            index = np.where(index >= n, 2 * (n - 1) - index, index)  # reflect at its end
        elif index.max() >= n:
            raise AssertionError("column needs samples not received yet")
        frames = self._emph[index - self._base]
        self._append_mel(mel_audio.frames_to_mel(frames))
        self.columns = upto

    def _append_mel(self, mel: np.ndarray) -> None:
        self._mel = np.concatenate([self._mel, mel.astype(np.float32, copy=False)], axis=1)


def window_start(i: int) -> int:
    return mel_audio.mel_window_start(i)


class FeatureStage:
    """AudioFrame / SpeechStart / SpeechEnd / Flush in → SpeechStart, (MelFrame, AudioOutFrame)*, SpeechEnd out.

    One utterance is open at a time: audio without a SpeechStart opens one implicitly, a SpeechStart while
    one is open ends the open one first. MelFrame.pts = utterance pts + i * 40 ms (the engine re-stamps
    them on its output timeline).
    """

    def __init__(self, gate: SilenceGate | None = None):
        self.gate = gate if gate is not None else SilenceGate()
        self.stream: MelStream | None = None
        self.speech_id = 0
        self.pts0 = 0
        self.next_index = 0  # next video frame of the open utterance
        self.frames_out = 0
        self._gated: deque[tuple[float, bool]] = deque()  # (level, gate) of blocks next_index, next_index + 1, ...

    # ------------------------------------------------------------------ stage API
    def push(self, frame: Frame) -> list[Frame]:
        if isinstance(frame, AudioFrame):
            out: list[Frame] = []
            if self.stream is None:
                out += self._start(frame.speech_id, frame.pts_ns)
            self.stream.push(frame.pcm)
            self._gate_blocks()
            return out + self._emit_ready()
        if isinstance(frame, SpeechStartFrame):
            return self._end() + self._start(frame.speech_id, frame.pts_ns)
        if isinstance(frame, SpeechEndFrame):
            return self._end()
        if isinstance(frame, FlushFrame):
            return self.flush() + [frame]
        return [frame]

    def flush(self) -> list[Frame]:
        """Barge-in: forget the open utterance and its pending audio."""
        self.stream = None
        self.next_index = 0
        self.gate.reset()
        self._gated.clear()
        return []

    # ------------------------------------------------------------------ internals
    def _start(self, speech_id: int, pts: int) -> list[Frame]:
        self.stream = MelStream()
        self.speech_id, self.pts0, self.next_index = speech_id, pts, 0
        self.gate.reset()
        self._gated.clear()
        return [SpeechStartFrame(pts_ns=pts, speech_id=speech_id)]

    def _end(self) -> list[Frame]:
        if self.stream is None:
            return []
        stream = self.stream
        stream.finish()
        self._gate_blocks()
        out = self._emit_ready() if stream.n else []
        end_pts = self.pts0 + self.next_index * FRAME_NS
        self.stream = None
        return out + [SpeechEndFrame(pts_ns=end_pts, speech_id=self.speech_id)]

    def _emit_ready(self) -> list[Frame]:
        stream = self.stream
        out: list[Frame] = []
        while True:
            i = self.next_index
            s = window_start(i)
            if stream.finished:
                if i >= frames_for_samples(stream.n):
                    break
                total = stream.total_columns
                if s + WINDOW_STEPS > total:
                    s = total - WINDOW_STEPS
            elif s + WINDOW_STEPS > stream.columns:
                break
            if s < 0:  # utterance shorter than one window: pad with the silence floor on the left
                mel = np.concatenate([np.full((mel_audio.NUM_MELS, -s), -mel_audio.MAX_ABS_VALUE, np.float32),
                                      stream.mel(0, s + WINDOW_STEPS)], axis=1)
            else:
                mel = stream.mel(s, s + WINDOW_STEPS).copy()
            block = stream.samples(i * SAMPLES_PER_FRAME, (i + 1) * SAMPLES_PER_FRAME).copy()
            level, speech = self._gated.popleft()  # its window is complete, so its block is (or the audio ended)
            ahead = tuple(flag for _, flag in itertools.islice(self._gated, AHEAD_FLAGS))
            pts = self.pts0 + i * FRAME_NS
            out.append(MelFrame(pts_ns=pts, index=i, mel=mel, speech=speech, level_db=level,
                                speech_id=self.speech_id, ahead=ahead))
            out.append(AudioOutFrame(pts_ns=pts, pcm=block, speech=speech))
            self.next_index = i + 1
            self.frames_out += 1
            nxt = window_start(self.next_index)
            if stream.finished:
                nxt = min(nxt, max(0, (stream.total_columns or 0) - WINDOW_STEPS))
            stream.forget_before(nxt, self.next_index * SAMPLES_PER_FRAME)
        return out

    def _gate_blocks(self) -> None:
        """Run the gate on every 40 ms block whose samples are all there (every block once the utterance has
        ended), in order: the gate has memory (hysteresis, hang-over), so each block is judged exactly once."""
        stream = self.stream
        i = self.next_index + len(self._gated)
        end = frames_for_samples(stream.n) if stream.finished and stream.n else 0
        while (i + 1) * SAMPLES_PER_FRAME <= stream.n or i < end:
            level = level_db(stream.samples(i * SAMPLES_PER_FRAME, (i + 1) * SAMPLES_PER_FRAME))
            self._gated.append((level, self.gate(level)))
            i += 1

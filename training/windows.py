"""Where every training window starts: the alignment rules of docs/models.md §4 in one place.

Why a module of its own: a misaligned window does not crash, it silently trains a network that is one frame
(40 ms) off, which is exactly the bug the reference shipped (generator trained with the mel window of frame
j-1, inference using frame j). Keeping the arithmetic here makes it testable against those rules.

Conventions (25 fps video, 80 mel steps per second):
  * a *video window* is SYNC_T = 5 consecutive frames i..i+4 (0.2 s);
  * the *sync mel window* paired with it starts at mel_window_start(i) = int(80 * i / 25) and is 16 steps
    (0.2 s) long -- the same 0.2 s of time (SyncNet training, the sync loss, `sync-offset`);
  * the *generator mel window* of target frame j starts at mel_window_start(j + audio_offset):
    audio_offset 0 is what inference feeds (models.audio.mel_windows), -1 reproduces the reference trainer.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from models.audio import MEL_STEPS_PER_SECOND, WINDOW_STEPS, mel_window_start

FPS = 25.0
SYNC_T = 5  # frames per SyncNet window (reference `syncnet_T`)
MEL_STEPS = WINDOW_STEPS  # 16 mel frames = 200 ms (reference `syncnet_mel_step_size`)
MIN_CLIP_FRAMES = 3 * SYNC_T + 1  # the reference needs more than 3 * syncnet_T frames in a clip


def mel_start(frame: int, audio_offset: int = 0) -> int | None:
    """First mel step of the 16-step window for video frame `frame` shifted by `audio_offset` frames.

    None when the shifted frame is before the start of the clip (no audio there).
    """
    shifted = int(frame) + int(audio_offset)
    if shifted < 0:
        return None
    return mel_window_start(shifted, FPS)


def mel_window_fits(start: int | None, num_mel_frames: int) -> bool:
    """A window is usable only if all 16 steps exist (the reference redraws the sample otherwise)."""
    return start is not None and start >= 0 and start + MEL_STEPS <= num_mel_frames


def sync_mel_start(first_frame: int, shift: int = 0) -> int | None:
    """Mel window paired with video frames first_frame..first_frame+4 (`shift` frames later for a sweep)."""
    return mel_start(first_frame, shift)


def generator_mel_starts(first_frame: int, audio_offset: int = 0) -> list[int | None]:
    """Per-frame generator windows for target frames first_frame..first_frame+4 (reference `indiv_mels`)."""
    return [mel_start(first_frame + k, audio_offset) for k in range(SYNC_T)]


def window_frames(first_frame: int) -> range:
    return range(int(first_frame), int(first_frame) + SYNC_T)


def video_span_seconds(first_frame: int) -> tuple[float, float]:
    """[start, end) in seconds covered by the 5 frames first_frame..first_frame+4."""
    return first_frame / FPS, (first_frame + SYNC_T) / FPS


def mel_span_seconds(start: int) -> tuple[float, float]:
    """[start, end) in seconds covered by 16 mel steps starting at `start` (step m is centred at m/80 s)."""
    return start / MEL_STEPS_PER_SECOND, (start + MEL_STEPS) / MEL_STEPS_PER_SECOND


def frames_complete(present: set[int] | frozenset[int], first_frame: int) -> bool:
    return all(f in present for f in window_frames(first_frame))


def sync_window_starts(frames: Sequence[int] | np.ndarray, num_mel_frames: int, shifts: Iterable[int] = (0,)) -> np.ndarray:
    """First frames i whose 5 frames all exist (no detection gap) and whose mel window fits for every shift."""
    present = set(int(f) for f in frames)
    shifts = tuple(shifts)
    starts = [i for i in sorted(present)
              if frames_complete(present, i) and all(mel_window_fits(sync_mel_start(i, s), num_mel_frames) for s in shifts)]
    return np.asarray(starts, dtype=np.int64)


def generator_window_starts(frames: Sequence[int] | np.ndarray, num_mel_frames: int, audio_offset: int = 0) -> np.ndarray:
    """Target windows usable by the Wav2Lip trainer: frames present, the sync mel window and all five
    per-frame generator windows complete (with audio_offset -1 this excludes frame 0, as in the reference)."""
    starts = sync_window_starts(frames, num_mel_frames)
    keep = [i for i in starts
            if all(mel_window_fits(s, num_mel_frames) for s in generator_mel_starts(int(i), audio_offset))]
    return np.asarray(keep, dtype=np.int64)


def lower_half(image: np.ndarray) -> np.ndarray:
    """Rows S/2 .. S-1 of an S x S (x C) image: the mouth half every SyncNet and disc_qual looks at."""
    size = image.shape[0]
    return image[size // 2:]


def stack_window(frames: Sequence[np.ndarray]) -> np.ndarray:
    """5 H x W x 3 BGR uint8 frames -> 15 x H x W float32 in [0, 1], frame-major channels (reference order)."""
    stacked = np.concatenate(list(frames), axis=2)  # H x W x 15: frame 0 BGR, frame 1 BGR, ...
    return np.ascontiguousarray(stacked.transpose(2, 0, 1), dtype=np.float32) / np.float32(255.0)

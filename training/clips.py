"""One LRS2-shaped clip folder: numbered JPEG face crops plus a WAV, and the per-process caches behind it.

Layouts accepted (docs/models.md §11): Rudrabha `0.jpg, 1.jpg, ...` + `audio.wav`; primepake `00000.jpg, ...` +
`synced.wav` (or any single `.wav`). Gaps in the numbering (frames where detection failed) are kept as gaps:
windows touching one are never drawn.

Why caches: the reference decoded the whole clip's audio and recomputed its mel for *every sample*, and
decoded/resized every JPEG every time. Here the mel is computed once per clip per worker process, and resized
crops can be kept in a bounded LRU (`frame_cache_mb`), which makes small data sets train at network speed.
"""
from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from models.audio import HOP, SAMPLE_RATE, num_mel_frames
from training.windows import sync_window_starts

AUDIO_NAMES = ("audio.wav", "synced.wav")


class ClipSkipped(Exception):
    """A clip that cannot be used; the message is the reason shown once to the user."""


@dataclass
class Clip:
    """What the samplers need to know about a clip without opening its files again."""

    path: Path
    frames: np.ndarray  # sorted frame numbers that exist on disk
    name_width: int  # 0 for `12.jpg`, 5 for `00012.jpg`
    audio_path: Path
    est_mel_frames: int  # from the WAV header; the real mel decides at sample time
    _names: dict[int, str] | None = field(default=None, repr=False)  # only for inconsistent zero padding
    sync_starts: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64), repr=False)  # usable windows

    @property
    def num_frames(self) -> int:
        return int(self.frames.size)

    def frame_path(self, number: int) -> Path:
        if self._names is not None:
            return self.path / self._names[number]
        return self.path / f"{number:0{self.name_width}d}.jpg"


def scan_clip(path: Path, min_frames: int) -> Clip:
    """Look at a clip folder (directory listing + WAV header only); raise ClipSkipped with the reason."""
    if not path.is_dir():
        raise ClipSkipped("folder not found")
    numbers: list[int] = []
    names: dict[int, str] = {}
    wavs: list[str] = []
    with os.scandir(path) as entries:
        for entry in entries:
            stem, dot, ext = entry.name.rpartition(".")
            ext = ext.lower()
            if ext == "jpg" and stem.isdigit():
                numbers.append(int(stem))
                names[int(stem)] = entry.name
            elif ext == "wav":
                wavs.append(entry.name)
    if not numbers:
        raise ClipSkipped("no numbered .jpg frames")
    if len(numbers) < min_frames:
        raise ClipSkipped(f"too short: {len(numbers)} frames (need at least {min_frames})")
    audio_name = next((n for n in AUDIO_NAMES if n in wavs), None) or (sorted(wavs)[0] if wavs else None)
    if audio_name is None:
        raise ClipSkipped("no audio.wav")
    audio_path = path / audio_name
    est = _mel_frames_from_header(audio_path)
    numbers.sort()
    width = len(names[numbers[0]]) - 4
    if all(names[n] == f"{n}.jpg" for n in numbers):
        width, table = 0, None
    elif all(names[n] == f"{n:0{width}d}.jpg" for n in numbers):
        table = None
    else:  # mixed padding: remember every name
        width, table = 0, names
    clip = Clip(path=path, frames=np.asarray(numbers, dtype=np.int64), name_width=width, audio_path=audio_path,
                est_mel_frames=est, _names=table)
    clip.sync_starts = sync_window_starts(clip.frames, est)
    if clip.sync_starts.size < 2:
        raise ClipSkipped(f"fewer than 2 complete 5-frame windows with audio ({clip.sync_starts.size}); "
                          f"{len(numbers)} frames, {audio_seconds(clip):.2f} s audio")
    return clip


def _mel_frames_from_header(audio_path: Path) -> int:
    """Number of mel frames the clip's audio will give, from the header (no decoding)."""
    import soundfile

    try:
        info = soundfile.info(str(audio_path))
        samples_16k = int(round(info.frames * SAMPLE_RATE / info.samplerate))
    except Exception:
        from models.audio import load_audio
        from stream_wav2lip.errors import UserError

        try:
            samples_16k = load_audio(audio_path).size
        except UserError as exc:
            raise ClipSkipped(f"audio unreadable ({str(exc).split(': ', 1)[-1]})") from None
    if samples_16k <= 0:
        raise ClipSkipped("audio has no samples")
    return num_mel_frames(samples_16k)


def audio_seconds(clip: Clip) -> float:
    return (clip.est_mel_frames - 1) * HOP / SAMPLE_RATE


class LRU:
    """A small byte- or count-bounded LRU map (one per worker process)."""

    def __init__(self, max_items: int | None = None, max_bytes: int | None = None):
        self.max_items, self.max_bytes = max_items, max_bytes
        self._data: OrderedDict = OrderedDict()
        self._bytes = 0

    def get(self, key):
        value = self._data.get(key)
        if value is not None:
            self._data.move_to_end(key)
        return value

    def put(self, key, value: np.ndarray) -> None:
        if self.max_bytes is not None and value.nbytes > self.max_bytes:
            return
        old = self._data.pop(key, None)
        if old is not None:
            self._bytes -= old.nbytes
        self._data[key] = value
        self._bytes += value.nbytes
        while self._data and ((self.max_items is not None and len(self._data) > self.max_items)
                              or (self.max_bytes is not None and self._bytes > self.max_bytes)):
            _, dropped = self._data.popitem(last=False)
            self._bytes -= dropped.nbytes

    def __len__(self) -> int:
        return len(self._data)


class ClipReader:
    """Reads frames (resized to the variant's face size) and mels of indexed clips, with caches."""

    def __init__(self, clips: list[Clip], image_size: int, frame_cache_mb: float = 0.0, mel_cache_clips: int = 4096):
        self.clips = clips
        self.image_size = int(image_size)
        self._frames = LRU(max_bytes=int(frame_cache_mb * 1024 * 1024)) if frame_cache_mb > 0 else None
        self._mels = LRU(max_items=mel_cache_clips)
        self.bad_frames: set[tuple[int, int]] = set()
        self.warned: set[int] = set()

    def mel(self, clip_index: int) -> np.ndarray:
        """(80, T) mel of the whole clip, computed once per process (docs/models.md §3 front-end)."""
        cached = self._mels.get(clip_index)
        if cached is None:
            from models.audio import load_audio, melspectrogram

            cached = melspectrogram(load_audio(self.clips[clip_index].audio_path))
            self._mels.put(clip_index, cached)
        return cached

    def frame(self, clip_index: int, number: int) -> np.ndarray | None:
        """S x S x 3 BGR uint8 crop (OpenCV bilinear resize, like the reference), or None if unreadable."""
        key = (clip_index, number)
        if key in self.bad_frames:
            return None
        if self._frames is not None:
            cached = self._frames.get(key)
            if cached is not None:
                return cached
        import cv2

        image = cv2.imread(str(self.clips[clip_index].frame_path(number)), cv2.IMREAD_COLOR)
        if image is None:
            self.bad_frames.add(key)
            if clip_index not in self.warned:
                self.warned.add(clip_index)
                import warnings

                warnings.warn(f"{self.clips[clip_index].frame_path(number)}: unreadable frame; windows touching it "
                              "are skipped", stacklevel=2)
            return None
        if image.shape[0] != self.image_size or image.shape[1] != self.image_size:
            image = cv2.resize(image, (self.image_size, self.image_size))
        if self._frames is not None:
            self._frames.put(key, image)
        return image

    def window(self, clip_index: int, first_frame: int) -> list[np.ndarray] | None:
        """The 5 frames first_frame..first_frame+4, or None if any is unreadable."""
        out = []
        for number in range(first_frame, first_frame + 5):
            image = self.frame(clip_index, number)
            if image is None:
                return None
            out.append(image)
        return out

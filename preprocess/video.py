"""Decode any video FFmpeg reads into exactly 25 frames per second, chosen by timestamp.

Why by timestamp: phones and screen recorders write variable-frame-rate files (frames 33 ms and 67 ms apart
in the same clip); counting frames would drift the picture away from the sound. Output frame i is the source
frame whose presentation time is nearest to origin + i/25 s, where the origin is the earliest stream start
(so audio sample 0 and frame 0 describe the same instant). Duplicating/dropping frames this way is what
FFmpeg's `fps` filter does too; no blending, so every output frame is a real, sharp picture.

Display rotation (portrait phone clips stored landscape + a rotation tag) is applied so faces are upright.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from stream_wav2lip.errors import UserError

FPS = 25


@dataclass(frozen=True)
class VideoInfo:
    path: Path
    width: int  # after rotation
    height: int
    source_fps: float  # average
    duration_s: float  # estimate from metadata (exact count comes from decoding)
    codec: str
    has_audio: bool
    origin_s: float  # time of output frame 0
    audio_start_s: float | None

    @property
    def expected_frames(self) -> int:
        return max(1, int(round(self.duration_s * FPS)))


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:160]


def probe(path: str | Path) -> VideoInfo:
    """Open the container and check that it has a decodable video stream; one-line UserError otherwise."""
    import av

    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: file not found")
    if not path.is_file():
        raise UserError(f"{path}: not a file")
    if path.stat().st_size == 0:
        raise UserError(f"{path}: empty file (0 bytes)")
    try:
        container = av.open(str(path))
    except Exception as exc:  # av.error.* for every unreadable / unknown / truncated container
        raise UserError(f"{path}: not a readable video ({_short(exc)})") from None
    with container:
        if not container.streams.video:
            kind = "audio-only file" if container.streams.audio else "no video stream"
            raise UserError(f"{path}: {kind}, nothing to track (give a video of the face)")
        v = container.streams.video[0]
        width, height = int(v.codec_context.width or 0), int(v.codec_context.height or 0)
        if width <= 0 or height <= 0:
            raise UserError(f"{path}: video stream has no picture size (corrupt header?)")
        v_start = float(v.start_time * v.time_base) if v.start_time is not None else 0.0
        a = container.streams.audio[0] if container.streams.audio else None
        a_start = None
        if a is not None:
            a_start = float(a.start_time * a.time_base) if a.start_time is not None else v_start
        origin = min(v_start, a_start) if a_start is not None else v_start
        if v.duration is not None:
            duration = float(v.duration * v.time_base)
        elif container.duration is not None:
            duration = container.duration / 1e6
        else:
            duration = 0.0
        fps = float(v.average_rate) if v.average_rate else 0.0
        codec = v.codec_context.name
    return VideoInfo(path, width, height, fps, duration, codec, a is not None, origin, a_start)


def _rotated(img: np.ndarray, rotation: float) -> np.ndarray:
    """Apply a display-matrix rotation (degrees, counter-clockwise as FFmpeg reports it)."""
    r = int(round(rotation / 90.0)) % 4
    return np.ascontiguousarray(np.rot90(img, k=r)) if r else img


def iter_frames_25fps(info: VideoInfo, max_frames: int | None = None) -> Iterator[np.ndarray]:
    """Yield BGR uint8 frames at exactly 25 fps (see module doc). Decoding errors after the first frame end the
    clip early (what a truncated recording allows); a file with no decodable frame raises UserError."""
    import av

    step = 1.0 / FPS
    emitted = 0
    held: np.ndarray | None = None
    held_t = 0.0
    last_gap = step
    try:
        container = av.open(str(info.path))
    except Exception as exc:
        raise UserError(f"{info.path}: not a readable video ({_short(exc)})") from None
    with container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        frames = container.decode(stream)
        index = 0
        while True:
            try:
                frame = next(frames)
            except StopIteration:
                break
            except Exception as exc:
                if held is None:
                    raise UserError(f"{info.path}: cannot decode video ({_short(exc)})") from None
                break  # truncated tail: keep what decoded
            t = frame.time if frame.time is not None else info.origin_s + index / max(info.source_fps, 1.0)
            index += 1
            img = _rotated(frame.to_ndarray(format="bgr24"), getattr(frame, "rotation", 0) or 0)
            if held is not None:
                last_gap = max(t - held_t, 1e-3)
                switch = (held_t + t) / 2.0  # output times before this midpoint are nearer the held frame
                while info.origin_s + emitted * step <= switch:
                    yield held
                    emitted += 1
                    if max_frames is not None and emitted >= max_frames:
                        return
            held, held_t = img, t
        if held is None:
            raise UserError(f"{info.path}: the video stream has no decodable frames")
        end = held_t + last_gap  # the last frame lasts as long as the gap before it
        while info.origin_s + emitted * step < end - step / 2 or emitted == 0:
            yield held
            emitted += 1
            if max_frames is not None and emitted >= max_frames:
                return


def prefetch(frames: Iterator[np.ndarray], depth: int = 4) -> Iterator[np.ndarray]:
    """Run a frame iterator in a background thread, `depth` frames ahead.

    Decoding and the YUV->BGR conversion release the GIL, so on two cores they overlap with face tracking in
    the caller's thread instead of adding to it. Exceptions (UserError for a broken file) are re-raised here.
    """
    import queue
    import threading

    q: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def worker() -> None:
        try:
            for item in frames:
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(done)
        except BaseException as exc:  # handed to the consumer
            q.put(exc)

    thread = threading.Thread(target=worker, name="preprocess-decode", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():
            try:
                q.get_nowait()
            except queue.Empty:
                thread.join(0.05)

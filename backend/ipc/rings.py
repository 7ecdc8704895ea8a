"""Sinks that publish finished frames and audio blocks into the shared-memory rings that OBS reads.

The byte layout lives in `shm_protocol` (shared with the OBS side); these classes only add what
the backend needs: the frame written straight into the slot in the ring's pixel format, and the `speech` flag.
Neither sink ever waits for a reader.

Why two pixel formats: `serve` composes I420 frames (backend/yuv.py), and OBS takes I420 as it is (its
colour conversion runs on the GPU as the frame is drawn). An I420 ring is 1.5 bytes a pixel instead of BGRA's
4: the publisher copies the planes instead of converting them (at 1080p, ~0.4 ms instead of ~2.5 ms of a core
per frame), and OBS copies 2.7x fewer bytes out of the slot. A BGRA ring remains for frames that need alpha (a
transparent backdrop) or are BGR anyway (an odd frame size, a backdrop); each sink also converts a frame of
the other kind, so the format is an optimisation and never an error.
"""
from __future__ import annotations

import numpy as np

from backend.frames import SAMPLE_RATE, SAMPLES_PER_FRAME
from backend.yuv import I420, frame_size, from_bgr
from shm_protocol.layout import FLAG_REPEAT, FLAG_SPEECH, PIXFMT_BGRA8, PIXFMT_I420, audio_header, video_header
from shm_protocol.names import audio_name, video_name
from shm_protocol.writer import RingWriter


def pixel_format_of(image: "np.ndarray | I420") -> int:
    """The ring format that carries `image` without a conversion: I420 planes, or BGRA for BGR(A) pixels."""
    return PIXFMT_I420 if isinstance(image, I420) else PIXFMT_BGRA8


class VideoRingSink:
    """Full-resolution frames for OBS (I420 or BGRA: `pixel_format`); 4 slots are enough because OBS shows only
    the newest one."""

    def __init__(self, session: str, width: int, height: int, slots: int = 4, pixel_format: int = PIXFMT_BGRA8):
        self.width, self.height = width, height
        self.pixel_format = pixel_format
        self.writer = RingWriter(video_name(session), video_header(width, height, slots, pixel_format))

    def publish(self, pts_ns: int, avatar_index: int, image: "np.ndarray | I420", speech: bool = False,
                repeated: bool = False) -> int:
        """Frame at pts (BGR, BGRA or I420); `avatar_index`/`speech` describe the image shown (for a repeat: the
        earlier frame's)."""
        import cv2

        size = frame_size(image)
        if size != (self.height, self.width):
            raise ValueError(f"frame {size} does not match the ring {self.height}x{self.width}")
        view = self.writer.video_view(self.writer.published)
        if self.pixel_format == PIXFMT_I420:
            planes = image if isinstance(image, I420) else from_bgr(np.ascontiguousarray(image[..., :3]))
            fill = lambda _flat: _copy_i420(planes, view)  # noqa: E731
        elif isinstance(image, I420):
            fill = lambda _flat: image.to_bgra(dst=view)  # noqa: E731
        elif image.ndim == 3 and image.shape[2] == 4:
            fill = lambda _flat: np.copyto(view, image)  # noqa: E731
        else:
            fill = lambda _flat: cv2.cvtColor(image, cv2.COLOR_BGR2BGRA, dst=view)  # noqa: E731
        flags = (FLAG_SPEECH if speech else 0) | (FLAG_REPEAT if repeated else 0)
        return self.writer.publish(pts_ns, avatar_index, flags, fill=fill)

    def heartbeat(self) -> None:
        self.writer.heartbeat()

    def close(self) -> None:
        self.writer.close()


def _copy_i420(image: I420, planes: np.ndarray) -> None:
    """`image`'s planes into an I420 slot view ((H * 3/2, W): Y rows, then U and V two rows to a row)."""
    h, w = image.height, image.width
    packed = image.packed()
    if packed is not None:  # a frame-cache or packed frame: one copy
        np.copyto(planes, packed)
        return
    np.copyto(planes[:h], image.y)
    quarter = (h // 2) * (w // 2)
    flat = planes[h:].reshape(-1)
    flat[:quarter] = image.u.reshape(-1)
    flat[quarter:] = image.v.reshape(-1)


class AudioRingSink:
    """16 kHz mono float32 blocks of one video frame each (640 samples), stamped with that frame's pts."""

    def __init__(self, session: str, slots: int = 128):
        self.writer = RingWriter(audio_name(session), audio_header(SAMPLE_RATE, 1, SAMPLES_PER_FRAME, slots))

    def publish(self, pts_ns: int, pcm: np.ndarray, speech: bool = False) -> int:
        pcm = np.ascontiguousarray(pcm, dtype=np.float32).reshape(-1)
        if pcm.size > SAMPLES_PER_FRAME:
            raise ValueError(f"audio block of {pcm.size} samples exceeds {SAMPLES_PER_FRAME}")
        return self.writer.publish(pts_ns, pcm.size, FLAG_SPEECH if speech else 0, payload=pcm)

    def heartbeat(self) -> None:
        self.writer.heartbeat()

    def close(self) -> None:
        self.writer.close()

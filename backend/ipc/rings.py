"""Sinks that publish finished frames and audio blocks into the shared-memory rings that OBS reads.

The byte layout lives in `shm_protocol` (shared with the OBS side); these classes only add what
the backend needs: the BGR→BGRA (or I420→BGRA) conversion written straight into the slot (no intermediate
copy) and the `speech` flag. Neither sink ever waits for a reader.
"""
from __future__ import annotations

import numpy as np

from backend.frames import SAMPLE_RATE, SAMPLES_PER_FRAME
from backend.yuv import I420, frame_size
from shm_protocol.layout import FLAG_REPEAT, FLAG_SPEECH, audio_header, video_header
from shm_protocol.names import audio_name, video_name
from shm_protocol.writer import RingWriter


class VideoRingSink:
    """Full-resolution BGRA frames for OBS; 4 slots are enough because OBS shows only the newest one."""

    def __init__(self, session: str, width: int, height: int, slots: int = 4):
        self.width, self.height = width, height
        self.writer = RingWriter(video_name(session), video_header(width, height, slots))

    def publish(self, pts_ns: int, avatar_index: int, image: "np.ndarray | I420", speech: bool = False,
                repeated: bool = False) -> int:
        """Frame at pts (BGR, BGRA or I420); `avatar_index`/`speech` describe the image shown (for a repeat: the
        earlier frame's)."""
        import cv2

        size = frame_size(image)
        if size != (self.height, self.width):
            raise ValueError(f"frame {size} does not match the ring {self.height}x{self.width}")
        view = self.writer.video_view(self.writer.published)
        if isinstance(image, I420):
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

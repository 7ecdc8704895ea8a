"""PNG frame dump (`render --frames-dir`): lossless frames for inspection and exact comparisons."""
from __future__ import annotations

from pathlib import Path

import cv2

from backend.frames import AudioOutFrame, VideoFrame


class PngSink:
    """Writes frame k as `<dir>/<k:06d>.png` (k = output frame number)."""

    def __init__(self, folder: str | Path, compression: int = 1):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.params = [cv2.IMWRITE_PNG_COMPRESSION, int(compression)]
        self.count = 0

    def write(self, video: VideoFrame, audio: AudioOutFrame | None = None) -> None:
        path = self.folder / f"{video.index:06d}.png"
        if not cv2.imwrite(str(path), video.image, self.params):
            raise OSError(f"{path}: cannot write PNG")
        self.count += 1

    def close(self) -> None:
        pass

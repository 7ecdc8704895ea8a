"""Optional preview window (`serve --preview`): shows the newest published frame in an OpenCV window.

It runs in its own thread and only ever looks at the latest frame, so a slow or hidden window never holds
the clock back. Closing the window (or pressing Esc/q) just stops the preview.
"""
from __future__ import annotations

import logging
import threading

from backend.yuv import I420

log = logging.getLogger(__name__)


class PreviewSink:
    def __init__(self, title: str = "stream-wav2lip"):
        self.title = title
        self._latest = None
        self._event = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="s2l-preview", daemon=True)
        self._thread.start()

    def __call__(self, _plan, image) -> None:
        self._latest = image
        self._event.set()

    def _run(self) -> None:
        import cv2

        try:
            cv2.namedWindow(self.title, cv2.WINDOW_NORMAL)
            while not self._stop.is_set():
                if self._event.wait(0.1):
                    self._event.clear()
                    image = self._latest
                    cv2.imshow(self.title, image.to_bgr() if isinstance(image, I420) else image)
                if cv2.waitKey(1) in (27, ord("q")):
                    break
            cv2.destroyWindow(self.title)
        except cv2.error as exc:
            log.warning("preview window unavailable: %s", exc)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(1.0)

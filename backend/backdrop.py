"""What the finished frame is laid over: the footage's own background, a colour, an image, or transparency.

The compositor calls `Backdrop.apply` last, after the generated mouth is pasted (the mouth lies inside the face,
which the matte keeps opaque), with the matte of the avatar frame actually shown: the idle's cross-fades blend
the two frames' mattes like their pixels, and an action clip's frame uses that clip's matte. The compositing
itself is `backend.background.composite` (≤ 2 ms per 1080p frame on one core). One Backdrop per engine, so
`render` and `serve` show the same thing.
"""
from __future__ import annotations

import logging

import numpy as np

from backend.background import Background, composite

log = logging.getLogger(__name__)


class Backdrop:
    """`apply(image, ff, package_of)`: `image` over the background through the matte of `ff`'s frame."""

    def __init__(self, background: Background, package):
        self.background = background
        self.active = background.needs_matte
        if self.active and not getattr(package, "has_matte", False):
            log.warning("%s has no matte: the avatar stays opaque (add one with `stream-wav2lip preprocess "
                        "--matte-only %s`)", getattr(package, "name", "the avatar"), getattr(package, "root", ""))

    def apply(self, image: np.ndarray, ff, package_of) -> np.ndarray:
        """`package_of(clip)` opens the package of a clip (None: the main footage)."""
        if not self.active:
            return image
        alpha = self._alpha(package_of(ff.clip), ff.avatar_index)
        if alpha is not None and ff.other_index is not None and ff.other_weight > 0.0:
            other = self._alpha(package_of(ff.other_clip), ff.other_index)
            if other is not None:
                import cv2

                alpha = cv2.addWeighted(alpha, 1.0 - ff.other_weight, other, ff.other_weight, 0.0)
        # colour/image over a frame the compositor made for this output (writable): in place, no new frame
        in_place = image.flags.writeable and not self.background.transparent and alpha is not None
        return composite(image, alpha, self.background, out=image if in_place else None)

    @staticmethod
    def _alpha(package, index: int) -> np.ndarray | None:
        return package.alpha(index) if getattr(package, "has_matte", False) else None

"""The detail stage: an upsampled low-resolution generated face + the avatar's own exemplars -> a sharp face.

Why it looks like this (issue 17):
* Only the band the network cannot draw is added: `face + detail`, where an exemplar's detail is the crop
  minus its own round trip through the native size (backend/detail/library.py). The low frequencies, i.e. the
  mouth shape the network chose (the lip-sync), are not touched.
* Which exemplar: the nearest in the library's low-resolution thumbnail space. Its detail is moved onto the
  generated mouth by a dense optical flow between two small thumbnails (both below the native resolution,
  where generated and real faces look alike), so teeth and lip lines land where the network put the mouth.
* How much: a global weight from the match distance (a poor match adds little) times a per-pixel weight from
  how well the aligned thumbnail agrees with the generated one there (no teeth painted onto closed lips).
* Stable over time: the chosen exemplar is kept until another one is clearly closer (SWITCH_RATIO); a newly
  chosen one fades in over a few frames while the old one fades out (WEIGHT_RATE), so teeth never flicker.
  `reset()` forgets the choice (a new utterance may start anywhere).
* Cheap enough for the post-processing thread (<= 3 ms per 1080p face on one core): matching is one small
  matrix-vector product, the flow runs on ~64x40 pixel thumbnails, and only the lower-face box is touched.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from backend.detail.library import (ExemplarLibrary, descriptor, face_size_in_frame, grey, load_or_build,
                                    thumbnail)

SWITCH_RATIO = 0.8  # a new exemplar replaces the current one only when its distance is below this share of it
WEIGHT_RATE = 0.5  # share of the way to its target weight an exemplar's weight moves per frame
MIN_WEIGHT = 0.05  # a fading exemplar below this weight is dropped
MATCH_SOFTNESS = 2.0  # global weight = exp(-(distance / (MATCH_SOFTNESS * library scale))^2)
PIXEL_TOLERANCE = 12.0  # grey levels of thumbnail disagreement at which an exemplar's detail is down to 1/e
EDGE_FEATHER = 0.12  # share of the box's smaller side over which the detail fades in from its edges
MIN_UPSCALE = 1.15  # below this ratio of working size to native size there is no missing detail worth adding


def detail_size(package, crop: str = "head", native_size: int = 96, limit: int = 640) -> int:
    """The working size for an avatar: the side its `crop` square really has in the frame (multiple of 8,
    at least the native size, at most `limit`). A face smaller on screen than the network has no detail to
    gain."""
    side = face_size_in_frame(package, crop)
    return int(min(limit, max(native_size, 8 * int(np.ceil(side / 8.0)))))


def needs_detail(package, crop: str, native_size: int) -> bool:
    """True when the face is drawn on screen clearly larger than the network's native size."""
    return detail_size(package, crop, native_size) >= MIN_UPSCALE * native_size


@dataclass
class _Active:
    exemplar: int  # row in the library
    weight: float  # current blend weight (moves towards its target by WEIGHT_RATE per frame)


class DetailStage:
    """Adds the avatar's own high-frequency detail to upsampled low-resolution generated faces.

    `DetailStage(package, crop, native_size)`: `crop` is the generator's crop space ("head", "heads", "body"),
    `native_size` the size it computes at. `size` (default: the face's side in the frame, `detail_size`) is the
    working size S: `apply` returns (S, S, 3) faces, and a face given at another size is first brought to S
    with bicubic interpolation. `frames` restricts the library (the benchmark's held-out split). The library is
    built on first use (or in `__init__` with `eager=True`) and cached in <avatar>/.cache/.
    """

    def __init__(self, package, crop: str = "head", native_size: int = 96, *, size: int | None = None,
                 frames=None, eager: bool = False, progress: bool = False, library: ExemplarLibrary | None = None):
        self.package = package
        self.crop = crop
        self.native_size = int(native_size)
        self.size = int(size) if size else detail_size(package, crop, self.native_size)
        self._frames = frames
        self._progress = progress
        self._lib = library
        self._flow = None
        self._active: list[_Active] = []
        self._feather = None
        if eager:
            self.library

    # ------------------------------------------------------------------ set-up
    @property
    def enabled(self) -> bool:
        """False when the working size is not above the native size: `apply` then only resizes."""
        return self.size >= MIN_UPSCALE * self.native_size

    @property
    def library(self) -> ExemplarLibrary:
        if self._lib is None:
            self._lib = load_or_build(self.package, self.crop, self.size, self.native_size, self._frames,
                                      self._progress)
        return self._lib

    def _flow_engine(self):
        if self._flow is None:
            dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST)
            dis.setFinestScale(0)  # the thumbnails are tiny: the finest level is where the mouth is
            dis.setPatchSize(6)
            dis.setPatchStride(3)
            self._flow = dis
        return self._flow

    def _edge_weight(self) -> np.ndarray:
        """(bh, bw) float32: 1 inside the box, ramping to 0 at its edges (no visible box outline)."""
        if self._feather is None:
            bh, bw = self.library.box_shape
            ramp = max(2.0, EDGE_FEATHER * min(bh, bw))
            ry = np.clip(np.minimum(np.arange(bh) + 0.5, bh - 0.5 - np.arange(bh)) / ramp, 0, 1)
            rx = np.clip(np.minimum(np.arange(bw) + 0.5, bw - 0.5 - np.arange(bw)) / ramp, 0, 1)
            self._feather = (ry[:, None] * rx[None, :]).astype(np.float32)
        return self._feather

    def reset(self) -> None:
        """Forget the temporal state (call between utterances, like Generator.reset)."""
        self._active = []

    # ------------------------------------------------------------------ work
    def apply(self, face: np.ndarray, avatar_index: int = 0) -> np.ndarray:
        """(s, s, 3) uint8 BGR generated face (any s; brought to S bicubically) -> (S, S, 3) uint8 with detail.

        `avatar_index` is the avatar frame the face was generated on; the box is fixed per avatar, so it is
        only used to keep the interface of the other per-frame stages (placement is the compositor's)."""
        s = self.size
        if face.shape[0] != s or face.shape[1] != s:
            face = cv2.resize(face, (s, s), interpolation=cv2.INTER_CUBIC)
        if not self.enabled:
            return np.ascontiguousarray(face)
        lib = self.library
        x0, y0, x1, y1 = lib.box
        out = face.copy()
        g = grey(face[y0:y1, x0:x1])
        dist = self._distances(descriptor(g, lib.descriptor_shape))
        self._choose(dist)
        if not self._active:
            return out
        target = thumbnail(g, lib.flow_shape)
        detail = np.zeros(g.shape, np.float32)
        for act in self._active:
            quality = float(np.exp(-(dist[act.exemplar] / (MATCH_SOFTNESS * lib.scale)) ** 2))
            if act.weight * quality < 0.01:
                continue
            detail += self._aligned_detail(act.exemplar, target) * np.float32(act.weight * quality)
        detail *= self._edge_weight()
        region = out[y0:y1, x0:x1]
        add = cv2.merge([detail, detail, detail])
        out[y0:y1, x0:x1] = cv2.add(region, add, dtype=cv2.CV_8U) if False else \
            np.clip(region.astype(np.float32) + add + 0.5, 0, 255).astype(np.uint8)
        return out

    def _distances(self, q: np.ndarray) -> np.ndarray:
        lib = self.library
        sq = getattr(self, "_sq", None)
        if sq is None or len(sq) != len(lib):
            sq = self._sq = (lib.descriptors ** 2).sum(1)
        d2 = sq + float(q @ q) - 2.0 * (lib.descriptors @ q)
        return np.sqrt(np.maximum(d2, 0.0))

    def _choose(self, dist: np.ndarray) -> None:
        """Keep the current exemplar unless one is clearly closer; move every weight towards its target."""
        best = int(np.argmin(dist))
        current = self._active[-1].exemplar if self._active else None
        if current is None:
            self._active = [_Active(best, 1.0)]
            return
        if best != current and dist[best] < SWITCH_RATIO * dist[current]:
            self._active = [a for a in self._active if a.exemplar != best] + [_Active(best, 0.0)]
        for a in self._active[:-1]:
            a.weight *= 1.0 - WEIGHT_RATE
        last = self._active[-1]
        last.weight += WEIGHT_RATE * (1.0 - last.weight)
        self._active = [a for a in self._active[:-1] if a.weight >= MIN_WEIGHT][-1:] + [last]

    def _aligned_detail(self, k: int, target: np.ndarray) -> np.ndarray:
        """Exemplar k's detail moved onto the generated mouth, times the per-pixel agreement weight."""
        lib = self.library
        source = lib.thumbs[k]
        flow = self._flow_engine().calc(target, source, None)  # target(x) ~ source(x + flow(x))
        fh, fw = target.shape
        gy, gx = np.mgrid[0:fh, 0:fw].astype(np.float32)
        moved = cv2.remap(source, gx + flow[..., 0], gy + flow[..., 1], cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)
        err = cv2.GaussianBlur(cv2.absdiff(moved, target).astype(np.float32), (0, 0), 1.0)
        agree = np.exp(-(err / PIXEL_TOLERANCE) ** 2)
        bh, bw = lib.box_shape
        sx, sy = bw / fw, bh / fh
        flow_big = cv2.resize(flow, (bw, bh), interpolation=cv2.INTER_LINEAR)
        map_x, map_y = self._grid(bh, bw)
        map_x = map_x + flow_big[..., 0] * np.float32(sx)
        map_y = map_y + flow_big[..., 1] * np.float32(sy)
        d = cv2.remap(lib.detail[k].astype(np.float32), map_x, map_y, cv2.INTER_LINEAR,
                      borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        return d * cv2.resize(agree, (bw, bh), interpolation=cv2.INTER_LINEAR)

    def _grid(self, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
        grid = getattr(self, "_grid_cache", None)
        if grid is None or grid[0].shape != (h, w):
            gy, gx = np.mgrid[0:h, 0:w].astype(np.float32)
            grid = self._grid_cache = (gx, gy)
        return grid

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
* Not twice: networks differ in softness (and a 288 network on a 400 px face keeps much of the band), so the
  share of the footage's detail band the generated faces still lack is measured every few frames and scales
  what is added (a face that already has its detail gets little).
* Stable over time: the chosen exemplar is kept until another one is clearly closer (SWITCH_RATIO); a newly
  chosen one fades in over a few frames while the old one fades out (WEIGHT_RATE), so teeth never flicker.
  `reset()` forgets the choice (a new utterance may start anywhere).
* Cheap enough for the post-processing thread (<= 3 ms per 1080p face on one core): matching is one small
  matrix-vector product, the flow runs on ~64x36 pixel thumbnails, and only the lower-face box is touched,
  with a handful of 8/16-bit OpenCV passes. It keeps temporal state: one stage per thread that composes.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from backend.detail.library import (DETAIL_OFFSET, SOFTNESS, ExemplarLibrary, descriptor, face_size_in_frame,
                                    load_or_build, round_trip, thumbnail)

SWITCH_RATIO = 0.8  # a new exemplar replaces the current one only when its distance is below this share of it
WEIGHT_RATE = 0.5  # share of the way to its target weight an exemplar's weight moves per frame
MIN_WEIGHT = 0.05  # a fading exemplar below this weight is dropped
MATCH_SOFTNESS = 4.0  # how fast the global weight falls past the library's own spacing (match_weight)
PIXEL_TOLERANCE = 16.0  # grey levels of thumbnail disagreement at which an exemplar's detail is down to 1/e
DETAIL_GAIN = 1.7  # detail strength of a good match, tuned on bench/detail.py (sharpness vs PSNR)
EDGE_FEATHER = 0.12  # share of the box's smaller side over which the detail fades in from its edges
GAIN_EVERY = 8  # frames between two measurements of how much detail the generator leaves out
GAIN_RATE = 0.3  # smoothing of that measurement
FLOW_FINEST_SCALE = 0  # DIS pyramid level the flow stops at: the thumbnails are tiny, 0 keeps their detail
REMAP_INTERPOLATION = cv2.INTER_LINEAR  # how the exemplar's detail is sampled along the flow
WEIGHT_UNIT = 128.0  # weights travel as 8-bit images: 1.0 = 128 leaves room for DETAIL_GAIN above 1
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
    last: np.ndarray | None = None  # its aligned, weighted detail on the latest frame it was aligned on
    last_strength: float = 1.0  # the strength `last` was computed with


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
        self._sq = None
        self._band = None  # mean square of the library's detail band
        self._missing = None  # smoothed share of that band the generated faces lack
        self._seen = 0
        self._tgrid = None
        self._sgrid = None
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
            dis.setFinestScale(FLOW_FINEST_SCALE)
            dis.setPatchSize(8)
            dis.setPatchStride(4)
            self._flow = dis
        return self._flow

    def reset(self) -> None:
        """Forget the temporal state (call between utterances, like Generator.reset)."""
        self._active = []

    # ------------------------------------------------------------------ work
    def apply(self, face: np.ndarray, avatar_index: int = 0) -> np.ndarray:
        """(s, s, 3) uint8 BGR generated face (any s; brought to S bicubically) -> (S, S, 3) uint8 with detail.

        `avatar_index` is the avatar frame the face was generated on; the box is fixed per avatar, so it is
        only used to keep the interface of the other per-frame stages (placement is the compositor's)."""
        s = self.size
        resized = face.shape[0] != s or face.shape[1] != s
        if resized:
            face = cv2.resize(face, (s, s), interpolation=cv2.INTER_CUBIC)
        if not self.enabled:
            return np.ascontiguousarray(face)
        lib = self.library
        x0, y0, x1, y1 = lib.box
        out = face if resized else np.array(face, copy=True)  # the caller's array is never written
        grey8 = cv2.cvtColor(face[y0:y1, x0:x1], cv2.COLOR_BGR2GRAY)
        target = thumbnail(grey8, lib.flow_shape)
        dist = self._distances(descriptor(target, lib.descriptor_shape))
        self._choose(dist)
        missing = self._missing_share(grey8)
        detail = None
        for n, act in enumerate(self._active):
            strength = DETAIL_GAIN * missing * act.weight * match_weight(float(dist[act.exemplar]), lib.scale)
            if strength < 0.01:
                continue
            if n == len(self._active) - 1 or act.last is None:
                d = act.last = self._aligned_detail(act.exemplar, target, strength)
                act.last_strength = strength
            else:  # fading out: its last alignment is kept (it is gone in a few frames), one flow per frame
                d = cv2.multiply(act.last, strength / act.last_strength, dtype=cv2.CV_16S)
            detail = d if detail is None else cv2.add(detail, d)
        if detail is not None:  # grey detail onto B, G and R alike; 8-bit saturating adds are the fast path
            region = out[y0:y1, x0:x1]
            up = cv2.convertScaleAbs(cv2.max(detail, 0))
            down = cv2.convertScaleAbs(cv2.min(detail, 0))
            cv2.add(region, cv2.merge([up, up, up]), dst=region)
            cv2.subtract(region, cv2.merge([down, down, down]), dst=region)
        return out

    def _missing_share(self, grey8: np.ndarray) -> float:
        """How much of the footage's detail band the generator left out (0..1, as an amplitude share).

        Networks differ in softness (and a 288 network on a 400 px face keeps much of the band): detail the
        face already has must not be added twice. Measured every GAIN_EVERY frames and smoothed, because it is
        a property of the generator, not of one frame."""
        if self._missing is None or self._seen % GAIN_EVERY == 0:
            lib = self.library
            if self._band is None:
                sample = lib.detail[::max(1, len(lib) // 32), ::2, ::2].astype(np.float32) - DETAIL_OFFSET
                self._band = max(1e-3, float(np.mean(sample * sample)))
            g = grey8.astype(np.float32)
            own = g - round_trip(g, self.size, self.native_size, SOFTNESS)
            share = float(np.sqrt(max(0.0, 1.0 - float(np.mean(own * own)) / self._band)))
            self._missing = share if self._missing is None else self._missing + GAIN_RATE * (share - self._missing)
        self._seen += 1
        return self._missing

    def _distances(self, q: np.ndarray) -> np.ndarray:
        lib = self.library
        if self._sq is None:
            self._sq = (lib.descriptors ** 2).sum(1)
        # einsum, not `@`: a BLAS call spins up its thread pool for this tiny product and costs milliseconds
        # on a busy machine (the post-processing thread must stay on one core)
        d2 = self._sq + float(np.einsum("j,j->", q, q)) - 2.0 * np.einsum("ij,j->i", lib.descriptors, q)
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

    def _aligned_detail(self, k: int, target: np.ndarray, strength: float) -> np.ndarray:
        """Exemplar k's detail moved onto the generated mouth, times `strength`, the per-pixel agreement of
        the aligned thumbnails and the box's edge feather: (bh, bw) int16 grey levels.

        The flow is computed, checked and turned into a sampling map at thumbnail size; only one resize of the
        map, one 8-bit remap and one weight multiply run at the box's full size."""
        lib = self.library
        source = lib.thumbs[k]
        flow = self._flow_engine().calc(target, source, None)  # target(x) ~ source(x + flow(x))
        small_grid, scale = self._small_grid()
        small_map = small_grid + flow * scale[None, None, :]  # full-size sampling positions, at thumbnail size
        moved = cv2.remap(source, flow + self._thumb_grid(), None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        err = cv2.GaussianBlur(cv2.absdiff(moved, target).astype(np.float32), (0, 0), 1.0)
        weight = np.exp(-(err / PIXEL_TOLERANCE) ** 2) * self._edge_weight_small() * np.float32(WEIGHT_UNIT * strength)
        bh, bw = lib.box_shape
        full_map = cv2.resize(small_map, (bw, bh), interpolation=cv2.INTER_LINEAR)
        d = cv2.remap(lib.detail[k], full_map, None, REMAP_INTERPOLATION, borderMode=cv2.BORDER_CONSTANT,
                      borderValue=DETAIL_OFFSET)
        w = cv2.resize(np.clip(np.rint(weight), 0, 255).astype(np.uint8), (bw, bh), interpolation=cv2.INTER_LINEAR)
        return cv2.multiply(cv2.subtract(d, DETAIL_OFFSET, dtype=cv2.CV_16S), w, scale=1.0 / WEIGHT_UNIT,
                            dtype=cv2.CV_16S)

    def _thumb_grid(self) -> np.ndarray:
        """(fh, fw, 2) float32 pixel positions of the thumbnail."""
        if self._tgrid is None:
            fh, fw = self.library.flow_shape
            gy, gx = np.mgrid[0:fh, 0:fw].astype(np.float32)
            self._tgrid = np.dstack([gx, gy])
        return self._tgrid

    def _small_grid(self) -> tuple[np.ndarray, np.ndarray]:
        """Thumbnail pixel centres in box pixels, and box pixels per thumbnail pixel (x, y)."""
        if self._sgrid is None:
            fh, fw = self.library.flow_shape
            bh, bw = self.library.box_shape
            scale = np.array([bw / fw, bh / fh], np.float32)
            self._sgrid = ((self._thumb_grid() + 0.5) * scale[None, None, :] - 0.5, scale)
        return self._sgrid

    def _edge_weight_small(self) -> np.ndarray:
        """(fh, fw) float32 at thumbnail size: 1 inside the box, ramping to 0 at its edges (no box outline)."""
        if self._feather is None:
            fh, fw = self.library.flow_shape
            ramp = max(1.0, EDGE_FEATHER * min(fh, fw))
            ry = np.clip(np.minimum(np.arange(fh) + 0.5, fh - 0.5 - np.arange(fh)) / ramp, 0, 1)
            rx = np.clip(np.minimum(np.arange(fw) + 0.5, fw - 0.5 - np.arange(fw)) / ramp, 0, 1)
            self._feather = (ry[:, None] * rx[None, :]).astype(np.float32)
        return self._feather


def match_weight(distance: float, scale: float) -> float:
    """Global weight of an exemplar from its thumbnail distance: 1 up to the library's own neighbour spacing
    (as close as two library frames usually are), then falling off (a poor match adds little detail)."""
    excess = max(0.0, distance - scale) / (MATCH_SOFTNESS * scale)
    return float(np.exp(-excess * excess))

"""The detail stage: an upsampled low-resolution generated face + the avatar's own exemplars -> a sharp face.

Why it looks like this (issue 17):
* Only the band the network cannot draw is added: `face + detail`, where an exemplar's detail is the crop
  minus its own round trip through the native size (backend/detail/library.py). The low frequencies, i.e. the
  mouth shape the network chose (the lip-sync), are not touched.
* Which exemplar: the nearest in the library's low-resolution thumbnail space (TOP_K of them: 1 by default, 2
  blend pixel by pixel by their agreement, +0.4 dB for twice the alignment cost). Its detail is moved onto the
  generated mouth by a dense optical flow between two thumbnails at about the network's own resolution (below
  it generated and real faces look alike; coarser thumbnails misplace the detail by more than its wavelength),
  so teeth and lip lines land where the network put the mouth. The flow only moves the *detail*: the lip
  contour the network drew stays where it is.
* How much: a global weight from the match distance (a poor match adds little) times a per-pixel weight from
  how well the aligned thumbnail agrees with the generated one there (no teeth painted onto closed lips),
  times the alignment precision (thumbnails coarser than the network's output: less of the band is trusted).
* Never more than real: the share of the footage's band the generated faces lack is measured every few
  frames; the strength follows its cube (MISSING_POWER: a sharper network gets much less, since the library's
  band would partly duplicate what it draws), and on every frame the added detail's energy is capped at the
  energy of the band the faces lack (ENERGY_SHARE of the library's band energy x the missing share squared).
  That keeps well-matched avatars at the real frames' sharpness instead of above it.
* Stable over time: the chosen exemplar is kept until another one is closer (SWITCH_RATIO); a newly chosen one
  fades in while the replaced one's last detail fades out (WEIGHT_RATE), so teeth do not pop. `reset()`
  forgets the choice (a new utterance may start anywhere).
* Cheap enough for the post-processing thread (<= 3 ms per 1080p face on one core): matching is one small
  matrix-vector product, one DIS flow on a ~90x50 thumbnail, one 8-bit remap of the lower-face box and a handful
  of 8/16-bit OpenCV passes over it. It keeps temporal state: one stage per thread that composes.
* `plain` is the face before the detail (at S): the compositor's change weight (where the generator changed
  nothing, the frame's own pixels come back) should compare that, not the detailed face, with the original.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from backend.detail.library import (DETAIL_OFFSET, SOFTNESS, ExemplarLibrary, descriptor, face_size_in_frame,
                                    load_or_build, round_trip, thumbnail)

TOP_K = 1  # exemplars aligned and blended per frame: two agree on the detail that belongs there (teeth, lip lines)
SWITCH_RATIO = 0.95  # a new exemplar replaces the worst held one only when its distance is below this share of it
WEIGHT_RATE = 0.8  # share of the way to its target weight an exemplar's weight moves per frame
MIN_WEIGHT = 0.05  # a fading exemplar below this weight is dropped
MATCH_SOFTNESS = 4.0  # how fast the global weight falls past the library's own spacing (match_weight)
PIXEL_TOLERANCE = 16.0  # grey levels of thumbnail disagreement at which an exemplar's detail is down to 1/e
DETAIL_GAIN = 4.0  # strength of a good match for a generator missing the whole band, tuned on bench/detail.py
EDGE_FEATHER = 0.12  # share of the box's smaller side over which the detail fades in from its edges
ENERGY_SHARE = 1.2  # cap on the added energy, as a share of the band the faces lack (the measure reads ~0.8 of it)
MISSING_POWER = 3.0  # strength x (missing share) ** this: a sharper generator (less missing) gets much less
ENERGY_RATE = 0.3  # how fast the gain follows that cap (per frame, in log units)
GAIN_EVERY = 16  # frames between two measurements of how much detail the generator leaves out
GAIN_RATE = 0.3  # smoothing of that measurement
FLOW_STRIDE = 4  # DIS patch stride (8-pixel patches)
FLOW_ITERATIONS = 12  # DIS gradient-descent iterations per patch (the ultrafast preset's)
FLOW_FINEST_SCALE = 0  # DIS pyramid level the flow stops at: the thumbnails are tiny, 0 keeps their detail
REMAP_INTERPOLATION = cv2.INTER_LINEAR  # how the exemplar's detail is sampled along the flow
WEIGHT_UNIT = 48.0  # weights travel as 8-bit images: 1.0 = 48 leaves room for strengths up to 5
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
    """One exemplar the stage holds (TOP_K at most)."""

    exemplar: int  # row in the library
    weight: float  # temporal weight (moves towards 1 by WEIGHT_RATE per frame: a new one fades in)
    last: np.ndarray | None = None  # its full-size int16 contribution on the latest frame (kept when it fades out)


class DetailStage:
    """Adds the avatar's own high-frequency detail to upsampled low-resolution generated faces.

    `DetailStage(package, crop, native_size)`: `crop` is the generator's crop space ("head", "heads", "body"),
    `native_size` the size it computes at. `size` (default: the face's side in the frame, `detail_size`) is the
    working size S: `apply` returns (S, S, 3) faces, and a face given at another size is first brought to S
    with bicubic interpolation. `frames` restricts the library (the benchmark's held-out split). The library is
    built on first use (or in `__init__` with `eager=True`) and cached in <avatar>/.cache/. `softness`: the
    generator's, where the library's detail band is cut (backend/detail/softness.py; default library.SOFTNESS);
    it may be set until the library is first used.
    """

    def __init__(self, package, crop: str = "head", native_size: int = 96, *, size: int | None = None,
                 frames=None, eager: bool = False, progress: bool = False, library: ExemplarLibrary | None = None,
                 softness: float = SOFTNESS):
        self.package = package
        self.crop = crop
        self.native_size = int(native_size)
        self.size = int(size) if size else detail_size(package, crop, self.native_size)
        self.softness = float(softness)  # where the detail band is cut (backend/detail/softness.py)
        self._frames = frames
        self._progress = progress
        self._lib = library
        self._flow = None
        self._active: list[_Active] = []
        self._fading: np.ndarray | None = None  # int16 contribution of exemplars on their way out
        self._fade = 0.0  # the share of it still added
        self._feather = None
        self._sq = None
        self._band = None  # mean square of the library's detail band
        self._missing = None  # smoothed share of that band the generated faces lack
        self._seen = 0
        self.plain: np.ndarray | None = None  # the latest face before the detail, at S (see the module docstring)
        self._gain = DETAIL_GAIN  # current strength (DETAIL_GAIN, lowered when that would exceed the band's energy)
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
                                      self._progress, self.softness)
        return self._lib

    def _flow_engine(self):
        if self._flow is None:
            dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST)
            dis.setFinestScale(FLOW_FINEST_SCALE)
            dis.setPatchSize(8)
            dis.setPatchStride(FLOW_STRIDE)
            dis.setGradientDescentIterations(FLOW_ITERATIONS)
            self._flow = dis
        return self._flow

    def reset(self) -> None:
        """Forget the temporal state (call between utterances, like Generator.reset)."""
        self._active = []
        self._fading = None

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
        self.plain = face  # the face before the detail, at S (read-only use: the compositor's change weight)
        out = np.array(face, copy=True)  # the caller's array is never written
        grey8 = cv2.cvtColor(face[y0:y1, x0:x1], cv2.COLOR_BGR2GRAY)
        target = thumbnail(grey8, lib.flow_shape)
        dist = self._distances(descriptor(target, lib.descriptor_shape))
        self._choose(dist)
        missing = self._missing_share(grey8)
        detail = self._blend(target, dist, self._gain * self._precision() * missing ** MISSING_POWER)
        if detail is not None:
            cap = self._cap_energy(detail, missing)
            if cap < 0.98:  # already above the band's energy on this frame (the gain follows from the next one)
                detail = cv2.multiply(detail, cap, dtype=cv2.CV_16S)
        if self._fading is not None:  # exemplars just replaced keep their last detail while it fades out
            self._fade *= 1.0 - WEIGHT_RATE
            if self._fade < MIN_WEIGHT:
                self._fading = None
            else:
                fading = cv2.multiply(self._fading, self._fade, dtype=cv2.CV_16S)
                detail = fading if detail is None else cv2.add(detail, fading)
        if detail is not None:  # grey detail onto B, G and R alike; 8-bit saturating adds are the fast path
            region = out[y0:y1, x0:x1]
            up = cv2.convertScaleAbs(cv2.max(detail, 0))
            down = cv2.convertScaleAbs(cv2.min(detail, 0))
            cv2.add(region, cv2.merge([up, up, up]), dst=region)
            cv2.subtract(region, cv2.merge([down, down, down]), dst=region)
        return out

    def _blend(self, target: np.ndarray, dist: np.ndarray, gain: float) -> np.ndarray | None:
        """The held exemplars' detail, each aligned onto the generated mouth, blended pixel by pixel by how
        well each agrees with the generated face there: (bh, bw) int16 grey levels, or None.

        Weights are normalised at thumbnail size (cheap): where both exemplars agree equally each gives half,
        where one is misaligned the other takes over, and where neither agrees the detail is held back (the
        total is the better one's confidence), so a mouth the library never shows gets little."""
        lib = self.library
        parts = []
        for act in self._active:
            strength = act.weight * match_weight(float(dist[act.exemplar]), lib.scale)
            if strength < 0.01:
                act.last = None
                continue
            small_map, confidence = self._align(act.exemplar, target)
            parts.append((act, small_map, confidence * np.float32(strength)))
        if not parts:
            return None
        total = parts[0][2] if len(parts) == 1 else sum(p[2] for p in parts)
        best = parts[0][2] if len(parts) == 1 else np.maximum.reduce([p[2] for p in parts])
        scale = best * self._edge_weight_small() * np.float32(WEIGHT_UNIT * gain) / np.maximum(total, 1e-3)
        bh, bw = lib.box_shape
        detail = None
        for act, small_map, confidence in parts:
            w = cv2.resize(np.clip(confidence * scale + 0.5, 0, 255).astype(np.uint8), (bw, bh),
                           interpolation=cv2.INTER_LINEAR)
            full_map = cv2.resize(small_map, (bw, bh), interpolation=cv2.INTER_LINEAR)
            d = cv2.remap(lib.detail[act.exemplar], full_map, None, REMAP_INTERPOLATION,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=DETAIL_OFFSET)
            act.last = cv2.multiply(cv2.subtract(d, DETAIL_OFFSET, dtype=cv2.CV_16S), w, scale=1.0 / WEIGHT_UNIT,
                                    dtype=cv2.CV_16S)
            detail = act.last if detail is None else cv2.add(detail, act.last)
        return detail

    def _precision(self) -> float:
        """How finely the thumbnails can align the detail, relative to the network's own resolution (<= 1).

        A thumbnail coarser than the network's output (a large native size, or FLOW_WIDTH bounding the cost)
        places the detail less precisely than the band's finest wavelengths need: less of it can be trusted."""
        lib = self.library
        per_thumb = lib.box_shape[1] / lib.flow_shape[1]  # crop pixels per thumbnail pixel
        return float(min(1.0, self.size / self.native_size / per_thumb))

    def _cap_energy(self, detail: np.ndarray, missing: float) -> float:
        """The factor (<= 1) that brings this frame's detail down to the energy of the band the generated face
        lacks (ENERGY_SHARE of the library's band energy x the missing share squared); the gain follows it
        for the next frames, never above DETAIL_GAIN. A well-matched avatar would otherwise get more detail than
        its real frames have: sharper than real is not more real, it is a different texture (and costs PSNR)."""
        added = float(cv2.norm(detail, cv2.NORM_L2)) ** 2 / detail.size
        wanted = ENERGY_SHARE * self._band * missing * missing
        if added <= 1e-6:
            return 1.0
        ratio = wanted / added
        self._gain = float(np.clip(self._gain * ratio ** (0.5 * ENERGY_RATE), 0.02 * DETAIL_GAIN, DETAIL_GAIN))
        return float(min(1.0, np.sqrt(ratio)))

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
            own = g - round_trip(g, self.size, self.native_size, self.softness)
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
        """Hold the TOP_K nearest exemplars, but replace a held one only when a new one is clearly closer (at
        most one per frame); a new one fades in, the replaced one's last detail fades out."""
        k = min(TOP_K, len(dist))
        order = np.argpartition(dist, k - 1)[:k] if len(dist) > k else np.arange(len(dist))
        order = order[np.argsort(dist[order])]
        if not self._active:
            self._active = [_Active(int(e), 1.0) for e in order]
            return
        held = {a.exemplar for a in self._active}
        new = next((int(e) for e in order if int(e) not in held), None)
        if new is not None:
            if len(self._active) < k:
                self._active.append(_Active(new, 0.0))
            else:
                worst = max(self._active, key=lambda a: dist[a.exemplar])
                if dist[new] < SWITCH_RATIO * dist[worst.exemplar]:
                    self._active.remove(worst)
                    self._retire(worst)
                    self._active.append(_Active(new, 0.0))
        for a in self._active:
            a.weight += WEIGHT_RATE * (1.0 - a.weight)

    def _retire(self, act: _Active) -> None:
        """Keep a replaced exemplar's last contribution, fading out (one multiply a frame, no alignment)."""
        if act.last is None:
            return
        if self._fading is not None and self._fade >= MIN_WEIGHT:
            act.last = cv2.add(act.last, cv2.multiply(self._fading, self._fade, dtype=cv2.CV_16S))
        self._fading, self._fade = act.last, 1.0  # scaled by 1 - WEIGHT_RATE as the new one comes in at WEIGHT_RATE

    def _align(self, k: int, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Exemplar k aligned onto the generated thumbnail: (fh, fw, 2) float32 sampling positions in box pixels
        and (fh, fw) float32 per-pixel agreement 0..1, both at thumbnail size (the flow is computed, checked
        and turned into a map there; only one map resize and one remap run at the box's full size)."""
        lib = self.library
        source = lib.thumbs[k]
        flow = self._flow_engine().calc(target, source, None)  # target(x) ~ source(x + flow(x))
        small_grid, scale = self._small_grid()
        small_map = small_grid + flow * scale[None, None, :]
        moved = cv2.remap(source, flow + self._thumb_grid(), None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        err = cv2.GaussianBlur(cv2.absdiff(moved, target).astype(np.float32), (0, 0), 1.0)
        return small_map, np.exp(-(err * np.float32(1.0 / PIXEL_TOLERANCE)) ** 2)

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

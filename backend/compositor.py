"""Compositor stage: a generated face crop + its avatar frame → the finished full frame.

Why it looks like this:
* Seams are the top complaint about lip-sync tools, so the face is not pasted as a box: only a feathered
  lower-face region (jaw line + a line just under the nose, from the package's FaceMesh landmarks) is
  replaced, and the generated pixels are colour-matched (mean/std per channel) to the original footage in
  a ring of skin around the mouth before blending.
* Everything that depends only on the avatar frame (the face→frame affine, the mask, the region of
  interest) is computed in the small face space and cached per avatar frame.
* Only the mask's bounding box in the frame is touched: one `warpAffine` of the 4-channel (BGR + mask)
  face straight into that region, one per-pixel `blendLinear`. Pixels where the mask is 0 (everything
  outside it) are bit-identical to the avatar frame, and blend 0 returns the avatar frame itself.

* The frame's own detail is kept wherever the generator left the face as it was: the face crop is smaller
  than the face in a 1080p frame (256 px heads, 96 px network faces), so pasting it back replaced skin, beard
  and hair texture with an upscaled copy (a perfect generator came back at 28-38 dB). The layer blended in is
  generated + (1 - changed) * (frame - original crop), both crops warped to the frame, where `changed` rises
  from 0 to 1 as |generated - original| grows (change_weight): unchanged pixels come back as the frame itself,
  changed ones as the generator drew them (issue 19).
* A face the detail stage made larger than the network's (backend/detail/) is placed at the network's size
  (`layer_size`): mask, change weight and original crop stay small, only its pixels are warped from its own size.
* `compose_i420` does the same blend on I420 planes (backend/yuv.py) for mp4-only renders, so frames go from
  the avatar's JPEG (or its decoded-frame cache) to the encoder without a trip through BGR.

Crop spaces (FaceFrame.crop): "head" = head_face box inside the upright head crop (face → head crop →
frame through the inverse of head_affine), "heads" = the whole head crop, "body" = body_face box in the frame.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import replace

import cv2
import numpy as np

from backend.frames import FaceFrame, VideoFrame
from backend.yuv import I420, FramePool, blend_region, decode_jpeg, even_roi, from_bgr
from backend.placement import (FacePlacement, change_weight, colour_matched, frame_to_face_affine, lower_face_mask,
                               mouth_ring, roi_of_mask)
from preprocess import landmarks as L
from preprocess.geometry import apply_affine

class Compositor:
    """FaceFrame → finished frame (BGR `compose`, I420 `compose_i420`). See the module docstring."""

    def __init__(self, package, *, feather: float | None = None, colour: bool = True, enhancer=None,
                 cache_bytes: int = 64 << 20, frame_cache=None, keep_detail: bool = True):
        self.package = package
        self.frame_cache = frame_cache  # backend.frame_cache.FrameCache: decoded I420 frames on disk
        self.frame_pool: FramePool | None = None  # compose_i420 blends into frames from here (the mp4 sink's)
        self.feather = feather
        self.colour = colour
        self.keep_detail = keep_detail  # keep the frame's own pixels where the generator changed nothing
        self.enhancer = enhancer
        self._cache: OrderedDict = OrderedDict()
        self._clips: dict[str, Compositor] = {}  # action clips' compositors (_source)
        self.backdrop = None  # backend.backdrop.Backdrop: a colour, image or transparency behind the person
        self.detail = None  # backend.detail.stage.DetailStage: the avatar's own detail on a low-resolution face
        self.retire_detail = False  # drop `detail` at the next utterance's first frame (composing thread's own)
        # placements are kept up to this many bytes of masks: every frame of a 2-minute avatar at 96 px,
        # ~400 frames at 288 px (the ping-pong walk comes back to each frame)
        self._cache_bytes_max = cache_bytes
        self._cache_bytes = 0

    # ------------------------------------------------------------------ frames composed later (render)
    def finish(self, video: VideoFrame) -> VideoFrame:
        """The same frame with its image composed (a no-op for frames that already have one); `render`
        composes on a worker thread the frames the engine handed out with `pending` set (Engine.pair)."""
        if video.pending is None:
            return video
        return replace(video, image=self.compose(video.pending), pending=None)

    # ------------------------------------------------------------------ work
    def placement(self, index: int, crop: str, size: int) -> FacePlacement:
        key = (index, crop, size)
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            return hit
        pkg = self.package
        m = frame_to_face_affine(pkg, index, crop, size)
        lm = np.asarray(pkg.track.landmarks[index], np.float64)
        det = float(m[0, 0] * m[1, 1] - m[0, 1] * m[1, 0])
        if not (np.all(np.isfinite(m)) and np.all(np.isfinite(lm)) and abs(det) > 1e-12):
            empty = np.zeros((size, size), np.uint8)  # a broken track row: show the footage, never crash
            return self._remember(key, FacePlacement(size, m, empty, empty.astype(bool), (0, 0, 0, 0), m))
        poly = apply_affine(m, L.lower_face_polygon(lm))
        feather = self.feather if self.feather is not None else max(2.0, size / 12.0)
        mask = lower_face_mask(poly, size, feather)
        ring = mouth_ring(apply_affine(m, lm[list(L.LIPS_OUTER)]), mask, size)
        roi = roi_of_mask(mask, m, pkg.width, pkg.height)
        if roi[2]:  # even origin and size: the I420 path blends whole 2x2 chroma blocks in the same region
            roi = even_roi(roi, pkg.width, pkg.height)
        x, y = roi[0], roi[1]
        roi_to_face = m.copy()
        roi_to_face[:, 2] += m[:, :2] @ np.array([x, y], np.float64)
        return self._remember(key, FacePlacement(size, m, mask, ring, roi, roi_to_face))

    def _remember(self, key, placed: FacePlacement) -> FacePlacement:
        self._cache[key] = placed
        self._cache_bytes += placed.nbytes
        while self._cache_bytes > self._cache_bytes_max and len(self._cache) > 1:
            _, old = self._cache.popitem(last=False)
            self._cache_bytes -= old.nbytes
        return placed

    def original_face(self, index: int, crop: str, size: int) -> np.ndarray:
        img = self.package.image(crop, index)
        if img.shape[0] != size:
            img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
        return img

    # ------------------------------------------------------------------ the frame underneath
    def _source(self, clip: str | None) -> "Compositor":
        """The compositor of a clip's frames: this one for the main footage, else the action clip's own
        (its package, placements and caches; backend/action_walk.py), made once."""
        if clip is None:
            return self
        comp = self._clips.get(clip)
        if comp is None:
            comp = self._clips[clip] = Compositor(self.package.action(clip), feather=self.feather, colour=self.colour,
                                                  enhancer=self.enhancer, keep_detail=self.keep_detail)
        comp.frame_pool = self.frame_pool
        return comp

    def background(self, ff: FaceFrame) -> np.ndarray:
        """The footage under `ff`: its avatar frame, cross-faded with `other_index` by `other_weight` across an
        idle jump or an action's entry and exit; the package's own (cached) array when there is no fade."""
        base = self._source(ff.clip).package.frame(ff.avatar_index)
        if ff.other_index is None or ff.other_weight <= 0.0:
            return base
        other = self._source(ff.other_clip).package.frame(ff.other_index)
        return cv2.addWeighted(base, 1.0 - ff.other_weight, other, ff.other_weight, 0.0)

    def background_yuv(self, ff: FaceFrame) -> I420:
        """`background` as I420 planes (the mp4 fast path)."""
        base = self._source(ff.clip).background_i420(ff.avatar_index)
        if ff.other_index is None or ff.other_weight <= 0.0:
            return base
        other, w = self._source(ff.other_clip).background_i420(ff.other_index), ff.other_weight
        return I420(*(cv2.addWeighted(a, 1.0 - w, b, w, 0.0) for a, b in ((base.y, other.y), (base.u, other.u),
                                                                          (base.v, other.v))))

    # ------------------------------------------------------------------ composing
    def compose(self, ff: FaceFrame) -> np.ndarray:
        """The output image for `ff` (read-only view of the avatar frame when nothing is blended), laid over
        the backdrop (backend/backdrop.py) when one replaces the footage's background."""
        base = self.background(ff)
        ff = self._with_detail(ff)
        if ff.face is None or ff.blend <= 0.0:
            out = base.view()
            out.flags.writeable = False
        else:
            out = self._source(ff.clip)._paste(base.copy() if ff.other_index is None else base, ff)
        return out if self.backdrop is None else self.backdrop.apply(out, ff, lambda c: self._source(c).package)

    def _with_detail(self, ff: FaceFrame) -> FaceFrame:
        """`ff` with the detail stage's sharper face (main footage only: its library is the avatar's)."""
        stage = self.detail
        if stage is None:
            return ff
        if ff.first:
            if self.retire_detail:  # given up by a live driver (Engine.fit_to_clock): from this utterance on
                self.detail = None
                return ff
            stage.reset()
        if ff.face is None or ff.blend <= 0.0 or ff.clip is not None:
            return ff
        face, matched = ff.face, self.colour and self.enhancer is None
        if matched:  # at the network's own size, before the stage: ~10x fewer pixels than at the stage's size,
            # and the band the stage adds is the footage's own, in the footage's colours already
            size = face.shape[0]
            face, _ = colour_matched(face, self.original_face(ff.avatar_index, ff.crop, size),
                                      self.placement(ff.avatar_index, ff.crop, size).ring)
        detailed = stage.apply(face, ff.avatar_index)
        # the change weight judges the face before the stage, at the network's own size (the layer is placed
        # there: layer_size); only a colour match still to come after an enhancer needs the face and its plain
        # twin at the stage's size, where _face_layer matches the enhanced face
        late_match = self.colour and not matched
        return replace(ff, face=detailed, plain=stage.plain if late_match else face, colour_matched=matched)

    def _paste(self, out: np.ndarray, ff: FaceFrame) -> np.ndarray:
        """The generated face of `ff` blended into `out` (a frame of this compositor's package), in place."""
        placed = self.placement(ff.avatar_index, ff.crop, layer_size(ff))
        x, y, w, h = placed.roi
        if w == 0:
            return out
        region = out[y:y + h, x:x + w]
        generated, alpha = self._face_layer(ff, placed, region)
        # blendLinear rounds a*gen + (1-a)*frame in place; with a == 0 it is the frame pixel, bit for bit
        cv2.blendLinear(generated, region, alpha, np.subtract(np.float32(1.0), alpha), dst=region)
        return out

    def background_i420(self, index: int) -> I420:
        """Avatar frame `index` as I420 planes (from the frame cache, else -- no cache, or a frame past a partial
        one -- decoded straight from the JPEG and kept like BGR frames)."""
        if self.frame_cache is not None:
            cached = self.frame_cache.frame(index)
            if cached is not None:
                return cached
        return self.package.cached(("bg_i420", index), lambda: self._load_i420(index))

    def _load_i420(self, index: int) -> I420:
        image_path = getattr(self.package, "image_path", None)  # packages held in memory (tests) have no JPEGs
        if image_path is None:
            return from_bgr(self.package.frame(index))
        return load_i420(image_path("bg", index))

    def compose_i420(self, ff: FaceFrame) -> I420:
        """`compose` for the mp4 fast path (backend.yuv): the same blend on I420 planes (needs even W, H)."""
        base = self.background_yuv(ff)
        ff = self._with_detail(ff)
        if ff.face is None or ff.blend <= 0.0:
            return base
        return self._source(ff.clip)._paste_i420(base, ff)

    def _paste_i420(self, base: I420, ff: FaceFrame) -> I420:
        placed = self.placement(ff.avatar_index, ff.crop, layer_size(ff))
        if placed.roi[2] == 0:
            return base
        x, y, w, h = placed.roi
        frame_region = None
        if self.keep_detail:  # the ROI in BGR (even ROI: whole chroma blocks)
            frame_region = I420(base.y[y:y + h, x:x + w], base.u[y // 2:(y + h) // 2, x // 2:(x + w) // 2],
                                base.v[y // 2:(y + h) // 2, x // 2:(x + w) // 2]).to_bgr()
        generated, alpha = self._face_layer(ff, placed, frame_region)
        return blend_region(base, generated, alpha, placed.roi, self.frame_pool)

    def finish_i420(self, video: VideoFrame) -> VideoFrame:
        """`finish`, producing `VideoFrame.yuv` instead of a BGR image."""
        yuv = self.compose_i420(video.pending) if video.pending is not None else from_bgr(video.image)
        return replace(video, image=None, pending=None, yuv=yuv)

    def _face_layer(self, ff: FaceFrame, placed: FacePlacement,
                    frame_region: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The generated face warped into the placement's frame region: BGR pixels and blend weights
        (float32, mask × blend, 0 outside the mask). With `frame_region` (the frame's BGR pixels there) and
        keep_detail, unchanged parts of the face carry the frame's own detail (module docstring).

        `placed` is at `layer_size(ff)`: the face's own size, or the network's when the detail stage made the
        face larger. Then only the face's pixels are warped from its size; the mask, the change weight and the
        original crop stay at the network's size (smooth weights and a crop of that resolution: warping them
        from there is the same image, and the per-face work does not grow with the stage's size)."""
        face = np.ascontiguousarray(ff.face)
        size = placed.size
        if self.enhancer is not None:
            face = self.enhancer(face)
        match = self.colour and not ff.colour_matched  # (matched before the detail stage unless an enhancer ran)
        original = None
        if match or (self.keep_detail and frame_region is not None):
            original = self.original_face(ff.avatar_index, ff.crop, size)
        table = None
        if match:
            face, table = colour_matched(face, original, placed.ring)  # the table serves the plain face too
        w, h = placed.roi[2], placed.roi[3]
        warp = dict(flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        if face.shape[0] == size:
            bgra = cv2.merge([face, placed.mask])  # np.dstack is 5x slower
            warped = cv2.warpAffine(bgra, placed.roi_to_face, (w, h), **warp)
            generated = cv2.cvtColor(warped, cv2.COLOR_BGRA2BGR)  # a SIMD copy; numpy's strided one is 100x slower
            weight = cv2.extractChannel(warped, 3)
        else:  # a face larger than the placement (the detail stage's): the same geometry, scaled
            to_face = np.diag([face.shape[0] / size, face.shape[0] / size]) @ placed.roi_to_face
            generated = cv2.warpAffine(face, to_face, (w, h), **warp)
            weight = cv2.warpAffine(placed.mask, placed.roi_to_face, (w, h), **warp)
        if self.keep_detail and frame_region is not None:
            # what the generator changed is judged on its own face: the detail stage's band is a difference from
            # the upsampled original by design and would otherwise hide the frame's own, exact pixels
            judged = face
            if ff.plain is not None:
                judged = ff.plain if table is None else cv2.LUT(ff.plain, table)
            layer = cv2.merge([*cv2.split(original), change_weight(judged, original)])
            back = cv2.warpAffine(layer, placed.roi_to_face, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                  borderMode=cv2.BORDER_REPLICATE)
            detail = cv2.subtract(frame_region, cv2.cvtColor(back, cv2.COLOR_BGRA2BGR), dtype=cv2.CV_16S)
            kept = cv2.cvtColor(cv2.bitwise_not(cv2.extractChannel(back, 3)), cv2.COLOR_GRAY2BGR)  # 255 = unchanged
            detail = cv2.multiply(detail, kept, scale=1 / 255.0, dtype=cv2.CV_16S)  # rounds
            generated = cv2.add(generated, detail, dtype=cv2.CV_8U)  # saturates
        alpha = np.multiply(weight, np.float32(min(1.0, ff.blend) / 255.0), dtype=np.float32)
        return generated, alpha


def layer_size(ff: FaceFrame) -> int:
    """The face-space size the compositor places `ff` at: that of the face before the detail stage, if any."""
    return (ff.plain if ff.plain is not None else ff.face).shape[0]


def load_i420(path) -> I420:
    """I420 planes of a package JPEG (BGR decode + conversion for files the MJPEG decoder rejects)."""
    from preprocess.package import read_image

    try:
        data = path.read_bytes()
    except OSError:
        data = b""
    yuv = decode_jpeg(data) if data else None
    return yuv if yuv is not None else from_bgr(read_image(path))

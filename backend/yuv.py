"""Frames as I420 planes (limited-range BT.601): the mp4 fast path of `render`, and `serve`'s frames.

Why: an avatar frame is stored as a JPEG, which is already YCbCr 4:2:0 inside, and H.264 wants YCbCr 4:2:0.
Decoding it to BGR, compositing the whole frame in BGR and converting it back costs a colour conversion each
way plus full-frame copies, for a face that covers a few percent of the frame. Here the JPEG is decoded
straight to its planes (ffmpeg's MJPEG decoder through PyAV), mapped once from JPEG's full range to video's
limited range, kept like any decoded frame, and only the face region is converted and blended.

The blend is the compositor's (same mask, same warp, same colour match); it is done per plane with the
mask averaged over each 2x2 block for the chroma planes. Where the mask is 0 a luma sample is bit-identical
to the avatar frame's, and so is a chroma sample whose four pixels are all outside the mask.

`serve` shows the same I420 frames: from the decoded-frame cache (backend/frame_cache.py) through the same
blend into packed frames (`packed_i420`), converted to BGRA once, by the publisher, straight into the ring
slot OBS reads (`I420.to_bgra`). Why: an avatar of 30 s or more is too large to hold decoded as BGR, and
decoding a 1080p JPEG for every frame, idle or speaking, costs ~12 ms of a core (the conversion 1.6 ms).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, replace

import cv2
import numpy as np

# JPEG (JFIF) stores full-range BT.601 YCbCr; H.264 in mp4 is conventionally limited range (16-235/240)
_LUMA = np.clip(np.round(16.0 + np.arange(256) * (219.0 / 255.0)), 0, 255).astype(np.uint8)
_CHROMA = np.clip(np.round(128.0 + (np.arange(256) - 128.0) * (224.0 / 255.0)), 0, 255).astype(np.uint8)
_local = threading.local()
_CHROMA_SIZE = {  # chroma plane (rows, cols) of the MJPEG decoder's output formats, for an even H x W frame
    "yuvj420p": lambda h, w: (h // 2, w // 2), "yuvj422p": lambda h, w: (h, w // 2),
    "yuvj440p": lambda h, w: (h // 2, w), "yuvj444p": lambda h, w: (h, w),
}


@dataclass(frozen=True)
class I420:
    """Planes y (H, W), u and v (H/2, W/2), uint8, limited-range BT.601. H and W are even.

    `frame`: the av.VideoFrame whose buffers the planes are views of, when they are (then the encoder
    takes it as it is, without another copy). `pool`: the FramePool that frame came from, if any.
    """

    y: np.ndarray
    u: np.ndarray
    v: np.ndarray
    frame: object | None = None
    pool: "FramePool | None" = None

    @property
    def width(self) -> int:
        return self.y.shape[1]

    @property
    def height(self) -> int:
        return self.y.shape[0]

    def copy_to_av(self, pool: "FramePool | None" = None) -> "I420":
        """A copy whose planes live in an av.VideoFrame (yuv420p): a new one, or one from `pool`."""
        out = pool.take(self.width, self.height) if pool is not None else new_av_i420(self.width, self.height)
        for view, data in zip((out.y, out.u, out.v), (self.y, self.u, self.v)):
            np.copyto(view, data)
        return out

    def packed(self) -> np.ndarray | None:
        """The frame as one (H*3/2, W) array, OpenCV's I420 layout, without a copy: when the three planes lie one
        after another in one buffer (a frame-cache frame, `packed_i420`); else None."""
        h, w = self.height, self.width
        planes = (self.y, self.u, self.v)
        if not all(p.flags.c_contiguous for p in planes):
            return None
        at = [p.__array_interface__["data"][0] for p in planes]
        if at[1] != at[0] + h * w or at[2] != at[1] + (h // 2) * (w // 2):
            return None
        return np.lib.stride_tricks.as_strided(self.y, shape=(h * 3 // 2, w), strides=(w, 1), writeable=False)

    def _layout(self) -> np.ndarray:
        flat = self.packed()
        if flat is None:
            flat = np.concatenate([self.y.ravel(), self.u.ravel(), self.v.ravel()]).reshape(self.height * 3 // 2,
                                                                                            self.width)
        return flat

    def to_bgr(self) -> np.ndarray:
        """BGR image (tests, the preview window)."""
        return cv2.cvtColor(self._layout(), cv2.COLOR_YUV2BGR_I420)

    def to_bgra(self, dst: np.ndarray | None = None) -> np.ndarray:
        """BGRA image (alpha 255), written into `dst` (H, W, 4) when given: `serve`'s ring slot, one pass."""
        return cv2.cvtColor(self._layout(), cv2.COLOR_YUV2BGRA_I420, dst=dst)


def packed_i420(width: int, height: int, pool: "FramePool | None" = None) -> I420:
    """A new I420 frame whose planes lie one after another in one numpy buffer (`I420.packed()` works)."""
    return replace(split_planes(np.empty(width * height * 3 // 2, np.uint8), height, width), pool=pool)


def new_av_i420(width: int, height: int, pool: "FramePool | None" = None) -> I420:
    """A new av.VideoFrame (yuv420p, uninitialised pixels) and writable views of its planes."""
    import av

    frame = av.VideoFrame(width, height, "yuv420p")
    return I420(_plane(frame, 0, height, width), _plane(frame, 1, height // 2, width // 2),
                _plane(frame, 2, height // 2, width // 2), frame=frame, pool=pool)


class FramePool:
    """Encoder frames that go back to be filled again once the encoder has copied them.

    Why: a new 1080p av.VideoFrame is 3 MB of fresh memory, which the kernel hands out as zero-filled pages
    on first touch: ~1 ms of CPU per frame of page faults and zeroing before a pixel is written, more than
    the whole blend. A render has only a handful of frames in flight (the sink's queue), so a few reused
    frames serve all of them. Only a sink whose encoder copies the frame's pixels during `encode()` may give
    frames back (libx264 does; see Mp4Sink); frames never given back are simply garbage-collected.
    """

    def __init__(self, keep: int = 24, packed: bool = False):
        self.keep = keep
        self.packed = packed  # frames in one numpy buffer (`packed_i420`: serve) instead of av.VideoFrames
        self.made = 0  # frames allocated (the rest of the takes were reuses)
        self._free: list[I420] = []
        self._lock = threading.Lock()

    def take(self, width: int, height: int) -> I420:
        """A frame of this size (uninitialised pixels) that belongs to the caller until `give`."""
        with self._lock:
            for k in range(len(self._free) - 1, -1, -1):
                if self._free[k].y.shape == (height, width):
                    return self._free.pop(k)
            self.made += 1
        return (packed_i420 if self.packed else new_av_i420)(width, height, pool=self)

    def give(self, yuv: I420) -> None:
        """Take back a frame from `take` once nothing reads or will read it (others are ignored)."""
        if yuv.pool is not self:
            return
        with self._lock:
            if len(self._free) < self.keep and all(f is not yuv for f in self._free):
                self._free.append(yuv)


def frame_size(image: "np.ndarray | I420") -> tuple[int, int]:
    """(height, width) of a BGR/BGRA array or an I420 frame."""
    return (image.height, image.width) if isinstance(image, I420) else image.shape[:2]


def from_bgr(image: np.ndarray) -> I420:
    """BGR (even H, W) → I420, OpenCV's BT.601 limited-range conversion (what the BGR mp4 path uses)."""
    h, w = image.shape[:2]
    return split_planes(cv2.cvtColor(image, cv2.COLOR_BGR2YUV_I420).ravel(), h, w)


def split_planes(flat: np.ndarray, h: int, w: int) -> I420:
    """Views of the Y, U and V planes of one packed I420 frame (`flat`: H*W*3/2 bytes, planes one after another)."""
    n, q = h * w, (h // 2) * (w // 2)
    return I420(flat[:n].reshape(h, w), flat[n:n + q].reshape(h // 2, w // 2), flat[n + q:n + 2 * q].reshape(h // 2, w // 2))


def decode_jpeg(data: bytes) -> I420 | None:
    """JPEG bytes → I420 without going through RGB; None if it is not decodable or has odd dimensions, or without
    PyAV (a bare GPU host: the caller decodes to BGR and converts)."""
    try:
        import av
    except ImportError:
        return None
    ctx = getattr(_local, "mjpeg", None)
    if ctx is None:  # one decoder per thread: decoding runs on the prefetch and the compositing threads
        ctx = _local.mjpeg = av.CodecContext.create("mjpeg", "r")
        ctx.thread_count = 1
    try:
        frames = ctx.decode(av.Packet(data))
    except Exception:  # av.error.* (corrupt data)
        return None
    if not frames:
        return None
    frame = frames[0]
    if frame.width % 2 or frame.height % 2:
        return None
    name, h, w = frame.format.name, frame.height, frame.width
    if name == "gray":
        grey = np.full((h // 2, w // 2), 128, np.uint8)
        return I420(cv2.LUT(_plane(frame, 0, h, w), _LUMA), grey, grey.copy())
    if name not in _CHROMA_SIZE:  # not a JPEG layout we know: let swscale bring it to 4:2:0 full range
        frame, name = frame.reformat(format="yuvj420p"), "yuvj420p"
    ch, cw = _CHROMA_SIZE[name](h, w)
    y = _plane(frame, 0, h, w)
    u, v = (_plane(frame, i, ch, cw) for i in (1, 2))
    if (ch, cw) != (h // 2, w // 2):  # 4:4:4, 4:2:2, 4:4:0: average to 4:2:0 as OpenCV's BGR→I420 does
        u, v = (cv2.resize(p, (w // 2, h // 2), interpolation=cv2.INTER_AREA) for p in (u, v))
    return I420(cv2.LUT(y, _LUMA), cv2.LUT(u, _CHROMA), cv2.LUT(v, _CHROMA))


def _plane(frame, i: int, rows: int, cols: int) -> np.ndarray:
    """Writable (rows, cols) view of plane i of an av.VideoFrame (its rows are `line_size` bytes apart)."""
    plane = frame.planes[i]
    return np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)[:rows, :cols]


def even_roi(roi: tuple[int, int, int, int], width: int, height: int) -> tuple[int, int, int, int]:
    """The smallest ROI with even origin and size that contains `roi` (chroma samples cover 2x2 pixels)."""
    x, y, w, h = roi
    x0, y0 = x & ~1, y & ~1
    x1, y1 = min(width, (x + w + 1) & ~1), min(height, (y + h + 1) & ~1)
    return x0, y0, x1 - x0, y1 - y0


def blend_region(base: I420, generated_bgr: np.ndarray, alpha: np.ndarray, roi: tuple[int, int, int, int],
                 pool: FramePool | None = None) -> I420:
    """A copy of `base` (in a frame from `pool` if given) with `generated_bgr` (h, w, 3) blended into the even
    `roi` with per-pixel `alpha` (float32 in [0, 1], (h, w))."""
    x, y, w, h = roi
    out = base.copy_to_av(pool)
    gen = from_bgr(generated_bgr)
    alpha_c = cv2.resize(alpha, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
    for plane, src, a, (px, py) in ((out.y, gen.y, alpha, (x, y)), (out.u, gen.u, alpha_c, (x // 2, y // 2)),
                                    (out.v, gen.v, alpha_c, (x // 2, y // 2))):
        ph, pw = a.shape
        region = plane[py:py + ph, px:px + pw]
        # blendLinear rounds a*gen + (1-a)*base in place; with a == 0 it is the base sample, bit for bit
        cv2.blendLinear(src, region, a, np.subtract(np.float32(1.0), a), dst=region)
    return out

"""The per-avatar exemplar library of the detail stage: the lower face of the package's own frames, at full
resolution, split into what a low-resolution network can draw and what it cannot.

Why it looks like this:
* The network decides the mouth's shape; the streamer's own frames know the detail (teeth, lip texture, skin
  pores, stubble) at the resolution the face really has in the frame. So every library frame is cut straight
  from the full frame (not from the package's small face crop) into the crop space the generator draws in, at
  the stage's working size S: exemplars and generated faces then share one landmark-aligned frame of
  reference (the head crop is upright and scaled by eye/mouth landmarks), and what is left is fine alignment.
* Only a fixed lower-face box is kept (from the library's landmarks): that is all the compositor replaces.
* Each exemplar is stored as the part a `native`-pixel network loses: the crop minus its own round trip
  through the native size (area down, a mild blur for the network's own softness, bicubic up). Adding it
  back to an upsampled generated face restores the missing band and leaves the low frequencies, the shape
  the network chose, as they were.
* Matching happens in a compact low-resolution space (a mean-free grey thumbnail of the box, a few hundred
  numbers): below the native resolution a generated mouth and a real one look alike, so the nearest exemplar
  there is the same mouth shape. A larger grey thumbnail of the round-tripped crop, at about the network's own
  resolution (the finest the generated face has), is kept for the stage's optical-flow alignment.
* Building decodes every library frame once (seconds per minute of footage), so the result is cached in
  <avatar>/.cache/ under a key of the package's identity and the stage's parameters: a re-preprocessed or
  edited package, or another size, rebuilds instead of reusing stale exemplars.
"""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from preprocess import landmarks as L

log = logging.getLogger(__name__)

LIBRARY_VERSION = 6  # bump when what is stored changes: old caches then rebuild
MAX_EXEMPLARS = 512  # the footage is subsampled evenly in time beyond this (neighbouring frames are near twins)
DESCRIPTOR_WIDTH = 24  # matching thumbnail width (height follows the box's aspect)
FLOW_WIDTH = 112  # alignment thumbnail width, at most (its cost grows with its pixels)
DETAIL_OFFSET = 128  # detail is stored as uint8 around this value (cv2 remaps 8-bit images fastest)
SOFTNESS = 0.6  # Gaussian sigma, in native pixels, of how much softer generator output is than a clean downscale


@dataclass
class ExemplarLibrary:
    """Exemplars of one avatar, one crop space, one working size and one native network size."""

    size: int  # working size S of the crop space
    native: int  # the network's size the detail was separated at
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 of the lower-face box in the S-sized crop
    frames: np.ndarray  # (M,) avatar frame of each exemplar
    descriptors: np.ndarray  # (M, D) float32, mean-free grey thumbnails
    thumbs: np.ndarray  # (M, fh, fw) uint8, round-tripped grey thumbnails for the optical flow
    detail: np.ndarray  # (M, bh, bw) uint8, grey detail the network loses, + DETAIL_OFFSET
    scale: float  # typical descriptor distance between neighbouring exemplars (match-quality unit)

    @property
    def box_shape(self) -> tuple[int, int]:
        x0, y0, x1, y1 = self.box
        return y1 - y0, x1 - x0

    @property
    def descriptor_shape(self) -> tuple[int, int]:
        return descriptor_shape(self.box)

    @property
    def flow_shape(self) -> tuple[int, int]:
        return self.thumbs.shape[1], self.thumbs.shape[2]

    def __len__(self) -> int:
        return len(self.frames)


# ---------------------------------------------------------------------------------------------- geometry
def face_affine(package, index: int, crop: str, size: int) -> np.ndarray:
    """(2, 3) frame pixels -> `crop` space at `size` (the compositor's own mapping, so the spaces agree)."""
    from backend.placement import frame_to_face_affine

    return frame_to_face_affine(package, index, crop, size)


def face_size_in_frame(package, crop: str = "head", frames=None) -> float:
    """Median side, in frame pixels, of the `crop` square: the resolution the face really has on screen."""
    n = package.frame_count
    idx = range(0, n, max(1, n // 64)) if frames is None else frames
    sides = []
    for i in idx:
        m = face_affine(package, int(i), crop, 100)
        det = abs(float(m[0, 0] * m[1, 1] - m[0, 1] * m[1, 0]))
        if np.isfinite(det) and det > 1e-12:
            sides.append(100.0 / np.sqrt(det))
    return float(np.median(sides)) if sides else 0.0


def lower_face_box(package, frames: np.ndarray, crop: str, size: int) -> tuple[int, int, int, int]:
    """A fixed box holding the lower face (jaw line + subnasale) of nearly every library frame, in the S crop.

    Fixed rather than per frame: it costs nothing at run time, and it uses no landmark of the frame being
    generated (whose lips are the footage's, not the network's)."""
    pick = frames[:: max(1, len(frames) // 128)]
    pts = []
    for i in pick:
        lm = np.asarray(package.track.landmarks[int(i)], np.float64)
        m = face_affine(package, int(i), crop, size)
        if np.all(np.isfinite(lm)) and np.all(np.isfinite(m)):
            poly = L.lower_face_polygon(lm).astype(np.float64)
            pts.append(poly @ m[:, :2].T + m[:, 2])
    if not pts:
        x0, y0, x1, y1 = 0.15 * size, 0.5 * size, 0.85 * size, size
    else:
        allp = np.stack(pts)
        x0, x1 = np.percentile(allp[..., 0].min(1), 5), np.percentile(allp[..., 0].max(1), 95)
        y0, y1 = np.percentile(allp[..., 1].min(1), 5), np.percentile(allp[..., 1].max(1), 95)
    x0, y0 = max(0, int(np.floor(x0))), max(0, int(np.floor(y0)))
    x1, y1 = min(size, int(np.ceil(x1))), min(size, int(np.ceil(y1)))
    if x1 - x0 < 16 or y1 - y0 < 16:  # degenerate track: the lower middle of the square
        x0, y0, x1, y1 = size // 6, size // 2, size - size // 6, size
    return x0, y0, x1, y1


def descriptor_shape(box) -> tuple[int, int]:
    x0, y0, x1, y1 = box
    return max(4, int(round(DESCRIPTOR_WIDTH * (y1 - y0) / (x1 - x0)))), DESCRIPTOR_WIDTH


def fit_box(box, size: int, native: int) -> tuple[tuple[int, int, int, int], tuple[int, int]]:
    """The box trimmed to a whole number of thumbnail pixels, and the thumbnail's (height, width).

    The thumbnail is at about the network's own resolution (size / native crop pixels per thumbnail pixel):
    below it the alignment loses precision (the detail lands beside its edge), above it there is nothing the
    generated face shows, only cost; FLOW_WIDTH bounds its width (the flow's cost). An integer ratio keeps the
    per-frame INTER_AREA reduction on OpenCV's fast path (a non-integer one costs a third of a millisecond on a
    1080p face's box)."""
    x0, y0, x1, y1 = box
    r = max(1, int(round(size / native)), -(-(x1 - x0) // FLOW_WIDTH))
    fw, fh = max(8, (x1 - x0) // r), max(8, (y1 - y0) // r)
    fw, fh = min(fw, size // r), min(fh, size // r)  # a very flat box must still fit in the crop
    x0, y0 = min(x0, size - r * fw), min(y0, size - r * fh)
    return (x0, y0, x0 + r * fw, y0 + r * fh), (fh, fw)


# ---------------------------------------------------------------------------------------------- pixels
def grey(image: np.ndarray) -> np.ndarray:
    """float32 luma of a BGR image (the detail is luminance: colour detail is small and would tint skin)."""
    return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype(np.float32)


def round_trip(g: np.ndarray, size: int, native: int, softness: float = 0.0) -> np.ndarray:
    """`g` (a region of the S crop) as a `native`-pixel network would give it back: area down, softened by a
    Gaussian of `softness` native pixels (networks draw softer than a clean downscale), bicubic up."""
    h, w = g.shape
    small = (max(1, int(round(w * native / size))), max(1, int(round(h * native / size))))
    low = cv2.resize(g, small, interpolation=cv2.INTER_AREA)
    if softness > 0:
        low = cv2.GaussianBlur(low, (0, 0), softness)
    return cv2.resize(low, (w, h), interpolation=cv2.INTER_CUBIC)


def thumbnail(g: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(fh, fw) uint8 grey thumbnail of the box, what the optical flow aligns (one pass over the box)."""
    return np.clip(cv2.resize(g, (shape[1], shape[0]), interpolation=cv2.INTER_AREA) + 0.5, 0, 255).astype(np.uint8)


def descriptor(thumb: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Mean-free grey miniature of the thumbnail: the matching space (lighting offsets cancel, shape remains).
    Taken from the thumbnail, not the box, so the box is read once per frame."""
    d = cv2.resize(thumb.astype(np.float32), (shape[1], shape[0]), interpolation=cv2.INTER_AREA).ravel()
    return (d - d.mean()).astype(np.float32)


def cut_box(frame: np.ndarray, frame_to_face: np.ndarray, box) -> np.ndarray:
    """The box of the S crop, warped straight from the full frame (no detour through a smaller crop)."""
    x0, y0, x1, y1 = box
    m = np.asarray(frame_to_face, np.float64).copy()
    m[:, 2] -= (x0, y0)
    return cv2.warpAffine(frame, m, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


# ---------------------------------------------------------------------------------------------- building
def library_frames(package, frames=None) -> np.ndarray:
    """The library's frames: `frames` (default all) with a valid face, evenly thinned to MAX_EXEMPLARS."""
    idx = np.arange(package.frame_count) if frames is None else np.asarray(list(frames), np.int64)
    idx = idx[np.asarray(package.track.valid, bool)[idx]] if len(idx) else idx
    if len(idx) > MAX_EXEMPLARS:
        idx = idx[np.round(np.linspace(0, len(idx) - 1, MAX_EXEMPLARS)).astype(np.int64)]
    return idx


def build_library(package, crop: str, size: int, native: int, frames=None, progress: bool = False,
                  softness: float = SOFTNESS) -> ExemplarLibrary:
    """Cut, split and index every library frame (see the module docstring); `softness`: the generator's, the
    blur (native pixels) of the round trip the detail band is cut at (backend/detail/softness.py)."""
    idx = library_frames(package, frames)
    if len(idx) == 0:
        raise ValueError("no valid frame to build a detail library from")
    box, fshape = fit_box(lower_face_box(package, idx, crop, size), size, native)
    dshape = descriptor_shape(box)
    x0, y0, x1, y1 = box
    bh, bw = y1 - y0, x1 - x0
    descriptors = np.empty((len(idx), dshape[0] * dshape[1]), np.float32)
    thumbs = np.empty((len(idx), *fshape), np.uint8)
    detail = np.empty((len(idx), bh, bw), np.uint8)
    iterator = idx
    if progress:
        from tqdm import tqdm

        iterator = tqdm(idx, desc=f"{getattr(package, 'name', 'avatar')}: detail library", unit="f", leave=False)
    for k, i in enumerate(iterator):
        g = grey(cut_box(package.frame(int(i)), face_affine(package, int(i), crop, size), box))
        low = round_trip(g, size, native, softness)
        thumbs[k] = thumbnail(low, fshape)
        descriptors[k] = descriptor(thumbs[k], dshape)
        detail[k] = np.clip(np.rint(g - low) + DETAIL_OFFSET, 0, 255).astype(np.uint8)
    return ExemplarLibrary(size, native, box, idx.astype(np.int64), descriptors, thumbs, detail,
                           neighbour_scale(descriptors))


def neighbour_scale(descriptors: np.ndarray) -> float:
    """Median distance of an exemplar to its nearest other one (ignoring its immediate time neighbours)."""
    n = len(descriptors)
    if n < 4:  # too few to have neighbours: the descriptors' own spread
        return float(max(1.0, np.sqrt(float((descriptors ** 2).sum(1).mean())) if n else 1.0))
    sq = (descriptors ** 2).sum(1)
    d2 = sq[:, None] + sq[None, :] - 2.0 * descriptors @ descriptors.T
    band = np.abs(np.arange(n)[:, None] - np.arange(n)[None, :]) <= 1
    d2[band] = np.inf
    return float(max(1.0, np.sqrt(max(0.0, float(np.median(d2.min(1)))))))


# ---------------------------------------------------------------------------------------------- cache
def cache_key(package, crop: str, size: int, native: int, frames: np.ndarray, softness: float = SOFTNESS) -> str:
    """What the library depends on: the package's identity (its manifest and face track file) + parameters."""
    root = Path(package.root)
    parts = {"version": LIBRARY_VERSION, "crop": crop, "size": int(size), "native": int(native),
             "frames": hashlib.sha1(np.ascontiguousarray(frames, np.int64).tobytes()).hexdigest(),
             "max": MAX_EXEMPLARS, "softness": round(float(softness), 3), "widths": [DESCRIPTOR_WIDTH, FLOW_WIDTH]}
    for name in ("manifest.json", "face_det.npz"):
        st = (root / name).stat()
        parts[name] = [st.st_size, st.st_mtime_ns]
    parts["manifest"] = hashlib.sha1((root / "manifest.json").read_bytes()).hexdigest()
    return hashlib.sha1(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def cache_path(package, crop: str, size: int, native: int, softness: float = SOFTNESS) -> Path:
    """One file per softness too: two checkpoints of different sharpness on one avatar do not rebuild in turn."""
    tag = "" if abs(softness - SOFTNESS) < 1e-6 else f"_s{int(round(100 * softness)):03d}"
    return Path(package.root) / ".cache" / f"detail_{crop}_{native}_{size}{tag}.npz"


def load_or_build(package, crop: str, size: int, native: int, frames=None, progress: bool = False,
                  softness: float = SOFTNESS) -> ExemplarLibrary:
    """The cached library when its key matches, else built now and written atomically into <avatar>/.cache/.

    Packages without a folder (tests hold them in memory) are built every time."""
    if getattr(package, "root", None) is None:
        return build_library(package, crop, size, native, frames, progress, softness)
    from stream_wav2lip.atomic import atomic_path

    idx = library_frames(package, frames)
    key = cache_key(package, crop, size, native, idx, softness)
    path = cache_path(package, crop, size, native, softness)
    if path.is_file():
        try:
            with np.load(path) as z:
                if str(z["key"]) == key:
                    return ExemplarLibrary(int(z["size"]), int(z["native"]), tuple(int(v) for v in z["box"]),
                                           z["frames"], z["descriptors"], z["thumbs"], z["detail"], float(z["scale"]))
        except (OSError, ValueError, KeyError) as exc:  # a damaged cache is rebuilt, never trusted
            log.warning("%s: unreadable detail cache, rebuilding (%s)", path, exc)
    lib = build_library(package, crop, size, native, idx, progress, softness)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, key=np.array(key), size=lib.size, native=lib.native, box=np.array(lib.box),
                         frames=lib.frames, descriptors=lib.descriptors, thumbs=lib.thumbs, detail=lib.detail,
                         scale=lib.scale)
    except OSError as exc:  # a read-only avatar folder still gets its detail, just not cached
        log.warning("%s: could not cache the detail library (%s)", path, exc)
    return lib

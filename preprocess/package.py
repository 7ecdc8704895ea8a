"""Reading an avatar package (docs/architecture.md, "The avatar package"): the one format shared by
preprocess, render, serve and training.

Layout::

    <avatar>/
      manifest.json   format_version, fps (25), frame_count, width, height, face_size, head_size, detector +
                      version, pads, smoothing window, source file + sha256, created_at, has_audio, ...
      bg/             full frames at 25 fps (JPEG q>=95), 000000.jpg ...
      body_face/      Wav2Lip-style face crop (detector box + pads) resized to face_size
      heads/          head crop, rotated upright by eye/mouth landmarks, head_size x head_size
      head_face/      face crop taken from the upright head, face_size (what the network sees)
      audio.wav       the source audio, 16 kHz mono 16-bit (absent when the video had no audio track)
      matte/          optional: per-frame alpha matte, 000000.alpha.z ... (preprocess/matte_store.py), described by
                      the manifest's "matte" entry; packages without it (older ones, --no-matte) are opaque
      face_det.npz    body_face_box (N,4) x1,y1,x2,y2 in frame pixels (float32)
                      head_affine   (N,2,3) frame -> head-crop pixels (float32)
                      head_face_box (N,4) x1,y1,x2,y2 in head-crop pixels (float32)
                      landmarks     (N,K,2) in frame pixels (MediaPipe FaceMesh indices, see preprocess.landmarks)
                      valid         (N,) bool (False = no face found, values filled from the nearest valid frames)
      idle_graph.json where the idle may jump without a visible cut (preprocess/idle_graph.py; manifest "idle_graph");
                      absent in older packages: built on first use into .cache/idle_graph.json
      .cache/         optional, derived: decoded frames written by `render` (backend/frame_cache.py); safe to delete

Frames are decoded lazily with a small LRU cache, because a minute of 1080p footage does not fit in RAM
as raw pixels; `preload()` decodes everything for short avatars.
"""
from __future__ import annotations

import json
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stream_wav2lip.errors import UserError

FORMAT_VERSION = 1
CROP_FOLDERS = {"bg": "bg", "body": "body_face", "heads": "heads", "head": "head_face"}
REQUIRED_FILES = ("manifest.json", "face_det.npz")
REQUIRED_ARRAYS = ("body_face_box", "head_affine", "head_face_box", "landmarks", "valid")


def frame_name(i: int) -> str:
    """File name of frame i in every image folder of a package."""
    return f"{i:06d}.jpg"


@dataclass(frozen=True)
class FaceTrack:
    """Per-frame geometry from face_det.npz."""

    body_face_box: np.ndarray  # (N,4) float32
    head_affine: np.ndarray  # (N,2,3) float32, frame -> head crop
    head_face_box: np.ndarray  # (N,4) float32, in head-crop pixels
    landmarks: np.ndarray  # (N,K,2) float32, frame pixels
    valid: np.ndarray  # (N,) bool

    def head_inverse(self, i: int) -> np.ndarray:
        """(2,3) affine head crop -> frame for frame i."""
        m = np.vstack([self.head_affine[i].astype(np.float64), [0.0, 0.0, 1.0]])
        return np.linalg.inv(m)[:2].astype(np.float32)


class _LRU:
    """Least-recently-used cache; thread-safe because `render` reads faces and full frames on two threads.

    The lock is not held while loading (decoding a frame takes milliseconds): two threads asking for the
    same missing key may both decode it, which is harmless.
    """

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.items: OrderedDict = OrderedDict()
        self.lock = threading.Lock()

    def get(self, key, load):
        with self.lock:
            value = self.items.get(key)
            if value is not None:
                self.items.move_to_end(key)
                return value
        value = load()
        with self.lock:
            self.items[key] = value
            while len(self.items) > self.capacity:
                self.items.popitem(last=False)
        return value


class AvatarPackage:
    """An opened, validated avatar package. Use `AvatarPackage.open(path)`."""

    def __init__(self, root: Path, manifest: dict, track: FaceTrack, cache_frames: int = 64):
        self.root = root
        self.manifest = manifest
        self.track = track
        self._cache = _LRU(cache_frames)
        self._frame_loader = None  # decode_frames_with

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, path: str | Path, cache_frames: int = 64) -> "AvatarPackage":
        """Open and validate; a missing or partial package raises a one-line UserError naming what is wrong."""
        root = Path(path)
        if not root.is_dir():
            raise UserError(f"{root}: avatar package folder not found")
        for name in REQUIRED_FILES:
            if not (root / name).is_file():
                inside = [p.name for p in sorted(root.iterdir()) if p.is_dir() and _has_package_files(p)]
                if inside:  # `preprocess --out DIR` writes DIR/<video name>: the user passed the parent
                    raise UserError(f"{root}: not an avatar package, but it holds {', '.join(inside)}: "
                                    f"use {root / inside[0]}")
                raise UserError(f"{root}: not an avatar package (missing {name}); run `stream-wav2lip preprocess` first")
        try:
            manifest = json.loads((root / "manifest.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise UserError(f"{root / 'manifest.json'}: unreadable manifest ({exc})") from None
        if int(manifest.get("format_version", 0)) > FORMAT_VERSION:
            raise UserError(f"{root}: package format {manifest.get('format_version')} is newer than this program "
                            f"understands ({FORMAT_VERSION}); update stream-wav2lip")
        try:
            with np.load(root / "face_det.npz") as z:
                arrays = {k: z[k] for k in REQUIRED_ARRAYS}
        except (OSError, ValueError, KeyError) as exc:
            raise UserError(f"{root / 'face_det.npz'}: unreadable or incomplete ({exc})") from None
        track = FaceTrack(**arrays)
        n = int(manifest.get("frame_count", -1))
        if n <= 0 or any(len(a) != n for a in arrays.values()):
            raise UserError(f"{root}: manifest frame_count {n} does not match face_det.npz ({len(track.valid)} rows)")
        for folder in ("bg", "head_face", "body_face"):
            last = root / folder / frame_name(n - 1)
            if not last.is_file():
                raise UserError(f"{root}: incomplete package, {folder}/{frame_name(n - 1)} is missing")
        if manifest.get("matte"):
            from preprocess.matte_store import MATTE_FOLDER, matte_name

            if not (root / MATTE_FOLDER / matte_name(n - 1)).is_file():
                raise UserError(f"{root}: incomplete package, {MATTE_FOLDER}/{matte_name(n - 1)} is missing "
                                f"(run `stream-wav2lip preprocess --matte-only {root}`)")
        return cls(root, manifest, track, cache_frames)

    # ------------------------------------------------------------------ facts
    @property
    def name(self) -> str:
        return self.root.name

    @property
    def frame_count(self) -> int:
        return int(self.manifest["frame_count"])

    @property
    def fps(self) -> float:
        return float(self.manifest.get("fps", 25))

    @property
    def width(self) -> int:
        return int(self.manifest["width"])

    @property
    def height(self) -> int:
        return int(self.manifest["height"])

    @property
    def face_size(self) -> int:
        return int(self.manifest["face_size"])

    @property
    def head_size(self) -> int:
        return int(self.manifest["head_size"])

    @property
    def audio_path(self) -> Path | None:
        p = self.root / "audio.wav"
        return p if p.is_file() else None

    def idle_graph(self):
        """The video-texture jump table (preprocess.idle_graph.IdleGraph): the package's own, else cached in
        .cache/, else built now (~1 s for a minute of footage, ~15 s for five: it grows with the square) and
        cached. Loaded once per package."""
        graph = getattr(self, "_idle_graph", None)
        if graph is None:
            from preprocess.idle_graph import load_or_build

            graph = self._idle_graph = load_or_build(self.root, self.frame_count)
        return graph

    def action(self, name: str) -> "AvatarPackage":
        """The package of action clip `name` (<avatar>/actions/<name>/, preprocess.actions), opened once."""
        opened = self.__dict__.setdefault("_actions", {})
        if name not in opened:
            opened[name] = AvatarPackage.open(self.root / "actions" / name, self._cache.capacity)
        return opened[name]

    # ------------------------------------------------------------------ images
    def image_path(self, kind: str, i: int) -> Path:
        """kind: 'bg' | 'body' | 'head' | 'heads' (see CROP_FOLDERS)."""
        return self.root / CROP_FOLDERS[kind] / frame_name(i)

    def image(self, kind: str, i: int) -> np.ndarray:
        """BGR uint8 image `kind` of frame i (cached)."""
        if kind == "bg" and self._frame_loader is not None:
            return self._cache.get((kind, i), lambda: self._load_frame(i))
        return self._cache.get((kind, i), lambda: read_image(self.image_path(kind, i)))

    def _load_frame(self, i: int) -> np.ndarray:
        image = self._frame_loader(i)
        return read_image(self.image_path("bg", i)) if image is None else image

    def decode_frames_with(self, loader) -> None:
        """Get full frames from `loader(i)` (BGR; None: decode that one's JPEG) instead of decoding their JPEGs:
        `serve` converts them from the avatar's decoded-frame cache (backend/frame_cache.py): 1.8 ms a 1080p
        frame instead of 12."""
        self._frame_loader = loader

    def cached(self, key, load):
        """`load()` once per key, kept in the same LRU as the images (other decoded forms of the frames)."""
        return self._cache.get(key, load)

    def frame(self, i: int) -> np.ndarray:
        """Full frame i, BGR uint8 (H, W, 3)."""
        return self.image("bg", i)

    @property
    def has_matte(self) -> bool:
        """True when the package stores a per-frame alpha matte (transparent and replaced backgrounds)."""
        return bool(self.manifest.get("matte"))

    def alpha(self, i: int) -> np.ndarray:
        """The matte of frame i: (H, W) uint8, 255 = the person, 0 = their background (cached, read-only).

        A package without a matte raises UserError (check `has_matte` first: such a package is opaque).
        """
        if not self.has_matte:
            raise UserError(f"{self.root}: this avatar has no matte; add one with "
                            f"`stream-wav2lip preprocess --matte-only {self.root}`")
        from preprocess.matte_store import MATTE_FOLDER, matte_name, read_alpha

        path = self.root / MATTE_FOLDER / matte_name(i)
        return self._cache.get(("alpha", i), lambda: _read_only(read_alpha(path, self.width, self.height)))

    def face(self, i: int, crop: str = "head") -> np.ndarray:
        """The network's face crop of frame i: crop 'head' (upright, head_face/) or 'body' (body_face/)."""
        return self.image(crop, i)

    def keep(self, kinds: tuple[str, ...] = ("bg", "head")) -> None:
        """Make the cache big enough to keep every frame of `kinds` once decoded (decoded when first used;
        "alpha" counts as a kind)."""
        self._cache.capacity = max(self._cache.capacity, self.frame_count * len(kinds) + 1)

    def preload(self, kinds: tuple[str, ...] = ("bg", "head")) -> None:
        """Decode every frame of `kinds` into the cache now (serve: no decoding on the real-time path)."""
        self.keep(kinds)
        for kind in kinds:
            for i in range(self.frame_count):
                self.alpha(i) if kind == "alpha" else self.image(kind, i)


def _has_package_files(folder: Path) -> bool:
    return all((folder / name).is_file() for name in REQUIRED_FILES)


def _read_only(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array


def read_image(path: Path) -> np.ndarray:
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise UserError(f"{path}: unreadable image in avatar package")
    return img


def is_avatar_package(path: str | Path) -> bool:
    """Cheap check used by dropdowns (OBS panel): manifest + face_det present."""
    p = Path(path)
    return all((p / n).is_file() for n in REQUIRED_FILES)

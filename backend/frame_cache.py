"""Decoded avatar frames on disk: every background frame of a package as raw I420 planes in one file.

Why: a 1080p background JPEG (quality >= 95) costs ~7.5 ms of CPU to decode, as much as everything else
around the network together, and `render` needs one per output frame, again on every ping-pong pass and
every render of the same avatar. Raw planes are read through a memory map: the first render of an avatar
decodes each frame once while writing this file, later ones (and later passes) cost a page-cache read.
1.5 bytes per pixel: 0.8 GB for 10 s of 1080p, so it holds at most MAX_BYTES and leaves room on the disk.
Longer footage (over ~55 s of 1080p, ~2 min of 720p) is cached as far as the cap goes -- its first frames --
and the rest decode on the fly: every frame served from the map is a decode saved, and a partial cache is
worth the same per frame as a whole one (a 2-minute 1080p avatar in `serve`: 46 % of its frames cached,
~3.4 ms of a core saved per frame on average).

Layout (inside the package, so it goes away with it): `.cache/bg_i420.raw` = frame 0 (Y H×W, U and V
H/2×W/2, limited-range BT.601 as backend.yuv decodes them), frame 1, ...; `.cache/bg_i420.json` says what it
was built from (size, frame count, the frames' folder and its first and last JPEG: `_stamp`) and how many frames
it holds (`cached`). `preprocess` builds it as the package's last step. Both are written under temporary names and
renamed, the JSON last, so a cache is either complete and current or ignored.
"""
from __future__ import annotations

import json
import mmap
import os
import shutil
from pathlib import Path

import numpy as np

from backend.yuv import I420, split_planes

CACHE_FOLDER = ".cache"
RAW_NAME, META_NAME = "bg_i420.raw", "bg_i420.json"
FORMAT = "i420-bt601-limited/2"  # /2: stamped by the frames, not the manifest
MAX_BYTES = 4 << 30  # frames past this are decoded on the fly
FREE_MARGIN = 1 << 30  # leave this much disk free
MIN_FRAMES = 25  # a cache of fewer frames than this (a second) is not worth its file


class FrameCache:
    """Read-only, memory-mapped I420 frames of one package: its first `count` frames (all of them unless the
    footage is over the cap). `open_or_build(package)` to get one."""

    def __init__(self, raw: Path, width: int, height: int, count: int):
        self.width, self.height, self.count = width, height, count
        self.frame_bytes = width * height * 3 // 2
        with open(raw, "rb") as f:
            self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        if len(self._map) != self.frame_bytes * count:
            self._map.close()
            raise ValueError(f"{raw}: {len(self._map)} bytes, expected {self.frame_bytes * count}")
        self._data = np.frombuffer(self._map, np.uint8)

    def frame(self, i: int) -> I420 | None:
        """Frame i as read-only views into the map (nothing is copied until the encoder's frame is made); None
        past the frames the cache holds (the caller decodes that one)."""
        if not 0 <= i < self.count:
            return None
        base = i * self.frame_bytes
        return split_planes(self._data[base:base + self.frame_bytes], self.height, self.width)

    def bgr(self, i: int) -> np.ndarray | None:
        """Frame i converted to BGR (serve with a backdrop), or None past the frames the cache holds."""
        planes = self.frame(i)
        return None if planes is None else planes.to_bgr()

    # ------------------------------------------------------------------ opening / building
    @classmethod
    def open(cls, package) -> "FrameCache | None":
        """The package's cache if it is complete and was built from this package, else None."""
        folder = Path(package.root) / CACHE_FOLDER
        try:
            meta = json.loads((folder / META_NAME).read_text(encoding="utf-8"))
            stamp = _stamp(package)
        except (OSError, ValueError):
            return None
        if not isinstance(meta, dict):
            return None
        cached = meta.pop("cached", package.frame_count)
        if meta != stamp or not isinstance(cached, int) or not 0 < cached <= package.frame_count:
            return None
        try:
            return cls(folder / RAW_NAME, package.width, package.height, cached)
        except (OSError, ValueError):
            return None

    @classmethod
    def open_or_build(cls, package, *, frames_used: int | None = None, progress: bool = False, log=print,
                      note=None) -> "FrameCache | None":
        """Open the cache, or build it when it is worth it and possible; None: decode on the fly. With
        `frames_used` (render: the frames its audio covers) it is built only when the caller decodes at least
        the frames it would hold anyway (a short clip of a long avatar does not). `log` says why there is none;
        `note`, if given, that one is being built (serve's log; render shows a progress bar instead)."""
        cache = cls.open(package)
        if cache is not None:
            return cache
        count, why = cls.cacheable(package)
        if not count:
            log(f"{package.root}: decoding frames on the fly ({why})")
            return None
        if frames_used is not None and frames_used < count:
            return None
        if note is not None:
            some = f"the first {count} of the avatar's {package.frame_count} frames ({why})" if why else (
                f"the avatar's {package.frame_count} frames")
            note(f"{Path(package.root).name}: decoding {some} once into {Path(package.root) / CACHE_FOLDER} "
                 f"(later renders and starts read them from there)")
        elif why:
            log(f"{package.root}: caching the first {count} of {package.frame_count} frames ({why}); the rest "
                f"decode on the fly")
        try:
            cls.build(package, progress=progress, count=count)
        except OSError as exc:  # read-only package, disk full: render without it
            log(f"{package.root}: cannot write the frame cache ({exc}); decoding frames on the fly")
            return None
        return cls.open(package)

    @staticmethod
    def cacheable(package) -> tuple[int, str]:
        """How many of the package's frames a cache should hold (0: none) and, when not all, why."""
        if package.width % 2 or package.height % 2:
            return 0, "odd frame size"
        frame_bytes = package.width * package.height * 3 // 2
        try:
            free = shutil.disk_usage(package.root).free
        except OSError:
            return 0, "cannot tell the free disk space"
        count, why = package.frame_count, ""
        if frame_bytes * count > MAX_BYTES:
            count = MAX_BYTES // frame_bytes
            why = (f"all would take {frame_bytes * package.frame_count / 2**30:.1f} GB, the cap is "
                   f"{MAX_BYTES / 2**30:.0f} GB")
        if frame_bytes * count + FREE_MARGIN > free:
            count = max(0, (free - FREE_MARGIN) // frame_bytes)
            why = f"only {free / 2**30:.1f} GB free on disk"
        if count < min(MIN_FRAMES, package.frame_count):
            return 0, why
        return int(count), why

    @staticmethod
    def build(package, *, progress: bool = False, count: int | None = None) -> None:
        """Decode the first `count` background frames (default all) once and write the cache (temporary names,
        then rename)."""
        from backend.compositor import load_i420

        count = package.frame_count if count is None else int(count)
        folder = Path(package.root) / CACHE_FOLDER
        folder.mkdir(exist_ok=True)
        raw_tmp, meta_tmp = folder / f".tmp-{os.getpid()}-{RAW_NAME}", folder / f".tmp-{os.getpid()}-{META_NAME}"
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=count, unit="frame", desc="caching decoded frames", dynamic_ncols=True)
        try:
            (folder / META_NAME).unlink(missing_ok=True)  # an old cache is invalid from here on
            with open(raw_tmp, "wb") as f:
                for i in range(count):
                    yuv = load_i420(package.image_path("bg", i))
                    for plane in (yuv.y, yuv.u, yuv.v):
                        f.write(np.ascontiguousarray(plane).data)
                    if bar is not None:
                        bar.update(1)
            os.replace(raw_tmp, folder / RAW_NAME)
            meta_tmp.write_text(json.dumps({**_stamp(package), "cached": count}), encoding="utf-8")
            os.replace(meta_tmp, folder / META_NAME)
        finally:
            if bar is not None:
                bar.close()
            raw_tmp.unlink(missing_ok=True)
            meta_tmp.unlink(missing_ok=True)


def _stamp(package) -> dict:
    """What the cached planes were decoded from: the frames' folder and its first and last JPEG (sizes and
    times; a rebuilt package has new ones). Not the manifest: adding an action clip or a matte rewrites it
    but leaves the footage as it was, and a cache built by `preprocess` should survive both."""
    def stat(path: Path) -> list[int]:
        st = os.stat(path)
        return [st.st_size, st.st_mtime_ns]

    first = Path(package.image_path("bg", 0))
    return {"format": FORMAT, "width": package.width, "height": package.height, "frame_count": package.frame_count,
            "frames": [*stat(first.parent), *stat(first), *stat(package.image_path("bg", package.frame_count - 1))]}

"""Making a package's matte: per frame inside `preprocess` (MatteWriter), or afterwards for an existing package
(`preprocess --matte-only PKG`, `add_matte`), without redoing the tracking.

The segmentation matte has an in-order part (the temporal stabiliser) and a stateless full-resolution part;
the first runs on the caller's thread, the second, with the lossless write, on the caller's worker pool
(OpenCV and zlib release the GIL), like the JPEG crops. A green-screen key is stateless: all on the pool.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from preprocess.matte_store import MATTE_FOLDER, METHODS, matte_entry, matte_name, write_alpha
from stream_wav2lip.errors import UserError

Submit = Callable[..., None]


def check_method(method: str | None) -> None:
    if method is not None and method not in METHODS:
        raise UserError(f"--matte {method}: unknown (one of {', '.join(METHODS)}; --no-matte for none)")


class MatteWriter:
    """`add(i, frame, landmarks)` for every frame in order; `entry()` is the manifest's description afterwards.

    method: "segment" (selfie segmentation) or "green" (a keyer that has seen the first frame: it also
    despills, see preprocess.matte_green). `submit(fn, *args)` runs work on a pool (default: at once).
    `on_matte(i, frame, alpha)` is called from that work (preview tiles).
    """

    def __init__(self, folder: Path, method: str = "segment", submit: Submit | None = None, keyer=None,
                 on_matte: Callable[[int, np.ndarray, np.ndarray], None] | None = None):
        check_method(method)
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.method = method
        self.submit = submit or (lambda fn, *args: fn(*args))
        self.on_matte = on_matte
        self.count = 0
        self.size: tuple[int, int] | None = None
        self.keyer = keyer
        self.maker = None
        if method == "segment":
            from preprocess.matte import MatteMaker

            self.maker = MatteMaker()
        elif keyer is None:
            from preprocess.matte_green import GreenKeyer

            self.keyer = GreenKeyer(source=str(folder))

    def add(self, i: int, frame: np.ndarray, landmarks: np.ndarray | None) -> None:
        self.size = (frame.shape[1], frame.shape[0])
        if self.maker is not None:
            coarse = self.maker.coarse(frame, landmarks)
            self.submit(self._finish, i, frame, coarse)
        else:
            self.keyer._ensure(frame)  # measure the key on the first frame, in order
            self.submit(self._finish, i, frame, None)
        self.count += 1

    def _finish(self, i: int, frame: np.ndarray, coarse) -> None:
        alpha = self.maker.refine(frame, coarse) if coarse is not None else self.keyer.alpha(frame)
        write_alpha(self.folder / matte_name(i), alpha)
        if self.on_matte is not None:
            self.on_matte(i, frame, alpha)

    def close(self) -> None:
        if self.maker is not None:
            self.maker.close()

    def entry(self) -> dict:
        how = self.maker.settings.describe() if self.maker is not None else self.keyer.describe()
        if self.method == "segment":
            from preprocess.tracking import mediapipe_version

            how = {"model_file": "mediapipe selfie_segmentation (inside the mediapipe wheel)",
                   "mediapipe": mediapipe_version(), **how}
        w, h = self.size or (0, 0)
        return matte_entry(self.method, w, h, self.count, **how)


def add_matte(package_dir: str | Path, method: str = "segment", force: bool = False, workers: int = 2,
              progress: bool = False) -> dict:
    """Give an existing package a matte (`preprocess --matte-only`): reads bg/ and the stored landmarks, writes
    matte/ (renamed into place when complete), the manifest entry and a new preview.jpg. Returns the entry.

    A package that already has one is left alone unless `force`. With method "green" the stored frames are
    not despilled (they were written already): rebuild the package with `--matte green --force` for that.
    """
    from tqdm import tqdm

    from preprocess.api import _Writer
    from preprocess.package import AvatarPackage
    from preprocess.preview import draw_tile, matte_tile, paired_sheet, sample_indices
    from preprocess.writer import update_manifest
    from preprocess.tracking import native_stderr_silenced
    from stream_wav2lip.atomic import atomic_dir, atomic_path

    check_method(method)
    package = AvatarPackage.open(package_dir)
    root = package.root
    if package.has_matte and not force:
        return dict(package.manifest["matte"])
    n = package.frame_count
    tiles: dict[int, np.ndarray] = {}
    wanted = set(sample_indices(n))
    pool = _Writer(workers)
    with atomic_dir(root / MATTE_FOLDER) as tmp, native_stderr_silenced() as stderr:
        def keep_tile(i: int, frame: np.ndarray, alpha: np.ndarray) -> None:
            if i in wanted:
                tiles[i] = matte_tile(frame, alpha, i)

        writer = MatteWriter(tmp, method, submit=pool.submit, on_matte=keep_tile)
        try:
            for i in tqdm(range(n), desc=f"{package.name}: matte", unit="f", disable=not progress, leave=False,
                          file=stderr):
                landmarks = package.track.landmarks[i] if package.track.valid[i] else None
                writer.add(i, package.frame(i), landmarks)
            pool.drain()
        finally:
            pool.close()
            writer.close()
    entry = writer.entry()
    update_manifest(root, "matte", entry)
    if tiles:  # preview.jpg again, each tracking tile now beside its matte
        from preprocess.crops import write_jpeg

        track = package.track
        drawn = [draw_tile(package.frame(i), i, track, track.landmarks[i], bool(track.valid[i]), package.head_size)
                 for i in sorted(tiles)]
        with atomic_path(root / "preview.jpg") as tmp_preview:
            write_jpeg(tmp_preview, paired_sheet(drawn, [tiles[i] for i in sorted(tiles)]), quality=90)
    return entry

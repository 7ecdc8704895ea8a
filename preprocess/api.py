"""Video -> avatar package (docs/architecture.md, "The avatar package"): the whole preprocess pipeline for
one input file.

Two passes over the decoded 25 fps frames, because smoothing and gap filling need the whole track before any
crop can be cut:

1. decode + track: landmarks per frame (None where no face), full frames written to bg/ meanwhile;
2. smooth the per-frame geometry parameters, fill the gaps, then cut body_face/, heads/, head_face/ and the
   preview tiles. Short clips keep their frames in memory between the passes; long ones are decoded again
   (decoding is deterministic, and a minute of 1080p does not fit in RAM).

JPEG encoding and cropping run in a small thread pool (OpenCV releases the GIL), the tracker in this thread.
Everything is written into a temporary folder that is renamed into place when complete.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from preprocess import landmarks as L
from preprocess.package import CROP_FOLDERS, frame_name, is_avatar_package
from stream_wav2lip.errors import UserError

DEFAULT_PADS = (0, 10, 0, 0)
IN_MEMORY_BUDGET = 768 * 1024 * 1024  # bytes of decoded frames kept between the passes
LANDMARK_SMOOTH = 2  # half-window for the stored landmarks: keeps ~80 % of a 5 Hz lip movement


def default_head_size(face_size: int) -> int:
    """256 for the 96 px network, twice the face for the HD ones (what enhancers are fed)."""
    return max(256, 2 * int(face_size))


@dataclass
class PackageReport:
    """One line of the CLI summary table."""

    source: Path
    status: str  # "ok" | "skipped" | "failed"
    path: Path | None = None
    frames: int = 0
    valid_fraction: float = 0.0
    seconds: float = 0.0
    message: str = ""
    warnings: list[str] = field(default_factory=list)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


def preprocess_video(path: str | Path, out_root: str | Path, face_size: int = 96, head_size: int | None = None,
                     pads: tuple[int, int, int, int] = DEFAULT_PADS, smooth: int = 5, device: str = "auto",
                     max_seconds: float | None = None, force: bool = False, train_dir: str | Path | None = None,
                     workers: int | None = None, progress: bool = False, matte: str | None = "segment",
                     frame_cache: bool | None = None) -> Path:
    """Build (or reuse) the avatar package of one video and return its folder (`out_root/<video stem>`).

    Raises UserError with a one-line "<file>: <reason>" for inputs that cannot become a package.
    matte: "segment" (default: selfie segmentation), "green" (green/blue screen key + spill suppression) or
    None (no matte); see preprocess/matte.py. frame_cache: decode the frames into the package's frame cache
    at the end (None = unless `train_dir` is given: a training corpus of many videos is no set of avatars, and
    the cache is up to 4 GB a package).
    """
    report = build_package(path, out_root, face_size=face_size, head_size=head_size, pads=pads, smooth=smooth,
                           device=device, max_seconds=max_seconds, force=force, train_dir=train_dir,
                           workers=workers, progress=progress, matte=matte, frame_cache=frame_cache)
    assert report.path is not None
    return report.path


def build_package(path: str | Path, out_root: str | Path, face_size: int = 96, head_size: int | None = None,
                  pads: tuple[int, int, int, int] = DEFAULT_PADS, smooth: int = 5, device: str = "auto",
                  max_seconds: float | None = None, force: bool = False, train_dir: str | Path | None = None,
                  workers: int | None = None, progress: bool = False, matte: str | None = "segment",
                  frame_cache: bool | None = None) -> PackageReport:
    """Like `preprocess_video` but returns the summary row (status ok/skipped); errors still raise UserError."""
    from preprocess.video import probe

    t0 = time.perf_counter()
    source = Path(path)
    from preprocess.matte_build import check_method

    check_options(face_size, head_size, pads, smooth, max_seconds, workers)
    check_method(matte)
    info = probe(source)
    out_root = Path(out_root)
    final = out_root / source.stem
    report = PackageReport(source, "ok", final)
    if final.exists() and not force:
        if not is_avatar_package(final):
            raise UserError(f"{final}: exists and is not an avatar package; remove it or pick another --out")
        report.status = "skipped"
        report.message = "package exists (--force rebuilds)"
        import json

        old = json.loads((final / "manifest.json").read_text(encoding="utf-8"))
        if matte and not old.get("matte"):
            report.warnings.append(f"existing package has no matte; add one with `stream-wav2lip preprocess "
                                   f"--matte-only {final}`")
        if int(old.get("face_size", face_size)) != int(face_size):
            report.warnings.append(f"existing package has face size {old.get('face_size')}, not {face_size}; "
                                   "add --force to rebuild it")
    else:
        _remove_stale_temporaries(out_root, final.name)
        head_size = int(head_size or default_head_size(face_size))
        _build(info, final, face_size, head_size, tuple(int(p) for p in pads), int(smooth), device, max_seconds,
               workers or min(2, os.cpu_count() or 1), progress, report, matte)
        _prepare_generators(final, report)
        _write_idle_graph(final, report)
        if (train_dir is None) if frame_cache is None else frame_cache:  # default: avatars, not training corpora
            _cache_frames(final, report, progress)
    import json

    manifest = json.loads((final / "manifest.json").read_text(encoding="utf-8"))
    report.frames = int(manifest["frame_count"])
    report.valid_fraction = float(manifest.get("valid_fraction", 0.0))
    if train_dir is not None:
        from preprocess.trainset import write_video_clips

        clips = write_video_clips(final, Path(train_dir), force=force or report.status == "ok")
        if clips == 0:
            report.warnings.append("no training clips (no audio, or no valid run of >= 1 s)")
    report.seconds = time.perf_counter() - t0
    return report


# ------------------------------------------------------------------------------------------------- internals
def check_options(face_size, head_size, pads, smooth, max_seconds, workers) -> None:
    """One UserError listing every bad option (so the CLI can refuse before touching any video)."""
    problems = []
    if int(face_size) < 32:
        problems.append(f"face size {face_size} is too small (>= 32)")
    if head_size is not None and int(head_size) < 64:
        problems.append(f"head size {head_size} is too small (>= 64)")
    if len(tuple(pads)) != 4 or any(int(p) < 0 for p in pads):
        problems.append(f"pads {tuple(pads)} must be 4 numbers >= 0 (top bottom left right)")
    if int(smooth) < 0:
        problems.append(f"smooth {smooth} must be >= 0")
    if max_seconds is not None and float(max_seconds) <= 0:
        problems.append(f"max seconds {max_seconds} must be > 0")
    if workers is not None and int(workers) < 1:
        problems.append(f"workers {workers} must be >= 1")
    if problems:
        raise UserError("preprocess options: " + "; ".join(problems))


def _remove_stale_temporaries(out_root: Path, name: str) -> None:
    """A crashed earlier run leaves `.tmp-<name>.*`; it is never a finished package, so it goes."""
    if out_root.is_dir():
        for p in out_root.glob(f".tmp-{name}.*"):
            shutil.rmtree(p, ignore_errors=True)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class _Writer:
    """Bounded thread pool: at most 2*workers jobs in flight so decoded frames do not pile up in memory."""

    def __init__(self, workers: int):
        self.pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="preprocess-jpeg")
        self.pending: deque[Future] = deque()
        self.limit = 2 * max(1, workers)

    def submit(self, fn, *args) -> None:
        self.pending.append(self.pool.submit(fn, *args))
        while len(self.pending) > self.limit:
            self.pending.popleft().result()

    def drain(self) -> None:
        while self.pending:
            self.pending.popleft().result()

    def close(self) -> None:
        self.drain()
        self.pool.shutdown()


def _build(info, final: Path, face_size: int, head_size: int, pads, smooth: int, device: str,
           max_seconds: float | None, workers: int, progress: bool, report: PackageReport,
           matte: str | None = "segment") -> None:
    from tqdm import tqdm

    from preprocess.audio_track import extract_audio, speech_seconds
    from preprocess.crops import write_jpeg
    from preprocess.geometry import RawGeometry, build_geometry, raw_geometry
    from preprocess.matte_build import MatteWriter
    from preprocess.matte_store import MATTE_FOLDER
    from preprocess.preview import contact_sheet, draw_tile, matte_tile, paired_sheet, sample_indices
    from preprocess.smoothing import fill_gaps, smooth_series
    from preprocess.tracking import DETECTOR_NAME, FaceTracker, mediapipe_version, native_stderr_silenced
    from preprocess.video import FPS, iter_frames_25fps, prefetch
    from preprocess.writer import (base_manifest, frame_crops, make_folders, write_face_det, write_manifest,
                                   write_wav16)
    from stream_wav2lip.atomic import atomic_dir

    if device == "cuda":
        report.warnings.append("face tracking runs on the CPU (mediapipe); --device cuda has no effect here")
    max_frames = max(1, int(round(max_seconds * FPS))) if max_seconds else None
    total = min(info.expected_frames, max_frames) if max_frames else info.expected_frames
    name = final.name
    with atomic_dir(final) as tmp, native_stderr_silenced() as stderr:
        make_folders(tmp)
        writer = _Writer(workers)
        bar = tqdm(total=total, desc=f"{name}: track", unit="f", disable=not progress, leave=False, file=stderr)
        try:
            # ---------------------------------------------------------------- pass 1: decode, track, bg/
            found: list[np.ndarray | None] = []
            kept: list[np.ndarray] | None = []
            kept_bytes = 0
            wanted = set(sample_indices(total))  # preview frames; re-sampled below once n is known
            matte_tiles: dict[int, np.ndarray] = {}

            def keep_matte_tile(i: int, frame: np.ndarray, alpha: np.ndarray) -> None:
                if i in wanted:
                    matte_tiles[i] = matte_tile(frame, alpha, i)

            mattes = None
            keyer = None
            if matte == "green":  # keyed on the frames as decoded, then despilled before anything else sees them
                from preprocess.matte_green import GreenKeyer

                keyer = GreenKeyer(source=str(info.path))
                mattes = MatteWriter(tmp / MATTE_FOLDER, "green", submit=writer.submit, keyer=keyer,
                                     on_matte=keep_matte_tile)
            with FaceTracker() as tracker:
                for i, frame in enumerate(prefetch(iter_frames_25fps(info, max_frames))):
                    if keyer is not None:
                        mattes.add(i, frame, None)
                        frame = keyer.despill(frame)
                    found.append(tracker.process(frame))
                    writer.submit(write_jpeg, tmp / CROP_FOLDERS["bg"] / frame_name(i), frame)
                    if kept is not None:
                        kept_bytes += frame.nbytes
                        kept.append(frame)
                        if kept_bytes > IN_MEMORY_BUDGET:
                            kept = None  # too long to hold: pass 2 decodes again
                    bar.update(1)
            n = len(found)
            height, width = _first_shape(kept, info)
            valid = np.array([lm is not None for lm in found], bool)
            if not valid.any():
                raise UserError(f"{info.path}: no face found in any of its {n} frames")
            lm = np.zeros((n, L.NUM_LANDMARKS, 2))
            lm[valid] = np.stack([x for x in found if x is not None])
            lm = fill_gaps(lm, valid)

            # ---------------------------------------------------------------- smoothing + geometry
            params = raw_geometry(lm).stacked()
            params[:, 6] = np.unwrap(params[:, 6])  # head angle: no jump at +-pi
            params = fill_gaps(smooth_series(params, valid, smooth), valid)
            geometry = build_geometry(RawGeometry.from_stacked(params), width, height, head_size, pads)
            landmarks = fill_gaps(smooth_series(lm, valid, min(smooth, LANDMARK_SMOOTH)), valid)

            # ---------------------------------------------------------------- pass 2: crops + preview
            bar.reset(total=n)
            bar.set_description(f"{name}: crops")
            if mattes is None and matte == "segment":
                mattes = MatteWriter(tmp / MATTE_FOLDER, "segment", submit=writer.submit, on_matte=keep_matte_tile)
            if set(sample_indices(n)) != wanted:  # fewer frames than the container said: no green tiles then
                writer.drain()
                wanted.clear()
                wanted.update(sample_indices(n))
                matte_tiles.clear()
            tiles: dict[int, np.ndarray] = {}

            def crop_job(i: int, frame: np.ndarray) -> None:
                for folder, image in frame_crops(frame, geometry, i, face_size, head_size).items():
                    if folder != CROP_FOLDERS["bg"]:
                        write_jpeg(tmp / folder / frame_name(i), image)
                if i in wanted:
                    tiles[i] = draw_tile(frame, i, geometry, landmarks[i], bool(valid[i]), head_size)

            frames = kept if kept is not None else prefetch(iter_frames_25fps(info, n))
            if kept is None and keyer is not None:
                frames = map(keyer.despill, frames)
            for i, frame in enumerate(frames):
                if i >= n:
                    break
                writer.submit(crop_job, i, frame)
                if mattes is not None and matte == "segment":
                    mattes.add(i, frame, landmarks[i] if valid[i] else None)
                bar.update(1)
            writer.drain()
            kept = None
            ordered = [tiles[i] for i in sorted(tiles)]
            if mattes is not None and len(matte_tiles) == len(tiles):
                sheet = paired_sheet(ordered, [matte_tiles[i] for i in sorted(tiles)])
            else:
                sheet = contact_sheet(ordered)
            write_jpeg(tmp / "preview.jpg", sheet, quality=90)
        finally:
            bar.close()
            writer.close()
            if mattes is not None:
                mattes.close()

        # -------------------------------------------------------------------- audio, arrays, manifest
        wav = extract_audio(info, n)
        if wav is not None:
            write_wav16(tmp / "audio.wav", wav)
        elif info.has_audio:
            report.warnings.append("audio track could not be decoded; package has no audio.wav")
        write_face_det(tmp, geometry, landmarks, valid)
        write_manifest(tmp, base_manifest(
            frame_count=n, width=width, height=height, face_size=face_size, head_size=head_size,
            detector=DETECTOR_NAME, detector_version=f"mediapipe {mediapipe_version()}",
            landmark_count=L.NUM_LANDMARKS, pads=list(pads), smooth=smooth, landmark_smooth=min(smooth, LANDMARK_SMOOTH),
            face_crop="head_face", device="cpu",
            source=str(Path(info.path).resolve()), source_name=Path(info.path).name, source_sha256=_sha256(info.path),
            source_fps=round(info.source_fps, 3), source_codec=info.codec, source_duration_s=round(info.duration_s, 3),
            max_seconds=max_seconds, duration_s=n / FPS, has_audio=wav is not None,
            audio_sample_rate=16000 if wav is not None else None,
            speech_seconds=round(speech_seconds(wav), 2) if wav is not None else 0.0,
            valid_fraction=round(float(valid.mean()), 4),
            matte=mattes.entry() if mattes is not None else None,
        ))


def _first_shape(kept, info) -> tuple[int, int]:
    """(height, width) of the decoded (rotation-corrected) frames."""
    from preprocess.video import iter_frames_25fps

    if kept:
        return kept[0].shape[:2]
    return next(iter_frames_25fps(info, 1)).shape[:2]


def _write_idle_graph(package_dir: Path, report: PackageReport) -> None:
    """The video-texture idle's jump table (cheap); a failure is a warning: it is rebuilt lazily on first use."""
    try:
        from preprocess.idle_graph import write_to_package

        write_to_package(package_dir)
    except Exception as exc:  # noqa: BLE001 - an optional derived table must not fail the package
        report.warnings.append(f"idle jump table not written: {type(exc).__name__}: {exc}")


def _cache_frames(package_dir: Path, report: PackageReport, progress: bool) -> None:
    """Decode the new package's frames once into its frame cache (backend/frame_cache.py) now, so the first
    `serve` start (a streamer pressing Start in OBS) does not spend ~3 s per 10 s of 1080p footage on it. No
    room, or too long for a whole cache: the reason is a warning line; serve and render decode the rest."""
    from backend.frame_cache import FrameCache
    from preprocess.package import AvatarPackage

    try:
        FrameCache.open_or_build(AvatarPackage.open(package_dir), progress=progress, log=report.warnings.append)
    except Exception as exc:  # noqa: BLE001 - a derived cache must not fail the package
        report.warnings.append(f"frame cache not written: {type(exc).__name__}: {exc}")


def _prepare_generators(package_dir: Path, report: PackageReport) -> None:
    """Each registered generator's per-avatar preparation (the mouth engine's calibration); a failure there is
    a warning, the package stays valid."""
    from backend.generators.registry import prepare_avatar

    report.warnings.extend(prepare_avatar(package_dir))

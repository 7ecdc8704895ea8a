"""fp32 through ONNX Runtime for `serve`'s single-threaded CPU calls: the same weights, the same precision,
about a fifth more frames.

Why (issue 15): `serve` runs the network as one single-threaded call per core, side by side. Measured on a
2-core Xeon (docs/benchmarks.md, session 9), wav2lip96 at batch 1: torch 21.0-21.2 fps, an ONNX Runtime fp32
session 25.5-26.2; serve's streamed distinct speech frames 17.6-18.2/s with torch, 21.1-23.1 with the session.
int8 already runs through such sessions (backend/generators/precision.py).

Where the exported network lives: exporting wav2lip96 costs 2-5 s of a 2-core CPU, on every Start if it were
redone each time. It is kept per *checkpoint* (its content hash, the torch version and EXPORT_FORMAT) in the user's
cache folder, `$XDG_CACHE_HOME/stream-wav2lip/fp32-onnx/` (Windows: `%LOCALAPPDATA%`), written under a temporary
name and renamed; only the CACHE_KEEP most recently used stay (145 MB each), so every avatar shares one file and
the folder cannot grow. A cache that cannot be written (read-only home) means a temporary export, as before.

Safety: the session is used only after it draws the same faces as torch on real samples of the avatar, at every
start (at most MAX_LEVELS grey level apart: float rounding, nothing else). A cached file that fails to load or
to match is deleted and exported again once; anything else -- no onnxruntime, an export or load failure, a
mismatch -- keeps torch, with one log line.
"""
from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

log = logging.getLogger(__name__)

MAX_LEVELS = 1  # the most two faces may differ, in grey levels, per pixel
SAMPLES = 8  # real samples of the avatar the session is checked on
CACHE_KEEP = 2  # exported networks kept in the cache folder, most recently used first
EXPORT_FORMAT = 1  # part of the cache key: raise it when export_generator_onnx changes what it writes


def cache_folder() -> Path:
    """The user's cache folder for exported fp32 networks (shared by every avatar)."""
    if os.name == "nt" and os.environ.get("LOCALAPPDATA"):
        base = Path(os.environ["LOCALAPPDATA"])
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "stream-wav2lip" / "fp32-onnx"


def fp32_session(model, forward: Callable, *, package, crop: str, size: int, checkpoint: str | Path | None = None):
    """A single-threaded `OnnxNetwork` equivalent to `model` (checked with `forward(network, faces, mels)` on
    `package`'s own samples), or None: torch. With `checkpoint`, the export is cached per checkpoint (module
    docstring); without, it is temporary and the session lives in memory only."""
    if package is None:  # nothing to check it on
        return None
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return None
    from backend.generators.precision_data import avatar_samples

    try:
        faces, mels = avatar_samples(package, crop, size, SAMPLES, offset=0.5)
        reference = forward(model, faces, mels)
        network, cached = _open(model, checkpoint, fresh=False)
        apart = _apart(reference, forward(network, faces, mels))
        if apart > MAX_LEVELS and cached:  # a stale or damaged cache entry: export it again, once
            network.path.unlink(missing_ok=True)
            network, _ = _open(model, checkpoint, fresh=True)
            apart = _apart(reference, forward(network, faces, mels))
    except Exception as exc:  # noqa: BLE001 - the optional path failing means torch, never a failed start
        log.warning("fp32 through ONNX Runtime unavailable (%s: %s); running torch", type(exc).__name__,
                    str(exc).splitlines()[0][:160] if str(exc) else "")
        return None
    if apart > MAX_LEVELS:
        log.warning("fp32 through ONNX Runtime differs from torch by %d grey levels here; running torch", apart)
        return None
    return network


def _apart(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.abs(a.astype(np.int16) - b).max())


def _open(model, checkpoint, *, fresh: bool):
    """(OnnxNetwork, whether it came from the cache). A cached file that does not load is deleted and
    exported again; a cache folder that cannot be written means a temporary export."""
    from backend.generators.precision import OnnxNetwork
    from models.onnx_int8 import export_generator_onnx

    if checkpoint is not None:
        try:
            path = cache_folder() / f"{_cache_key(checkpoint)}.onnx"
            if path.exists() and not fresh:
                try:
                    network = OnnxNetwork(path, threads=1)
                except Exception:  # noqa: BLE001 - damaged (e.g. a full disk): export again
                    path.unlink(missing_ok=True)
                else:
                    with contextlib.suppress(OSError):
                        os.utime(path)  # most recently used
                    return network, True
            path.parent.mkdir(parents=True, exist_ok=True)
            log.info("exporting the network for ONNX Runtime (once per checkpoint, kept in %s)", path.parent)
            export_generator_onnx(model, path)  # temporary name, then rename
            _prune(path.parent)
            return OnnxNetwork(path, threads=1), False
        except OSError as exc:
            log.info("fp32 ONNX cache not writable (%s); exporting into a temporary folder", exc)
    with tempfile.TemporaryDirectory(prefix="s2l-fp32-") as tmp:
        return OnnxNetwork(export_generator_onnx(model, Path(tmp) / "fp32.onnx"), threads=1), False


def _cache_key(checkpoint: str | Path) -> str:
    import torch

    from backend.generators.precision_data import file_sha256

    return f"{file_sha256(checkpoint)[:20]}-torch{torch.__version__.split('+')[0]}-e{EXPORT_FORMAT}"


def _prune(folder: Path) -> None:
    """Keep the CACHE_KEEP most recently used exports; drop temporary files a killed export left (> 1 h)."""
    now = time.time()
    entries = []
    for p in folder.iterdir():
        try:
            mtime = p.stat().st_mtime
        except OSError:
            continue
        if p.name.startswith(".tmp-"):  # stream_wav2lip.atomic's temporary name
            if now - mtime > 3600:
                with contextlib.suppress(OSError):
                    p.unlink()
        elif p.suffix == ".onnx":
            entries.append((mtime, p))
    for _, p in sorted(entries, reverse=True)[CACHE_KEEP:]:
        with contextlib.suppress(OSError):  # e.g. open in another serve on Windows: pruned next time
            p.unlink()

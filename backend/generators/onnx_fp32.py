"""fp32 through ONNX Runtime for `serve`'s single-threaded CPU calls: the same weights, the same precision,
about a fifth more frames.

Why (issue 15): `serve` runs the network as one single-threaded call per core, side by side. Measured on a
2-core Xeon (docs/benchmarks.md, session 9), wav2lip96 at batch 1: torch 21.0-21.2 fps, an ONNX Runtime fp32
session 25.5-26.2; serve's streamed distinct speech frames 17.6-18.2/s with torch, 21.2-22.2 with the session.
int8 already runs through such sessions (backend/generators/precision.py).

Safety: the session is exported once from the network as loaded (BatchNorm folded) and cached with the avatar's
precision verdicts (`<avatar>/.cache/precision/<checkpoint>-<avatar>-<crop>/fp32.onnx`, written atomically). It is
used only after it draws the same faces as torch on real samples of the avatar (at most MAX_LEVELS grey level
apart: float rounding, nothing else); anything else -- no onnxruntime, an export or load failure, a mismatch --
keeps torch, with one log line (a mismatch is remembered, so later starts do not export again).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

import numpy as np

log = logging.getLogger(__name__)

MAX_LEVELS = 1  # the most two faces may differ, in grey levels, per pixel
SAMPLES = 8  # real samples of the avatar the session is checked on at every start
REFUSED = "fp32-onnx-refused"  # marker: this checkpoint's session did not match torch here


def fp32_session(model, forward: Callable, *, checkpoint: str | Path | None, package, crop: str, size: int,
                 threads: int = 1):
    """An `OnnxNetwork` equivalent to `model` (checked with `forward(network, faces, mels)`), or None: torch."""
    if package is None or checkpoint is None:
        return None
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return None
    from backend.generators.precision import OnnxNetwork
    from backend.generators.precision_data import avatar_samples, cache_folder
    from models.onnx_int8 import export_generator_onnx

    folder = cache_folder(package, checkpoint, crop)
    path = folder / "fp32.onnx"
    if (folder / REFUSED).is_file():
        return None
    try:
        if not path.is_file():
            folder.mkdir(parents=True, exist_ok=True)
            export_generator_onnx(model, path)
        network = OnnxNetwork(path, threads)
        faces, mels = avatar_samples(package, crop, size, SAMPLES, offset=0.5)
        apart = int(np.abs(forward(model, faces, mels).astype(np.int16) - forward(network, faces, mels)).max())
    except Exception as exc:  # noqa: BLE001 - the optional path failing means torch, never a failed start
        path.unlink(missing_ok=True)  # a damaged or partial export is rebuilt next time
        log.warning("fp32 through ONNX Runtime unavailable (%s: %s); running torch", type(exc).__name__,
                    str(exc).splitlines()[0][:160] if str(exc) else "")
        return None
    if apart > MAX_LEVELS:
        path.unlink(missing_ok=True)
        (folder / REFUSED).write_text(f"{apart} grey levels apart from torch\n", encoding="utf-8")
        log.warning("fp32 through ONNX Runtime differs from torch by %d grey levels here; running torch", apart)
        return None
    return network

"""fp32 through ONNX Runtime for `serve`'s single-threaded CPU calls: the same weights, the same precision,
about a fifth more frames.

Why (issue 15): `serve` runs the network as one single-threaded call per core, side by side. Measured on a
2-core Xeon (docs/benchmarks.md, session 9), wav2lip96 at batch 1: torch 21.0-21.2 fps, an ONNX Runtime fp32
session 25.5-26.2; serve's streamed distinct speech frames 17.6-18.2/s with torch, 21.1-23.1 with the session.
int8 already runs through such sessions (backend/generators/precision.py).

Safety: the session is exported from the network as loaded (BatchNorm folded) at every start, into a temporary
file the session has read by the time it is deleted (1.7 s for wav2lip96; nothing cached: the export is 145 MB,
which a cache per avatar would repeat for every avatar). It is used only after it draws the same faces as torch
on real samples of the avatar (at most MAX_LEVELS grey level apart: float rounding, nothing else); anything else
-- no onnxruntime, an export or load failure, a mismatch -- keeps torch, with one log line.
"""
from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np

log = logging.getLogger(__name__)

MAX_LEVELS = 1  # the most two faces may differ, in grey levels, per pixel
SAMPLES = 8  # real samples of the avatar the session is checked on


def fp32_session(model, forward: Callable, *, package, crop: str, size: int):
    """A single-threaded `OnnxNetwork` equivalent to `model` (checked with `forward(network, faces, mels)` on
    `package`'s own samples), or None: torch. Its session lives in memory only (no `with_threads`)."""
    if package is None:  # nothing to check it on
        return None
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return None
    from backend.generators.precision import OnnxNetwork
    from backend.generators.precision_data import avatar_samples
    from models.onnx_int8 import export_generator_onnx

    try:
        with tempfile.TemporaryDirectory(prefix="s2l-fp32-") as tmp:
            network = OnnxNetwork(export_generator_onnx(model, Path(tmp) / "fp32.onnx"), threads=1)
        faces, mels = avatar_samples(package, crop, size, SAMPLES, offset=0.5)
        apart = int(np.abs(forward(model, faces, mels).astype(np.int16) - forward(network, faces, mels)).max())
    except Exception as exc:  # noqa: BLE001 - the optional path failing means torch, never a failed start
        log.warning("fp32 through ONNX Runtime unavailable (%s: %s); running torch", type(exc).__name__,
                    str(exc).splitlines()[0][:160] if str(exc) else "")
        return None
    if apart > MAX_LEVELS:
        log.warning("fp32 through ONNX Runtime differs from torch by %d grey levels here; running torch", apart)
        return None
    return network

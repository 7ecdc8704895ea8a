"""Optional face enhancer hook (e.g. GFPGAN) applied to the generated face before it is composited.

Why optional and tiny: enhancers are large, slow and separately licensed; users who have one installed
(with its weights on disk) get it, everybody else gets the plain network output and a single note.
An enhancer is any callable `(S, S, 3) uint8 BGR → (S, S, 3) uint8 BGR`.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Callable

import numpy as np

Enhancer = Callable[[np.ndarray], np.ndarray]

GFPGAN_WEIGHT_NAMES = ("GFPGANv1.4.pth", "GFPGANv1.3.pth")
_noted: set[str] = set()


def _note(message: str) -> None:
    if message not in _noted:
        _noted.add(message)
        print(f"note: {message}", file=sys.stderr)


def find_gfpgan_weights() -> Path | None:
    """$GFPGAN_WEIGHTS, or a known file name in ./weights, ~/.cache/gfpgan or gfpgan's own weights folder."""
    env = os.environ.get("GFPGAN_WEIGHTS")
    if env and Path(env).is_file():
        return Path(env)
    folders = [Path("weights"), Path.home() / ".cache" / "gfpgan", Path("gfpgan") / "weights"]
    for folder in folders:
        for name in GFPGAN_WEIGHT_NAMES:
            if (folder / name).is_file():
                return folder / name
    return None


def gfpgan_enhancer(device: str = "auto") -> Enhancer | None:
    """A GFPGAN enhancer if the package and its weights are installed, else None (with a one-time note)."""
    try:
        from gfpgan import GFPGANer  # type: ignore
    except Exception:
        _note("face enhancer skipped: GFPGAN is not installed (pip install gfpgan, plus its weights)")
        return None
    weights = find_gfpgan_weights()
    if weights is None:
        _note("face enhancer skipped: GFPGAN weights not found (set GFPGAN_WEIGHTS=/path/GFPGANv1.4.pth)")
        return None
    import cv2

    restorer = GFPGANer(model_path=str(weights), upscale=1, arch="clean", channel_multiplier=2, bg_upsampler=None,
                        device=None if device == "auto" else device)

    def enhance(face: np.ndarray) -> np.ndarray:
        size = face.shape[0]
        big = cv2.resize(face, (512, 512), interpolation=cv2.INTER_CUBIC)
        _, _, restored = restorer.enhance(big, has_aligned=True, only_center_face=True, paste_back=False)
        out = restored[0] if isinstance(restored, list) and restored else big
        return cv2.resize(np.asarray(out), (size, size), interpolation=cv2.INTER_AREA)

    return enhance


def make_enhancer(name: str | None, device: str = "auto") -> Enhancer | None:
    """None/"none" → None; "gfpgan" → the GFPGAN hook when available."""
    if not name or name == "none":
        return None
    if name == "gfpgan":
        return gfpgan_enhancer(device)
    _note(f"unknown enhancer {name!r}; skipped")
    return None

"""Checkpoints in the reference format, written atomically, with what an exact resume needs on the side.

Format (docs/models.md §8): a `torch.save`d dict with `state_dict` (plain keys, no `module.`), `optimizer` (Adam
state), `global_step`, `global_epoch` -- what Rudrabha's and primepake's loaders and `models.load_checkpoint`
read. Extra keys they ignore: `best_loss`, `variant`, and `resume` (GradScaler, every rank's RNG states,
position inside the epoch, the sync-loss weight, the config). File names follow Rudrabha:
`checkpoint_step000003000.pth` and `disc_checkpoint_step000003000.pth`; the best one is `best_checkpoint.pth`.
"""
from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stream_wav2lip.atomic import atomic_path
from stream_wav2lip.errors import UserError

STEP_FILE = re.compile(r"^checkpoint_step(\d{9})\.pth$")
BEST_NAME = "best_checkpoint.pth"


def step_name(step: int, prefix: str = "") -> str:
    return f"{prefix}checkpoint_step{step:09d}.pth"


def rng_state() -> dict[str, Any]:
    """Every random generator a training step may touch (ours are seeded per sample, but layers may draw).
    Stored as tensors and plain Python values only, so the file still loads with `weights_only=True`
    (what `models.load_checkpoint` uses to refuse pickled code)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {"python": list(random.getstate()), "torch": torch.get_rng_state(),
             "numpy": {"kind": str(kind), "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "gauss": float(gauss)}}
    if torch.cuda.is_available():
        state["cuda"] = list(torch.cuda.get_rng_state_all())
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None, step: int, epoch: int,
         **extra: Any) -> Path:
    """Write one checkpoint atomically (temporary file + rename: a crash never leaves a half file)."""
    payload = {
        "state_dict": model.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "global_step": int(step),
        "global_epoch": int(epoch),
    }
    payload.update(extra)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def load(path: Path) -> dict[str, Any]:
    """Load a checkpoint dict on the CPU (weights_only: a checkpoint never needs to run code)."""
    if not path.is_file():
        raise UserError(f"{path}: checkpoint not found")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        from models.checkpoint import weights_only_refusal

        what = weights_only_refusal(str(exc))
        if what is not None:
            raise UserError(f"{path}: refused: contains pickled code/objects ({what}), not just tensors") from None
        raise UserError(f"{path}: not a readable PyTorch checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(data, dict) or "state_dict" not in data:
        raise UserError(f"{path}: not a training checkpoint (no 'state_dict' key)")
    return data


def strip_module(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop DataParallel's `module.` prefix (primepake checkpoints carry it)."""
    return {(k[7:] if k.startswith("module.") else k): v for k, v in state_dict.items()}


def latest(out_dir: Path) -> Path | None:
    """The highest-step `checkpoint_step*.pth` in out_dir (for `--resume auto`)."""
    if not out_dir.is_dir():
        return None
    found = sorted((int(m.group(1)), p) for p in out_dir.iterdir() if (m := STEP_FILE.match(p.name)))
    return found[-1][1] if found else None


def prune(out_dir: Path, keep: int) -> None:
    """Keep the `keep` newest step checkpoints (and their disc_ twins); the best one is never touched."""
    if keep <= 0:
        return
    found = sorted((int(m.group(1)), p) for p in out_dir.iterdir() if (m := STEP_FILE.match(p.name)))
    for _, path in found[:-keep]:
        path.unlink(missing_ok=True)
        (path.parent / f"disc_{path.name}").unlink(missing_ok=True)

"""Deterministic weights, inputs and checkpoints for tests (docs/models.md §10) -- no downloads, same numbers
everywhere.

* `deterministic_state_dict(variant)`: the weight recipe of docs/models.md §10, so a forward pass can be compared
  with the golden outputs computed with the reference classes.
* `golden_pattern` / `generator_face` / `syncnet_face` / `discriminator_faces`: its image pattern.
* `save_reference_checkpoint`: writes a file the way the original training scripts did
  ({"state_dict", "optimizer", "global_step", "global_epoch"}, optionally with DataParallel's `module.`).
"""
from __future__ import annotations

import math
from collections import OrderedDict
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch
from torch import nn


def state_dict_shapes(variant: str) -> "OrderedDict[str, tuple[int, ...]]":
    """Key -> shape of `models.build(variant).state_dict()`, without allocating weights (meta device)."""
    from models.variants import build

    with torch.device("meta"):
        model = build(variant)
    return OrderedDict((k, tuple(v.shape)) for k, v in model.state_dict().items())


def deterministic_state_dict(variant_or_shapes: str | Mapping[str, Sequence[int]]) -> "OrderedDict[str, torch.Tensor]":
    """The docs/models.md §10 recipe: keys sorted lexicographically, idx = position; conv weights = randn(seed idx) /
    sqrt(fan of all dims but the first); BN gamma / running_var = 1; biases / running_mean = 0; counters 0.

    Accepts a variant name or a key -> shape mapping (e.g. a golden `<variant>_state_dict.json`). The result
    keeps the model's own key order. The global torch RNG state is left untouched.
    """
    shapes = state_dict_shapes(variant_or_shapes) if isinstance(variant_or_shapes, str) else variant_or_shapes
    index = {key: i for i, key in enumerate(sorted(shapes))}
    out: "OrderedDict[str, torch.Tensor]" = OrderedDict()
    with torch.random.fork_rng(devices=[]):
        for key, shape in shapes.items():
            shape = tuple(int(s) for s in shape)
            if key.endswith("num_batches_tracked"):
                out[key] = torch.tensor(0, dtype=torch.int64)
            elif key.endswith("running_mean"):
                out[key] = torch.zeros(shape)
            elif key.endswith("running_var"):
                out[key] = torch.ones(shape)
            elif len(shape) >= 2:
                torch.manual_seed(index[key])
                out[key] = torch.randn(shape) / math.sqrt(math.prod(shape[1:]))
            elif key.endswith("weight"):
                out[key] = torch.ones(shape)
            elif key.endswith("bias"):
                out[key] = torch.zeros(shape)
            else:
                raise ValueError(f"no deterministic rule for key {key!r} with shape {shape}")
    return out


def deterministic_model(variant: str) -> nn.Module:
    """`build(variant)` loaded with `deterministic_state_dict(variant)`, in eval mode."""
    from models.variants import build

    model = build(variant)
    model.load_state_dict(deterministic_state_dict(variant))
    return model.eval()


def weight_checksums(state_dict: Mapping[str, torch.Tensor]) -> dict[str, dict]:
    """Per floating-point key (sorted): float64 sum, sum of |x| and first four values, as in the golden files."""
    out = {}
    for key in sorted(state_dict):
        tensor = state_dict[key]
        if not torch.is_floating_point(tensor):
            continue
        flat = tensor.detach().double().flatten()
        out[key] = {"sum": float(flat.sum()), "abs_sum": float(flat.abs().sum()),
                    "first4": [float(v) for v in tensor.detach().flatten()[:4]]}
    return out


# ------------------------------------------------------------------------------------------ inputs
def golden_pattern(b: int, c: int, height: int, width: int) -> np.ndarray:
    """F(b, c, y, x) = 0.5 + 0.45 sin(2 pi ((c+1) x / W + (b+1) y / H) + c), float64 maths, float32 result."""
    y = np.arange(height, dtype=np.float64)[:, None]
    x = np.arange(width, dtype=np.float64)[None, :]
    value = 0.5 + 0.45 * np.sin(2 * np.pi * ((c + 1) * x / width + (b + 1) * y / height) + c)
    return value.astype(np.float32)


def generator_face(batch: int, size: int, b_offset: int = 0) -> np.ndarray:
    """B x 6 x S x S generator input: channels 3-5 = pattern (c = 0..2), channels 0-2 = same, lower half zeroed."""
    out = np.zeros((batch, 6, size, size), dtype=np.float32)
    for b in range(batch):
        for c in range(3):
            plane = golden_pattern(b + b_offset, c, size, size)
            out[b, 3 + c] = plane
            out[b, c] = plane
            out[b, c, size // 2:] = 0.0
    return out


def syncnet_face(batch: int, height: int = 48, width: int = 96) -> np.ndarray:
    """B x 15 x H x W SyncNet input: pattern with c = 0..14."""
    return np.stack([np.stack([golden_pattern(b, c, height, width) for c in range(15)]) for b in range(batch)])


def discriminator_faces(frames: int = 5, size: int = 96) -> np.ndarray:
    """1 x 3 x T x S x S discriminator input: time slice t = pattern(b = t, c = 0..2)."""
    video = np.stack([np.stack([golden_pattern(t, c, size, size) for c in range(3)]) for t in range(frames)], axis=1)
    return video[None]


def generator_face_5d(frames: int = 5, size: int = 96) -> np.ndarray:
    """1 x 6 x T x S x S: time slice t = the 4-D generator face built with b = t."""
    return generator_face(frames, size).transpose(1, 0, 2, 3)[None].copy()


# ------------------------------------------------------------------------------------------ checkpoints
def save_reference_checkpoint(model_or_state: nn.Module | Mapping[str, torch.Tensor], path: str | Path, *,
                              module_prefix: bool = True, with_optimizer: bool = True, global_step: int = 0,
                              global_epoch: int = 0, extra: Mapping | None = None) -> Path:
    """Write a checkpoint like the original training scripts: torch.save({"state_dict", "optimizer",
    "global_step", "global_epoch"}). `module_prefix` mimics a DataParallel-wrapped model; `with_optimizer`
    stores a real Adam state dict (moments initialised by one zero-gradient step) instead of None."""
    from stream_wav2lip.atomic import atomic_path

    state = model_or_state.state_dict() if isinstance(model_or_state, nn.Module) else OrderedDict(model_or_state)
    optimizer_state = None
    if with_optimizer:
        params = [t.detach().clone().requires_grad_(True) for t in state.values() if torch.is_floating_point(t)
                  and t.dim() > 0]
        optimizer = torch.optim.Adam(params, lr=1e-4)
        for p in params:
            p.grad = torch.zeros_like(p)
        optimizer.step()
        optimizer_state = optimizer.state_dict()
    prefix = "module." if module_prefix else ""
    checkpoint = {
        "state_dict": OrderedDict((prefix + k, v) for k, v in state.items()),
        "optimizer": optimizer_state,
        "global_step": int(global_step),
        "global_epoch": int(global_epoch),
    }
    if extra:
        checkpoint.update(extra)
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(checkpoint, tmp)
    return path

"""Load any reference Wav2Lip / SyncNet / discriminator checkpoint and say what it is.

Safety: files are read with `torch.load(weights_only=True)`, so a checkpoint that carries pickled code is
refused before anything in it runs. Identification uses key names and tensor shapes only (docs/models.md §9) and
is then confirmed by an exact key/shape comparison with the network we would build -- never by counting keys.
"""
from __future__ import annotations

import pickle
import re
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from stream_wav2lip.errors import UserError

from models.variants import SPECS, UNSUPPORTED, VARIANTS, build

_PREFIX = "module."


class UnknownVariantError(UserError):
    """The state dict matches no supported variant exactly; the message names the nearest one."""


@dataclass(frozen=True)
class CheckpointInfo:
    variant: str
    kind: str  # "generator" | "syncnet" | "discriminator"
    image_size: int
    global_step: int | None
    global_epoch: int | None
    param_count: int
    path: str
    has_optimizer: bool = False
    module_prefix: bool = False  # keys were saved from a DataParallel-wrapped model
    file_size: int = 0
    output_activation: str | None = None
    best_loss: float | None = None


@dataclass
class RawCheckpoint:
    """What a checkpoint file holds, with `module.` already stripped from the state-dict keys."""

    state_dict: "OrderedDict[str, torch.Tensor]"
    optimizer: dict | None
    global_step: int | None
    global_epoch: int | None
    module_prefix: bool
    extras: dict


# ------------------------------------------------------------------------------------------ reading
def read_checkpoint(path: str | Path) -> RawCheckpoint:
    """torch.load(weights_only=True) + unwrap {'state_dict': ...} or a bare state dict + strip `module.`."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: checkpoint file not found")
    try:
        with torch.serialization.safe_globals(_numpy_scalar_globals()):
            raw = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        what = weights_only_refusal(str(exc))
        if what is not None:
            raise UserError(
                f"{path}: refused: contains pickled code/objects ({what}), not just tensors; loading it could run "
                f"arbitrary code, so nothing in it was executed (re-save only the state dict of tensors)"
            ) from None
        raise UserError(f"{path}: not a readable PyTorch checkpoint (corrupt or not a torch.save file)") from None
    except Exception as exc:  # truncated zip, not a torch file at all, ...
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise UserError(f"{path}: not a readable PyTorch checkpoint ({first})") from None
    if not isinstance(raw, Mapping):
        raise UserError(f"{path}: not a checkpoint (top level is a {type(raw).__name__}, expected a dict)")
    if "state_dict" in raw and isinstance(raw["state_dict"], Mapping):
        weights, meta = raw["state_dict"], raw
    else:
        weights, meta = raw, {}
    bad = [k for k, v in weights.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad or not weights:
        raise UserError(f"{path}: no state dict of tensors found (first bad entry: {bad[0] if bad else 'empty'})")
    state, prefixed = strip_module_prefix(weights)
    extras = {k: v for k, v in meta.items() if k not in ("state_dict", "optimizer", "global_step", "global_epoch")}
    return RawCheckpoint(
        state_dict=state,
        optimizer=meta.get("optimizer") if isinstance(meta.get("optimizer"), Mapping) else None,
        global_step=_as_int(meta.get("global_step")),
        global_epoch=_as_int(meta.get("global_epoch")),
        module_prefix=prefixed,
        extras=extras,
    )


# What torch's weights-only unpickler says when a file is well-formed but carries more than tensors: a class,
# a function, a call (REDUCE/NEWOBJ/BUILD of a non-allowlisted type), a blocked module or a foreign persistent id.
# Anything else it raises (e.g. "Unsupported operand 103") is what garbage bytes produce: that one is "corrupt".
_REFUSALS = (
    re.compile(r"Unsupported global: GLOBAL (\S+)"),
    re.compile(r"unsupported GLOBAL (\S+) whose module"),
    re.compile(r"call reduce for unrecognized function (.+?)(?: which belongs to|$)", re.M),
    re.compile(r"Can only create new object for .*? but got (.+)$", re.M),
    re.compile(r"Can only build .*? but got (.+)$", re.M),
    re.compile(r"(`+torch\.\S+`+ must be imported)"),
    re.compile(r"Only persistent_load of storage is allowed, (but got .+)$", re.M),
)


def weights_only_refusal(message: str) -> str | None:
    """The offending global/callable named in a `torch.load(weights_only=True)` refusal, or None when the
    error is not a refusal (a damaged or foreign file)."""
    for pattern in _REFUSALS:
        found = pattern.search(message)
        if found:
            return found.group(1).strip().strip("`")[:120]
    return None


def _numpy_scalar_globals() -> list:
    """Plain NumPy scalars (e.g. a numpy float saved as best_loss) rebuild from bytes and run no code: allow them."""
    import numpy as np

    allowed: list = [np.dtype]
    try:
        from numpy.core.multiarray import scalar
    except ImportError:  # NumPy 2 moved it
        from numpy._core.multiarray import scalar
    allowed.append(scalar)
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        allowed += [getattr(dtypes, n) for n in ("Float64DType", "Float32DType", "Int64DType", "Int32DType")
                    if hasattr(dtypes, n)]
    return allowed


def strip_module_prefix(state_dict: Mapping[str, Any]) -> tuple["OrderedDict[str, Any]", bool]:
    """Remove DataParallel's leading `module.` (repeatedly, for doubly wrapped models)."""
    out: "OrderedDict[str, Any]" = OrderedDict()
    prefixed = False
    for key, value in state_dict.items():
        while key.startswith(_PREFIX):
            key, prefixed = key[len(_PREFIX):], True
        out[key] = value
    return out, prefixed


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return int(value.item())
    if hasattr(value, "dtype") and getattr(value, "shape", None) == () and value.dtype.kind in "iu":
        return int(value)  # numpy integer scalar
    return None


# ------------------------------------------------------------------------------------------ identification
@lru_cache(maxsize=None)
def expected_shapes(variant: str) -> "OrderedDict[str, tuple[int, ...]]":
    """Key -> shape of a freshly built `variant` (meta device: no memory, no init cost)."""
    with torch.device("meta"):
        model = build(variant)
    return OrderedDict((k, tuple(v.shape)) for k, v in model.state_dict().items())


def _shapes_of(state_dict: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    shapes = {}
    for key, value in strip_module_prefix(state_dict)[0].items():
        shape = value.shape if hasattr(value, "shape") else value
        shapes[key] = tuple(int(s) for s in shape)
    return shapes


def _candidate(shapes: Mapping[str, tuple[int, ...]]) -> str | None:
    """The decision procedure of docs/models.md §9, on key names and shapes."""
    keys = shapes.keys()

    def blocks(prefix: str) -> int:
        return len({k.split(".")[1] for k in keys if k.startswith(prefix + ".")})

    has_prelu = any(k.endswith(".act.weight") for k in keys)
    if shapes.get("main.0.weight") == (64, 3, 4, 4):
        return "nlayer_disc"
    if "binary_pred.0.weight" in shapes:
        if shapes["binary_pred.0.weight"] == (1, 1024, 1, 1):
            return "disc_qual512"
        return {7: "disc_qual96", 9: "disc_qual288"}.get(blocks("face_encoder_blocks"))
    has_output = any(k.startswith("output_block.") for k in keys)
    if not has_output and any(k.startswith("face_encoder.") for k in keys) and any(
            k.startswith("audio_encoder.") for k in keys):
        first = shapes.get("face_encoder.0.conv_block.0.weight", ())
        if first[:1] == (16,):
            return "syncnet384"
        if has_prelu:
            return "syncnet288_prelu2021"
        if "audio_encoder.16.conv_block.0.weight" in shapes or "face_encoder.19.conv_block.0.weight" in shapes:
            return "syncnet_v2_1024"
        return "syncnet96"
    if not has_output:
        return None
    if "sam.sa.conv1.weight" in shapes:
        first = shapes.get("face_encoder_blocks.0.0.conv_block.0.weight", ())
        name = "wav2lip384" if first[:1] == (8,) else "wav2lip_sam"
        return name if any(k.startswith("audio_refine.") for k in keys) else name + "_norefine"
    if shapes.get("output_block.2.weight") == (3, 16, 1, 1):
        return "wav2lip512"
    count = blocks("face_encoder_blocks")
    if count == 7:
        return "wav2lip96"
    if count == 9:
        return "wav2lip288_prelu2021" if has_prelu else "wav2lip288"
    return None


def _mismatches(shapes: Mapping[str, tuple[int, ...]], variant: str, limit: int = 5) -> tuple[list[str], int]:
    """Human-readable differences against `variant` (first `limit`), and the number of matching entries."""
    expected = expected_shapes(variant)
    problems, matching = [], 0
    for key, shape in expected.items():
        if key not in shapes and key.endswith("num_batches_tracked"):
            matching += 1  # PyTorch < 0.4.1 did not save this counter; it does not affect inference
        elif key not in shapes:
            problems.append(f"{key} missing")
        elif shapes[key] != shape:
            problems.append(f"{key} has shape {list(shapes[key])}, expected {list(shape)}")
        else:
            matching += 1
    problems += [f"{key} unexpected" for key in shapes if key not in expected]
    return problems[:limit], matching


def identify_variant(state_dict: Mapping[str, Any]) -> str:
    """The variant name of a state dict (values: tensors or shapes; `module.` prefixes allowed).

    Returns a name from `models.VARIANTS`, or one of `models.variants.UNSUPPORTED` (recognised, not runnable).
    Raises UnknownVariantError (a UserError) naming the nearest variant and the first mismatching keys.
    """
    shapes = _shapes_of(state_dict)
    candidate = _candidate(shapes)
    if candidate in UNSUPPORTED:
        return candidate
    if candidate is not None:
        problems, _ = _mismatches(shapes, candidate)
        if not problems:
            return candidate
    for variant in VARIANTS:  # the decision procedure missed: an exact match elsewhere still wins
        if variant != candidate and not _mismatches(shapes, variant, limit=1)[0]:
            return variant
    nearest, best = candidate, -1.0
    if nearest is None:
        for variant in VARIANTS:
            _, matching = _mismatches(shapes, variant)
            score = matching / max(len(shapes), len(expected_shapes(variant)))
            if score > best:
                nearest, best = variant, score
    problems, matching = _mismatches(shapes, nearest)
    total = len(expected_shapes(nearest))
    raise UnknownVariantError(
        f"matches no known network variant; nearest is {nearest} ({matching} of {total} entries match); "
        f"first differences: {'; '.join(problems)}"
    )


# ------------------------------------------------------------------------------------------ loading
def resolve_device(device: str | torch.device = "cpu") -> torch.device:
    """"auto" -> cuda when available, else cpu."""
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def model_from_state_dict(variant: str, state_dict: Mapping[str, torch.Tensor], *,
                          output_activation: str | None = None) -> nn.Module:
    """Build `variant` without initialising weights and take the given tensors (strict key/shape check)."""
    with torch.device("meta"):
        model = build(variant, output_activation=output_activation)
    state = OrderedDict(
        (k, v.float() if torch.is_floating_point(v) and v.dtype != torch.float32 else v)
        for k, v in strip_module_prefix(state_dict)[0].items()
    )
    for key, value in model.state_dict().items():
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = torch.tensor(0, dtype=torch.long)  # checkpoints from PyTorch < 0.4.1
    model.load_state_dict(state, strict=True, assign=True)
    return model


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu", *,
                    output_activation: str | None = None) -> tuple[nn.Module, CheckpointInfo]:
    """Load a checkpoint of any supported variant: (model in eval mode on `device`, CheckpointInfo).

    Accepts {'state_dict': ...} files (the training scripts' format) and bare state dicts, with or without
    `module.` prefixes. `device="auto"` picks CUDA when available.
    """
    path = Path(path)
    raw = read_checkpoint(path)
    try:
        variant = identify_variant(raw.state_dict)
    except UserError as exc:
        raise UnknownVariantError(f"{path}: checkpoint {exc}") from None
    if variant in UNSUPPORTED:
        raise UserError(f"{path}: recognised as {variant} ({UNSUPPORTED[variant]}); not supported")
    model = model_from_state_dict(variant, raw.state_dict, output_activation=output_activation)
    model = model.to(resolve_device(device)).eval()
    spec = SPECS[variant]
    best_loss = raw.extras.get("best_loss")
    info = CheckpointInfo(
        variant=variant,
        kind=spec.kind,
        image_size=spec.image_size,
        global_step=raw.global_step,
        global_epoch=raw.global_epoch,
        param_count=sum(p.numel() for p in model.parameters()),
        path=str(path),
        has_optimizer=raw.optimizer is not None,
        module_prefix=raw.module_prefix,
        file_size=path.stat().st_size,
        output_activation=getattr(model, "output_activation", None),
        best_loss=_as_float(best_loss),
    )
    return model, info


def _as_float(value: Any) -> float | None:
    try:
        return None if value is None or isinstance(value, bool) else float(value)
    except (TypeError, ValueError):
        return None


def summarize_shapes(state_dict: Mapping[str, Any]) -> Sequence[tuple[str, tuple[int, ...]]]:
    """(key, shape) pairs after prefix stripping -- handy for error reports and `inspect --keys`."""
    return list(_shapes_of(state_dict).items())

"""`stream-wav2lip inspect CHECKPOINT`: say what a checkpoint is before you use it."""
from __future__ import annotations

import argparse
import json

HELP = "show what a checkpoint is: variant, kind, image size, parameters, training step"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="a .pth file (training-script format or a bare state dict)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")


def _size(num_bytes: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if num_bytes < 1024 or unit == "GiB":
            return f"{num_bytes:.0f} {unit}" if unit == "B" else f"{num_bytes:.1f} {unit}"
        num_bytes /= 1024
    return f"{num_bytes} B"


def run(args: argparse.Namespace) -> int:
    from models.checkpoint import load_checkpoint
    from models.variants import SPECS

    _, info = load_checkpoint(args.checkpoint, device="cpu")
    spec = SPECS[info.variant]
    if args.json:
        record = dict(info.__dict__)
        record["description"] = spec.description
        print(json.dumps(record, indent=1))
        return 0
    lines = [
        ("file", f"{info.path} ({_size(info.file_size)})"),
        ("variant", f"{info.variant} - {spec.description}"),
        ("kind", info.kind),
        ("image size", f"{info.image_size}x{info.image_size}"),
        ("parameters", f"{info.param_count:,}"),
        ("global step", "-" if info.global_step is None else f"{info.global_step:,}"),
        ("global epoch", "-" if info.global_epoch is None else str(info.global_epoch)),
        ("optimizer state", "yes" if info.has_optimizer else "no"),
        ("DataParallel keys", "yes (module. prefix)" if info.module_prefix else "no"),
    ]
    if info.output_activation:
        lines.append(("output", f"{info.output_activation} (BGR)"))
    if spec.embedding_dim:
        lines.append(("embedding", f"{spec.embedding_dim}-d"))
    if info.best_loss is not None:
        lines.append(("best loss", f"{info.best_loss:.6g}"))
    width = max(len(k) for k, _ in lines)
    for key, value in lines:
        print(f"{key:<{width}}  {value}")
    return 0

"""Flags shared by both trainers, an optional JSON/YAML config file, and printing the effective config.

A config file holds `flag: value` pairs (dashes or underscores, e.g. `batch-size: 32`); flags given on the
command line win over the file, the file wins over the defaults. The effective config is printed at start
and saved as `<out>/config.json` so every run can be reproduced.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from stream_wav2lip.errors import UserError


def add_common_arguments(parser: argparse.ArgumentParser, *, batch_size: int, eval_every: int, save_every: int,
                         eval_batches: int) -> None:
    data = parser.add_argument_group("data")
    data.add_argument("data_root", nargs="?", type=Path,
                      help="LRS2-shaped training set (folder with train.txt/val.txt, e.g. from `preprocess --train-dir`)")
    data.add_argument("--train-list", type=Path, help="file list of training clips (default: DATA_ROOT/train.txt)")
    data.add_argument("--val-list", type=Path, help="file list of validation clips (default: DATA_ROOT/val.txt)")
    data.add_argument("--frame-cache-mb", type=float, default=512.0,
                      help="per-process cache of decoded, resized crops (0 = decode every time) [%(default)s]")
    data.add_argument("--workers", type=int, default=2, help="data-loader worker processes per rank [%(default)s]")
    data.add_argument("--samples-per-epoch", type=int, default=None,
                      help="length of an epoch in samples (default: number of usable windows)")

    run = parser.add_argument_group("run")
    run.add_argument("--out", type=Path, required=False, help="checkpoint / TensorBoard folder (required)")
    run.add_argument("--config", type=Path, help="JSON or YAML file of flag values (flags on the command line win)")
    run.add_argument("--batch-size", type=int, default=batch_size, help="per-rank batch size [%(default)s]")
    run.add_argument("--lr", type=float, default=1e-4, help="Adam learning rate [%(default)s]")
    run.add_argument("--max-steps", type=int, default=None, help="stop after this many optimiser steps")
    run.add_argument("--max-minutes", type=float, default=None,
                     help="stop after this much training time (a rented GPU's hour, a night) and save the step "
                          "reached, like --max-steps")
    run.add_argument("--eval-every", type=int, default=eval_every, help="steps between evaluations [%(default)s]")
    run.add_argument("--eval-batches", type=int, default=eval_batches,
                     help="validation batches per evaluation (per rank) [%(default)s]")
    run.add_argument("--save-every", type=int, default=save_every, help="steps between checkpoints [%(default)s]")
    run.add_argument("--keep", type=int, default=3, help="step checkpoints to keep (0 = all) [%(default)s]")
    run.add_argument("--resume", default="auto",
                     help="'auto' (latest checkpoint in --out, if any), 'none', or a checkpoint path [%(default)s]")
    run.add_argument("--seed", type=int, default=0, help="seed of sampling and initialisation [%(default)s]")
    run.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="[%(default)s]")
    run.add_argument("--amp", action=argparse.BooleanOptionalAction, default=True,
                     help="mixed precision on CUDA (ignored on CPU) [on]")
    run.add_argument("--threads", type=int, default=None, help="torch CPU threads per rank")
    run.add_argument("--log-every", type=int, default=20, help="steps between TensorBoard scalars [%(default)s]")
    run.add_argument("--image-every", type=int, default=None, help="steps between image grids [eval-every]")
    run.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True, help="tqdm progress bar")


def apply_config(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.Namespace:
    """Fill in values from `--config`: a flag still at its built-in default takes the file's value
    (so flags typed on the command line win; typing a flag's default value explicitly cannot override the file).
    `parser` is a parser built by the sub-command's `add_arguments`, used to know names, types and defaults."""
    if getattr(args, "config", None) is None:
        return args
    actions = {a.dest: a for a in parser._actions}
    merged = argparse.Namespace(**vars(args))
    for key, value in read_config_file(args.config).items():
        dest = str(key).replace("-", "_")
        action = actions.get(dest)
        if action is None or dest in ("help", "config"):
            raise UserError(f"{args.config}: unknown setting '{key}'")
        if value is not None and action.type is not None and not isinstance(value, (list, dict, bool)):
            try:
                value = action.type(value)
            except (TypeError, ValueError):
                raise UserError(f"{args.config}: bad value for '{key}': {value!r}") from None
        if getattr(args, dest, None) == action.default:
            setattr(merged, dest, value)
    return merged


def read_config_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise UserError(f"{path}: config file not found")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text) or {}
        else:
            data = json.loads(text)
    except Exception as exc:
        raise UserError(f"{path}: cannot parse config ({type(exc).__name__}: {exc})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: config must be a mapping of flag names to values")
    return data


def config_dict(args: argparse.Namespace) -> dict[str, Any]:
    """JSON-friendly view of the parsed flags (no internals)."""
    out = {}
    for key, value in sorted(vars(args).items()):
        if key.startswith("_") or key == "command":
            continue
        out[key] = str(value) if isinstance(value, Path) else value
    return out


def format_config(title: str, config: dict[str, Any]) -> str:
    width = max(len(k) for k in config) if config else 0
    lines = [f"{title}:"] + [f"  {k.ljust(width)}  {json.dumps(v)}" for k, v in config.items()]
    return "\n".join(lines)


def validate_common(args: argparse.Namespace) -> None:
    if args.out is None:
        raise UserError("--out is required (folder for checkpoints and TensorBoard logs)")
    if args.data_root is None and args.train_list is None:
        raise UserError("give the training set folder (DATA_ROOT) or --train-list")
    for name in ("batch_size", "eval_every", "save_every", "eval_batches"):
        if getattr(args, name) <= 0:
            raise UserError(f"--{name.replace('_', '-')} must be positive")
    if args.max_steps is not None and args.max_steps < 0:
        raise UserError("--max-steps must be >= 0")
    if args.max_minutes is not None and args.max_minutes <= 0:
        raise UserError("--max-minutes must be positive")

"""What `train-syncnet` and `train-wav2lip` share: a config file under the flags, validation, train."""
from __future__ import annotations

import argparse
import importlib
from typing import Callable


def run_trainer(args: argparse.Namespace, add_flags: Callable[[argparse.ArgumentParser], None], trainer: str) -> int:
    """Merge an optional --config file under the flags (`add_flags` builds them), validate, and train with
    `training.<trainer>` (imported here: it pulls in torch)."""
    from training.config import apply_config, validate_common

    parser = argparse.ArgumentParser(add_help=False)
    add_flags(parser)
    args = apply_config(parser, args)
    validate_common(args)
    importlib.import_module(f"training.{trainer}").train(args)
    return 0

"""What `train-syncnet` and `train-wav2lip` share: arguments from the trainer, a config file, validation, train."""
from __future__ import annotations

import argparse
import importlib


def add_trainer_arguments(parser: argparse.ArgumentParser, trainer: str) -> None:
    """Fill `parser` with the flags of `training.<trainer>` (imported lazily: --help stays instant)."""
    importlib.import_module(f"training.{trainer}").add_arguments(parser)


def run_trainer(args: argparse.Namespace, trainer: str) -> int:
    """Merge an optional --config file under the flags, validate, and train."""
    from training.config import apply_config, validate_common

    module = importlib.import_module(f"training.{trainer}")
    parser = argparse.ArgumentParser(add_help=False)
    module.add_arguments(parser)
    args = apply_config(parser, args)
    validate_common(args)
    module.train(args)
    return 0

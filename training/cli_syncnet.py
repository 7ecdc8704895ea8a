"""`stream-wav2lip train-syncnet`: train an expert lip-sync discriminator (SyncNet) on an LRS2-shaped set."""
from __future__ import annotations

import argparse

HELP = "train an expert SyncNet (syncnet96/288/384, v2_1024) on an LRS2-shaped training set"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from training.syncnet_trainer import add_arguments as add

    add(parser)


def run(args: argparse.Namespace) -> int:
    from training.config import apply_config, validate_common
    from training.syncnet_trainer import add_arguments as add, train

    parser = argparse.ArgumentParser(add_help=False)
    add(parser)
    args = apply_config(parser, args)
    validate_common(args)
    train(args)
    return 0

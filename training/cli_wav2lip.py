"""`stream-wav2lip train-wav2lip`: train a Wav2Lip generator (96/288/384) on an LRS2-shaped set."""
from __future__ import annotations

import argparse

HELP = "train a Wav2Lip generator (wav2lip96/288/384/sam) with L1, expert sync loss and optional GAN"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from training.wav2lip_trainer import add_arguments as add

    add(parser)


def run(args: argparse.Namespace) -> int:
    from training.config import apply_config, validate_common
    from training.wav2lip_trainer import add_arguments as add, train

    parser = argparse.ArgumentParser(add_help=False)
    add(parser)
    args = apply_config(parser, args)
    validate_common(args)
    train(args)
    return 0

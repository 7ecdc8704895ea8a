"""`stream-wav2lip train-wav2lip`: train a Wav2Lip generator (96/288/384) on an LRS2-shaped set."""
from __future__ import annotations

import argparse

from training.cli_common import run_trainer
from training.flags import add_wav2lip_arguments

HELP = "train a Wav2Lip generator (wav2lip96/288/384/sam) with L1, expert sync loss and optional GAN"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_wav2lip_arguments(parser)


def run(args: argparse.Namespace) -> int:
    return run_trainer(args, add_wav2lip_arguments, "wav2lip_trainer")

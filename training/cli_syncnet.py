"""`stream-wav2lip train-syncnet`: train an expert lip-sync discriminator (SyncNet) on an LRS2-shaped set."""
from __future__ import annotations

import argparse

from training.cli_common import add_trainer_arguments, run_trainer

HELP = "train an expert SyncNet (syncnet96/288/384, v2_1024) on an LRS2-shaped training set"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_trainer_arguments(parser, "syncnet_trainer")


def run(args: argparse.Namespace) -> int:
    return run_trainer(args, "syncnet_trainer")

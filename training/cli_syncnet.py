"""`stream-wav2lip train-syncnet`: train an expert lip-sync discriminator (SyncNet) on an LRS2-shaped set."""
from __future__ import annotations

import argparse

from training.cli_common import run_trainer
from training.flags import add_syncnet_arguments

HELP = "train an expert SyncNet (syncnet96/288/384, v2_1024) on an LRS2-shaped training set"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_syncnet_arguments(parser)


def run(args: argparse.Namespace) -> int:
    return run_trainer(args, add_syncnet_arguments, "syncnet_trainer")

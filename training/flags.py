"""The trainers' command-line flags, kept free of torch: every `stream-wav2lip` call builds every sub-command's
parser, and importing torch for it would add about a second to `say --flush` or `--help`."""
from __future__ import annotations

import argparse

from training.config import add_common_arguments

SYNCNET_VARIANTS = ("syncnet96", "syncnet_v2_1024", "syncnet288_prelu2021", "syncnet384")
GENERATOR_VARIANTS = ("wav2lip96", "wav2lip288", "wav2lip288_prelu2021", "wav2lip384", "wav2lip_sam")
DISCRIMINATORS = ("none", "disc_qual96", "disc_qual288", "nlayer_disc")


def add_syncnet_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `train-syncnet`."""
    parser.add_argument("--variant", default="syncnet96", choices=SYNCNET_VARIANTS,
                        help="expert to train (face size follows the variant) [%(default)s]")
    parser.add_argument("--negative-min-distance", type=int, default=1,
                        help="negatives start at least this many frames from the positive (reference: 1)")
    parser.add_argument("--audio-shift", type=int, default=0,
                        help="diagnostic: pair video windows with audio shifted by this many frames [%(default)s]")
    add_common_arguments(parser, batch_size=64, eval_every=10000, save_every=10000, eval_batches=100)


def add_wav2lip_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `train-wav2lip`."""
    g = parser.add_argument_group("wav2lip")
    g.add_argument("--variant", default="wav2lip96", choices=GENERATOR_VARIANTS, help="generator [%(default)s]")
    g.add_argument("--image-size", type=int, default=None,
                   help="face size (default: the variant's: 96, 288 or 384; wav2lip_sam accepts multiples of 64)")
    g.add_argument("--syncnet", type=str, default=None,
                   help="trained expert SyncNet checkpoint for the sync loss (without it: L1 (+GAN) only)")
    g.add_argument("--syncnet-wt", type=float, default=None,
                   help="fixed sync-loss weight from step 0 (default: the reference schedule below)")
    g.add_argument("--sync-threshold", type=float, default=0.75,
                   help="eval sync loss below which the sync loss switches on [%(default)s]")
    g.add_argument("--sync-wt-after", type=float, default=None,
                   help="sync weight once switched on (default 0.01 without discriminator, 0.03 with)")
    g.add_argument("--expert-train-mode", action="store_true",
                   help="run the expert's BatchNorm in train mode, as the reference did (default: eval mode)")
    g.add_argument("--audio-offset", type=int, default=0,
                   help="generator mel window of frame j starts at frame j+OFFSET: 0 = what inference feeds, "
                        "-1 = the reference trainer's off-by-one [%(default)s]")
    g.add_argument("--disc", choices=DISCRIMINATORS, default="none",
                   help="visual-quality discriminator (disc_qual96/288: BCE on lower halves; nlayer_disc: "
                        "PatchGAN hinge on full faces) [%(default)s]")
    g.add_argument("--disc-wt", type=float, default=None,
                   help="adversarial loss weight (default 0.07 for disc_qual*, 0.025 for nlayer_disc)")
    g.add_argument("--disc-lr", type=float, default=1e-4, help="discriminator learning rate [%(default)s]")
    g.add_argument("--disc-start-step", type=int, default=0, help="step at which the discriminator starts [0]")
    add_common_arguments(parser, batch_size=16, eval_every=3000, save_every=3000, eval_batches=100)

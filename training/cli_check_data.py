"""`stream-wav2lip check-data`: what a training run would use from an LRS2-shaped set, and what it would skip.

Run it before a long training: it prints per split the usable clips, frames, hours and 5-frame windows, and
every reason a clip is left out (too short, no audio, unreadable...). `--deep` also decodes every frame and
every audio file (slow, finds corrupt JPEGs/WAVs up front).
"""
from __future__ import annotations

import argparse
from pathlib import Path

HELP = "report the clips, frames, hours and skipped clips of an LRS2-shaped training set"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data_root", nargs="?", type=Path, help="training set folder (with train.txt / val.txt)")
    parser.add_argument("--train-list", type=Path, help="file list of training clips (default: DATA_ROOT/train.txt)")
    parser.add_argument("--val-list", type=Path, help="file list of validation clips (default: DATA_ROOT/val.txt)")
    parser.add_argument("--deep", action="store_true", help="decode every frame and audio file too (slow)")
    parser.add_argument("--show", type=int, default=10, help="skipped clips listed per split [%(default)s]")


def run(args: argparse.Namespace) -> int:
    from stream_wav2lip.errors import UserError
    from training.dataset_index import scan_split

    if args.data_root is None and args.train_list is None:
        raise UserError("give the training set folder (DATA_ROOT) or --train-list")
    usable = 0
    for split, list_path in (("train", args.train_list), ("val", args.val_list)):
        index = scan_split(args.data_root, split, list_path, warn=False, progress=True)
        if index.list_path is None:
            print(f"{split}: no file list found")
            continue
        if args.deep:
            _deep_check(index)
        windows = sum(int(c.sync_starts.size) for c in index.clips)
        usable += len(index.clips) if split == "train" else 0
        print(f"{split}: {index.list_path}")
        print(f"  clips    {len(index.clips)} usable, {len(index.skipped)} skipped")
        print(f"  frames   {index.num_frames}  ({index.hours:.3f} h of video at 25 fps, "
              f"{index.audio_hours:.3f} h of audio)")
        print(f"  windows  {windows} complete 5-frame windows with audio")
        for reason, count in index.skip_reasons().most_common():
            print(f"  skipped  {count} x {reason}")
        for path, reason in index.skipped[: args.show]:
            print(f"    {path}: {reason}")
        if len(index.skipped) > args.show:
            print(f"    ... and {len(index.skipped) - args.show} more")
    return 0 if usable else 1


def _deep_check(index) -> None:
    """Move clips with unreadable frames or audio to `skipped`."""
    import cv2
    from tqdm import tqdm

    from models.audio import load_audio
    from stream_wav2lip.errors import UserError

    keep = []
    for clip in tqdm(index.clips, desc=f"decoding {index.split}", unit="clip", leave=False):
        bad = [n for n in clip.frames if cv2.imread(str(clip.frame_path(int(n)))) is None]
        try:
            load_audio(clip.audio_path)
        except UserError as exc:
            index.skipped.append((clip.path, f"audio unreadable ({str(exc).split(': ', 1)[-1]})"))
            continue
        if bad:
            index.skipped.append((clip.path, f"{len(bad)} unreadable frame(s)"))
            continue
        keep.append(clip)
    index.clips = keep

"""`stream-wav2lip sync-offset --checkpoint S TARGET`: the A/V offset curve of a video, a clip or a data set.

TARGET may be a video file (faces are found by the project's preprocess pipeline in a temporary folder), one
LRS2 clip folder (numbered JPEGs + audio.wav), or a training set folder (every clip of its train/val lists).
"""
from __future__ import annotations

import argparse
from pathlib import Path

HELP = "score a video / clip / training set against audio shifted -10..+10 frames with an expert SyncNet"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", type=Path, metavar="VIDEO_OR_CLIPDIR",
                        help="video file, LRS2 clip folder, or training set folder (with train.txt)")
    parser.add_argument("--checkpoint", required=True, type=Path, help="trained expert SyncNet checkpoint")
    parser.add_argument("--max-shift", type=int, default=10, help="largest shift in frames [%(default)s]")
    parser.add_argument("--split", choices=("train", "val", "both"), default="both",
                        help="which list of a training set folder to score [%(default)s]")
    parser.add_argument("--max-clips", type=int, default=None, help="score at most this many clips")
    parser.add_argument("--max-windows", type=int, default=200, help="windows per clip [%(default)s]")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="[%(default)s]")
    parser.add_argument("--per-clip", action="store_true", help="also print each clip's best offset")


def run(args: argparse.Namespace) -> int:
    import tempfile

    import models
    from stream_wav2lip.errors import UserError
    from training.sync_offset import sweep

    expert, info = models.load_checkpoint(args.checkpoint, args.device)
    if info.kind != "syncnet":
        raise UserError(f"{args.checkpoint}: --checkpoint must be a SyncNet, this is a {info.variant} ({info.kind})")
    device = next(expert.parameters()).device
    target: Path = args.target
    if not target.exists():
        raise UserError(f"{target}: not found")
    with tempfile.TemporaryDirectory(prefix="s2l-sync-offset-") as tmp:
        clips = _clips_of(target, Path(tmp), info.image_size, args.split)
        if args.max_clips:
            clips = clips[: args.max_clips]
        curve = sweep(expert, clips, max_shift=args.max_shift, max_windows_per_clip=args.max_windows,
                      device=device, progress=True)
    print(f"{target}: {len(clips)} clip(s), expert {info.variant}")
    print(curve.format())
    if args.per_clip:
        for path, best in curve.per_clip_best.items():
            print(f"  {best:+3d}  {path}")
    return 0


def _clips_of(target: Path, tmp: Path, face_size: int, split: str):
    from stream_wav2lip.errors import UserError
    from training.clips import ClipSkipped, scan_clip
    from training.dataset_index import find_filelist, scan_split
    from training.windows import MIN_CLIP_FRAMES

    if target.is_file():
        from preprocess.api import preprocess_video

        train_dir = tmp / "train"
        crop_size = {96: 96, 192: 288, 288: 288, 384: 384}.get(face_size, 96)  # crops are resized to the expert's size
        preprocess_video(target, tmp / "avatars", face_size=crop_size, train_dir=train_dir)
        target, split = train_dir, "both"
    if find_filelist(target, "train") is not None:
        clips = []
        for name in (("train", "val") if split == "both" else (split,)):
            clips += scan_split(target, name, warn=True).clips
        if not clips:
            raise UserError(f"{target}: no usable clips")
        return clips
    try:
        return [scan_clip(target, MIN_CLIP_FRAMES)]
    except ClipSkipped as reason:
        raise UserError(f"{target}: {reason}") from None

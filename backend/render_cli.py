"""`stream-wav2lip render`: avatar package + speech file(s) → lip-synced mp4. Cheap to import (work in run())."""
from __future__ import annotations

import argparse

from backend.frames import DETAIL_MODES
from backend.generators.registry import PRECISION_HELP, PRECISIONS, engine_help, engine_names
from backend.schedule import IDLE_HELP, WALK_MODES

DETAIL_HELP = ("restore the avatar's own high-frequency detail (teeth, lips, skin) on the mouth of a network "
               "whose native size is below the face's size on screen: auto (default: on, except that serve gives "
               "it up when the network cannot draw every speech frame), on, or off; the mouth engine draws real "
               "pixels and never needs it")
BACKGROUND_HELP = ("what the avatar is shown over: original (the footage, default), transparent (.webm VP9 or .mov "
                   "ProRes 4444 with alpha, PNG frames with alpha), a colour #RRGGBB, or an image file; needs the "
                   "avatar's matte (preprocess makes one by default)")
from backend.sinks.encoders import ENCODERS

HELP = "render speech audio spoken by an avatar into an mp4 (offline; H.264 + AAC, 25 fps)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--avatar", required=True, metavar="DIR", help="avatar package folder (from `preprocess`)")
    parser.add_argument("--audio", required=True, nargs="+", metavar="FILE",
                        help="speech file(s), any format/rate/channels; several play one after another")
    parser.add_argument("--checkpoint", metavar="CKPT", help="Wav2Lip generator checkpoint (96/288/384)")
    parser.add_argument("--engine", choices=engine_names(listed_only=False), help=engine_help(listed_only=False))
    parser.add_argument("-o", "--output", default="out.mp4", metavar="OUT.mp4",
                        help="output video: .mp4 (H.264 + AAC, default out.mp4), or .webm / .mov to carry "
                             "transparency (--background transparent)")
    parser.add_argument("--device", default="auto", help="auto (CUDA if present), cuda, cuda:N or cpu")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto", help=PRECISION_HELP)
    parser.add_argument("--detail", choices=DETAIL_MODES, default="auto", help=DETAIL_HELP)
    parser.add_argument("--background", default="original", metavar="original|transparent|#RRGGBB|IMAGE",
                        help=BACKGROUND_HELP)
    parser.add_argument("--batch-size", type=int, default=None, metavar="N",
                        help="frames per network call (default 16 on CUDA; on the CPU 8, rounded up to a multiple "
                             "of --threads: each thread runs an equal part of a batch on its own)")
    parser.add_argument("--crop", choices=("head", "body", "heads"), default=None,
                        help="face crop fed to the generator: head (upright face, the network's default), body "
                             "(Wav2Lip-style box) or heads (whole head, the mouth engine's default)")
    parser.add_argument("--frames-dir", metavar="DIR", help="also write every frame as PNG into DIR")
    parser.add_argument("--start-frame", type=int, default=0, metavar="N", help="avatar frame to start from")
    parser.add_argument("--action", action="append", default=[], metavar="NAME@SECONDS",
                        help="play the avatar's action clip NAME from SECONDS into the video (e.g. wave@3.5); "
                             "repeatable; speech goes on over it")
    parser.add_argument("--idle", "--loop", dest="loop", choices=WALK_MODES, default="auto",
                        help=IDLE_HELP)
    parser.add_argument("--no-silence-gate", action="store_true",
                        help="drive the mouth on every frame, also where the audio is silent")
    parser.add_argument("--enhancer", choices=("none", "gfpgan"), default="none",
                        help="optional face enhancer (GFPGAN, if installed with its weights)")
    parser.add_argument("--encoder", default="auto", choices=ENCODERS,
                        help="H.264 encoder: auto = NVENC on a CUDA host where it opens, else libx264")
    parser.add_argument("--preset", default=None,
                        help="encoder speed preset (x264: ultrafast..slow, default ultrafast: the CPU goes to the "
                             "network; veryfast makes ~3x smaller files for ~3x the encoding time. NVENC: p1..p7, "
                             "default p4)")
    parser.add_argument("--crf", type=int, default=None,
                        help="quality, lower is better (x264 CRF / NVENC cq / QSV global_quality; default 18; "
                             "x264 ultrafast without --crf uses a constant quantizer of 15: as good as CRF 18 on "
                             "talking heads for 10-35 %% less CPU)")
    parser.add_argument("--no-frame-cache", action="store_true",
                        help="decode the avatar's JPEGs every time instead of keeping decoded frames in "
                             "<avatar>/.cache (built on first use, 1.5 bytes per pixel per frame, at most 4 GB)")
    parser.add_argument("--threads", type=int, default=0, metavar="N",
                        help="CPU threads for the network (0 = all); on the CPU each takes an equal part of a batch")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def show_notes(enabled: bool) -> None:
    """Print the product's one-line notes (logging INFO of its own packages) on stderr, as `serve` does.

    Why: the first render with a new checkpoint calibrates and checks int8 on the avatar (~15 s on 2 cores) and
    measures how soft the network draws; without its notes ("int8: calibrating and validating on this avatar
    (once; cached in …)") that looks like a hang before the progress bar. Warnings are shown either way."""
    import logging

    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, format="%(message)s")
    for name in ("backend", "stream_wav2lip", "preprocess", "models"):
        logging.getLogger(name).setLevel(logging.INFO if enabled else logging.WARNING)


def run(args: argparse.Namespace) -> int:
    from backend.render import render
    from backend.background import parse_background
    from preprocess.actions import parse_action_cue

    from backend.cpu_streams import single_threaded_blas

    single_threaded_blas()
    show_notes(not args.no_progress)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    batch = args.batch_size
    if batch is not None and batch < 1:
        from stream_wav2lip.errors import UserError

        raise UserError(f"--batch-size must be >= 1, got {batch}")
    result = render(args.avatar, args.audio, args.output, checkpoint=args.checkpoint, engine=args.engine,
                    device=args.device, batch_size=batch, crop=args.crop, frames_dir=args.frames_dir,
                    start_frame=args.start_frame, loop=args.loop, silence_gate=not args.no_silence_gate,
                    enhancer=args.enhancer, progress=not args.no_progress, preset=args.preset, crf=args.crf,
                    encoder=args.encoder, frame_cache=not args.no_frame_cache, precision=args.precision,
                    background=parse_background(args.background), detail=args.detail,
                    actions=[parse_action_cue(spec) for spec in args.action])
    where = ", ".join(str(p) for p in (result.output, result.frames_dir) if p is not None)
    print(f"wrote {where}: {result.frames} frames ({result.frames / 25:.2f} s) in {result.seconds:.1f} s "
          f"({result.fps:.1f} fps, {result.generator}{' ' + result.precision if result.precision else ''}"
          f"{', ' + result.encoder if result.encoder else ''}, detail {result.detail})")
    return 0

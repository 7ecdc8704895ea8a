"""`stream-wav2lip demo`: the README's first command. Cheap to import; the work is in backend.demo."""
from __future__ import annotations

import argparse
from pathlib import Path

HELP = "render a talking demo avatar with no weights and no input (or --video my.mp4 for your own face)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--video", type=Path, default=None, metavar="MY.mp4",
                   help="your own talking video: preprocess it and render it speaking (default: a shipped face)")
    p.add_argument("--audio", type=Path, default=None, metavar="FILE",
                   help="speech to render (default: English + Mandarin made offline with espeak-ng)")
    p.add_argument("--out", type=Path, default=Path("stream-wav2lip-demo"), metavar="DIR",
                   help="output folder for the avatar package, speech.wav and demo.mp4 (default ./stream-wav2lip-demo)")
    p.add_argument("--lang", choices=("zh", "en", "both"), default="both", help="language of the demo speech")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    import logging
    import os

    os.environ.setdefault("GLOG_minloglevel", "2")  # MediaPipe's C++ chatter is not for a first-run user
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from backend.demo import next_steps, run_demo

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    print("stream-wav2lip demo: building the avatar"
          + (f" from {args.video}" if args.video else " from the shipped face (scikit-image 'astronaut')")
          + ", making speech, rendering with the weightless mouth engine ...", flush=True)
    result = run_demo(args.out, video=args.video, audio=args.audio, lang=args.lang, progress=not args.no_progress)
    print(next_steps(result, used_own_video=args.video is not None))
    return 0

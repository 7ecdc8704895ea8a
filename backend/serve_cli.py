"""`stream-wav2lip serve`: the live backend for OBS (idle loop, live audio in, shared-memory A/V out)."""
from __future__ import annotations

import argparse

from backend.frames import DETAIL_MODES
from backend.generators.registry import PRECISION_HELP, PRECISIONS, engine_help, engine_names
from backend.render_cli import DETAIL_HELP
from backend.schedule import IDLE_HELP, WALK_MODES

HELP = "run the live avatar: idle loop, speech from files/API/microphone, shared-memory output for OBS"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--avatar", required=True, help="avatar package folder (made by `stream-wav2lip preprocess`)")
    p.add_argument("--checkpoint", help="Wav2Lip checkpoint (.pth); without it the weightless mouth engine runs")
    p.add_argument("--engine", choices=engine_names(listed_only=False), help=engine_help(listed_only=False))
    p.add_argument("--session", default="default",
                   help="session name (1-32 of A-Z a-z 0-9 _ -): shared memory s2l_<session>_*; default: default")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default auto)")
    p.add_argument("--precision", choices=PRECISIONS, default="auto", help=PRECISION_HELP)
    p.add_argument("--detail", choices=DETAIL_MODES, default="auto", help=DETAIL_HELP)
    p.add_argument("--background", default="original", metavar="original|transparent|#RRGGBB|IMAGE",
                   help="what the avatar is shown over in OBS: original (the footage), transparent (real alpha "
                        "in the source), a colour #RRGGBB or an image; needs the avatar's matte")
    p.add_argument("--crop", choices=("head", "heads", "body"), default=None,
                   help="face crop fed to the generator: head (upright face, the network's default), body "
                        "(Wav2Lip-style box) or heads (whole head, the mouth engine's default)")
    p.add_argument("--idle", choices=WALK_MODES, default="auto", help=IDLE_HELP)
    p.add_argument("--batch-size", type=int, default=4, help="micro-batch size, 1-4 (default 4)")
    p.add_argument("--mic", nargs="?", const="", default=None, metavar="DEVICE",
                   help="listen to a microphone (PortAudio); optional device index or name part")
    p.add_argument("--mic-gate-db", type=float, default=-40.0,
                   help="microphone level (dBFS) that counts as speech (default -40)")
    p.add_argument("--api-port", type=int, default=0, help="local API port on 127.0.0.1 (default 0 = any free)")
    p.add_argument("--no-api", action="store_true", help="do not start the local HTTP API")
    p.add_argument("--play-audio", nargs="?", const="", default=None, metavar="DEVICE",
                   help="also play the avatar's audio locally (PortAudio); optional device")
    p.add_argument("--preview", action="store_true", help="show the output in a window")
    p.add_argument("--audio-lead-ms", type=float, default=60.0,
                   help="publish each audio block this long before its pts (OBS needs audio ahead of its "
                        "timestamp); after a flush up to this much old speech still plays (default 60)")
    p.add_argument("--duration", type=float, help="stop after this many seconds (benchmarks, tests)")
    p.add_argument("--quiet", action="store_true", help="print only errors")


def run(args: argparse.Namespace) -> int:
    import logging
    import signal
    import threading

    from backend.background import parse_background
    from backend.serve_app import ServeApp, parent_pid_from_env
    from stream_wav2lip.errors import UserError

    logging.basicConfig(level=logging.ERROR if args.quiet else logging.INFO,
                        format="stream-wav2lip serve: %(message)s")
    if not 1 <= args.batch_size <= 4:
        raise UserError(f"--batch-size {args.batch_size}: use 1..4 (live micro-batches stay small for latency)")
    if not 0 <= args.audio_lead_ms <= 1000:
        raise UserError(f"--audio-lead-ms {args.audio_lead_ms}: use 0..1000")
    stop = threading.Event()

    def on_signal(signum, _frame):
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    app = ServeApp(args.session, args.avatar, engine=args.engine, checkpoint=args.checkpoint, device=args.device,
                   crop=args.crop, batch_size=args.batch_size, idle=args.idle, precision=args.precision,
                   background=parse_background(args.background), detail=args.detail,
                   api_port=None if args.no_api else args.api_port,
                   mic=args.mic, mic_gate_db=args.mic_gate_db, play_audio=args.play_audio, preview=args.preview,
                   audio_lead_ms=args.audio_lead_ms)
    try:
        app.start()
        if not args.quiet:
            pkg = app.engine.package
            print(f"stream-wav2lip serve: session {args.session}: {pkg.name} {pkg.width}x{pkg.height}, "
                  f"engine {app.engine.generator.name}{_precision(app.engine.generator)}; "
                  f"video {app.video.writer.name}, audio {app.audio.writer.name}",
                  flush=True)
            if app.api is not None:
                print(f"stream-wav2lip serve: API http://127.0.0.1:{app.api.port} (token in {app.api.info_path})",
                      flush=True)
            if app.mic is not None:
                print(f"stream-wav2lip serve: microphone {app.mic.device_name}", flush=True)
            print("stream-wav2lip serve: running; Ctrl+C to stop", flush=True)
        return app.wait(stop, args.duration, parent_pid=parent_pid_from_env())
    finally:
        app.close()
        for s, handler in previous.items():
            signal.signal(s, handler)


def _precision(generator) -> str:
    """' (int8: why)' for a network generator; nothing for generators without a precision."""
    return f" ({generator.precision}: {generator.precision_reason})" if generator.precision else ""

"""The single console entry point `stream-wav2lip` and its sub-commands.

Each sub-command is owned by the package that does the work; this module only knows where it lives.
A sub-command module exposes::

    HELP: str                                   # one line for `stream-wav2lip --help`
    def add_arguments(parser) -> None           # fills its argparse parser
    def run(args) -> int                        # does the job, returns the exit code

Sub-command modules must stay cheap to import (no torch/mediapipe at module level) so that
`--help` is instant; heavy imports happen inside `run`.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from stream_wav2lip import __version__
from stream_wav2lip.errors import UserError

# name -> module implementing it. Order = order shown in --help.
SUBCOMMANDS: dict[str, str] = {
    "demo": "backend.demo_cli",
    "preprocess": "preprocess.cli",
    "render": "backend.render_cli",
    "serve": "backend.serve_cli",
    "say": "backend.say_cli",
    "train-syncnet": "training.cli_syncnet",
    "train-wav2lip": "training.cli_wav2lip",
    "sync-offset": "training.cli_sync_offset",
    "check-data": "training.cli_check_data",
    "inspect": "models.cli",
    "doctor": "stream_wav2lip.doctor",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stream-wav2lip",
        description="Real-time lip-sync avatar for live streamers (Wav2Lip 96/288/384, OBS source, training).",
    )
    parser.add_argument("--version", action="version", version=f"stream-wav2lip {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in SUBCOMMANDS.items():
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:  # a broken/partial install must not take the other commands down
            p = sub.add_parser(name, help=f"(unavailable: {exc})")
            p.set_defaults(_run=_unavailable(name, exc))
            continue
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def _unavailable(name: str, exc: Exception):
    def run(_args: argparse.Namespace) -> int:
        raise UserError(f"the '{name}' command cannot be loaded ({exc}); re-run ./install.sh")

    return run


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except UserError as exc:
        print(f"stream-wav2lip {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"stream-wav2lip {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

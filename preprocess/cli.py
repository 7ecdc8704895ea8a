"""`stream-wav2lip preprocess`: videos (or folders of them) -> avatar packages (+ an LRS2-style training set).

Each input is processed on its own: a bad file gets a one-line error naming it, the others still run, and
the exit code is 1 when any failed. Cheap to import; the pipeline is imported inside run().
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "turn talking-head videos into avatar packages (and optionally a training set)"

VIDEO_SUFFIXES = {".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".mpg", ".mpeg", ".ts", ".mts", ".flv", ".wmv"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="video files or folders of videos")
    parser.add_argument("--out", type=Path, metavar="AVATARS_DIR",
                        help="where the avatar packages go (one folder per video, named after it; required "
                             "except with --matte-only)")
    parser.add_argument("--train-dir", type=Path, default=None, metavar="DIR",
                        help="also write LRS2-style training clips and train.txt/val.txt here")
    parser.add_argument("--face-size", type=int, default=96, choices=(96, 288, 384),
                        help="face crop size = the network's input (default 96)")
    parser.add_argument("--head-size", type=int, default=None, metavar="N",
                        help="upright head crop size (default 256, or 2x face size for 288/384)")
    parser.add_argument("--pads", type=int, nargs=4, default=[0, 10, 0, 0], metavar=("T", "B", "L", "R"),
                        help="Wav2Lip padding of the face box in pixels (default 0 10 0 0: include the chin)")
    parser.add_argument("--smooth", type=int, default=5, metavar="N",
                        help="temporal smoothing half-window in frames, 0 = off (default 5)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="accepted for symmetry; face tracking (mediapipe) always runs on the CPU")
    parser.add_argument("--workers", type=int, default=None, metavar="N",
                        help="threads for cropping/JPEG encoding (default: min(2, CPU cores))")
    parser.add_argument("--max-seconds", type=float, default=None, metavar="S",
                        help="only use the first S seconds of each video")
    parser.add_argument("--force", action="store_true", help="rebuild packages that already exist")
    parser.add_argument("--no-frame-cache", action="store_true",
                        help="do not decode the frames into <package>/.cache/ at the end (1.5 bytes per pixel per "
                             "frame, at most 4 GB; serve's first start does it otherwise); implied by --train-dir")
    matte = parser.add_mutually_exclusive_group()
    matte.add_argument("--matte", choices=("segment", "green"), default="segment",
                       help="the alpha matte for transparent/replaced backgrounds: segment = find the person "
                            "(default), green = key a green/blue screen, with spill suppression")
    matte.add_argument("--no-matte", action="store_true", help="store no matte (the avatar stays opaque)")
    parser.add_argument("--action", action="append", default=[], metavar="NAME=CLIP",
                        help="an action clip the avatar can play on cue (wave=wave.mp4; repeatable), filmed like "
                             "the main footage; an INPUT that is an existing avatar package gets the actions added "
                             "without redoing its tracking")
    parser.add_argument("--matte-only", action="store_true",
                        help="INPUTs are existing avatar packages: add a matte without redoing the tracking "
                             "(--force replaces an existing matte)")


def collect_inputs(inputs: list[str]) -> list[Path]:
    """Files as given; folders expanded to the videos inside them (sorted, not recursive)."""
    found: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found.extend(sorted(q for q in p.iterdir() if q.is_file() and q.suffix.lower() in VIDEO_SUFFIXES))
        else:
            found.append(p)  # missing/odd files are reported by the pipeline, one line each
    return found


def run(args: argparse.Namespace) -> int:
    from preprocess.api import PackageReport, build_package, check_options
    from stream_wav2lip.errors import UserError

    check_options(args.face_size, args.head_size, args.pads, args.smooth, args.max_seconds, args.workers)
    if args.matte_only:
        if args.no_matte:
            raise UserError("--matte-only and --no-matte: pick one")
        return _matte_only(args)
    from preprocess.actions import parse_action_spec
    from preprocess.package import is_avatar_package

    actions = [parse_action_spec(spec) for spec in args.action]
    if actions and all(is_avatar_package(item) for item in args.inputs):
        return _add_actions([Path(item) for item in args.inputs], actions, args)
    if args.out is None:
        raise UserError("--out AVATARS_DIR is required (where the avatar packages go)")
    videos = collect_inputs(args.inputs)
    if not videos:
        raise UserError(f"{', '.join(args.inputs)}: no video files found")
    reports: list[PackageReport] = []
    seen: dict[str, Path] = {}
    for video in videos:
        if video.stem in seen:
            reports.append(PackageReport(video, "failed", message=f"same package name as {seen[video.stem]}"))
            print(f"stream-wav2lip preprocess: error: {video}: same package name as {seen[video.stem]}",
                  file=sys.stderr)
            continue
        seen[video.stem] = video
        try:
            report = build_package(video, args.out, face_size=args.face_size, head_size=args.head_size,
                                   pads=tuple(args.pads), smooth=args.smooth, device=args.device,
                                   max_seconds=args.max_seconds, force=args.force, train_dir=args.train_dir,
                                   workers=args.workers, progress=sys.stderr.isatty(),
                                   matte=None if args.no_matte else args.matte,
                                   frame_cache=not args.no_frame_cache and args.train_dir is None)
        except UserError as exc:
            print(f"stream-wav2lip preprocess: error: {exc}", file=sys.stderr)
            reports.append(PackageReport(video, "failed", message=str(exc)))
            continue
        except Exception as exc:  # a bug: keep its traceback, but the other videos still get processed
            import traceback

            traceback.print_exc()
            print(f"stream-wav2lip preprocess: error: {video}: internal error ({type(exc).__name__}: {exc}); "
                  "please report it with the traceback above", file=sys.stderr)
            reports.append(PackageReport(video, "failed", message=f"internal error: {type(exc).__name__}"))
            continue
        for w in report.warnings:
            print(f"stream-wav2lip preprocess: warning: {video}: {w}", file=sys.stderr)
        reports.append(report)
    print(summary_table(reports))
    failed = any(r.status == "failed" for r in reports)
    built = [r.path for r in reports if r.status != "failed" and r.path is not None]
    if actions and built:
        failed = _add_actions(built, actions, args) or failed
    return 1 if failed else 0


def _add_actions(packages: list[Path], actions: list[tuple[str, Path]], args: argparse.Namespace) -> int:
    """Track each action clip into every package (`<avatar>/actions/<name>/`) and match it to the footage."""
    from preprocess.actions import add_action

    def add(job):
        package, (name, clip) = job
        add_action(package, name, clip, force=args.force, workers=args.workers, progress=sys.stderr.isatty())
        return f"{package}: action {name!r} from {clip}"
    return _each([(package, action) for package in packages for action in actions], add)


def _each(jobs, work) -> int:
    """`work(job)` for every job, printing what it returns; a UserError is one line and the others still run.
    Returns the exit code (1 when any failed)."""
    from stream_wav2lip.errors import UserError

    failed = 0
    for job in jobs:
        try:
            print(work(job))
        except UserError as exc:
            print(f"stream-wav2lip preprocess: error: {exc}", file=sys.stderr)
            failed += 1
    return 1 if failed else 0


def _matte_only(args: argparse.Namespace) -> int:
    """`--matte-only PKG...`: each package gets a matte; a bad one is a one-line error, the others still run."""
    import os

    from preprocess.matte_build import add_matte

    def matte(item):
        entry = add_matte(item, args.matte, force=args.force, workers=args.workers or min(2, os.cpu_count() or 1),
                          progress=sys.stderr.isatty())
        return f"{item}: matte {entry['method']}, {entry['frames']} frames ({entry['width']}x{entry['height']})"
    return _each(args.inputs, matte)


def summary_table(reports) -> str:
    rows = [("video", "status", "frames", "valid", "time", "fps", "package / reason")]
    for r in reports:
        ok = r.status != "failed"
        rows.append((r.source.name, r.status, str(r.frames) if ok else "-",
                     f"{100 * r.valid_fraction:.1f}%" if ok else "-", f"{r.seconds:.1f}s" if ok else "-",
                     f"{r.fps:.1f}" if ok and r.status == "ok" else "-",
                     str(r.path) if ok else r.message))
    widths = [max(len(row[c]) for row in rows) for c in range(len(rows[0]) - 1)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths)) + "  " + row[-1] for row in rows]
    lines.insert(1, "-" * max(len(x) for x in lines))
    return "\n".join(lines)

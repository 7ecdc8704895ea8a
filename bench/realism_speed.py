"""Per-frame cost of the mouth engine and of the compositor on one core (issue 19: >= 25 fps at 1080x1920).

Why a separate timing: realism work (aligned transplant, the compositor keeping the frame's own detail) adds
per-frame work; this times exactly those stages, single-threaded (OpenCV and torch held to one thread; run
it under `taskset -c N` to pin one core), on the frames render would show: generator alone (features ->
choice -> transplant, crops preloaded as serve keeps them), then compose on I420 (the mp4 / serve path) and
on BGR (`--frames-dir`) with the avatar frames already decoded. Prints ms per frame and fps, and the load
average (numbers taken while other jobs share the CPU are contaminated).

Usage: .venv/bin/python bench/realism_speed.py --avatar PKG --audio SPEECH [--frames 150] [--keep-detail 0|1]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--avatar", required=True, type=Path)
    ap.add_argument("--audio", required=True, type=Path)
    ap.add_argument("--frames", type=int, default=150)
    ap.add_argument("--keep-detail", type=int, default=1, choices=(0, 1))
    args = ap.parse_args(argv)
    import cv2
    import torch

    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    from backend.compositor import Compositor
    from backend.frames import FaceFrame
    from backend.generators.base import GeneratorInput
    from backend.mouth import MouthGenerator
    from backend.schedule import schedule_index
    from backend.yuv import from_bgr
    from models.audio import load_audio, mel_windows, melspectrogram
    from preprocess.package import AvatarPackage

    pkg = AvatarPackage.open(args.avatar)
    windows = mel_windows(melspectrogram(load_audio(args.audio)))
    n = min(args.frames, len(windows))
    gen = MouthGenerator(pkg)
    idx = [schedule_index(k, pkg.frame_count) for k in range(n)]
    crops = {i: pkg.image(gen.crop, i) for i in set(idx)}
    gen.generate([GeneratorInput(crops[idx[0]], windows[0], idx[0])])  # warm-up (landmarks cache etc.)
    gen.reset()
    batch = gen.preferred_batch
    t = time.perf_counter()
    faces = []
    for b in range(0, n, batch):
        faces.extend(gen.generate([GeneratorInput(crops[idx[k]], windows[k], idx[k])
                                   for k in range(b, min(n, b + batch))]))
    gen_ms = (time.perf_counter() - t) / n * 1000

    import inspect

    has_detail = "keep_detail" in inspect.signature(Compositor).parameters  # older trees: compared as they were
    comp = Compositor(pkg, keep_detail=bool(args.keep_detail)) if has_detail else Compositor(pkg)
    frames = {i: pkg.frame(i) for i in set(idx)}
    yuv = {i: from_bgr(f) for i, f in frames.items()} if pkg.width % 2 == 0 and pkg.height % 2 == 0 else None
    comp.background_i420 = lambda i: yuv[i]  # decoded frames: time the blend, not the JPEG decoder
    comp.package = _Frames(pkg, frames)
    for k in range(min(n, 10)):  # warm the placement cache as a ping-pong walk does
        comp.placement(idx[k], gen.crop, gen.face_size)
    rows = {}
    for name, fn in (("compose_i420", comp.compose_i420), ("compose_bgr", comp.compose)):
        if name == "compose_i420" and yuv is None:
            continue
        t = time.perf_counter()
        for k in range(n):
            fn(FaceFrame(pts_ns=0, index=k, avatar_index=idx[k], face=faces[k], crop=gen.crop, blend=1.0))
        rows[name] = (time.perf_counter() - t) / n * 1000
    print(f"avatar {pkg.name} {pkg.width}x{pkg.height}, crop {gen.crop} {gen.face_size}px, {n} frames, "
          f"keep_detail {bool(args.keep_detail) and has_detail}, one thread; "
          f"load average {open('/proc/loadavg').read().split()[:3]}")
    print(f"generator alone : {gen_ms:6.2f} ms/frame ({1000 / gen_ms:6.1f} fps)")
    for name, ms in rows.items():
        print(f"{name:<16}: {ms:6.2f} ms/frame; generator + it {gen_ms + ms:6.2f} ms ({1000 / (gen_ms + ms):6.1f} fps)")
    return 0


class _Frames:
    """The package with its frames already decoded (the compositor reads frames through `frame`)."""

    def __init__(self, pkg, frames):
        self._pkg, self._frames = pkg, frames

    def frame(self, i):
        return self._frames[i]

    def __getattr__(self, name):
        return getattr(self._pkg, name)


if __name__ == "__main__":
    sys.exit(main())

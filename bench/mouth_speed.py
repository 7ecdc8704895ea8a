"""Can the weightless mouth engine keep up with live video? Per-frame cost of the generator alone and of the
whole engine (features -> generator -> compositor, no encoding), on an avatar package of your choice.

Target (issue 8): 25 fps at 720p on this 2-core CPU, so the whole engine must stay well under 40 ms per frame.
Run on a quiet machine; numbers taken while other jobs share the CPU are contaminated.

Usage: .venv/bin/python bench/mouth_speed.py --avatar PKG --audio SPEECH [--seconds 10] [--crop heads]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--avatar", required=True, type=Path)
    ap.add_argument("--audio", required=True, type=Path)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--crop", default="heads", choices=("heads", "head", "body"))
    ap.add_argument("--mode", default="auto", choices=("auto", "retrieval", "warp"))
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(2)
    from backend.engine import Engine
    from backend.frames import AudioFrame, SpeechEndFrame, SpeechStartFrame
    from backend.generators.base import GeneratorInput
    from backend.mouth import MouthGenerator
    from models.audio import load_audio, mel_windows, melspectrogram
    from preprocess.package import AvatarPackage

    pkg = AvatarPackage.open(args.avatar)
    wav = load_audio(args.audio)[: int(args.seconds * 16000)]
    windows = mel_windows(melspectrogram(wav))
    n = len(windows)
    pkg.preload((args.crop,))  # the crops fit in RAM; full frames are decoded as the engine goes
    gen = MouthGenerator(pkg, crop=args.crop, mode=args.mode)
    faces = [pkg.face(i % pkg.frame_count, gen.crop) for i in range(n)]
    gen.generate([GeneratorInput(faces[0], windows[0], 0)])  # warm-up
    gen.reset()
    t = time.perf_counter()
    for b in range(0, n, gen.preferred_batch):
        gen.generate([GeneratorInput(faces[i], windows[i], i % pkg.frame_count)
                      for i in range(b, min(n, b + gen.preferred_batch))])
    gen_ms = (time.perf_counter() - t) / n * 1000

    eng = Engine(pkg, gen, crop=gen.crop)
    t = time.perf_counter()
    eng.push(SpeechStartFrame(pts_ns=0))
    frames = 0

    def take(force: bool) -> int:
        done = 0
        while plans := eng.plan(force=force):
            eng.render(plans)
            done += len(plans)
        return done
    for k in range(0, wav.size, 640 * 5):  # 0.2 s chunks, as a live source would push them
        eng.push(AudioFrame(pts_ns=0, pcm=wav[k:k + 640 * 5]))
        frames += take(False)
    eng.push(SpeechEndFrame(pts_ns=0))
    frames += take(True)
    eng_ms = (time.perf_counter() - t) / max(frames, 1) * 1000
    stages = {name: st.busy_ns / 1e6 / max(frames, 1) for name, st in eng.stats.items()}
    print(f"avatar {pkg.name} {pkg.width}x{pkg.height}, crop {gen.crop} {gen.face_size}px, mode {gen.mode}, {n} frames")
    print(f"generator alone : {gen_ms:6.2f} ms/frame ({1000 / gen_ms:6.1f} fps)")
    print(f"whole engine    : {eng_ms:6.2f} ms/frame ({1000 / eng_ms:6.1f} fps)  stages ms/frame: "
          + ", ".join(f"{k} {v:.2f}" for k, v in stages.items()))
    print(f"25 fps budget 40 ms/frame: {'OK' if eng_ms < 40 else 'TOO SLOW'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""int8 against fp32 for one checkpoint on one avatar: the self-validation's verdict (lower-face PSNR) and the
network's speed both ways, as Wav2LipGenerator runs it (render's single-threaded streams, serve's one call).

    .venv/bin/python bench/precision.py [--avatar DIR] [--checkpoint CKPT] [--batches 4 8] [--threads 2]

Without --checkpoint, deterministic wav2lip96 weights (docs/models.md §10); without --avatar, the synthetic
test avatar. The int8 model is built (or taken from the avatar's .cache) exactly as `--precision int8` does.
Speeds alternate fp32 / int8 rounds and keep each one's best; the load average is printed with them.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--avatar")
    ap.add_argument("--checkpoint")
    ap.add_argument("--batches", nargs="*", type=int, default=[4, 8])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--calls", type=int, default=3, help="timed calls per round")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    from backend.generators.precision import avatar_samples, measure_fps
    from backend.generators.wav2lip import Wav2LipGenerator
    from preprocess.package import AvatarPackage

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        ckpt = args.checkpoint
        if not ckpt:
            from models.testing import deterministic_model, save_reference_checkpoint

            ckpt = save_reference_checkpoint(deterministic_model("wav2lip96"), tmp / "w96.pth", with_optimizer=False)
        if args.avatar:
            avatar = Path(args.avatar)
        else:
            from preprocess.synthetic import write_synthetic_package

            avatar = write_synthetic_package(tmp / "synthetic")
        package = AvatarPackage.open(avatar)
        print(f"# precision: {Path(ckpt).name} on {avatar.name} ({package.frame_count} frames, audio "
              f"{'yes' if package.audio_path else 'no'}), {args.threads} threads, load avg {os.getloadavg()[0]:.1f}")
        for streams, label in ((None, "render (one single-threaded stream per thread)"), (1, "serve (one call)")):
            started = time.perf_counter()
            int8 = Wav2LipGenerator(ckpt, device="cpu", precision="int8", package=package, streams=streams)
            load_s = time.perf_counter() - started
            fp32 = Wav2LipGenerator(ckpt, device="cpu", precision="fp32", streams=streams)
            print(f"\n## {label}: int8 {'accepted' if int8.precision == 'int8' else 'REFUSED'} "
                  f"(load {load_s:.1f} s): {int8.precision_reason}")
            if int8.precision != "int8":
                continue
            faces, mels = avatar_samples(package, "head", fp32.face_size, 8)
            print("| batch | fp32 fps | int8 fps | int8 / fp32 |\n|---|---|---|---|")
            for batch in args.batches:
                best = {"fp32": 0.0, "int8": 0.0}
                for _ in range(args.rounds):
                    for name, gen in (("fp32", fp32), ("int8", int8)):
                        fps = measure_fps(gen._forward_with, gen.model, faces, mels, gen.round_batch(batch), args.calls)
                        best[name] = max(best[name], fps)
                print(f"| {batch} | {best['fp32']:.1f} | {best['int8']:.1f} | {best['int8'] / best['fp32']:.2f} |",
                      flush=True)
        print(f"\nload avg at the end {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

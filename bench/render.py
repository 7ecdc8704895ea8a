"""Benchmark of `render`: how close the whole pipeline gets to the network alone, and what everything
except the network costs per frame at 720p and 1080p on one core.

Part 1 (same device, same batch size, same inputs): end-to-end render fps (features + network + compositor +
H.264/AAC encoding, silence gate off so the network runs on every frame) divided by model-only fps
(`Wav2LipGenerator.forward` on the same face crops and mel windows). Target >= 0.9.

Part 2 (one core: torch/OpenCV/x264 limited to one thread): per-frame cost of decode (background JPEG +
face crop JPEG), features (incremental mel + gate), crop (network input tensors), composite, encode
(BGR → I420 + libx264), as thread CPU time (immune to other processes on a shared machine) and wall time.
Target: everything but the network <= 10 ms per 1080p frame.

    .venv/bin/python bench/render.py [--checkpoint CKPT] [--avatar DIR] [--seconds 4] [--batch 8] [--threads 2] [--part 1|2]

Without --checkpoint a deterministic-weight wav2lip96 checkpoint is built in a temp folder; without --avatar a
synthetic 1280x720 avatar is used. Numbers measured while other jobs share the CPU are noisy: the script prints
the 1-minute load average next to them.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def speech(seconds: float) -> np.ndarray:
    media = Path(__file__).resolve().parents[2] / "shared" / "media" / "whisper__tests_jfk.flac"
    from models.audio import load_audio

    if media.is_file():
        wav = load_audio(media)
        reps = int(np.ceil(seconds * 16000 / wav.size))
        return np.tile(wav, reps)[: int(seconds * 16000)]
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * 16000)) / 16000
    return (0.3 * np.sin(2 * np.pi * 190 * t) * (1 + 0.3 * rng.standard_normal(t.size))).astype(np.float32)


def part1(args, tmp: Path) -> dict:
    import soundfile
    import torch

    from backend.features import FeatureStage, SilenceGate
    from backend.frames import AudioFrame, MelFrame, SpeechEndFrame
    from backend.render import render
    from backend.wav2lip_generator import Wav2LipGenerator
    from preprocess.package import AvatarPackage
    from preprocess.synthetic import write_synthetic_package

    torch.set_num_threads(args.threads)
    ckpt = args.checkpoint
    if ckpt is None:
        from models.testing import deterministic_state_dict, save_reference_checkpoint

        ckpt = save_reference_checkpoint(deterministic_state_dict("wav2lip96"), tmp / "w96.pth", with_optimizer=False)
    avatar = Path(args.avatar) if args.avatar else write_synthetic_package(tmp / "avatar", frames=50, width=1280,
                                                                           height=720, head_size=256)
    pkg = AvatarPackage.open(avatar)
    wav = speech(args.seconds)
    wav_path = tmp / "speech.wav"
    soundfile.write(wav_path, wav, 16000)
    gen = Wav2LipGenerator(ckpt, device=args.device, batch_size=args.batch)

    # the same inputs the render will use: mel windows of this audio, faces along the ping-pong walk
    fs = FeatureStage(SilenceGate(enabled=False))
    mels = [f.mel for f in fs.push(AudioFrame(0, wav)) + fs.push(SpeechEndFrame(0)) if isinstance(f, MelFrame)]
    from backend.schedule import schedule

    faces = [pkg.face(i, "head") for i in schedule(len(mels), pkg.frame_count)]
    b = args.batch
    gen.forward(np.stack(faces[:b]), np.stack(mels[:b]))  # warm-up

    def model_only():
        for k in range(0, len(mels), b):
            gen.forward(np.stack(faces[k:k + b]), np.stack(mels[k:k + b]))

    def end_to_end():
        return render(avatar, [wav_path], tmp / "out.mp4", generator=gen, batch_size=b, silence_gate=False,
                      progress=False, preset=args.render_preset)

    end_to_end()  # warm-up (compositor caches, encoder)
    best = {"model": (0.0, 0.0), "render": (0.0, 0.0)}  # (fps by wall clock, fps by process CPU time)
    r = None
    for _ in range(args.repeats):  # alternate, keep the best of each: other jobs only ever slow a run down
        for name, fn in (("model", model_only), ("render", end_to_end)):
            c0, w0 = time.process_time(), time.perf_counter()
            out = fn()
            wall, cpu = time.perf_counter() - w0, time.process_time() - c0
            r = out if out is not None else r
            best[name] = (max(best[name][0], len(mels) / wall), max(best[name][1], len(mels) / cpu))
    return {"avatar": f"{pkg.width}x{pkg.height}", "frames": r.frames, "model_fps": best["model"][0],
            "render_fps": best["render"][0], "ratio": best["render"][0] / best["model"][0],
            "cpu_ratio": best["render"][1] / best["model"][1], "stages": r.stage_seconds}


def part2(size: tuple[int, int], tmp: Path, presets: list[str]) -> dict:
    import cv2
    import torch

    from backend.compositor import Compositor
    from backend.features import FeatureStage
    from backend.frames import AudioFrame, FaceFrame, SpeechEndFrame, VideoFrame, AudioOutFrame
    from backend.sinks.mp4 import Mp4Sink
    from backend.wav2lip_generator import build_network_input
    from preprocess.package import AvatarPackage, _read_image
    from preprocess.synthetic import write_synthetic_package

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    w, h = size
    pkg = AvatarPackage.open(write_synthetic_package(tmp / f"av{h}", frames=20, width=w, height=h, head_size=256))
    n = 50
    idx = [i % pkg.frame_count for i in range(n)]
    cost: dict[str, list[float]] = {}

    def timed(name, fn):
        c0, w0 = time.thread_time(), time.perf_counter()
        out = fn()
        cost.setdefault(name, [0.0, 0.0])
        cost[name][0] += time.thread_time() - c0
        cost[name][1] += time.perf_counter() - w0
        return out

    frames = [timed("decode", lambda i=i: (_read_image(pkg.image_path("bg", i)), _read_image(pkg.image_path("head", i))))
              for i in idx]
    wav = speech(n / 25)
    FeatureStage().push(AudioFrame(0, wav[:8000]))  # warm-up (scipy.fft import)
    fs = FeatureStage()
    timed("features", lambda: fs.push(AudioFrame(0, wav)) + fs.push(SpeechEndFrame(0)))
    mel = np.zeros((80, 16), np.float32)
    for k in range(0, n, 8):
        timed("crop", lambda k=k: build_network_input(np.stack([f[1] for f in frames[k:k + 8]]), np.stack([mel] * len(frames[k:k + 8]))))
    pkg.preload(("bg", "head"))  # decoding was counted above; the compositor reads the cache
    comp = Compositor(pkg)  # cold: the per-avatar-frame mask/placement is part of the cost
    images = []
    for k, i in enumerate(idx):  # results dropped at once, as the sinks do (keeping 50 frames costs page faults)
        timed("composite", lambda k=k, i=i: comp.compose(FaceFrame(0, k, i, frames[k][1], blend=1.0)))
    images = [comp.compose(FaceFrame(0, k, i, frames[k][1], blend=1.0)) for k, i in enumerate(idx)]
    silence = np.zeros(640, np.float32)
    for preset in presets:
        sink = Mp4Sink(tmp / f"enc{h}.mp4", w, h, threads=1, background=False, preset=preset)
        name = f"encode ({preset})"
        for k, img in enumerate(images):
            timed(name, lambda k=k, img=img: sink.write(VideoFrame(k * 40_000_000, k, 0, img),
                                                          AudioOutFrame(k * 40_000_000, silence)))
        timed(name, sink.close)
    table = {name: (c / n * 1000, wl / n * 1000) for name, (c, wl) in cost.items()}
    base = dict(table)
    for preset in presets:
        rows = [v for k, v in base.items() if not k.startswith("encode") or k == f"encode ({preset})"]
        table[f"total with {preset}"] = (sum(v[0] for v in rows), sum(v[1] for v in rows))
    return table


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint")
    ap.add_argument("--avatar")
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--presets", default="veryfast,ultrafast", help="x264 presets timed in part 2 (render: veryfast)")
    ap.add_argument("--part", choices=("1", "2", "both"), default="both")
    ap.add_argument("--repeats", type=int, default=2, help="alternating runs of part 1 (best kept)")
    ap.add_argument("--render-preset", default="veryfast", help="x264 preset of the end-to-end render in part 1")
    args = ap.parse_args()
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        if args.part in ("1", "both"):
            r = part1(args, tmp)
            print(f"\n## end-to-end vs model-only (device {args.device}, batch {args.batch}, {args.threads} threads, "
                  f"x264 {args.render_preset}, "
                  f"avatar {r['avatar']}, {r['frames']} frames, load avg {load:.1f})")
            print("| model-only fps | render fps | ratio (target >= 0.9) | ratio of CPU time per frame |")
            print("|---|---|---|---|")
            print(f"| {r['model_fps']:.2f} | {r['render_fps']:.2f} | {r['ratio']:.3f} | {r['cpu_ratio']:.3f} |")
            print("render stage seconds:", {k: round(v, 2) for k, v in r["stages"].items()})
        for size in ((1280, 720), (1920, 1080)) if args.part in ("2", "both") else ():
            t = part2(size, tmp, args.presets.split(","))
            print(f"\n## everything but the network, {size[0]}x{size[1]}, one core "
                  f"(ms/frame; load avg {os.getloadavg()[0]:.1f})")
            print("| stage | CPU ms | wall ms |")
            print("|---|---|---|")
            for name, (c, wl) in t.items():
                print(f"| {name} | {c:.2f} | {wl:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

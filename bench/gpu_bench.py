"""CUDA speed of the generator networks alone (96/288/384, fp32/TF32/fp16) and of NVENC against x264: the GPU
half of bench/gpu_check.sh. Prints a markdown table; exits 0 with a "skipped" line where there is no CUDA.

    .venv/bin/python bench/gpu_bench.py [--variants wav2lip96 ...] [--batches 1 16 64] [--seconds 1.5] [--no-nvenc]

Timings: the prepared network (BN folded, channels_last, what Wav2LipGenerator runs), inputs already on the
GPU, CUDA-synchronised wall time per call after a warm-up, median of repeats. fp16 = the weights and inputs
in half (precision.HalfNetwork); TF32 = fp32 with TF32 convolutions (cuDNN's default on Ampere and later).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

VARIANTS = ("wav2lip96", "wav2lip288", "wav2lip384")


def time_network(variant: str, mode: str, batch: int, seconds: float) -> float:
    """Frames per second of `variant` in `mode` (fp32, tf32, fp16) at `batch` on cuda:0."""
    import torch

    import models
    from models.inference import prepare_for_inference

    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = mode == "tf32"
    torch.backends.cudnn.benchmark = True
    net = prepare_for_inference(models.build(variant), "cuda", inplace=True)
    dtype = torch.float16 if mode == "fp16" else torch.float32
    net = net.to(dtype)
    size = int(net.image_size)
    mel = torch.randn(batch, 1, 80, 16, device="cuda", dtype=dtype)
    face = torch.rand(batch, 6, size, size, device="cuda", dtype=dtype)
    times = []
    with torch.inference_mode():
        for _ in range(3):
            net(mel, face)
        torch.cuda.synchronize()
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline or len(times) < 5:
            start = time.perf_counter()
            net(mel, face)
            torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
    del net
    torch.cuda.empty_cache()
    return batch / statistics.median(times)


def time_encoders(frames: int = 250, width: int = 1920, height: int = 1080) -> dict[str, float | str]:
    """Frames per second of encoding the same 1080p frames with h264_nvenc (p4) and libx264 (ultrafast)."""
    import av
    import numpy as np

    from backend.sinks.encoders import encoder_options, probe

    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (height // 8, width // 8, 3), np.uint8).repeat(8, 0).repeat(8, 1)
    images = [np.roll(base, k * 4, axis=1) for k in range(8)]  # moving content, not a static frame
    out: dict[str, float | str] = {}
    for codec in ("h264_nvenc", "libx264"):
        why = probe(codec)
        if why is not None:
            out[codec] = f"not available ({why[:80]})"
            continue
        with tempfile.TemporaryDirectory() as tmp:
            container = av.open(str(Path(tmp) / "x.mp4"), "w")
            stream = container.add_stream(codec, rate=25, options=encoder_options(codec, None, None))
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            converted = [av.VideoFrame.from_ndarray(im, format="bgr24").reformat(format="yuv420p") for im in images]
            start = time.perf_counter()
            for k in range(frames):
                frame = converted[k % len(converted)]
                frame.pts = k
                for packet in stream.encode(frame):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
            out[codec] = frames / (time.perf_counter() - start)
            container.close()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", nargs="*", default=list(VARIANTS))
    ap.add_argument("--modes", nargs="*", default=["fp32", "tf32", "fp16"])
    ap.add_argument("--batches", nargs="*", type=int, default=[1, 16, 64])
    ap.add_argument("--seconds", type=float, default=1.0, help="minimum timing per measurement")
    ap.add_argument("--no-nvenc", action="store_true")
    args = ap.parse_args()
    import torch

    if not torch.cuda.is_available():
        print("gpu_bench: skipped: no CUDA device (torch.cuda.is_available() is False)")
        return 0
    print(f"gpu_bench: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, CUDA {torch.version.cuda}, "
          f"load avg {os.getloadavg()[0]:.1f}\n")
    print("| network | mode | " + " | ".join(f"fps @ B={b}" for b in args.batches) + " |")
    print("|---|---|" + "---|" * len(args.batches))
    for variant in args.variants:
        for mode in args.modes:
            cells = []
            for batch in args.batches:
                try:
                    cells.append(f"{time_network(variant, mode, batch, args.seconds):.0f}")
                except Exception as exc:  # noqa: BLE001 - one failing cell must not hide the rest
                    cells.append(f"error: {type(exc).__name__}")
            print(f"| {variant} | {mode} | " + " | ".join(cells) + " |", flush=True)
    if not args.no_nvenc:
        print("\n| encoder, 1080p, 250 frames | fps |\n|---|---|")
        for codec, value in time_encoders().items():
            print(f"| {codec} | {value if isinstance(value, str) else f'{value:.0f}'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

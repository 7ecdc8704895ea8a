"""CPU speed of every generator variant: frames/s eager vs prepared (BN-folded + channels_last), and how much of
the machine's fp32 peak that is.

    .venv/bin/python bench/models.py            # 96 & 288 at B=1/8/32, SAM/384 at B=1 (a few minutes)
    .venv/bin/python bench/models.py --quick    # 96 at B=1/8, 288 at B=1 (about a minute)
    .venv/bin/python bench/models.py --onnx     # adds ONNX Runtime fp32 and int8 (reduce_range) rows for 96/288

Peak = a large fp32 torch.mm timed in the same run (same threads, same clock). FLOPs = 2 x MACs of every
Conv2d / ConvTranspose2d, counted with forward hooks at batch 1. Timings are medians over repeats after a
warm-up; the 1-minute load average is printed because other processes on the machine distort the numbers.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
from torch import nn

import models
from models.inference import prepare_for_inference
from models.variants import SPECS

GENERATORS = [v for v in models.VARIANTS if SPECS[v].kind == "generator"]


def measure_peak_gflops(size: int, min_seconds: float) -> float:
    """fp32 GFLOP/s of a size^3 matrix multiply (2 n^3 FLOP), median of repeats."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)
    times = _repeat(lambda: torch.mm(a, b), min_seconds, min_calls=3)
    return 2 * size**3 / statistics.median(times) / 1e9


def count_conv_flops(model: nn.Module, *inputs: torch.Tensor) -> float:
    """2 x MACs of Conv2d and ConvTranspose2d layers for one forward call."""
    total = 0

    def conv_hook(module: nn.Conv2d, args, output):
        nonlocal total
        kh, kw = module.kernel_size
        total += 2 * output.numel() * (module.in_channels // module.groups) * kh * kw

    def transposed_hook(module: nn.ConvTranspose2d, args, output):
        nonlocal total
        kh, kw = module.kernel_size
        total += 2 * args[0].numel() * (module.out_channels // module.groups) * kh * kw

    handles = []
    for m in model.modules():
        if isinstance(m, nn.ConvTranspose2d):
            handles.append(m.register_forward_hook(transposed_hook))
        elif isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook))
    try:
        with torch.inference_mode():
            model(*inputs)
    finally:
        for h in handles:
            h.remove()
    return float(total)


def _repeat(fn, min_seconds: float, min_calls: int) -> list[float]:
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_calls or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def generator_inputs(size: int, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(batch)
    return torch.randn(batch, 1, 80, 16, generator=gen) * 2, torch.rand(batch, 6, size, size, generator=gen)


def frames_per_second(model: nn.Module, size: int, batch: int, min_seconds: float) -> float:
    audio, face = generator_inputs(size, batch)
    with torch.inference_mode():
        model(audio, face)  # warm-up (oneDNN primitive creation, allocator)
        big = batch * size * size > 8 * 288 * 288
        times = _repeat(lambda: model(audio, face), min_seconds, min_calls=2 if big else 3)
    return batch / statistics.median(times)


def onnx_paths(model: nn.Module, size: int) -> list[tuple[str, object]]:
    """ORT fp32 and ORT static int8 (QDQ, per-channel, reduce_range) sessions for `model`."""
    import tempfile

    from models.onnx_int8 import OnnxGenerator, export_generator_onnx, quantize_generator_int8

    folder = Path(tempfile.mkdtemp(prefix="bench-onnx-"))
    fp32 = export_generator_onnx(model, folder / "fp32.onnx")
    calibration = [tuple(t.numpy() for t in generator_inputs(size, 4)) for _ in range(4)]
    int8 = quantize_generator_int8(fp32, folder / "int8.onnx", calibration)
    threads = torch.get_num_threads()
    return [("ort-fp32", OnnxGenerator(fp32, threads=threads)), ("ort-int8-reduce_range", OnnxGenerator(int8, threads=threads))]


def plan(quick: bool) -> list[tuple[str, list[int]]]:
    if quick:
        return [("wav2lip96", [1, 8]), ("wav2lip288", [1])]
    return [("wav2lip96", [1, 8, 32]), ("wav2lip288", [1, 8]), ("wav2lip288_prelu2021", [1]),
            ("wav2lip_sam", [1]), ("wav2lip384", [1])]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="96 at B=1/8 and 288 at B=1 only")
    parser.add_argument("--variants", nargs="*", choices=GENERATORS, help="only these generator variants")
    parser.add_argument("--batches", nargs="*", type=int, help="override the batch sizes")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: all cores)")
    parser.add_argument("--seconds", type=float, default=0.0, help="minimum timing per measurement")
    parser.add_argument("--onnx", action="store_true",
                        help="also time ONNX Runtime fp32 and static int8 (reduce_range) for the 96/288 models")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    min_seconds = args.seconds or (1.0 if args.quick else 2.0)
    peak = measure_peak_gflops(1024 if args.quick else 2048, min_seconds)
    load_before = os.getloadavg()[0]
    print(f"threads {torch.get_num_threads()}, torch {torch.__version__}, fp32 mm peak {peak:.0f} GFLOP/s, "
          f"load avg {load_before:.2f}", flush=True)

    rows = []
    for variant, batches in plan(args.quick):
        if args.variants and variant not in args.variants:
            continue
        batches = args.batches or batches
        model = models.build(variant).eval()
        size = model.image_size
        audio, face = generator_inputs(size, 1)
        with torch.device("meta"):  # shapes only: FLOPs without spending a forward pass
            flops = count_conv_flops(models.build(variant).eval(), torch.empty(1, 1, 80, 16),
                                     torch.empty(1, 6, size, size))
        prepared = prepare_for_inference(model, "cpu")
        with torch.inference_mode():
            error = (model(audio, face) - prepared(audio, face)).abs().max().item()
        paths = [("eager", model), ("bn-fold+channels_last", prepared)]
        if args.onnx and size <= 288:
            paths += onnx_paths(model, size)
        for path, net in paths:
            if path.startswith("ort"):
                with torch.inference_mode():
                    error = float(abs(model(audio, face).numpy() - net(audio, face)).max())
            fps = {b: frames_per_second(net, size, b, min_seconds) for b in batches}
            best = max(fps.values())
            row = {"variant": variant, "size": size, "gflop_per_frame": flops / 1e9, "path": path,
                   "fps": fps, "best_gflops": best * flops / 1e9, "peak_fraction": best * flops / 1e9 / peak,
                   "max_abs_err_vs_eager": 0.0 if path == "eager" else error}
            rows.append(row)
            cells = " ".join(f"B={b}:{v:6.2f}" for b, v in fps.items())
            print(f"  {variant:<21} {path:<22} {cells}", flush=True)
        del model, prepared

    all_batches = sorted({b for r in rows for b in r["fps"]})
    print()
    header = f"| variant | GFLOP/frame | path | " + " | ".join(f"B={b} fps" for b in all_batches)
    print(header + " | best GFLOP/s | % of peak | max err vs eager |")
    print("|" + "---|" * (header.count("|") + 3))
    for r in rows:
        cells = " | ".join(f"{r['fps'][b]:.2f}" if b in r["fps"] else "-" for b in all_batches)
        print(f"| {r['variant']} | {r['gflop_per_frame']:.2f} | {r['path']} | {cells} | {r['best_gflops']:.0f} | "
              f"{100 * r['peak_fraction']:.0f}% | {r['max_abs_err_vs_eager']:.1e} |")
    load_after = os.getloadavg()[0]
    print(f"\npeak {peak:.0f} GFLOP/s (fp32 torch.mm); load avg {load_before:.2f} -> {load_after:.2f} "
          f"(above ~{torch.get_num_threads()} means other processes shared the CPU and the numbers are low)")
    if args.json:
        args.json.write_text(json.dumps({"peak_gflops": peak, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

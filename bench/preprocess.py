"""Benchmark: preprocess speed (frames/s) on a 720p and a 1080x1920 clip, and the ratio to real time (25 fps).

    .venv/bin/python bench/preprocess.py [--seconds 8] [--workers 2] [--with-calibration]

Measures the whole package build (decode, track, smooth, crops, JPEGs, audio, preview), excluding the
optional mouth calibration step unless --with-calibration. Target: >= 1.0x real time for 720p on 2 cores.
Figures taken while other jobs share the CPU are pessimistic; note the load average printed with them.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
MEDIA = Path(os.environ.get("S2L_SHARED_DIR", REPO.parent / "shared")) / "media"
CLIPS = [
    ("720p (720x1280)", "LivePortrait__assets_examples_driving_d13.mp4"),
    ("1080x1920 small face", "LatentSync__assets_demo1_video.mp4"),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="seconds of each clip to process")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--with-calibration", action="store_true")
    args = parser.parse_args()

    import preprocess.api as api

    if not args.with_calibration:
        api._calibrate_mouth = lambda *a, **k: None
    import mediapipe  # noqa: F401  (import time is not per-video work)

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, name in CLIPS:
            path = MEDIA / name
            if not path.is_file():
                print(f"skip {label}: {path} not found")
                continue
            t0, c0, m0 = time.perf_counter(), time.process_time(), time.thread_time()
            report = api.build_package(path, tmp, max_seconds=args.seconds, force=True, workers=args.workers)
            dt, cpu, main_cpu = time.perf_counter() - t0, time.process_time() - c0, time.thread_time() - m0
            fps = report.frames / dt
            rows.append((label, report.frames, dt, fps, fps / 25.0, 1000 * cpu / report.frames,
                         1000 * main_cpu / report.frames))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\npreprocess benchmark ({os.cpu_count()} CPUs, load average {load:.1f}, "
          f"{args.seconds:g} s per clip, calibration {'on' if args.with_calibration else 'off'})")
    print("cpu = CPU ms per frame, all threads; main = in the tracking thread (the serial part). On an idle 2-core "
          "machine fps <= min(2000/cpu, 1000/main) = 'idle bound'. Wall-clock fps is only meaningful at load < 2.")
    print(f"{'clip':24s} {'frames':>6s} {'time':>7s} {'fps':>7s} {'x realtime':>10s} {'cpu':>6s} {'main':>6s} "
          f"{'idle bound':>11s}")
    for label, frames, dt, fps, ratio, cpu_ms, main_ms in rows:
        bound = min(2000 / cpu_ms, 1000 / main_ms)
        print(f"{label:24s} {frames:6d} {dt:6.1f}s {fps:7.1f} {ratio:9.2f}x {cpu_ms:6.1f} {main_ms:6.1f} "
              f"{bound:6.1f} fps ({bound / 25:.1f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

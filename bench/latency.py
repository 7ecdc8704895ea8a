"""Live latency: audio sample entering → its frame published, and sustained fps, null generator vs the network.

What it measures (one process, the real `serve` wiring: ServeApp with its rings, status and API):
  * stream: a speech clip pushed as PCM in 20 ms chunks in real time (what a microphone or a streaming TTS
    does). Latency of a frame = time it was published − time its first sample arrived. This includes the
    0.2 s look-ahead Wav2Lip needs after each frame, so ~200 ms is the floor.
  * file: the clip queued whole (`say`). A sample counts as entered at enqueue time + its position / 16 kHz,
    so the figure is the pipeline's own delay.
  * sustained fps during speech (frames published per second, how many had to be repeated because the
    renderer missed their pts).
Both for the null generator (the pipeline's own share) and for Wav2Lip 96 with deterministic weights (the
real network's cost on this CPU). Prints the figures and the ratios between them.

    .venv/bin/python bench/latency.py [--avatar DIR] [--clip FILE] [--threads N]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _stream(app, clip: np.ndarray, chunk_ms: int = 20) -> None:
    utt = app.queue.open("pcm")
    step = 16 * chunk_ms
    t0 = time.monotonic()
    for i, start in enumerate(range(0, clip.size, step)):
        delay = t0 + i * chunk_ms / 1000 - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        utt.append(clip[start:start + step])
    utt.end()


def _wait_idle(app, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    time.sleep(0.3)
    while time.monotonic() < deadline and (app.loop.speaking or app.loop.queued_samples()):
        time.sleep(0.05)
    time.sleep(0.3)


def measure(label: str, avatar: Path, clip: np.ndarray, engine: str, checkpoint: str | None,
            precision: str = "fp32") -> dict:
    from backend.serve_app import ServeApp

    session = f"bench{os.getpid()}{label}"
    app = ServeApp(session, str(avatar), engine=engine, checkpoint=checkpoint, device="cpu", api_port=None,
                   keep_latencies=True, precision=precision)
    out = {}
    try:
        app.start()
        time.sleep(1.0)
        stats = app.loop.stats
        for mode in ("stream", "file"):
            stats.all_latencies_ms.clear()
            pub0, rep0, spk0 = stats.published, stats.repeated, stats.speech_frames
            t0 = time.monotonic()
            if mode == "stream":
                _stream(app, clip)
            else:
                app.queue.add(clip)
            _wait_idle(app, 60)
            lat = np.asarray(stats.all_latencies_ms)
            speech = stats.speech_frames - spk0
            out[mode] = {
                "p50": float(np.percentile(lat, 50)) if lat.size else float("nan"),
                "p95": float(np.percentile(lat, 95)) if lat.size else float("nan"),
                "fps": (stats.published - pub0) / (time.monotonic() - t0),
                "speech_frames": speech,
                "repeated": stats.repeated - rep0,
            }
        out["engine"] = app.engine.generator.name
        out["size"] = f"{app.engine.package.width}x{app.engine.package.height}"
        out["batch"] = app.engine.batch_size
        out["network_fps"] = _network_alone(app.engine) if engine == "wav2lip" else None
    finally:
        app.close()
    return out


def _network_alone(engine, frames: int = 96) -> float:
    """The generator alone at the batch size serve uses, on the same avatar's crops (frames per second)."""
    from backend.generators.base import GeneratorInput

    gen, pkg, b = engine.generator, engine.package, engine.batch_size
    mel = np.zeros((80, 16), np.float32)
    batches = [[GeneratorInput(pkg.face((i + j) % pkg.frame_count, engine.crop), mel, 0) for j in range(b)]
               for i in range(0, frames, b)]
    gen.generate(batches[0])
    t = time.perf_counter()
    for batch in batches:
        gen.generate(batch)
    return len(batches) * b / (time.perf_counter() - t)


def _checkpoint(tmp: Path) -> str:
    from models.testing import deterministic_model, save_reference_checkpoint

    path = tmp / "wav2lip96_deterministic.pth"
    save_reference_checkpoint(deterministic_model("wav2lip96"), path, with_optimizer=False)
    return str(path)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--avatar", help="avatar package (default: a synthetic 320x240 one built here)")
    ap.add_argument("--clip", default=str(REPO.parent / "shared" / "media" / "tts_espeakng_en.wav"))
    ap.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    ap.add_argument("--skip-network", action="store_true")
    ap.add_argument("--precision", default="fp32", help="the network's precision (fp32 | int8 | auto)")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    from models.audio import load_audio

    clip = load_audio(args.clip)
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        os.environ.setdefault("S2L_RUNTIME_DIR", str(tmp / "run"))
        if args.avatar:
            avatar = Path(args.avatar)
        else:
            from preprocess.synthetic import write_synthetic_package

            avatar = write_synthetic_package(tmp / "synthetic")
        results = {"null": measure("null", avatar, clip, "null", None)}
        if not args.skip_network:
            results["wav2lip96"] = measure("w2l", avatar, clip, "wav2lip", _checkpoint(tmp), args.precision)
    print(f"clip {Path(args.clip).name} ({clip.size / 16000:.2f} s); avatar {results['null']['size']}; "
          f"torch threads {args.threads}; CPU shared with other jobs: figures are indicative")
    print(f"{'generator':<22}{'mode':<8}{'p50 ms':>8}{'p95 ms':>8}{'fps':>7}{'speech fr':>10}{'repeated':>9}"
          f"{'rendered fps':>13}")
    for name, res in results.items():
        for mode in ("stream", "file"):
            r = res[mode]
            rendered = 25.0 * (r["speech_frames"] - r["repeated"]) / max(1, r["speech_frames"])
            print(f"{res['engine']:<22}{mode:<8}{r['p50']:>8.1f}{r['p95']:>8.1f}{r['fps']:>7.2f}"
                  f"{r['speech_frames']:>10d}{r['repeated']:>9d}{rendered:>13.1f}")
    print("fps = frames published per second (the clock); rendered fps = distinct speech frames per second "
          "(the rest repeat the previous image; audio is never dropped); latency counts rendered frames only")
    if "wav2lip96" in results:
        w = results["wav2lip96"]
        for mode in ("stream", "file"):
            r = w[mode]
            seconds = r["speech_frames"] / 25.0
            distinct = (r["speech_frames"] - r["repeated"]) / max(seconds, 1e-9)
            print(f"{mode}: distinct speech frames {distinct:.1f}/s; network alone at batch {w['batch']} "
                  f"{w['network_fps']:.1f} fps; ratio {distinct / w['network_fps']:.2f} (capped by 25 fps)")
        for mode in ("stream", "file"):
            n, w = results["null"][mode], results["wav2lip96"][mode]
            print(f"{mode}: pipeline share of p95 latency (null / network) = {n['p95'] / w['p95']:.2f}; "
                  f"network adds {w['p95'] - n['p95']:.1f} ms p95; repeated frames "
                  f"{w['repeated']}/{w['speech_frames']} with the network")
    lookahead = 212.5
    s = results["null"]["stream"]
    print(f"stream (null): {lookahead:.0f} ms of the p50 is Wav2Lip's look-ahead; pipeline's own share "
          f"{s['p50'] - lookahead:.1f} ms p50, {s['p95'] - lookahead:.1f} ms p95")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Live latency and speed of `serve`: distinct speech frames/s against the network alone, streamed latency.

What it measures (one process per generator, the real `serve` wiring: ServeApp with its rings, status, API):
  * stream: a speech clip pushed as PCM in 20 ms chunks in real time (what a microphone or a streaming TTS
    does). Latency of a frame = time it was published − time its first sample arrived. This includes the
    212.5 ms look-ahead Wav2Lip's mel window needs after each frame's first sample (the floor).
  * file: the clip queued whole (`say`). A sample counts as entered at enqueue time + its position / 16 kHz,
    so the figure is the pipeline's own delay.
  * distinct speech fps: speech frames that showed a new image, per second of speech (the rest repeat the
    previous image; audio is never dropped), and the batch serve chose (frames per network call).
  * the network alone at every batch size up to serve's, timed on the same avatar's crops while the loop is
    not running (before it starts and after it stops, alternating; best of each), so serve's ratio is
    against the network at the batch serve used, measured in the same run.
  * a first utterance (the clip's first 6 s, queued) before the measured ones: a session's first utterance
    settles what serve learns while speaking (the pacer's render times; whether `--detail auto` keeps the
    detail stage when the renderer cannot draw every speech frame, Engine.fit_to_clock), as in a real stream.
  * why a ratio is below 1, in two factors: the network's speed inside serve (frames per second of its calls'
    own time, all workers: what the compositing, the clock and the rest of the machine left it) against alone,
    and the share of the speech's duration the workers spent in network calls (the rest: planning, waiting).
For the null generator (the pipeline's own share), the mouth engine, and wav2lip96 (deterministic weights)
in fp32 and int8, on a 720p avatar of real footage (preprocessed here) unless --avatar is given.

    .venv/bin/python bench/latency.py [--avatar DIR] [--clip FILE] [--threads N] [--engines null,mouth,fp32,int8]
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


def thread_cpu() -> dict[str, float]:
    """CPU seconds used so far by each thread of this process, by thread name (Linux /proc; pools unnamed in
    Python -- OpenMP, ONNX Runtime -- count as 'pool'). Why: which of serve's threads takes the cores from
    the network is the question a ratio below 1 raises."""
    import threading

    names = {t.native_id: t.name for t in threading.enumerate()}
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended meanwhile
            continue
        name = names.get(int(task.name), "pool")
        name = "s2l-render" if name.startswith("s2l-render") else name
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return out


def cores_used(before: dict[str, float], after: dict[str, float], wall_s: float) -> dict[str, float]:
    """Cores each thread used between two `thread_cpu()` readings `wall_s` apart (threads that used any)."""
    used = {n: after[n] - before.get(n, 0.0) for n in after}
    return {n: v / wall_s for n, v in used.items() if v > 0}


def measure(label: str, avatar: Path, clip: np.ndarray, engine: str, checkpoint: str | None,
            precision: str = "fp32", device: str = "cpu", detail: str = "auto") -> dict:
    from backend.serve_app import ServeApp

    session = f"bench{os.getpid()}{label}"
    app = ServeApp(session, str(avatar), engine=engine, checkpoint=checkpoint, device=device, api_port=None,
                   keep_latencies=True, precision=precision, detail=detail)
    out = {"engine": app.engine.generator.name, "precision": getattr(app.engine.generator, "precision", "-"),
           "size": f"{app.engine.package.width}x{app.engine.package.height}"}
    network = engine == "wav2lip"
    try:
        alone = [_network_alone(app.engine)] if network else []  # the loop is not running yet
        app.start()
        out["parallel"] = app.loop.workers
        time.sleep(1.0)
        t0, cpu0 = time.monotonic(), thread_cpu()  # idle: the footage alone (decoding, converting, publishing)
        time.sleep(3.0)
        cpu1, wall = thread_cpu(), time.monotonic() - t0
        out["idle_cpu"] = cores_used(cpu0, cpu1, wall)
        out["frames_from"] = "frame cache (I420)" if app.engine.i420 else "BGR"
        app.queue.add(clip[:6 * 16000])  # the session's first utterance (module docstring), not measured
        _wait_idle(app, 60)
        stats = app.loop.stats
        for mode in ("stream", "file"):
            stats.all_latencies_ms.clear()
            pub0, rep0, spk0, batches0 = stats.published, stats.repeated, stats.speech_frames, stats.batches.copy()
            late0, gen0, gen_ns0 = stats.late, stats.generated, stats.generate_ns
            t0, cpu0 = time.monotonic(), thread_cpu()
            if mode == "stream":
                _stream(app, clip)
            else:
                app.queue.add(clip)
            _wait_idle(app, 60)
            cpu1, wall = thread_cpu(), time.monotonic() - t0
            lat = np.asarray(stats.all_latencies_ms)
            speech = stats.speech_frames - spk0
            batches = stats.batches - batches0
            out[mode] = {
                "p50": float(np.percentile(lat, 50)) if lat.size else float("nan"),
                "p95": float(np.percentile(lat, 95)) if lat.size else float("nan"),
                "fps": (stats.published - pub0) / (time.monotonic() - t0),
                "speech_frames": speech,
                "repeated": stats.repeated - rep0,
                "late": stats.late - late0,
                "distinct": 25.0 * (speech - (stats.repeated - rep0)) / max(1, speech),
                "batch": batches.most_common(1)[0][0] if batches else 0,
                "batches": dict(sorted(batches.items())),
                # the network inside serve (frames per second of call time, all workers) and how busy the
                # workers were over the speech's duration: the two factors of the ratio
                "net_in_serve": (stats.generated - gen0) * 1e9 * app.loop.workers
                / max(1, stats.generate_ns - gen_ns0),
                "busy": (stats.generate_ns - gen_ns0) / 1e9 / app.loop.workers / max(1e-9, speech / 25.0),
                "cpu": cores_used(cpu0, cpu1, wall),
            }
        out["detail"] = app.commands.status(control_only=True)["detail"]
        app.loop.stop()
        if network:
            alone.append(_network_alone(app.engine))  # the loop has stopped
            out["network_fps"] = {b: max(a[b] for a in alone) for b in alone[0]}
    finally:
        app.close()
    return out


def _network_alone(engine, frames: int = 32) -> dict[int, float]:
    """The generator alone at each batch size up to serve's, on the same avatar's crops (frames/s), run the
    way serve runs it: `parallel_calls` single-threaded calls side by side when the generator allows more
    than one (each call has the batch size), else one call on all threads."""
    import threading

    import torch

    from backend.generators.base import GeneratorInput

    gen, pkg = engine.generator, engine.package
    parallel = max(1, int(getattr(gen, "parallel_calls", 1)))
    threads = max(1, torch.get_num_threads() // parallel) if parallel > 1 else torch.get_num_threads()
    mel = np.zeros((80, 16), np.float32)
    fps = {}
    for b in range(1, engine.batch_size + 1):
        batches = [[GeneratorInput(pkg.face((i + j) % pkg.frame_count, engine.crop), mel, 0) for j in range(b)]
                   for i in range(0, frames - frames % b, b)]
        seconds = []

        def run(part):
            torch.get_num_threads()
            torch.set_num_threads(threads)
            gen.generate(part[0])
            t = time.perf_counter()
            for batch in part:
                gen.generate(batch)
            seconds.append(time.perf_counter() - t)

        workers = [threading.Thread(target=run, args=(batches[k::parallel],)) for k in range(parallel)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        fps[b] = len(batches) * b / max(seconds)
    return fps


def _checkpoint(tmp: Path) -> str:
    from models.testing import deterministic_model, save_reference_checkpoint

    path = tmp / "wav2lip96_deterministic.pth"
    save_reference_checkpoint(deterministic_model("wav2lip96"), path, with_optimizer=False)
    return str(path)


def _avatar(tmp: Path, height: int = 720, seconds: float = 4.0) -> Path:
    """Real footage (bench/render.py's: 720x1280, or 1080x1920 with `height` 1080), its first `seconds`, else a
    synthetic landscape one of the same size. A long 1080p one (`--footage 1080 --seconds 10`) is too large to
    hold decoded as BGR: what serve does with a streamer's real avatar."""
    sys.path.insert(0, str(REPO / "bench"))
    from render import real_or_synthetic_avatar

    try:
        return real_or_synthetic_avatar(tmp, height, seconds=seconds)
    except ImportError:  # no MediaPipe (a GPU machine without it): a synthetic one
        from preprocess.synthetic import write_synthetic_package

        width = {720: 1280, 1080: 1920}[height]
        return write_synthetic_package(tmp / f"synthetic{height}", frames=int(25 * seconds), width=width,
                                       height=height, head_size=256)


RUNS = {"null": ("null", None), "mouth": ("mouth", None), "fp32": ("wav2lip", "fp32"), "int8": ("wav2lip", "int8")}


def main() -> int:
    from backend.frames import DETAIL_MODES

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--avatar", help="avatar package (default: real footage preprocessed here, see --footage)")
    ap.add_argument("--footage", type=int, default=720, choices=(720, 1080),
                    help="the default avatar's height: 720x1280 or 1080x1920 real footage (default 720)")
    ap.add_argument("--seconds", type=float, default=4.0, help="the default avatar's length (default 4 s)")
    ap.add_argument("--clip", default=str(REPO.parent / "shared" / "media" / "tts_espeakng_en.wav"))
    ap.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    ap.add_argument("--engines", default=None,
                    help="what to run, comma-separated: null, mouth, fp32, int8, fp16 (wav2lip96 in that precision); "
                         "default null,mouth,fp32,int8 on the CPU, null,fp32,fp16 on CUDA")
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    ap.add_argument("--precision", help="shorthand: run wav2lip96 in this precision only (fp32 | int8 | auto)")
    ap.add_argument("--detail", default="auto", choices=DETAIL_MODES, help="serve's detail stage (default auto)")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    from models.audio import load_audio

    if Path(args.clip).is_file():
        clip = load_audio(args.clip)
    else:  # a machine without the shared media (a GPU host): 5 s of synthetic voice-like sound
        sys.path.insert(0, str(REPO / "bench"))
        from render import speech

        clip = speech(5.0)
    engines = args.engines or ("null,mouth,fp32,int8" if args.device == "cpu" else "null,fp32,fp16")
    names = [args.precision] if args.precision else [n.strip() for n in engines.split(",") if n.strip()]
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        os.environ.setdefault("S2L_RUNTIME_DIR", str(tmp / "run"))
        avatar = Path(args.avatar) if args.avatar else _avatar(tmp, args.footage, args.seconds)
        ckpt = _checkpoint(tmp)
        results = {}
        for name in names:
            engine, precision = RUNS.get(name, ("wav2lip", name))
            results[name] = measure(name, avatar, clip, engine, ckpt if engine == "wav2lip" else None,
                                    precision or "fp32", args.device, args.detail)
    first = next(iter(results.values()))
    print(f"clip {Path(args.clip).name} ({clip.size / 16000:.2f} s); avatar {first['size']}; detail {args.detail}; "
          f"torch threads {args.threads}; load average {os.getloadavg()[0]:.2f}")
    print(f"{'generator':<24}{'mode':<8}{'p50 ms':>8}{'p95 ms':>8}{'fps':>7}{'speech fr':>10}{'repeated':>9}"
          f"{'distinct':>9}{'late':>5}{'batch':>6}{'net alone':>10}{'ratio':>7}")
    for name, res in results.items():
        for mode in ("stream", "file"):
            r = res[mode]
            net = res.get("network_fps", {}).get(r["batch"])
            ratio = r["distinct"] / min(25.0, net) if net else None
            label = f"{res['engine']} {res['precision']}" if "network_fps" in res else res["engine"]
            print(f"{label:<24}{mode:<8}{r['p50']:>8.1f}{r['p95']:>8.1f}{r['fps']:>7.2f}{r['speech_frames']:>10d}"
                  f"{r['repeated']:>9d}{r['distinct']:>9.1f}{r['late']:>5d}{r['batch']:>6d}"
                  f"{(f'{net:.1f}' if net else '-'):>10}{(f'{ratio:.2f}' if ratio else '-'):>7}")
    print("fps = frames published per second (the clock); distinct = speech frames showing a new image per second "
          "of speech (the rest repeat the previous one; audio is never dropped); late = of those, frames "
          "showing the frame before's image, which missed its own pts by < 40 ms; batch = serve's most common "
          "frames per network call; net alone = the network alone at that batch, loop stopped; ratio = "
          "distinct / min(25, net alone) (target >= 0.9); latency counts frames showing a new image only")
    for name, res in results.items():
        if "network_fps" in res:
            nets = ", ".join(f"B{b} {v:.1f}" for b, v in res["network_fps"].items())
            print(f"{name}: network alone fps by batch ({res['parallel']} call(s) side by side, as serve runs it): "
                  f"{nets}; serve's batches (calls by size): "
                  f"stream {res['stream']['batches']}, file {res['file']['batches']}; detail {res['detail']}")
    print("why a ratio is below 1 -- the network's speed inside serve (frames per second of its calls' time, "
          "all workers) against alone, and the share of the speech's duration its workers were computing:")
    for name, res in results.items():
        for mode in ("stream", "file"):
            r, net = res[mode], res.get("network_fps", {}).get(res[mode]["batch"])
            if net and r["net_in_serve"]:
                print(f"  {name:<6}{mode:<7}in serve {r['net_in_serve']:.1f} fps = {r['net_in_serve'] / net:.2f} of "
                      f"alone; workers busy {r['busy']:.2f} of the speech")
    print("cores used per thread while idle (3 s of footage before the speech):")
    for name, res in results.items():
        cpu = sorted(res["idle_cpu"].items(), key=lambda kv: -kv[1])
        print(f"  {name:<13}" + ", ".join(f"{n} {v:.3f}" for n, v in cpu) + f" (frames from {res['frames_from']})")
    print("cores used per thread during speech (CPU s / wall s; 2.0 = both cores of a 2-core CPU):")
    for name, res in results.items():
        for mode in ("stream", "file"):
            cpu = sorted(res[mode]["cpu"].items(), key=lambda kv: -kv[1])
            print(f"  {name:<6}{mode:<7}" + ", ".join(f"{n} {v:.2f}" for n, v in cpu))
    if "null" in results:
        s = results["null"]["stream"]
        print(f"stream (null): 212.5 ms of the latency is Wav2Lip's mel look-ahead; the pipeline's own share "
              f"{s['p50'] - 212.5:.1f} ms p50, {s['p95'] - 212.5:.1f} ms p95")
    return 0


if __name__ == "__main__":
    sys.exit(main())

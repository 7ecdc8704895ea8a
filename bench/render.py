"""Benchmark of `render`: how close the whole pipeline gets to the network alone, and what everything
except the network costs per frame at 720p and 1080p on one core.

Part 1 (same device, same batch size, same inputs): end-to-end render fps (features + network + compositor +
H.264/AAC encoding, silence gate off so the network runs on every frame) divided by model-only fps
(`Wav2LipGenerator.forward` on the same face crops and mel windows, timed both as render runs it on the CPU --
one single-threaded stream per thread, backend/cpu_streams.py -- and as one call on all threads; in each round
the faster of the two is the reference). Target >= 0.9. The frame-cache rows use the avatar's decoded-frame
cache (built before timing, as any render after the first has it).

Part 2 (one core: torch/OpenCV/x264 limited to one thread): per-frame cost of decode (background JPEG +
face crop JPEG), features (incremental mel + gate), crop (network input tensors), composite, encode,
as thread CPU time (immune to other processes on a shared machine) and wall time, for the two ways `render`
can run: the mp4 fast path (JPEG → I420 planes, composite on planes, planes to the encoder) and the BGR path
(used when PNG frames are written too). Target: everything but the network <= 10 ms per 1080p frame.
Part 2 runs --rounds times and prints each stage's best round (other jobs only ever slow a stage down) and the
median of rounds; totals add up the stages of the same column.

    .venv/bin/python bench/render.py [--checkpoint CKPT] [--avatar DIR] [--seconds 6] [--batch 8] [--threads 2] [--part 1|2]

Without --checkpoint a deterministic-weight wav2lip96 checkpoint is built in a temp folder. Avatars: real
footage from ../shared/media preprocessed on the fly (720x1280 for part 1, 720x1280 and 1080x1920 for part 2;
JPEGs of real footage cost 2-3x more to decode and encode than synthetic frames), else synthetic ones.
Numbers measured while other jobs share the CPU are noisy: the script prints the load average next to them.
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


MEDIA = Path(__file__).resolve().parents[2] / "shared" / "media"
FOOTAGE = {720: "LivePortrait__assets_examples_driving_d13.mp4", 1080: "LatentSync__assets_demo1_video.mp4"}


def real_or_synthetic_avatar(tmp: Path, height: int, seconds: float = 3.0) -> Path:
    """A package of real footage (first `seconds`, portrait 720x1280 / 1080x1920) if the media is there,
    else a synthetic landscape one of the same pixel count."""
    source = MEDIA / FOOTAGE[height]
    out = tmp / f"real{height}"
    if source.is_file():
        from preprocess.api import preprocess_video

        return preprocess_video(source, out, face_size=96, max_seconds=seconds)
    from preprocess.synthetic import write_synthetic_package

    width = {720: 1280, 1080: 1920}[height]
    return write_synthetic_package(out / "synthetic", frames=int(25 * seconds), width=width, height=height,
                                   head_size=256)


def speech(seconds: float) -> np.ndarray:
    media = MEDIA / "whisper__tests_jfk.flac"
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
    from backend.generators.wav2lip import Wav2LipGenerator
    from preprocess.package import AvatarPackage

    torch.set_num_threads(args.threads)
    from backend.cpu_streams import single_threaded_blas

    single_threaded_blas()  # as render_cli does
    ckpt = args.checkpoint
    if ckpt is None:
        from models.testing import deterministic_state_dict, save_reference_checkpoint

        ckpt = save_reference_checkpoint(deterministic_state_dict("wav2lip96"), tmp / "w96.pth", with_optimizer=False)
    # longer than the speech: every frame is a new one (no ping-pong pass reuses a decoded frame)
    avatar = Path(args.avatar) if args.avatar else real_or_synthetic_avatar(tmp, 720, seconds=args.seconds + 1)
    pkg = AvatarPackage.open(avatar)
    wav = speech(args.seconds)
    wav_path = tmp / "speech.wav"
    soundfile.write(wav_path, wav, 16000)
    # the network split into one single-threaded stream per thread (what render uses on the CPU), and as one call
    # on all threads (torch's own way): the network alone is timed both ways and the faster one is the reference
    gen = Wav2LipGenerator(ckpt, device=args.device, batch_size=args.batch, streams=None)
    gen_one_call = Wav2LipGenerator(ckpt, device=args.device, batch_size=args.batch, streams=1)

    # the same inputs the render will use: mel windows of this audio, faces along the ping-pong walk
    fs = FeatureStage(SilenceGate(enabled=False))
    mels = [f.mel for f in fs.push(AudioFrame(0, wav)) + fs.push(SpeechEndFrame(0)) if isinstance(f, MelFrame)]
    from backend.frame_cache import FrameCache
    from backend.schedule import schedule

    faces = [pkg.face(i, "head") for i in schedule(len(mels), pkg.frame_count)]
    b = args.batch

    def model_only(g):
        def run():
            for k in range(0, len(mels), b):
                g.forward(np.stack(faces[k:k + b]), np.stack(mels[k:k + b]))
        return run

    def end_to_end(g, cache: bool, detail: str = "auto"):
        return lambda: render(avatar, [wav_path], tmp / "out.mp4", generator=g, batch_size=b, silence_gate=False,
                              progress=False, preset=args.render_preset, encoder=args.encoder, frame_cache=cache,
                              detail=detail)

    # a render of audio shorter than the avatar does not build the cache by itself; later renders would have it
    FrameCache.open_or_build(pkg)
    streams = gen.streams.count if gen.streams is not None else 1
    models = {f"network alone, {streams} single-threaded streams": model_only(gen),
              f"network alone, one call on {args.threads} threads": model_only(gen_one_call)}
    runs = {**models, "render, frames decoded from JPEG": end_to_end(gen, False),
            "render, frame cache": end_to_end(gen, True),
            "render, frame cache, detail stage off": end_to_end(gen, True, "off"),
            f"render, frame cache, network as one call on {args.threads} threads": end_to_end(gen_one_call, True)}
    for fn in runs.values():
        fn()  # warm-up (network, compositor caches, encoder)
    fps = {name: [] for name in runs}  # (fps by wall clock, fps by process CPU time) of every run
    stages = {}
    for _ in range(args.repeats):  # alternate: a slow spell of the (shared) machine hits every variant
        for name, fn in runs.items():
            c0, w0 = time.process_time(), time.perf_counter()
            out = fn()
            wall, cpu = time.perf_counter() - w0, time.process_time() - c0
            if out is not None:
                stages[name] = out.stage_seconds
            fps[name].append((len(mels) / wall, len(mels) / cpu))
    # per round, the faster way of running the network alone is the reference
    model = [max(pair, key=lambda f: f[0]) for pair in zip(*(fps[name] for name in models))]
    rows = {}
    for name, runs_fps in fps.items():
        # best against best (other jobs only ever slow a run down) and the median of per-round ratios
        best_wall = max(f[0] for f in runs_fps) / max(f[0] for f in model)
        best_cpu = max(f[1] for f in runs_fps) / max(f[1] for f in model)
        median_wall = float(np.median([r[0] / m[0] for r, m in zip(runs_fps, model)]))
        rows[name] = (max(f[0] for f in runs_fps), best_wall, median_wall, best_cpu)
    return {"avatar": f"{pkg.width}x{pkg.height}", "frames": len(mels), "model_fps": max(f[0] for f in model),
            "rows": rows, "stages": stages}


def part2(height: int, tmp: Path, presets: list[str], rounds: int = 3) -> tuple[str, dict]:
    import cv2
    import torch

    from backend.compositor import Compositor, load_i420
    from backend.features import FeatureStage
    from backend.frames import AudioFrame, AudioOutFrame, FaceFrame, SpeechEndFrame, VideoFrame
    from backend.sinks.encoders import encoder_options, probe
    from backend.sinks.mp4 import Mp4Sink
    from backend.generators.wav2lip import build_network_input
    from backend.yuv import FramePool
    from preprocess.package import AvatarPackage, read_image

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    pkg = AvatarPackage.open(real_or_synthetic_avatar(tmp, height, seconds=2.0))
    w, h = pkg.width, pkg.height
    n = 50
    idx = [i % pkg.frame_count for i in range(n)]
    cost: dict[str, list[float]] = {}  # this round's CPU and wall seconds per stage, summed over n frames

    def timed(name, fn):
        c0, w0 = time.thread_time(), time.perf_counter()
        out = fn()
        cost.setdefault(name, [0.0, 0.0])
        cost[name][0] += time.thread_time() - c0
        cost[name][1] += time.perf_counter() - w0
        return out

    # set-up shared by the rounds (not timed)
    wav = speech(n / 25)
    FeatureStage().push(AudioFrame(0, wav[:8000]))  # warm-up (scipy.fft import)
    pkg.keep(("bg", "head", "bg_i420"))  # room for both decoded forms: decoding is timed from the files
    pkg.preload(("bg", "head"))
    warm = Compositor(pkg)
    for i in idx:
        warm.background_i420(i)
    from backend.frame_cache import FrameCache

    cache = FrameCache.open_or_build(pkg)
    blocks = [wav[k * 640:(k + 1) * 640] for k in range(n)]  # the speech goes to the AAC encoder with the frames
    encoders = []  # (codec, preset, crf or None = the sink's default), from entries like "ultrafast:crf18"
    for entry in presets:
        preset, _, crf = entry.partition(":crf")
        encoders.append(("libx264", preset, int(crf) if crf else None))
    nvenc = probe("h264_nvenc")
    if nvenc is None:
        encoders.append(("h264_nvenc", None, None))

    def label(codec, preset, crf):  # what the sink will ask the encoder for, e.g. "libx264 ultrafast qp 15"
        options = encoder_options(codec, crf, preset)
        quality = [f"{key} {options[key]}" for key in ("qp", "crf", "cq", "global_quality") if key in options]
        return " ".join([codec, options["preset"], *quality])
    rounds_cost: list[dict[str, list[float]]] = []
    for _ in range(rounds):  # the best of a few rounds per stage: other jobs only ever slow a stage down
        cost = {}
        rounds_cost.append(cost)
        heads = [timed("decode face crop", lambda i=i: read_image(pkg.image_path("head", i))) for i in idx]
        for i in idx:
            timed("decode frame: BGR", lambda i=i: read_image(pkg.image_path("bg", i)))
            timed("decode frame: I420", lambda i=i: load_i420(pkg.image_path("bg", i)))
        fs = FeatureStage()
        timed("features", lambda: fs.push(AudioFrame(0, wav)) + fs.push(SpeechEndFrame(0)))
        mel = np.zeros((80, 16), np.float32)
        for k in range(0, n, 8):
            timed("crop", lambda k=k: build_network_input(np.stack(heads[k:k + 8]), np.stack([mel] * len(heads[k:k + 8]))))
        comp = Compositor(pkg)  # cold: the per-avatar-frame mask/placement is part of the cost
        faces = [FaceFrame(0, k, i, heads[k], blend=1.0) for k, i in enumerate(idx)]
        for ff in faces:  # results dropped at once, as the sinks do (keeping 50 frames costs page faults)
            timed("composite: BGR", lambda ff=ff: comp.compose(ff))
        # the I420 paths blend into the encoder's reusable frames, which the mp4 sink gives back after encoding
        comp = Compositor(pkg)
        comp.frame_pool = FramePool()
        for ff in faces:
            comp.frame_pool.give(timed("composite: I420", lambda ff=ff: comp.compose_i420(ff)))
        cached = Compositor(pkg, frame_cache=cache)
        cached.frame_pool = FramePool()
        for ff in faces:  # the frame's pages are read (copied to the encoder's frame) inside the composite
            timed("decode frame: frame cache", lambda ff=ff: cache.frame(ff.avatar_index))
            cached.frame_pool.give(timed("composite: frame cache", lambda ff=ff: cached.compose_i420(ff)))
        comp = Compositor(pkg)
        bgr = [comp.compose(ff) for ff in faces]
        yuv = [comp.compose_i420(ff) for ff in faces]
        for codec, preset, crf in encoders:
            for path, frames in (("BGR", bgr), ("I420", yuv)):
                sink = Mp4Sink(tmp / f"enc{h}.mp4", w, h, threads=1, background=False, preset=preset, codec=codec,
                               crf=crf)
                name = f"encode {label(codec, preset, crf)}: {path}"
                for k, img in enumerate(frames):
                    video = VideoFrame(k * 40_000_000, k, 0, None if path == "I420" else img,
                                       yuv=img if path == "I420" else None)
                    audio = AudioOutFrame(video.pts_ns, blocks[k])
                    timed(name, lambda video=video, audio=audio: sink.write(video, audio))
                timed(name, sink.close)
    # per stage: CPU ms (best round), wall ms (best round), CPU ms (median of rounds)
    table = {name: (min(r[name][0] for r in rounds_cost) / n * 1000, min(r[name][1] for r in rounds_cost) / n * 1000,
                    float(np.median([r[name][0] for r in rounds_cost])) / n * 1000) for name in rounds_cost[0]}
    base = {k: v for k, v in table.items() if not k.startswith("encode")}
    for path in ("frame cache", "I420", "BGR"):
        rest = tuple(sum(col) for col in zip(*(v for k, v in base.items() if ":" not in k or k.endswith(path))))
        table[f"everything but network and encoder: {path}"] = rest
        for enc_key in encoders:
            enc_path = "I420" if path == "frame cache" else path  # the same planes go to the encoder
            enc = table[f"encode {label(*enc_key)}: {enc_path}"]
            table[f"**total, {path} path, {label(*enc_key)}**"] = tuple(a + b for a, b in zip(rest, enc))
    if nvenc is not None:
        table[f"h264_nvenc: not available here ({nvenc[:60]})"] = (float("nan"),) * 3
    return f"{w}x{h}", table


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint")
    ap.add_argument("--avatar")
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--presets", default="ultrafast,ultrafast:crf18,veryfast",
                    help="x264 presets timed in part 2, each optionally with :crfN (render's default: ultrafast, "
                         "which encodes at a constant quantizer of 15 unless a crf is given)")
    ap.add_argument("--encoder", default="auto", help="encoder of the end-to-end render in part 1")
    ap.add_argument("--part", choices=("1", "2", "both"), default="both")
    ap.add_argument("--repeats", type=int, default=2, help="alternating runs of part 1 (best kept)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of part 2 (best and median printed per stage)")
    ap.add_argument("--render-preset", default=None, help="encoder preset of the end-to-end render in part 1 "
                    "(default: render's default, x264 ultrafast)")
    args = ap.parse_args()
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        if args.part in ("1", "both"):
            r = part1(args, tmp)
            print(f"\n## end-to-end vs model-only (device {args.device}, batch {args.batch}, {args.threads} threads, "
                  f"encoder {args.encoder} {args.render_preset or 'default preset'}, "
                  f"avatar {r['avatar']}, {r['frames']} frames, {args.repeats} alternating runs, "
                  f"load avg {load:.1f})")
            print(f"network alone: {r['model_fps']:.2f} fps (best run, faster way; ratios are against the faster "
                  "way in each round)\n")
            print("| run | fps (best) | ratio, best/best (target >= 0.9) | ratio, median of rounds | "
                  "ratio of CPU time per frame |")
            print("|---|---|---|---|---|")
            for name, (fps, ratio, median, cpu_ratio) in r["rows"].items():
                print(f"| {name} | {fps:.2f} | {ratio:.3f} | {median:.3f} | {cpu_ratio:.3f} |")
            for name, st in r["stages"].items():
                print(f"{name}: stage seconds", {k: round(v, 2) for k, v in st.items()})
        for height in (720, 1080) if args.part in ("2", "both") else ():
            size, t = part2(height, tmp, args.presets.split(","), args.rounds)
            print(f"\n## everything but the network, {size}, one core "
                  f"(ms/frame; load avg {os.getloadavg()[0]:.1f})")
            print(f"| stage | CPU ms (best of {args.rounds} rounds) | wall ms (best) | CPU ms (median of rounds) |")
            print("|---|---|---|---|")
            for name, (c, wl, med) in t.items():
                print(f"| {name} | {c:.2f} | {wl:.2f} | {med:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

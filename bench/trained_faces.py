"""A really trained 96-px generator for the detail benchmark (issue 17): its training set cut from the shared
clips, a short GPU training run through the product's own `train-wav2lip`, and its drawings of the held-out
frames, which `bench/detail.py --generated FILE` scores instead of its simulated (downscale + blur) generator.

Why: the detail stage, its softness probe and its band cut were tuned on a simulated generator. How soft a
trained network's faces really are, where the probe then cuts, and whether the exemplars' detail still fits
need a trained network; none can be downloaded and CPU training is far too slow (~1.7 s a step), so this
trains one on a GPU for a few minutes (bench/gpu_check.sh runs it when `.gpudata/set` is there).

  prepare --out DIR      here (needs mediapipe): every clip with speech in ../shared/media becomes
                         DIR/<clip>/lib (its first 70 % of frames: the training data) and DIR/<clip>/test
                         (the last 30 %: validation, never trained on), 96-px crops cut exactly as bench/detail.py
                         cuts them, with the 16 kHz audio of the same span; DIR/train.txt, val.txt, meta.json
  gpu --data DIR --out OUT [--minutes M]
                         on the GPU machine: trains wav2lip96 twice side by side for M minutes (`l1`: L1 only;
                         `gan`: L1 + the disc_qual96 discriminator, like the public wav2lip_gan), then draws
                         every held-out frame and the probe frames with each: OUT/trained_<run>.npz
  draw --data DIR --checkpoint CKPT --out FILE.npz
                         the drawing alone, through backend.generators.wav2lip (the same forward as render)

  mistimed --shift D --out FILE.npz
                         here, no training: the benchmark's simulated generator (reduced, softened) drawing the
                         lower half of every held-out face from frame j + D, the upper half from j: a plausible
                         mouth at the wrong moment, like a trained network's imperfect lip-sync (the one thing the
                         simulated generator never does: it draws the real mouth, only softer). D = 2 costs the
                         stage about the SSIM it pays on the networks trained on the GPU

The drawings file holds, per clip, "<clip>/test" (the held-out frames in order) and "<clip>/probe" (library
frames at `probe_frames`, what the stage's softness probe redraws), BGR 96-px faces as lossless PNGs (raw
arrays would not fit the 16 MiB a file the GPU machine hands back); `load_drawings` decodes them.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

NATIVE = 96


def _write_clip(folder: Path, faces: list[np.ndarray], pcm: np.ndarray) -> None:
    from preprocess.trainset import write_pcm16

    folder.mkdir(parents=True, exist_ok=True)
    for k, face in enumerate(faces):
        cv2.imwrite(str(folder / f"{k}.jpg"), face, [cv2.IMWRITE_JPEG_QUALITY, 95])
    write_pcm16(folder / "audio.wav", pcm)


def _clips(media: Path, work: Path):
    """(stem, package, meta entry) of every shared clip with speech, split and sized as bench/detail.py does."""
    from bench.detail import clip_package, probe_frames
    from bench.lipsync_quality import talking_clips

    for clip in talking_clips(media):
        pkg, split, size = clip_package(clip, work, NATIVE)
        yield clip.stem, pkg, {"frames": pkg.frame_count, "split": split, "size": size, "probe": probe_frames(split)}


def prepare(media: Path, work: Path, out: Path) -> dict:
    """Write the training set (see the module docstring); returns meta.json's content."""
    from bench.detail import real_crop, reduced
    from models.audio import HOP, WINDOW_STEPS
    from preprocess.trainset import FPS, SAMPLE_RATE, read_pcm16

    per_frame = SAMPLE_RATE // FPS
    tail = WINDOW_STEPS * HOP  # one mel window past the last library frame

    meta = {}
    for stem, pkg, entry in _clips(media, work):
        n, split, size = entry["frames"], entry["split"], entry["size"]
        faces = [reduced(real_crop(pkg, j, size)[0], NATIVE) for j in range(n)]
        pcm = read_pcm16(pkg.audio_path)
        _write_clip(out / stem / "lib", faces[:split], pcm[: split * per_frame + tail])
        _write_clip(out / stem / "test", faces[split:], pcm[split * per_frame:])
        meta[stem] = entry
        print(f"{stem}: {split} library + {n - split} held-out frames, S={size}", flush=True)
    (out / "train.txt").write_text("".join(f"{s}/lib\n" for s in meta))
    (out / "val.txt").write_text("".join(f"{s}/test\n" for s in meta))
    (out / "meta.json").write_text(json.dumps(meta, indent=1))
    return meta


def _windows(folder: Path, count: int) -> np.ndarray:
    """The inference mel windows of a clip folder's audio, one per frame (the last repeated if audio runs short)."""
    from models.audio import load_audio, mel_windows, melspectrogram

    win = mel_windows(melspectrogram(load_audio(folder / "audio.wav")))
    if len(win) < count:
        win = np.concatenate([win, np.repeat(win[-1:], count - len(win), axis=0)])
    return win[:count]


def _faces(folder: Path, frames) -> np.ndarray:
    return np.stack([cv2.imread(str(folder / f"{k}.jpg"), cv2.IMREAD_COLOR) for k in frames])


def draw(data: Path, checkpoint: Path, out: Path, device: str = "auto") -> None:
    """Every held-out frame and the probe frames drawn by the checkpoint, into one .npz (written atomically)."""
    from backend.generators.wav2lip import Wav2LipGenerator

    gen = Wav2LipGenerator(checkpoint, device=device)
    meta = json.loads((data / "meta.json").read_text())
    arrays = {}
    for stem, m in meta.items():
        test = data / stem / "test"
        count = m["frames"] - m["split"]
        drawn = [gen.forward(f, w) for f, w in _batches(_faces(test, range(count)), _windows(test, count))]
        _pack(arrays, f"{stem}/test", np.concatenate(drawn))
        lib = data / stem / "lib"
        win = _windows(lib, m["split"])[m["probe"]]
        _pack(arrays, f"{stem}/probe", gen.forward(_faces(lib, m["probe"]), win))
    _save(arrays, meta, out)
    print(f"{out}: {len(meta)} clips drawn by {checkpoint.name} ({out.stat().st_size / 2**20:.1f} MiB)", flush=True)


def mistimed(media: Path, work: Path, out: Path, shift: int) -> None:
    """Drawings of the simulated generator with the lower half `shift` frames late (see the module docstring)."""
    from bench.detail import drawn, real_crop

    ramp = np.clip((np.arange(NATIVE) - 0.45 * NATIVE) / (0.1 * NATIVE), 0, 1).astype(np.float32)[:, None, None]
    meta, arrays = {}, {}
    for stem, pkg, entry in _clips(media, work):
        n, split, size = entry["frames"], entry["split"], entry["size"]
        faces = {j: drawn(real_crop(pkg, j, size)[0], NATIVE).astype(np.float32) for j in range(split, n)}
        test = [faces[j] * (1 - ramp) + faces[min(n - 1, max(split, j + shift))] * ramp for j in range(split, n)]
        _pack(arrays, f"{stem}/test", np.clip(np.stack(test) + 0.5, 0, 255).astype(np.uint8))
        _pack(arrays, f"{stem}/probe", np.stack([drawn(real_crop(pkg, j, size)[0], NATIVE) for j in entry["probe"]]))
        meta[stem] = entry
    _save(arrays, meta, out)
    print(f"{out}: {len(meta)} clips, lower half {shift} frames late", flush=True)


def _save(arrays: dict, meta: dict, out: Path) -> None:
    """The drawings file, written atomically."""
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    tmp = out.with_name(out.name + ".part.npz")
    np.savez(tmp, **arrays)
    tmp.replace(out)


def _batches(faces: np.ndarray, windows: np.ndarray, size: int = 64):
    for i in range(0, len(faces), size):
        yield faces[i:i + size], windows[i:i + size]


def _pack(arrays: dict, key: str, faces: np.ndarray) -> None:
    """Faces as concatenated lossless PNGs (key) and where each ends (key + "_ends")."""
    blobs = [cv2.imencode(".png", f, [cv2.IMWRITE_PNG_COMPRESSION, 9])[1].ravel() for f in faces]
    arrays[key] = np.concatenate(blobs)
    arrays[key + "_ends"] = np.cumsum([len(b) for b in blobs])


def _unpack(z, key: str) -> np.ndarray:
    data, ends = z[key], z[key + "_ends"]
    starts = np.concatenate([[0], ends[:-1]])
    return np.stack([cv2.imdecode(data[a:b], cv2.IMREAD_COLOR) for a, b in zip(starts, ends)])


def load_drawings(path: Path) -> dict[str, dict]:
    """{clip stem: {"test": (N,96,96,3), "probe": (8,96,96,3), "probe_frames": [...]}} from a drawings file."""
    with np.load(path) as z:
        meta = json.loads(z["meta"].tobytes().decode())
        return {stem: {"test": _unpack(z, f"{stem}/test"), "probe": _unpack(z, f"{stem}/probe"),
                       "probe_frames": m["probe"]} for stem, m in meta.items()}


RUNS = {"l1": [], "gan": ["--disc", "disc_qual96"]}


def gpu(data: Path, out: Path, minutes: float, workers: int, device: str = "cuda", batch: int = 64) -> int:
    """Both training runs side by side (the GPU has room for both), then their drawings."""
    out.mkdir(parents=True, exist_ok=True)
    runs = Path("/tmp/trained_faces_runs")
    procs = {}
    for name, extra in RUNS.items():
        cmd = [sys.executable, "-m", "stream_wav2lip", "train-wav2lip", str(data), "--out", str(runs / name),
               "--variant", "wav2lip96", "--batch-size", str(batch), "--max-minutes", str(minutes), "--workers",
               str(workers), "--eval-every", "250", "--eval-batches", "8", "--save-every", "1000000",
               "--frame-cache-mb", "1024", "--no-progress", "--device", device, "--resume", "none", *extra]
        log = open(out / f"train_{name}.log", "w")
        procs[name] = (subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT), log)
    t0 = time.perf_counter()
    failed = 0
    for name, (proc, log) in procs.items():
        rc = proc.wait()
        log.close()
        text = (out / f"train_{name}.log").read_text().splitlines()
        evals = [line for line in text if " eval: " in line]
        print(f"run {name}: exit {rc} after {time.perf_counter() - t0:.0f} s; "
              f"{(text[-1] if text else '')}", flush=True)
        for line in (evals[:1] + evals[-2:] if len(evals) > 3 else evals):
            print(f"  {line.strip()}", flush=True)
        ckpts = sorted((runs / name).glob("checkpoint_step*.pth"))
        if rc != 0 or not ckpts:
            failed += 1
            print("\n".join(text[-15:]), flush=True)
            continue
        draw(data, ckpts[-1], out / f"trained_{name}.npz", device=device)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare", help="write the training set (here, with mediapipe)")
    p.add_argument("--media", type=Path, default=REPO.parent / "shared" / "media")
    p.add_argument("--work", type=Path, default=Path("/tmp/s2l-bench-detail"), help="package cache folder")
    p.add_argument("--out", type=Path, default=REPO / ".gpudata" / "set")
    g = sub.add_parser("gpu", help="train both runs on the GPU and draw the held-out frames")
    g.add_argument("--data", type=Path, default=REPO / ".gpudata" / "set")
    g.add_argument("--out", type=Path, required=True)
    g.add_argument("--minutes", type=float, default=2.5)
    g.add_argument("--workers", type=int, default=6)
    g.add_argument("--device", default="cuda", help="cuda (cpu only to try the script: far too slow to learn)")
    g.add_argument("--batch-size", type=int, default=64)
    d = sub.add_parser("draw", help="draw the held-out frames with one checkpoint")
    d.add_argument("--data", type=Path, default=REPO / ".gpudata" / "set")
    d.add_argument("--checkpoint", type=Path, required=True)
    d.add_argument("--out", type=Path, required=True)
    d.add_argument("--device", default="auto")
    t = sub.add_parser("mistimed", help="the simulated generator with its lower half SHIFT frames late (here)")
    t.add_argument("--media", type=Path, default=REPO.parent / "shared" / "media")
    t.add_argument("--work", type=Path, default=Path("/tmp/s2l-bench-detail"), help="package cache folder")
    t.add_argument("--shift", type=int, default=2, help="frames the lower half is late (default 2: 80 ms)")
    t.add_argument("--out", type=Path, required=True, help="drawings file (.npz) for bench/detail.py --generated")
    args = ap.parse_args(argv)
    if args.cmd in ("draw", "mistimed") and not args.out.parent.is_dir():
        ap.error(f"{args.out}: folder {args.out.parent} does not exist")
    if args.cmd == "mistimed":
        mistimed(args.media, args.work, args.out, args.shift)
        return 0
    if args.cmd == "prepare":
        prepare(args.media, args.work, args.out)
        return 0
    if args.cmd == "gpu":
        return gpu(args.data, args.out, args.minutes, args.workers, args.device, args.batch_size)
    draw(args.data, args.checkpoint, args.out, args.device)
    return 0


if __name__ == "__main__":
    sys.exit(main())

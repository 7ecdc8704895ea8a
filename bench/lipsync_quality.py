"""How well does a generator move the mouth with the speech? Measured on real talking clips, honestly.

For every clip with speech in ../shared/media (issue 8, "Measure it honestly"):
1. preprocess it into an avatar package (cached in --work), measure the real mouth opening per frame
   (inner-lip gap / outer eye-corner distance, `preprocess.landmarks.mouth_opening`);
2. estimate the clip's own A/V offset (cross-correlation of opening with loudness) and correct it;
3. use the first part (70 %) as the avatar's footage, drive it with the audio of the held-out rest, render
   full frames through the real compositor, and measure the mouth opening of the *output frames* with the
   same FaceMesh tracker that preprocess uses (not the engine's own prediction);
4. score against the real held-out frames: Pearson r, MAE, jitter (mean |frame-to-frame change|) and the
   opening in silent stretches, for the mouth engine at library lengths 3 s / 10 s / all and for the
   baselines idle loop (the footage itself), loudness flap (the lip warp) and constant mean.

`--realism DIR` also runs bench/realism.py on the same clips: does the face still look like the person in
the frames render shows (cheek and jaw patches, lip colour, flicker, lip sharpness, perfect-generator PSNR),
with contact sheets of the worst frames written to DIR.

`--engine wav2lip --checkpoint X` scores a real checkpoint the same way. The table is printed; medians
across clips. Timings measured while other jobs share the CPU are contaminated: re-run on a quiet machine.

Usage: .venv/bin/python bench/lipsync_quality.py [--clips N] [--work DIR] [--engine mouth|wav2lip --checkpoint X]
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SPLIT = 0.7
LIBRARY_SECONDS = (3.0, 10.0, None)  # None = all of the first part
BATCH = 5


# ------------------------------------------------------------------------------------------ data
def talking_clips(media: Path) -> list[Path]:
    entries = json.loads((media / "manifest.json").read_text())
    return [media / e["file"] for e in entries if e.get("kind") == "video" and e.get("has_audio")]


def package_for(clip: Path, work: Path):
    """The clip's avatar package, built once through the real preprocess API and cached in `work`."""
    from preprocess.package import AvatarPackage, is_avatar_package

    out = work / clip.stem
    if not is_avatar_package(out):
        from preprocess.api import preprocess_video

        out = preprocess_video(clip, work)
    return AvatarPackage.open(out)


def pingpong(count: int, length: int, start: int = 0) -> np.ndarray:
    """Avatar frames an idle loop shows: forward then backward over [0, length), no repeated turn frame."""
    if length <= 1:
        return np.zeros(count, np.int64)
    period = 2 * (length - 1)
    k = (np.arange(count) + start) % period
    return np.where(k < length, k, period - k).astype(np.int64)


# ------------------------------------------------------------------------------------------ rendering
def render_openings(pkg, generator, base: np.ndarray, windows: np.ndarray, speech: np.ndarray) -> np.ndarray:
    """Run `generator` on (base frame, window) pairs, composite full frames, measure their mouth opening."""
    from backend.compositor import Compositor
    from backend.frames import FaceFrame
    from backend.generators.base import GeneratorInput

    compositor = Compositor(pkg)
    generator.reset()

    def frames():
        for b in range(0, len(base), BATCH):
            idx = range(b, min(b + BATCH, len(base)))
            items = [GeneratorInput(face=pkg.face(int(base[t]), generator.crop), mel=windows[t],
                                    avatar_index=int(base[t]), speech=bool(speech[t])) for t in idx]
            faces = generator.generate(items)
            for t, face in zip(idx, faces):
                yield compositor.compose(FaceFrame(pts_ns=0, index=t, avatar_index=int(base[t]), face=face,
                                                   crop=generator.crop, blend=1.0, speech=True))

    return measure_openings(frames())


def measure_openings(frames) -> np.ndarray:
    """Mouth opening of each full frame, by the preprocess FaceMesh tracker (raw, unsmoothed landmarks)."""
    from preprocess import landmarks as L
    from preprocess.tracking import FaceTracker

    out = []
    with FaceTracker() as tracker:
        for frame in frames:
            lm = tracker.process(np.ascontiguousarray(frame))
            out.append(float(L.mouth_opening(lm)) if lm is not None else np.nan)
    return np.array(out, np.float32)


# ------------------------------------------------------------------------------------------ scoring
def score(pred: np.ndarray, real: np.ndarray, silent: np.ndarray) -> dict:
    ok = np.isfinite(pred) & np.isfinite(real)
    r = float(np.corrcoef(pred[ok], real[ok])[0, 1]) if ok.sum() > 3 and np.std(pred[ok]) > 1e-6 else float("nan")
    both = ok[1:] & ok[:-1]
    jitter = float(np.mean(np.abs(np.diff(pred))[both])) if both.any() else float("nan")
    sil = ok & silent
    return {"r": r, "mae": float(np.mean(np.abs(pred[ok] - real[ok]))) if ok.any() else float("nan"),
            "jitter": jitter, "silence_open": float(np.median(pred[sil])) if sil.sum() >= 3 else float("nan"),
            "found": float(ok.mean())}


def evaluate_clip(clip: Path, work: Path, engine: str, checkpoint: str | None) -> dict:
    from backend.mouth import MouthGenerator
    from models.audio import load_audio, mel_windows, melspectrogram
    from preprocess import landmarks as L
    from preprocess.mouth_calibration import (calibrate_arrays, estimate_av_offset, shift_rows, speech_weight,
                                              window_loudness)

    t0 = time.perf_counter()
    pkg = package_for(clip, work)
    n, fps = pkg.frame_count, pkg.fps
    lm, valid = pkg.track.landmarks, pkg.track.valid
    real = L.mouth_opening(lm).astype(np.float32)
    real[~valid] = np.nan
    wav = load_audio(pkg.audio_path)
    windows = mel_windows(melspectrogram(wav), fps)
    if len(windows) < n:
        windows = np.concatenate([windows, np.full((n - len(windows), 80, 16), -4.0, np.float32)])
    windows = windows[:n]
    loud = window_loudness(windows)
    offset, corr = estimate_av_offset(np.nan_to_num(real), loud, valid)
    drive = shift_rows(windows, offset)  # drive[i] = the audio that belongs with video frame i
    split = int(round(SPLIT * n))
    test = np.arange(split, n)
    real_test = measure_openings(pkg.frame(int(i)) for i in test)  # same tracker as the outputs, unsmoothed
    calib_all = calibrate_arrays(lm[:split], valid[:split], wav, fps, av_offset=offset)
    silent = speech_weight(window_loudness(drive[test]), calib_all.thresholds) <= 0.0
    loud_lib = window_loudness(drive[:split])
    speech_flag = ~silent
    rows: dict[str, dict] = {}
    base_all = pingpong(len(test), split)

    rows["idle loop"] = score(measure_openings(pkg.frame(int(i)) for i in base_all), real_test, silent)
    const = np.full(len(test), np.nanmean(real[:split]), np.float32)
    rows["constant mean"] = score(const, real_test, silent)
    flap = MouthGenerator(pkg, calibration=calib_all, mode="warp")
    rows["loudness flap"] = score(render_openings(pkg, flap, base_all, drive[test], speech_flag), real_test, silent)
    if engine == "mouth":
        for seconds in LIBRARY_SECONDS:
            frames = split if seconds is None else int(seconds * fps)
            name = "mouth (all)" if seconds is None else f"mouth ({seconds:.0f} s)"
            if frames > split:
                continue
            calib = calib_all if frames == split else calibrate_arrays(
                lm[:frames], valid[:frames], wav, fps, av_offset=offset)
            gen = MouthGenerator(pkg, calibration=calib, mode="retrieval")
            base = pingpong(len(test), frames)
            rows[name] = score(render_openings(pkg, gen, base, drive[test], speech_flag), real_test, silent)
    else:
        from backend.generators.registry import GeneratorOptions, make_generator

        gen = make_generator("wav2lip", pkg, GeneratorOptions(checkpoint, "cpu"))
        rows["wav2lip"] = score(render_openings(pkg, gen, base_all, drive[test], speech_flag), real_test, silent)
    ok = np.isfinite(real_test)
    sil_real = ok & silent
    return {"clip": clip.name, "frames": n, "library_s": split / fps, "test_s": len(test) / fps,
            "av_offset": offset, "av_corr": corr, "speech_s": calib_all.usable_speech_s,
            "real_jitter": float(np.nanmean(np.abs(np.diff(real_test)))),
            "real_silence_open": float(np.median(real_test[sil_real])) if sil_real.sum() >= 3 else float("nan"),
            "rest_open": resting_opening(real[:split], speech_weight(loud_lib, calib_all.thresholds) <= 0.0),
            "rows": rows, "seconds": time.perf_counter() - t0}


def resting_opening(opening: np.ndarray, silent: np.ndarray) -> float:
    """The footage's resting mouth in the benchmark's own measure: the more closed half of its silent frames."""
    o = opening[silent & np.isfinite(opening)]
    if o.size < 5:
        o = opening[np.isfinite(opening)]
        return float(np.percentile(o, 10)) if o.size else float("nan")
    return float(np.median(o[o <= np.median(o)]))


# ------------------------------------------------------------------------------------------ report
def table(results: list[dict]) -> str:
    names: list[str] = []
    for res in results:
        names += [k for k in res["rows"] if k not in names]
    lines = [f"{'method':<16} {'clips':>5} {'median r':>9} {'MAE':>7} {'jitter':>7} {'silence open':>13}",
             "-" * 62]

    def med(values):
        v = np.array([x for x in values if np.isfinite(x)])
        return (float(np.median(v)), len(v)) if v.size else (float("nan"), 0)

    for name in names:
        rows = [res["rows"][name] for res in results if name in res["rows"]]
        r, nr = med([x["r"] for x in rows])
        mae, _ = med([x["mae"] for x in rows])
        jit, _ = med([x["jitter"] for x in rows])
        sil, _ = med([x["silence_open"] for x in rows])
        lines.append(f"{name:<16} {len(rows):>5} {r:>9.3f} {mae:>7.4f} {jit:>7.4f} {sil:>13.4f}")
    jr, _ = med([res["real_jitter"] for res in results])
    sr, _ = med([res["real_silence_open"] for res in results])
    rest, _ = med([res["rest_open"] for res in results])
    lines.append(f"{'real video':<16} {len(results):>5} {'':>9} {'':>7} {jr:>7.4f} {sr:>13.4f}")
    lines.append(f"(footage resting mouth, median over clips: {rest:.4f}; silence open = median opening in the "
                 f"held-out silent frames)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--media", type=Path, default=REPO.parent / "shared" / "media")
    ap.add_argument("--work", type=Path, default=Path("/tmp/s2l-bench-lipsync"), help="package cache folder")
    ap.add_argument("--clips", type=int, default=0, help="only the first N clips (0 = all)")
    ap.add_argument("--engine", choices=("mouth", "wav2lip"), default="mouth")
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--json", type=Path, default=None, help="also write per-clip results here")
    ap.add_argument("--realism", type=Path, default=None, metavar="DIR",
                    help="also score realism (bench/realism.py); contact sheets and json into DIR")
    args = ap.parse_args(argv)
    if args.engine == "wav2lip" and not args.checkpoint:
        ap.error("--engine wav2lip needs --checkpoint")
    logging.basicConfig(level=logging.ERROR)
    import torch

    torch.set_num_threads(2)
    args.work.mkdir(parents=True, exist_ok=True)
    clips = talking_clips(args.media)
    if args.clips:
        clips = clips[: args.clips]
    results = []
    for clip in clips:
        try:
            res = evaluate_clip(clip, args.work, args.engine, args.checkpoint)
        except Exception as exc:  # one bad clip must not lose the others' numbers
            print(f"{clip.name}: skipped ({type(exc).__name__}: {exc})", flush=True)
            continue
        results.append(res)
        rows = "  ".join(f"{k}: r={v['r']:.2f}" for k, v in res["rows"].items())
        print(f"{clip.name[:44]:<44} offset {res['av_offset']:+d} speech {res['speech_s']:.1f}s "
              f"({res['seconds']:.0f}s)  {rows}", flush=True)
    if not results:
        print("no clip could be evaluated")
        return 1
    print()
    print(table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=float))
    if args.realism:
        from bench import realism

        print()
        realism.main(["--media", str(args.media), "--work", str(args.work), "--out", str(args.realism)]
                     + (["--clips", str(args.clips)] if args.clips else []))
    return 0


if __name__ == "__main__":
    sys.exit(main())

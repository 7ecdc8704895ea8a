"""Does the detail stage (backend/detail/) give low-resolution generated faces real detail without changing
the mouth? The oracle benchmark of issue 17, honest because no trained checkpoint exists here.

For every clip with speech in ../shared/media:
1. preprocess it into an avatar package (cached in --work); the library is the first 70 % of its frames, the
   test the last 30 % (the library never holds a test frame);
2. each held-out frame's real face crop, cut from the full frame at the face's own size in the frame S, is
   reduced to the network size (96, and "288": see below), softened like generator output (a Gaussian blur of
   SOFTEN native pixels), and brought back to S by (a) bicubic and (b) bicubic + the detail stage;
3. both are compared with the real crop in the lower-face region (the jaw/subnasale polygon of the real
   frame's landmarks): PSNR, SSIM, sharpness ratio (Sobel gradient energy / the real crop's, or with
   `--gradient diff` plain neighbour differences: the real crop scores 1, so detail that looks like the real
   frames is at most 1 / bicubic's ratio x bicubic), mouth-opening
   correlation with the real frames (each output pasted back into its frame and tracked by the same FaceMesh
   tracker as preprocess, bench/lipsync_quality.measure_openings), and flicker: the mean frame-to-frame change
   of the detail band (the crop minus its round trip through the native size, what the stage adds) in the
   stage's lower-face box, as a ratio to the real video's;
4. the stage's CPU time per frame on one thread (cv2 single-threaded) at the clip's S and at S = 448 (a 1080p
   face: a first pass over the held-out run, and a second, steady-state pass); CPU time because on a shared
   machine wall time counts the other jobs.

`--generated FILE` (bench/trained_faces.py: trained on a GPU, or `mistimed`): the "96" row scores those
faces instead of the simulated generator (its held-out drawings are the input of step 2, its drawings of the
probe frames set the band cut), and adds "kept r", the opening correlation of the stage's output with the
network's own (bicubic): the network chooses the mouth, the stage must not change it. "288" stays simulated.

"288": no shared clip shows a face above ~300 px, so 288 is run at the ratio a 288 network has on a 1080p face
(288 / 448 of S). Targets (medians, 96): sharpness >= 0.8 of real and >= 2x bicubic's; PSNR >= bicubic - 0.5 dB;
SSIM >= bicubic - 0.01; opening r >= 0.95; flicker <= 1.2x real. Record the load average with the timings.

Usage: .venv/bin/python bench/detail.py [--clips N] [--work DIR] [--picture docs/detail.png] [--json FILE]
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SPLIT = 0.7
SOFTEN = 0.6  # Gaussian sigma in native pixels: generator output is softer than a clean downscale
GRADIENT = "sobel"  # the sharpness measure's gradient: "sobel" (3x3, smoothed) or "diff" (plain neighbour differences)
FACE_1080P = 448  # side of a talking head's crop in a 1080p frame (timing, and the "288" ratio)
CROP = "head"


# ------------------------------------------------------------------------------------------ pixels
def real_crop(pkg, i: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    from backend.detail.library import face_affine

    m = face_affine(pkg, i, CROP, size)
    return cv2.warpAffine(pkg.frame(i), m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE), m


def reduced(real: np.ndarray, native: int) -> np.ndarray:
    """The crop at the network's size: what it is fed, and what a trained one learns to draw."""
    return cv2.resize(real, (native, native), interpolation=cv2.INTER_AREA)


def drawn(real: np.ndarray, native: int) -> np.ndarray:
    """What the simulated `native`-pixel generator draws for this crop: reduced, then softened by SOFTEN."""
    return cv2.GaussianBlur(reduced(real, native), (0, 0), SOFTEN)


def probe_frames(split: int, samples: int = 8) -> list[int]:
    """The library frames the softness probe redraws: evenly spread over the library."""
    return [int(j) for j in np.linspace(0, split - 1, samples).round().astype(int)]


def degrade(real: np.ndarray, native: int) -> np.ndarray:
    """What a `native`-pixel generator hands back, bicubically upsampled to the crop size."""
    s = real.shape[0]
    return cv2.resize(drawn(real, native), (s, s), interpolation=cv2.INTER_CUBIC)


def measured_softness(pkg, size: int, native: int, split: int, samples: int = 8,
                      drawings: dict | None = None) -> float:
    """Where the library's band is cut, as `render`/`serve` decide it (backend/detail/softness.py): the generator
    redraws library frames (the simulated one, or a trained one's `drawings["probe"]`), its softness is estimated
    from them."""
    from backend.detail.softness import estimate_softness, library_softness

    picks = drawings["probe_frames"] if drawings else probe_frames(split, samples)
    reals = [real_crop(pkg, j, size)[0] for j in picks]
    crops = np.stack([reduced(r, native) for r in reals])
    faces = drawings["probe"] if drawings else np.stack([drawn(r, native) for r in reals])
    return library_softness(estimate_softness(faces, crops))


def region_mask(pkg, i: int, m: np.ndarray, size: int) -> np.ndarray:
    from preprocess import landmarks as L
    from preprocess.geometry import apply_affine

    poly = apply_affine(m, L.lower_face_polygon(np.asarray(pkg.track.landmarks[i], np.float64)))
    mask = np.zeros((size, size), np.uint8)
    cv2.fillPoly(mask, [np.round(poly).astype(np.int32)], 255)
    return mask > 0


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    d = (a.astype(np.float64) - b.astype(np.float64))[mask]
    mse = float((d * d).mean()) if d.size else 0.0
    return 99.0 if mse <= 1e-10 else float(10 * np.log10(255.0 ** 2 / mse))


def ssim(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    """Mean SSIM map (grey, Gaussian window sigma 1.5, the usual constants) over the mask."""
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    x = cv2.cvtColor(a, cv2.COLOR_BGR2GRAY).astype(np.float32)
    y = cv2.cvtColor(b, cv2.COLOR_BGR2GRAY).astype(np.float32)
    blur = lambda v: cv2.GaussianBlur(v, (0, 0), 1.5)  # noqa: E731
    mx, my = blur(x), blur(y)
    vx, vy, cov = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return float(s[mask].mean())


def gradient_energy(img: np.ndarray, mask: np.ndarray) -> float:
    """Mean squared gradient magnitude over the mask (GRADIENT: Sobel's, or the finest-scale differences that
    weigh the highest frequencies more: does "2x bicubic" depend on the operator?)."""
    g = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY).astype(np.float32)
    if GRADIENT == "diff":
        gx, gy = np.zeros_like(g), np.zeros_like(g)
        gx[:, :-1], gy[:-1, :] = np.diff(g, axis=1), np.diff(g, axis=0)
    else:
        gx, gy = cv2.Sobel(g, cv2.CV_32F, 1, 0), cv2.Sobel(g, cv2.CV_32F, 0, 1)
    return float((gx * gx + gy * gy)[mask].mean())


def detail_band(img: np.ndarray, box, native: int) -> np.ndarray:
    from backend.detail.library import grey, round_trip

    x0, y0, x1, y1 = box
    g = grey(img[y0:y1, x0:x1])
    return g - round_trip(g, img.shape[0], native)


def flicker(bands: list[np.ndarray]) -> float:
    return float(np.mean([np.abs(b - a).mean() for a, b in zip(bands, bands[1:])])) if len(bands) > 1 else np.nan


def paste(frame: np.ndarray, crop: np.ndarray, m: np.ndarray) -> np.ndarray:
    """The crop warped back into its frame (a square with a feathered edge), for the FaceMesh opening measure."""
    h, w = frame.shape[:2]
    s = crop.shape[0]
    alpha = np.zeros((s, s), np.float32)
    f = max(2, s // 24)
    alpha[f:-f, f:-f] = 1.0
    alpha = cv2.GaussianBlur(alpha, (0, 0), f / 2)
    layer = cv2.warpAffine(np.dstack([crop.astype(np.float32), alpha]), m, (w, h),
                           flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT)
    a = layer[..., 3:]
    return np.clip(layer[..., :3] + (1 - a) * frame + 0.5, 0, 255).astype(np.uint8)


def corr(a: np.ndarray, b: np.ndarray) -> float:
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 4 or np.std(a[ok]) < 1e-9 or np.std(b[ok]) < 1e-9:
        return float("nan")
    return float(np.corrcoef(a[ok], b[ok])[0, 1])


# ------------------------------------------------------------------------------------------ one clip
def evaluate(pkg, size: int, native: int, split: int, real_open: np.ndarray | None, keep: list | None,
             drawings: dict | None = None) -> dict:
    """Scores of bicubic and detail for one clip at one native size (see the module docstring); `drawings`: a
    trained generator's faces (bench/trained_faces.load_drawings) instead of the simulated ones."""
    from backend.detail import DetailStage
    from bench.lipsync_quality import measure_openings

    n = pkg.frame_count
    test = np.arange(split, n)
    stage = DetailStage(pkg, CROP, native, size=size, frames=range(split), eager=True,
                        softness=measured_softness(pkg, size, native, split, drawings=drawings))
    box = stage.library.box
    rows = {k: {"psnr": [], "ssim": [], "grad": [], "band": [], "frames": []} for k in ("bicubic", "detail")}
    real_grad, real_band, times = [], [], []
    for j in test:
        j = int(j)
        real, m = real_crop(pkg, j, size)
        mask = region_mask(pkg, j, m, size)
        bic = degrade(real, native) if drawings is None else \
            cv2.resize(drawings["test"][j - split], (size, size), interpolation=cv2.INTER_CUBIC)
        t0 = time.thread_time()  # CPU time of this thread: other jobs on a shared machine do not count
        det = stage.apply(bic, j)
        times.append(time.thread_time() - t0)
        real_grad.append(gradient_energy(real, mask))
        real_band.append(detail_band(real, box, native))
        for name, out in (("bicubic", bic), ("detail", det)):
            r = rows[name]
            r["psnr"].append(psnr(out, real, mask))
            r["ssim"].append(ssim(out, real, mask))
            r["grad"].append(gradient_energy(out, mask))
            r["band"].append(detail_band(out, box, native))
            if real_open is not None:
                r["frames"].append(paste(pkg.frame(j), out, m))
        if keep is not None and len(keep) < 4 and (j - split) % max(1, len(test) // 4) == 0:
            keep.append((real, bic, det, box))
    result = {"ms": 1e3 * float(np.median(times[1:] or times)), "ms_mean": 1e3 * float(np.mean(times[1:] or times)),
              "softness": stage.softness,
              "real_flicker": flicker(real_band), "exemplars": len(stage.library)}
    for name, r in rows.items():
        result[name] = {"psnr": float(np.mean(r["psnr"])), "ssim": float(np.mean(r["ssim"])),
                        "sharp": float(np.mean(r["grad"]) / max(np.mean(real_grad), 1e-9)),
                        "flicker": flicker(r["band"]) / max(flicker(real_band), 1e-9)}
        if real_open is not None:
            r["open"] = measure_openings(r["frames"])
            result[name]["open_r"] = corr(r["open"], real_open)
    if real_open is not None:
        result["detail"]["kept_r"] = corr(rows["detail"]["open"], rows["bicubic"]["open"])
    return result


def time_1080p(pkg, split: int, native: int = 96, frames: int = 60) -> tuple[float, float, float]:
    """CPU ms per frame of the stage with a 1080p-sized face (S = FACE_1080P) over a held-out run: the first
    pass (cold: the library's pages and OpenCV's buffers are touched for the first time) and a second pass over
    the same frames (the steady state a stream pays), and the second pass's wall ms."""
    from backend.detail import DetailStage

    stage = DetailStage(pkg, CROP, native, size=FACE_1080P, frames=range(split), eager=True)
    faces = [degrade(real_crop(pkg, int(j), FACE_1080P)[0], native) for j in range(split, min(pkg.frame_count,
                                                                                                split + frames))]
    stage.apply(faces[0], split)
    cpu = []
    for _ in range(2):
        stage.reset()
        t0, c0 = time.perf_counter(), time.thread_time()
        for k, f in enumerate(faces):
            stage.apply(f, split + k)
        cpu.append(1e3 * (time.thread_time() - c0) / len(faces))
    return cpu[0], cpu[1], 1e3 * (time.perf_counter() - t0) / len(faces)


def clip_package(clip: Path, work: Path, native: int = 96):
    """(package, library/held-out split, the stage's working size S) of a shared clip, as every part of the
    detail benchmark cuts it (bench/trained_faces.py too)."""
    from backend.detail import detail_size
    from bench.lipsync_quality import package_for

    pkg = package_for(clip, work)
    return pkg, int(round(SPLIT * pkg.frame_count)), detail_size(pkg, CROP, native)


def evaluate_clip(clip: Path, work: Path, picture: list | None, quick: bool = False,
                  drawings: dict | None = None) -> dict:
    from bench.lipsync_quality import measure_openings

    t0 = time.perf_counter()
    pkg, split, size = clip_package(clip, work)
    n = pkg.frame_count
    real_open = None if quick else measure_openings(pkg.frame(int(j)) for j in range(split, n))
    res = {"clip": clip.name, "frames": n, "size": size, "test": n - split}
    natives = {"96": 96, "288": max(97, int(round(size * 288 / FACE_1080P)))}
    for label, native in natives.items():
        res[label] = evaluate(pkg, size, native, split, real_open, picture if label == "96" else None,
                              drawings if label == "96" else None)
        res[label]["native"] = native
    res["ms_1080p"] = (np.nan, np.nan, np.nan) if quick else time_1080p(pkg, split)
    res["seconds"] = time.perf_counter() - t0
    return res


# ------------------------------------------------------------------------------------------ report
COLUMNS = (("PSNR", "psnr", "{:6.2f}"), ("SSIM", "ssim", "{:6.3f}"), ("sharp", "sharp", "{:6.2f}"),
           ("open r", "open_r", "{:6.3f}"), ("flick", "flicker", "{:6.2f}"))


def table(results: list[dict], label: str) -> str:
    head = f"{'clip':<34} {'S':>4} {'n':>4} " + " ".join(f"{'bic ' + c:>10} {'det ' + c:>10}" for c, _, _ in COLUMNS)
    lines = [f"-- native {label} (bic = bicubic, det = bicubic + detail stage; sharp and flick relative to the "
             f"real crop)", head + f" {'cpu ms':>6}", "-" * (len(head) + 7)]
    for res in results:
        r = res[label]
        cells = " ".join(f"{fmt.format(r['bicubic'].get(k, np.nan)):>10} {fmt.format(r['detail'].get(k, np.nan)):>10}"
                         for _, k, fmt in COLUMNS)
        lines.append(f"{res['clip'][:34]:<34} {res['size']:>4} {r['native']:>4} {cells} {r['ms']:>6.2f}")
    med = {(m, k): float(np.nanmedian([res[label][m].get(k, np.nan) for res in results]))
           for m in ("bicubic", "detail") for _, k, _ in COLUMNS}
    cells = " ".join(f"{fmt.format(med[('bicubic', k)]):>10} {fmt.format(med[('detail', k)]):>10}"
                     for _, k, fmt in COLUMNS)
    ms = float(np.median([res[label]["ms"] for res in results]))
    lines.append(f"{'MEDIAN':<34} {'':>4} {'':>4} {cells} {ms:>6.2f}")
    return "\n".join(lines), med


def verdict(med: dict) -> list[str]:
    b, d = (lambda k: med[("bicubic", k)]), (lambda k: med[("detail", k)])
    checks = [("sharpness >= 0.8 of real", d("sharp") >= 0.8, f"{d('sharp'):.2f}"),
              ("sharpness >= 2x bicubic", d("sharp") >= 2 * b("sharp"),
               f"{d('sharp') / max(b('sharp'), 1e-9):.2f}x (the real crop itself: {1 / max(b('sharp'), 1e-9):.2f}x)"),
              ("PSNR >= bicubic - 0.5 dB", d("psnr") >= b("psnr") - 0.5, f"{d('psnr') - b('psnr'):+.2f} dB"),
              ("SSIM >= bicubic - 0.01", d("ssim") >= b("ssim") - 0.01, f"{d('ssim') - b('ssim'):+.3f}"),
              ("opening r >= 0.95", d("open_r") >= 0.95, f"{d('open_r'):.3f}"),
              ("flicker <= 1.2x real", d("flicker") <= 1.2, f"{d('flicker'):.2f}x")]
    return [f"  {'n/a ' if 'nan' in value else 'met ' if ok else 'MISS'} {name}: {value}" for name, ok, value in checks]


def write_picture(path: Path, strips: list, source: str = "bicubic from 96") -> None:
    """Rows of real | bicubic | detail lower-face boxes (from the first clip's held-out frames)."""
    from stream_wav2lip.atomic import atomic_path

    rows = []
    for real, bic, det, (x0, y0, x1, y1) in strips:
        cells = [c[y0:y1, x0:x1] for c in (real, bic, det)]
        h = 200
        cells = [cv2.resize(c, (int(round(c.shape[1] * h / c.shape[0])), h), interpolation=cv2.INTER_NEAREST)
                 for c in cells]
        gap = np.full((h, 6, 3), 255, np.uint8)
        rows.append(np.hstack([cells[0], gap, cells[1], gap, cells[2]]))
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 6), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    header = np.full((28, width, 3), 255, np.uint8)
    cell = (width - 12) // 3
    for k, name in enumerate(("real (held out)", source, "bicubic + detail")):
        cv2.putText(header, name, (k * (cell + 6) + 6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
    sheet = np.vstack([header] + rows)
    with atomic_path(path) as tmp:
        cv2.imwrite(str(tmp), sheet)


def main(argv: list[str] | None = None) -> int:
    global SOFTEN, GRADIENT
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--media", type=Path, default=REPO.parent / "shared" / "media")
    ap.add_argument("--work", type=Path, default=Path("/tmp/s2l-bench-detail"), help="package cache folder")
    ap.add_argument("--clips", type=int, default=0, help="only the first N clips (0 = all)")
    ap.add_argument("--only", default="", help="only clips whose name contains this")
    ap.add_argument("--picture", type=Path, default=None, help="write real | bicubic | detail crops here (png)")
    ap.add_argument("--picture-clip", default="face_2", help="the clip the picture is taken from (name part)")
    ap.add_argument("--soften", type=float, default=SOFTEN,
                    help=f"Gaussian sigma (native pixels) of the simulated generator softness (default {SOFTEN}; "
                         "the stage assumes backend.detail.library.SOFTNESS)")
    ap.add_argument("--gradient", choices=("sobel", "diff"), default=GRADIENT,
                    help="the sharpness measure's gradient: Sobel (default) or plain neighbour differences")
    ap.add_argument("--quick", action="store_true", help="skip the FaceMesh opening measure and the 1080p timing")
    ap.add_argument("--json", type=Path, default=None, help="also write per-clip results here")
    ap.add_argument("--generated", type=Path, default=None,
                    help="drawings of a trained generator or of `mistimed` (bench/trained_faces.py) instead of the "
                         "simulated 96 one")
    args = ap.parse_args(argv)
    SOFTEN, GRADIENT = args.soften, args.gradient
    logging.basicConfig(level=logging.ERROR)
    cv2.setNumThreads(1)  # the stage runs on one post-processing thread: time it on one core
    from bench.lipsync_quality import talking_clips

    args.work.mkdir(parents=True, exist_ok=True)
    clips = [c for c in talking_clips(args.media) if args.only in c.name]
    if args.clips:
        clips = clips[: args.clips]
    drawings = None
    if args.generated:
        from bench.trained_faces import load_drawings

        drawings = load_drawings(args.generated)
        clips = [c for c in clips if c.stem in drawings]
    results, strips = [], []
    for clip in clips:
        try:
            wanted = args.picture and not strips and args.picture_clip in clip.name
            res = evaluate_clip(clip, args.work, strips if wanted else None, args.quick,
                                drawings[clip.stem] if drawings else None)
        except Exception as exc:  # one bad clip must not lose the others' numbers
            print(f"{clip.name}: skipped ({type(exc).__name__}: {exc})", flush=True)
            continue
        results.append(res)
        r = res["96"]
        print(f"{clip.name[:44]:<44} S={res['size']} 96: PSNR {r['bicubic']['psnr']:.2f}->{r['detail']['psnr']:.2f} "
              f"sharp {r['bicubic']['sharp']:.2f}->{r['detail']['sharp']:.2f} flick {r['detail']['flicker']:.2f} "
              f"r {r['detail'].get('open_r', np.nan):.3f} {r['ms']:.2f} ms, band cut at σ {r['softness']:.2f} "
              f"({res['seconds']:.0f}s)", flush=True)
    if not results:
        print("no clip could be evaluated")
        return 1
    print()
    for label in ("96", "288"):
        text, med = table(results, label)
        print(text)
        print("\n".join(verdict(med)))
        kept = [res[label]["detail"].get("kept_r", np.nan) for res in results]
        if not np.all(np.isnan(kept)):
            print(f"  kept r (the stage's openings vs bicubic's, the network's own shape): median "
                  f"{np.nanmedian(kept):.3f}, lowest {np.nanmin(kept):.3f}")
        print()
    cold, cpu, wall = (np.array([res["ms_1080p"][k] for res in results]) for k in range(3))
    print(f"stage time at S={FACE_1080P} (1080p face), native 96, one thread (cv2 single-threaded), CPU ms/frame: "
          f"steady median {np.median(cpu):.2f} (max {np.max(cpu):.2f}), first pass median {np.median(cold):.2f} "
          f"(max {np.max(cold):.2f}); steady wall median {np.median(wall):.2f}; load average "
          f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} cores (wall counts the other jobs' share)")
    if args.picture and strips:
        write_picture(args.picture, strips, f"{args.generated.stem}, bicubic" if drawings else "bicubic from 96")
        print(f"picture: {args.picture}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())

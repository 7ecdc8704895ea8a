"""Does the lip-synced face still look like the person? Realism of the frames the product shows.

Why: the mouth-opening score (bench/lipsync_quality.py) is blind to what viewers notice first at native
resolution: a hair-coloured smear over the cheek, lips that jump between pale and red, a second (ghost)
jawline, a washed-out beard (issue 19). This bench scores exactly those, on every shared clip with speech.

Which frames: `render --frames-dir` output (lossless PNG), rendered through `backend.render.render` with
the default generator (the mouth engine when no checkpoint is given). `serve` runs the same Engine and
compositor, so it produces the same frames for the same avatar frames and audio: scoring render's frames is
enough. Which avatar frame an output frame was built on is found from the pixels, whatever walk render
chose: the compositor leaves everything above the nose as the avatar frame's own, so the avatar frame whose
region above the eyes equals the output's is the one (a thumbnail search proposes, an exact comparison
decides; `AvatarFrameFinder`).

Each output frame is compared with the avatar frame it was built on (patches placed by that frame's FaceMesh
landmarks from the package; the lips of both frames found by FaceMesh in still-image mode on each,
`realism_metrics.StaticMesh`: the video tracker lags a lip-synced mouth and read teeth as lips):
- cheek patches beside the mouth corners and jaw patches on the jaw contour below them: SSIM (grey),
  colour ΔE (CIE76 of the patch's mean Lab colour) and the high-frequency texture energy ratio (a beard must
  stay a beard: ratio of the energy of grey minus its Gaussian blur, output / footage);
- the lips' mean Lab colour: ΔE frame to frame and against the footage frame;
- flicker: frame-to-frame ΔE of the patches' mean colour, output against the footage's own walk;
- lip sharpness: variance of the Laplacian in the lip box, output / footage.
Medians and the worst decile (p10 of SSIM, p90 of ΔE, both tails of ratios) are printed per clip, and a
contact sheet of the worst frames at native resolution (output | footage, cut out 1:1, PNG) is written.

A perfect-generator row proves the compositor itself lossless: a generator that returns the avatar frame's
own crop, composited, must equal the frame to >= 40 dB PSNR inside the blended face region.

Usage: .venv/bin/python bench/realism.py [--clips N] [--seconds 8] [--speech WAV] [--out DIR] [--work DIR]
Runs the renders one after another on the calling thread (the packages are cached in --work).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.realism_metrics import (PATCHES, FrameScores, StaticMesh, lip_colour, lip_sharpness,  # noqa: E402
                                   patch_boxes, patch_stats, psnr_in_mask)

DEFAULT_SPEECH = "SadTalker__examples_driven_audio_chinese_news.wav"
TARGETS = {"ssim": 0.9, "de": 3.0, "tex": (0.85, 1.15), "lip_de": 6.0}


# ------------------------------------------------------------------------------------------ rendering
def render_frames(pkg_dir: Path, speech: Path, seconds: float, frames_dir: Path, generator=None,
                  loop: str | None = None) -> float:
    """Render `seconds` of `speech` with the default generator into PNG frames; returns the engine fps.

    loop: the avatar walk (render's own default when None; "pingpong" to compare with older trees)."""
    from backend.render import render
    from models.audio import load_audio

    wav = load_audio(speech)[: int(seconds * 16000)]
    with tempfile.TemporaryDirectory() as tmp:
        import soundfile  # noqa: F401  (librosa's dependency; writes the trimmed speech)

        path = Path(tmp) / "speech.wav"
        soundfile.write(str(path), wav, 16000)
        extra = {"loop": loop} if loop else {}
        res = render(pkg_dir, [path], output=None, frames_dir=frames_dir, progress=False, generator=generator, **extra)
    return res.fps


# ------------------------------------------------------------------------------------------ scoring
def score_clip(pkg, frames_dir: Path) -> tuple[FrameScores, list[int]]:
    """Per-frame realism scores of the PNG frames in `frames_dir` against the avatar frames they were built on."""
    files = sorted(frames_dir.glob("*.png"))
    lms, valid = pkg.track.landmarks, pkg.track.valid
    finder = AvatarFrameFinder(pkg)
    scores = FrameScores()
    sources: list[int] = []  # avatar frame of each output frame, -1 for cross-fades
    prev = None
    last = -1
    mesh = StaticMesh()
    try:
        for k, f in enumerate(files):
            out = cv2.imread(str(f), cv2.IMREAD_COLOR)
            i = finder.find(out, last + 1)
            sources.append(-1 if i is None else i)
            if i is None:  # a cross-fade between two avatar frames: built on neither alone, not scored
                prev = None
                continue
            last = i
            ref = pkg.frame(i)
            lm_ref = np.asarray(lms[i], np.float64)
            lm_out = mesh.landmarks(out, lm_ref)
            lm_ref_lips = mesh.landmarks(ref, lm_ref)
            if lm_ref_lips is None:
                lm_ref_lips = lm_ref
            if not valid[i]:
                scores.skip()
                prev = None
                continue
            boxes = patch_boxes(lm_ref, out.shape)
            row = {}
            for name in PATCHES:
                row.update({f"{name}_{k2}": v for k2, v in patch_stats(out, ref, boxes[name]).items()})
            lip_ref = lip_colour(ref, lm_ref_lips)
            lip_out = lip_colour(out, lm_out) if lm_out is not None else None
            both = lip_out is not None and lip_ref is not None
            row["lip_de_footage"] = float(np.linalg.norm(lip_out - lip_ref)) if both else np.nan
            row["lip_sharp"] = (lip_sharpness(out, lm_out) / max(lip_sharpness(ref, lm_ref_lips), 1e-3)
                                if lm_out is not None else np.nan)
            if prev is not None:
                p_out, p_ref, p_lip_out, p_lip_ref = prev
                row["lip_de_f2f"] = (float(np.linalg.norm(lip_out - p_lip_out))
                                     if lip_out is not None and p_lip_out is not None else np.nan)
                row["lip_de_f2f_footage"] = (float(np.linalg.norm(lip_ref - p_lip_ref))
                                             if lip_ref is not None and p_lip_ref is not None else np.nan)
                row["flicker"] = max(float(np.linalg.norm(row[f"{p}_lab"] - p_out[p])) for p in PATCHES)
                row["flicker_footage"] = max(float(np.linalg.norm(row[f"{p}_lab_ref"] - p_ref[p])) for p in PATCHES)
            prev = ({p: row[f"{p}_lab"] for p in PATCHES}, {p: row[f"{p}_lab_ref"] for p in PATCHES}, lip_out, lip_ref)
            scores.add(k, row)
    finally:
        mesh.close()
    return scores, sources


class AvatarFrameFinder:
    """Which avatar frame an output frame was built on (see the module docstring)."""

    THUMB = 48

    def __init__(self, pkg):
        self.pkg = pkg
        self.thumbs = np.stack([self._thumb(pkg.frame(i)) for i in range(pkg.frame_count)])

    def _thumb(self, img: np.ndarray) -> np.ndarray:
        g = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        return cv2.resize(g, (self.THUMB, self.THUMB), interpolation=cv2.INTER_AREA).astype(np.float32)

    def above_eyes_diff(self, out: np.ndarray, i: int) -> float:
        lm = self.pkg.track.landmarks[i]
        top = int(max(0.0, float(np.min(lm[[33, 263, 168], 1])) - 2))
        if top <= 4:
            top = out.shape[0] // 4
        return float(np.abs(out[:top].astype(np.int16) - self.pkg.frame(i)[:top]).mean())

    def find(self, out: np.ndarray, hint: int) -> int | None:
        n = self.pkg.frame_count
        hint = hint % n
        if self.above_eyes_diff(out, hint) < 0.5:  # the usual case: the next frame of the walk
            return hint
        d = ((self.thumbs - self._thumb(out)) ** 2).mean(axis=(1, 2))
        cands = [int(c) for c in np.argsort(d, kind="stable")[:6]]
        diffs = [self.above_eyes_diff(out, c) for c in cands]
        best = cands[int(np.argmin(diffs))]
        return best if min(diffs) <= 2.0 else None  # None: a cross-fade of two frames (an idle-walk jump)


def perfect_generator_psnr(pkg, crop: str, size: int, frames: int = 12) -> float:
    """Median PSNR (dB) in the blended face region when the generator returns the frame's own crop."""
    from backend.compositor import Compositor
    from backend.frames import FaceFrame

    comp = Compositor(pkg)
    vals = []
    for i in np.linspace(0, pkg.frame_count - 1, min(frames, pkg.frame_count)).astype(int):
        if not pkg.track.valid[i]:
            continue
        face = pkg.image(crop, int(i))
        if face.shape[0] != size:
            face = cv2.resize(face, (size, size), interpolation=cv2.INTER_AREA if size < face.shape[0]
                              else cv2.INTER_CUBIC)
        out = comp.compose(FaceFrame(pts_ns=0, index=0, avatar_index=int(i), face=face, crop=crop, blend=1.0,
                                     speech=True))
        placed = comp.placement(int(i), crop, size)
        x, y, w, h = placed.roi
        if w == 0:
            continue
        mask = cv2.warpAffine(placed.mask, placed.roi_to_face, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
        vals.append(psnr_in_mask(out[y:y + h, x:x + w], pkg.frame(int(i))[y:y + h, x:x + w], mask > 0))
    return float(np.median(vals)) if vals else float("nan")


# ------------------------------------------------------------------------------------------ report
def summarise(scores: FrameScores) -> dict:
    """Median and worst decile of every metric (the worse tail: low for SSIM, high for ΔE, both for ratios)."""
    s: dict[str, float] = {}
    ssim = scores.column_min([f"{p}_ssim" for p in PATCHES])
    de = scores.column_max([f"{p}_de" for p in PATCHES])
    tex_lo = scores.column_min([f"{p}_tex" for p in PATCHES])
    tex_hi = scores.column_max([f"{p}_tex" for p in PATCHES])
    for key, v, worst in (("patch_ssim", ssim, 10), ("patch_de", de, 90),
                          ("lip_de_f2f", scores.column("lip_de_f2f"), 90),
                          ("lip_de_f2f_footage", scores.column("lip_de_f2f_footage"), 90),
                          ("lip_de_footage", scores.column("lip_de_footage"), 90),
                          ("flicker", scores.column("flicker"), 90),
                          ("flicker_footage", scores.column("flicker_footage"), 90),
                          ("lip_sharp", scores.column("lip_sharp"), 10)):
        v = v[np.isfinite(v)]
        s[key] = float(np.median(v)) if v.size else float("nan")
        s[key + "_worst"] = float(np.percentile(v, worst)) if v.size else float("nan")
    for key, v in (("tex_lo", tex_lo), ("tex_hi", tex_hi)):
        v = v[np.isfinite(v)]
        s[key] = float(np.median(v)) if v.size else float("nan")
    s["tex_worst_lo"] = float(np.percentile(tex_lo[np.isfinite(tex_lo)], 10)) if np.isfinite(tex_lo).any() else np.nan
    s["tex_worst_hi"] = float(np.percentile(tex_hi[np.isfinite(tex_hi)], 90)) if np.isfinite(tex_hi).any() else np.nan
    return s


def meets(s: dict) -> list[str]:
    """The targets of issue 19 this clip misses (worst decile)."""
    miss = []
    if not s["patch_ssim_worst"] >= TARGETS["ssim"]:
        miss.append(f"SSIM {s['patch_ssim_worst']:.2f}")
    if not s["patch_de_worst"] <= TARGETS["de"]:
        miss.append(f"dE {s['patch_de_worst']:.1f}")
    lo, hi = TARGETS["tex"]
    if not (s["tex_worst_lo"] >= lo and s["tex_worst_hi"] <= hi):
        miss.append(f"tex {s['tex_worst_lo']:.2f}-{s['tex_worst_hi']:.2f}")
    for key in ("lip_de_f2f", "lip_de_footage"):
        if not s[key + "_worst"] <= TARGETS["lip_de"]:
            miss.append(f"{key} {s[key + '_worst']:.1f}")
    return miss


HEADER = (f"{'clip':<30} {'SSIM md/p10':>12} {'dE md/p90':>10} {'tex p10-p90':>12} {'lip f2f md/p90':>15} "
          f"{'(footage)':>9} {'lip vs ftg':>11} {'flicker p90':>12} {'sharp md/p10':>13} {'PSNR':>11}")


def row_text(name: str, s: dict) -> str:
    return (f"{name[:30]:<30} {s['patch_ssim']:5.3f}/{s['patch_ssim_worst']:5.3f} "
            f"{s['patch_de']:4.1f}/{s['patch_de_worst']:4.1f} "
            f"{s['tex_worst_lo']:5.2f}-{s['tex_worst_hi']:5.2f} {s['lip_de_f2f']:6.1f}/{s['lip_de_f2f_worst']:6.1f} "
            f"{s['lip_de_f2f_footage_worst']:9.1f} {s['lip_de_footage']:4.1f}/{s['lip_de_footage_worst']:5.1f} "
            f"{s['flicker_worst']:5.1f}/{s['flicker_footage_worst']:5.1f} "
            f"{s['lip_sharp']:5.2f}/{s['lip_sharp_worst']:5.2f}"
            f" {s.get('psnr_native', np.nan):5.1f}/{s.get('psnr_96', np.nan):4.1f}")


def evaluate(clip: Path, work: Path, speech: Path, seconds: float, out_dir: Path, keep_frames: bool = False,
             loop: str | None = None, rescore: bool = False) -> dict:
    from bench.lipsync_quality import package_for
    from bench.realism_sheet import contact_sheet

    pkg = package_for(clip, work)
    t0 = time.perf_counter()
    frames_dir = out_dir / "frames" / clip.stem
    if rescore:  # score the frames a --keep-frames run left (measures changed, the engine did not)
        if not frames_dir.is_dir():
            raise FileNotFoundError(f"{frames_dir}: no frames to rescore")
        fps = float("nan")
    else:
        if frames_dir.exists():
            import shutil

            shutil.rmtree(frames_dir)
        frames_dir.parent.mkdir(parents=True, exist_ok=True)
        fps = render_frames(pkg.root, speech, seconds, frames_dir, loop=loop)
    scores, sources = score_clip(pkg, frames_dir)
    s = summarise(scores)
    s["psnr_native"] = perfect_generator_psnr(pkg, "heads", pkg.head_size)
    s["psnr_96"] = perfect_generator_psnr(pkg, "heads", 96)
    sheet = out_dir / f"worst_{clip.stem}.png"
    contact_sheet(pkg, frames_dir, scores, sources, sheet)
    if not keep_frames and not rescore:
        import shutil

        shutil.rmtree(frames_dir)
    s.update(clip=clip.name, frames=len(sources), cross_fades=sum(1 for i in sources if i < 0), render_fps=fps,
             seconds=time.perf_counter() - t0,
             size=f"{pkg.width}x{pkg.height}", sheet=str(sheet), misses=meets(s),
             badness=[round(float(v), 3) for v in scores.badness()], scored_frames=scores.frames, sources=sources)
    return s


def main(argv: list[str] | None = None) -> int:
    from bench.lipsync_quality import talking_clips

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--media", type=Path, default=REPO.parent / "shared" / "media")
    ap.add_argument("--work", type=Path, default=Path("/tmp/s2l-bench-lipsync"), help="package cache folder")
    ap.add_argument("--out", type=Path, default=Path("/tmp/s2l-bench-realism"), help="contact sheets + json")
    ap.add_argument("--speech", type=Path, default=None, help=f"driving speech (default {DEFAULT_SPEECH})")
    ap.add_argument("--seconds", type=float, default=8.0, help="seconds of speech per clip")
    ap.add_argument("--clips", type=int, default=0, help="only the first N clips (0 = all)")
    ap.add_argument("--only", default="", help="only clips whose name contains this")
    ap.add_argument("--keep-frames", action="store_true")
    ap.add_argument("--loop", default=None, help="avatar walk passed to render (default: render's own)")
    ap.add_argument("--rescore", action="store_true", help="score the frames a --keep-frames run left in --out")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    import torch

    torch.set_num_threads(1)
    speech = args.speech or args.media / DEFAULT_SPEECH
    args.out.mkdir(parents=True, exist_ok=True)
    args.work.mkdir(parents=True, exist_ok=True)
    clips = [c for c in talking_clips(args.media) if args.only in c.name]
    if args.clips:
        clips = clips[: args.clips]
    print(HEADER, flush=True)
    results = []
    for clip in clips:
        try:
            s = evaluate(clip, args.work, speech, args.seconds, args.out, args.keep_frames, args.loop, args.rescore)
        except Exception as exc:  # one bad clip must not lose the others' numbers
            print(f"{clip.name}: skipped ({type(exc).__name__}: {exc})", flush=True)
            continue
        results.append(s)
        print(row_text(clip.stem, s) + ("   MISSES: " + ", ".join(s["misses"]) if s["misses"] else "   ok"), flush=True)
    if not results:
        return 1
    print(f"\nload average {open('/proc/loadavg').read().split()[:3]}; sheets in {args.out}")
    print("columns: patch = worst of cheek L/R + jaw L/R per frame; tex = texture energy ratio output/footage; "
          "lip f2f = lip colour dE between output frames (footage = the footage's own); flicker = patch colour "
          "change output/footage; sharp = lip Laplacian variance output/footage; PSNR = perfect generator "
          "native/96 px")
    (args.out / "realism.json").write_text(json.dumps(results, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())

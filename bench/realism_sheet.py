"""Contact sheet of the worst frames at native resolution: output | footage, cut out 1:1 (no scaling).

Why native: the artefacts of issue 19 (smears, ghost jaws, washed-out beards) vanish when a frame is
shrunk to a thumbnail; a person must see the pixels the viewer sees.

As a script it puts two runs of bench/realism.py side by side (both with --keep-frames, same speech): the
worst frames of each, as before | after | footage rows:
  .venv/bin/python bench/realism_sheet.py --avatar PKG --before DIR --after DIR --out sheet.png
"""
from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from preprocess import landmarks as L  # noqa: E402


def face_box(lm: np.ndarray, shape, margin: float = 0.35) -> tuple[int, int, int, int]:
    """The lower face (eyes down to below the jaw) with a margin, in frame pixels."""
    pts = np.asarray(lm, np.float64)[list(L.JAW) + [33, 263]]
    x0, y0 = pts.min(0)
    x1, y1 = pts.max(0)
    mx, my = margin * (x1 - x0), margin * (y1 - y0)
    h, w = shape[:2]
    return (max(0, int(x0 - mx)), max(0, int(y0 - my)), min(w, int(x1 + mx)), min(h, int(y1 + my)))


def pick_worst(badness: np.ndarray, count: int, spacing: int = 4) -> list[int]:
    """Row positions of the `count` worst frames, at least `spacing` frames apart (not one bad moment 6 times)."""
    chosen: list[int] = []
    for r in np.argsort(-badness, kind="stable"):
        if all(abs(int(r) - c) >= spacing for c in chosen):
            chosen.append(int(r))
        if len(chosen) == count:
            break
    return chosen


def labelled(img: np.ndarray, text: str) -> np.ndarray:
    bar = np.full((22, img.shape[1], 3), 32, np.uint8)
    cv2.putText(bar, text[: max(1, img.shape[1] // 7)], (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (230, 230, 230), 1,
                cv2.LINE_AA)
    return np.vstack([bar, img])


def contact_sheet(pkg, frames_dir: Path, scores, sources: list[int], path: Path, count: int = 4,
                  title: str = "") -> list[int]:
    """Write the sheet (rows: worst frames; columns: output, footage); returns the output frame numbers shown."""
    if not scores.rows:
        return []
    bad = scores.badness()
    rows = []
    shown = []
    for r in pick_worst(bad, count):
        k = scores.frames[r]
        out = cv2.imread(str(frames_dir / f"{k:06d}.png"), cv2.IMREAD_COLOR)
        ref = pkg.frame(sources[k])
        x0, y0, x1, y1 = face_box(pkg.track.landmarks[sources[k]], out.shape)
        label = f"{title} out {k} (avatar {sources[k]}) badness {bad[r]:.1f}"
        pair = np.hstack([labelled(out[y0:y1, x0:x1], label), np.full((y1 - y0 + 22, 4, 3), 255, np.uint8),
                          labelled(ref[y0:y1, x0:x1], "footage")])
        rows.append(pair)
        shown.append(k)
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 4), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    cv2.imwrite(str(path), np.vstack(rows))
    return shown


def before_after(pkg, before: Path, after: Path, out: Path, count: int = 3) -> list[int]:
    """Rows: the `count` worst frames of the before run, then of the after run, each as before | after | footage."""
    import json

    name = pkg.root.name
    runs = []
    for d in (before, after):
        res = {Path(r["clip"]).stem: r for r in json.loads((d / "realism.json").read_text())}[name]
        runs.append(res)
    shown: list[int] = []
    for res in runs:
        bad = np.array(res["badness"])
        for r in pick_worst(bad, count + len(shown)):
            k = int(res["scored_frames"][r])
            if all(abs(k - s) >= 4 for s in shown) and len(shown) < count * (runs.index(res) + 1):
                shown.append(k)
    rows = []
    for k in shown:
        src = int(runs[0]["sources"][k])
        ref = pkg.frame(src)
        x0, y0, x1, y1 = face_box(pkg.track.landmarks[src], ref.shape)
        cells = []
        for label, d in (("before", before), ("after", after)):
            img = cv2.imread(str(d / "frames" / name / f"{k:06d}.png"), cv2.IMREAD_COLOR)
            cells.append(labelled(img[y0:y1, x0:x1], f"{label} {k}"))
        cells.append(labelled(ref[y0:y1, x0:x1], f"footage {src}"))
        gap = np.full((y1 - y0 + 22, 4, 3), 255, np.uint8)
        rows.append(np.hstack([cells[0], gap, cells[1], gap, cells[2]]))
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 4), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    cv2.imwrite(str(out), np.vstack(rows), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    return shown


def main(argv: list[str] | None = None) -> int:
    import argparse

    from preprocess.package import AvatarPackage

    ap = argparse.ArgumentParser(description="before | after | footage sheet of two realism runs")
    ap.add_argument("--avatar", type=Path, required=True)
    ap.add_argument("--before", type=Path, required=True)
    ap.add_argument("--after", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--count", type=int, default=3)
    args = ap.parse_args(argv)
    shown = before_after(AvatarPackage.open(args.avatar), args.before, args.after, args.out, args.count)
    print(f"{args.out}: output frames {shown}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

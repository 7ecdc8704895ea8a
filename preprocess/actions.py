"""Action clips of an avatar package (wave, nod, ...): stored, tracked, and matched to the main footage.

Why: a streamer wants the avatar to *do* things on cue. An action is a short clip filmed like the main
footage (same camera, same framing); it is preprocessed like the main footage into its own package and
the avatar moves into it and back out without a visible cut:

* entries: for every main frame i, the action frame a to show after it (a early in the clip, so most of
  the action plays), chosen like an idle jump (preprocess.idle_graph): the landmarks of a-1 match i and
  those of a match i+1, velocities agree, head thumbnails agree;
* exits: for every action frame b late in the clip, the few best main frames j to show after it.

Layout::

    <avatar>/actions/<name>/              an avatar package of the clip (docs/architecture.md, "The avatar package")
    <avatar>/actions/<name>/transitions.json
    <avatar>/manifest.json "actions": {name: {"folder", "frames", "best_entry_cost", "best_exit_cost"}}

Costs are in units of the main footage's median frame-to-frame change (pose + velocity + appearance);
`displacement` is the RMS landmark displacement a viewer sees across the transition, comparable with the
main footage's p95 frame-to-frame motion (`step_p95`).
"""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np

from preprocess.idle_graph import central_velocity, cross_rms, head_thumbnails, pose_vectors, rms_distance
from preprocess.video import FPS
from stream_wav2lip.errors import UserError

ACTIONS_FOLDER = "actions"
TRANSITIONS_FILE = "transitions.json"
FORMAT = "action-transitions/1"
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
ENTRY_PART, EXIT_PART = 1 / 3, 1 / 3  # entries land in the first third of the clip, exits leave from the last
ENTRY_MAX_S = 1.0  # ... and within its first second
EXITS_PER_FRAME = 5


def check_name(name: str) -> str:
    if not NAME_PATTERN.match(name or ""):
        raise UserError(f"action name {name!r}: use 1-32 lower-case letters, digits, '-' or '_'")
    return name


def match_transitions(main_lm: np.ndarray, main_valid: np.ndarray, main_thumbs: np.ndarray | None,
                      act_lm: np.ndarray, act_valid: np.ndarray, act_thumbs: np.ndarray | None) -> dict:
    """Entries (main i -> action a) and exits (action b -> main j) for one action clip (see module docstring)."""
    mp, ap = pose_vectors(main_lm), pose_vectors(act_lm)
    centre = mp.mean(axis=0)
    mp, ap = mp - centre, ap - centre  # one origin for both: the same camera
    mv, av = central_velocity(mp), central_velocity(ap)
    n, m = len(mp), len(ap)
    if n < 2 or m < 3:
        raise UserError(f"an action needs at least 3 frames (got {m}) and a main footage of 2 (got {n})")
    steps = rms_distance(mp[1:], mp[:-1])
    step_median = max(float(np.median(steps)), 1e-3)
    step_p95 = float(np.percentile(steps, 95))
    vel_median = max(float(np.median(rms_distance(mv[1:], mv[:-1]))), 1e-3)
    if main_thumbs is not None and act_thumbs is not None:
        app_median = max(float(np.median(np.sqrt(np.mean((main_thumbs[1:] - main_thumbs[:-1]) ** 2, axis=1)))),
                         1e-3)
    d = cross_rms(mp, ap)  # (n, m): main i vs action a
    dv = cross_rms(mv, av)

    # entries: after main i show action a (1 <= a <= a_max): a-1 ~ i and a ~ i+1
    a_max = max(1, min(int(m * ENTRY_PART), int(round(ENTRY_MAX_S * FPS)), m - 2))
    a = np.arange(1, a_max + 1)
    i_next = np.minimum(np.arange(n) + 1, n - 1)
    err = np.sqrt((d[:, a - 1] ** 2 + d[i_next][:, a] ** 2) / 2.0)
    verr = (dv[:, a - 1] + dv[i_next][:, a]) / 2.0
    cost = err / step_median + verr / vel_median
    if main_thumbs is not None and act_thumbs is not None:
        app = np.sqrt(((main_thumbs[i_next][:, None, :] - act_thumbs[a][None, :, :]) ** 2).mean(axis=2))
        cost = cost + app / app_median
    cost = np.where(act_valid[a][None, :] & act_valid[a - 1][None, :], cost, np.inf)
    best = np.argmin(cost, axis=1)
    entries = [[int(i), int(a[best[i]]), _r(cost[i, best[i]]), _r(d[i, a[best[i]]])]
               for i in range(n) if main_valid[i] and np.isfinite(cost[i, best[i]])]

    # exits: after action b (b_min <= b <= m-1) show main j (1 <= j): b ~ j-1 and (b+1 ~ j where b+1 exists)
    b_min = max(a_max + 1, m - max(1, int(m * EXIT_PART)))
    b = np.arange(b_min, m)
    j = np.arange(1, n)
    b_next = np.minimum(b + 1, m - 1)
    has_next = (b + 1 < m)[:, None]
    dt = d.T  # (m, n): action b vs main j
    dvt = dv.T
    err = np.where(has_next, np.sqrt((dt[b][:, j - 1] ** 2 + dt[b_next][:, j] ** 2) / 2.0), dt[b][:, j - 1])
    verr = np.where(has_next, (dvt[b][:, j - 1] + dvt[b_next][:, j]) / 2.0, dvt[b][:, j - 1])
    cost = err / step_median + verr / vel_median
    if main_thumbs is not None and act_thumbs is not None:
        app = np.sqrt(((act_thumbs[b][:, None, :] - main_thumbs[j - 1][None, :, :]) ** 2).mean(axis=2))
        cost = cost + app / app_median
    cost = np.where(main_valid[j][None, :] & main_valid[j - 1][None, :], cost, np.inf)
    exits = []
    for r, bb in enumerate(b.tolist()):
        if not act_valid[bb]:
            continue
        order = np.argsort(cost[r], kind="stable")[:EXITS_PER_FRAME]
        exits += [[bb, int(j[c]), _r(cost[r, c]), _r(dt[bb, j[c]])] for c in order if np.isfinite(cost[r, c])]
    return {"format": FORMAT, "frames": m, "main_frames": n, "step_p95": _r(step_p95),
            "step_median": _r(step_median), "entries": entries, "exits": exits}


def _r(x) -> float:
    return round(float(x), 4)


def _features(root: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    with np.load(root / "face_det.npz") as z:
        lm, valid = z["landmarks"], z["valid"]
    return lm, valid, head_thumbnails(root, len(valid))


def action_folder(package_dir: str | Path, name: str) -> Path:
    return Path(package_dir) / ACTIONS_FOLDER / check_name(name)


def write_transitions(package_dir: str | Path, name: str) -> dict:
    """Match an action (already in <avatar>/actions/<name>/) to the main footage; store and describe it."""
    from preprocess.writer import update_manifest
    from stream_wav2lip.atomic import atomic_path

    root = Path(package_dir)
    folder = action_folder(root, name)
    main_manifest = json.loads((root / "manifest.json").read_text(encoding="utf-8"))
    act_manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    if (act_manifest["width"], act_manifest["height"]) != (main_manifest["width"], main_manifest["height"]):
        raise UserError(f"{folder}: action {name!r} is {act_manifest['width']}x{act_manifest['height']}, the avatar "
                        f"{main_manifest['width']}x{main_manifest['height']}: film actions like the main footage")
    table = match_transitions(*_features(root), *_features(folder))
    with atomic_path(folder / TRANSITIONS_FILE) as tmp:
        tmp.write_text(json.dumps(table, separators=(",", ":")) + "\n", encoding="utf-8")
    actions = dict(main_manifest.get("actions") or {})
    actions[name] = {"folder": f"{ACTIONS_FOLDER}/{name}", "frames": table["frames"],
                     "best_entry_cost": min((e[2] for e in table["entries"]), default=None),
                     "best_exit_cost": min((e[2] for e in table["exits"]), default=None)}
    update_manifest(root, "actions", actions)
    return table


def add_action(package_dir: str | Path, name: str, clip: str | Path, force: bool = False,
               workers: int | None = None, progress: bool = False) -> Path:
    """Preprocess `clip` into <avatar>/actions/<name>/ (tracked like the main footage, same face and head size
    and pads) and match it to the main footage. An existing action of that name needs force=True."""
    from preprocess.api import build_package
    from preprocess.package import is_avatar_package

    root = Path(package_dir)
    if not is_avatar_package(root):
        raise UserError(f"{root}: not an avatar package; preprocess the main footage first")
    final = action_folder(root, name)
    if final.exists() and not force:
        raise UserError(f"{final}: action {name!r} exists (force rebuilds it)")
    manifest = json.loads((root / "manifest.json").read_text(encoding="utf-8"))
    work = root / ACTIONS_FOLDER / f".tmp-build-{name}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        report = build_package(clip, work, face_size=int(manifest["face_size"]),
                               head_size=int(manifest["head_size"]), pads=tuple(manifest.get("pads", (0, 10, 0, 0))),
                               smooth=int(manifest.get("smooth", 5)), workers=workers, progress=progress, force=True)
        assert report.path is not None
        if final.exists():
            shutil.rmtree(final)
        report.path.rename(final)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    write_transitions(root, name)
    return final


def load_transitions(package_dir: str | Path) -> dict[str, dict]:
    """name -> transitions table of every action of a package (empty for a package without actions)."""
    root = Path(package_dir) / ACTIONS_FOLDER
    out = {}
    if root.is_dir():
        for folder in sorted(root.iterdir()):
            path = folder / TRANSITIONS_FILE
            if folder.is_dir() and path.is_file() and NAME_PATTERN.match(folder.name):
                out[folder.name] = json.loads(path.read_text(encoding="utf-8"))
    return out


def parse_action_spec(spec: str) -> tuple[str, Path]:
    """`preprocess ... --action wave=wave.mp4` -> ("wave", Path("wave.mp4"))."""
    name, sep, clip = spec.partition("=")
    if not sep or not clip:
        raise UserError(f"--action {spec!r}: expected NAME=CLIP, e.g. wave=wave.mp4")
    return check_name(name.strip()), Path(clip.strip())


def parse_action_cue(spec: str) -> tuple[str, float]:
    """`render ... --action wave@3.5` -> ("wave", 3.5): play the action from 3.5 s into the output."""
    name, sep, at = spec.partition("@")
    try:
        seconds = float(at) if sep else float("nan")
    except ValueError:
        seconds = float("nan")
    if not seconds >= 0:
        raise UserError(f"--action {spec!r}: expected NAME@SECONDS, e.g. wave@3.5")
    return check_name(name.strip()), seconds

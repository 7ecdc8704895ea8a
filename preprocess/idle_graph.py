"""Where the avatar's footage can jump without a visible cut: the table behind the video-texture idle.

Why: ping-pong plays every other pass backwards (a blink that un-blinks). A video texture instead walks the
footage forward and now and then continues at another frame that looks and moves like the one it replaces.
A jump `i -> j` means "after frame i, show frame j" (j stands in for i + 1). It is kept only when a viewer
would not notice it:

* pose: the landmarks of j-1 match i and those of j match i+1 (two frames aligned, so the head is where it
  was going), and the displacement actually seen, i -> j, is at most the 95th percentile of the footage's
  own frame-to-frame motion (a jump never moves the face more than the footage itself often does);
* motion direction: the landmark velocities around the two frames agree (a nod going down does not
  continue as a nod going up);
* appearance: a 32x32 grey thumbnail of the upright head crop of j matches that of i+1 (eyes, expression,
  light: what landmarks miss);
* not trivial: j is at least `min_gap` frames away from i+1 (a jump of a few frames is a stutter).

Distances: frame pixels, RMS over face-outline, eye, nose and lip points; thresholds relative to the
footage's own statistics (calm and lively clips judged alike); of near-identical jumps only the best is kept.

Cheap: pose distances by matrix products in row blocks, appearance only for candidates (a minute of footage
in about a second, five in ~15 s). Stored as `idle_graph.json` (manifest "idle_graph"); older packages get it
lazily in `.cache/` (`AvatarPackage.idle_graph()`).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from preprocess import landmarks as L

FORMAT = "idle-graph/1"
GRAPH_FILE = "idle_graph.json"
MANIFEST_FIELD = "idle_graph"
THUMB = 32
POSE_POINTS = tuple(dict.fromkeys(L.FACE_OVAL + L.RIGHT_EYE + L.LEFT_EYE + L.LIPS_OUTER
                                  + (L.NOSE_TIP, L.SUBNASALE)))
DEFAULTS = {
    "min_gap_s": 1.0,  # |j - (i+1)| below this is a stutter, not a jump
    "displacement_quantile": 95.0,  # hard cap on the displacement seen across a jump (percentile of own motion)
    "pose_factor": 2.5,  # two-frame pose error <= this x the median frame-to-frame motion
    "velocity_factor": 2.5,  # velocity difference <= this x the median frame-to-frame velocity change
    "appearance_factor": 2.5,  # thumbnail difference <= this x the median frame-to-frame appearance change
    "cost_cap": 6.0,  # and the three ratios together (each alone may be near its cap, not all three)
    "suppress_radius": 3,  # of jumps within this many frames in both source and target keep the best
    "block": 256,  # rows per block of the pairwise distance computation (memory bound)
    "per_source": 32,  # candidates kept per source frame before the appearance test (memory bound)
}
MIN_TEXTURE_S = 2.0  # fewer frames on jump cycles than this: a texture is not worth it (ping-pong)
RELAXED = (  # tiers tried in turn when the strict table has no usable jump back (short or lively footage)
    {"pose_factor": 3.5, "velocity_factor": 3.5, "appearance_factor": 3.5, "cost_cap": 9.0},
    {"pose_factor": 5.0, "velocity_factor": 5.0, "appearance_factor": 5.0, "cost_cap": 12.0},
)
_FLOOR = 1e-3  # statistics of perfectly still footage (synthetic tests) must not make every threshold zero


@dataclass
class IdleGraph:
    """The jump table of one footage. Arrays are parallel, one row per jump, sorted by (source, target)."""

    frame_count: int
    fps: float
    sources: np.ndarray  # (J,) int32: the frame after which the jump is taken
    targets: np.ndarray  # (J,) int32: the frame shown next
    costs: np.ndarray  # (J,) float32: lower is less visible (sum of the three errors, each / its median)
    displacements: np.ndarray  # (J,) float32: RMS landmark displacement i -> j, frame pixels
    step_p95: float  # the footage's own 95th percentile frame-to-frame displacement (same measure)
    step_median: float
    wrap_target: int  # least-bad frame to continue at after the last frame (used only by a walk cornered there)
    wrap_displacement: float
    params: dict = field(default_factory=dict)

    @property
    def count(self) -> int:
        return int(len(self.sources))

    def jumps_from(self, i: int) -> list[tuple[int, float]]:
        """(target, cost) of every jump taken after frame i."""
        lo, hi = np.searchsorted(self.sources, [i, i + 1])
        return [(int(t), float(c)) for t, c in zip(self.targets[lo:hi], self.costs[lo:hi])]

    def to_json(self) -> dict:
        return {
            "format": FORMAT, "frame_count": self.frame_count, "fps": self.fps,
            "step_p95": round(self.step_p95, 4), "step_median": round(self.step_median, 4),
            "wrap": [self.wrap_target, round(self.wrap_displacement, 4)], "params": self.params,
            "jumps": [[int(i), int(j), round(float(c), 4), round(float(d), 4)]
                      for i, j, c, d in zip(self.sources, self.targets, self.costs, self.displacements)],
        }

    @classmethod
    def from_json(cls, data: dict) -> "IdleGraph":
        if data.get("format") != FORMAT:
            raise ValueError(f"unknown idle graph format {data.get('format')!r}")
        rows = np.asarray(data["jumps"], np.float64).reshape(-1, 4)
        return cls(frame_count=int(data["frame_count"]), fps=float(data["fps"]),
                   sources=rows[:, 0].astype(np.int32), targets=rows[:, 1].astype(np.int32),
                   costs=rows[:, 2].astype(np.float32), displacements=rows[:, 3].astype(np.float32),
                   step_p95=float(data["step_p95"]), step_median=float(data["step_median"]),
                   wrap_target=int(data["wrap"][0]), wrap_displacement=float(data["wrap"][1]),
                   params=dict(data.get("params", {})))

    def save(self, path: Path) -> None:
        from stream_wav2lip.atomic import atomic_path

        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(self.to_json(), separators=(",", ":")) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> "IdleGraph":
        return cls.from_json(json.loads(Path(path).read_text(encoding="utf-8")))


# ------------------------------------------------------------------------------------------------- features
def pose_vectors(landmarks: np.ndarray) -> np.ndarray:
    """(N, 2K) float64: the pose points of every frame, flattened (frame pixels)."""
    lm = np.asarray(landmarks, np.float64)
    points = POSE_POINTS if lm.shape[1] > max(POSE_POINTS) else tuple(range(lm.shape[1]))
    return lm[:, points, :].reshape(len(lm), -1)


def rms_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """RMS point distance between rows of two (.., 2K) pose arrays (broadcasting)."""
    k = a.shape[-1] // 2
    return np.sqrt(np.sum((a - b) ** 2, axis=-1) / k)


def cross_rms(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """RMS point distances, every row of x to every row of y (pose vectors, frame pixels), by one product."""
    k = x.shape[1] // 2
    d2 = np.einsum("ij,ij->i", x, x)[:, None] + np.einsum("ij,ij->i", y, y)[None, :] - 2.0 * (x @ y.T)
    return np.sqrt(np.maximum(d2, 0.0) / k)


def central_velocity(x: np.ndarray) -> np.ndarray:
    """Per-frame velocity (one-sided at the ends)."""
    if len(x) < 2:
        return np.zeros_like(x)
    return np.gradient(x, axis=0)


def head_thumbnails(package_dir: Path, frame_count: int, size: int = THUMB) -> np.ndarray:
    """(N, size*size) float32 in [0,1]: grey thumbnails of the upright head crop (head_face/ in old packages)."""
    import cv2

    from preprocess.package import frame_name

    folder = package_dir / "heads"
    if not (folder / frame_name(0)).is_file():
        folder = package_dir / "head_face"
    out = np.empty((frame_count, size * size), np.float32)
    for i in range(frame_count):
        img = cv2.imread(str(folder / frame_name(i)), cv2.IMREAD_REDUCED_GRAYSCALE_4)
        if img is None:
            raise ValueError(f"{folder / frame_name(i)}: unreadable head crop")
        out[i] = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA).reshape(-1) / 255.0
    return out


# ------------------------------------------------------------------------------------------------- building
def build_idle_graph(landmarks: np.ndarray, valid: np.ndarray, thumbnails: np.ndarray | None, fps: float = 25.0,
                     **overrides) -> IdleGraph:
    """The jump table of footage with these per-frame landmarks (N,K,2), validity (N,) and thumbnails (N,D).

    Tolerances are relaxed tier by tier (RELAXED) until the table carries a texture walk, because any jump
    within the hard displacement cap beats ping-pong's reversals; `params["tier"]` says which tier (0 =
    strict). Overriding a factor or the cost cap turns the ladder off. thumbnails None: appearance is not
    compared (tests of the geometry alone).
    """
    tiers = [{}] if set(overrides) & set(RELAXED[0]) else [{}, *RELAXED]
    first = None
    for tier, relax in enumerate(tiers):
        graph = _build_once(landmarks, valid, thumbnails, fps, {**DEFAULTS, **relax, **overrides, "tier": tier})
        first = first or graph
        if texture_usable(graph.frame_count, graph.sources, graph.targets, fps)[0]:
            return graph
    return first


def _build_once(landmarks, valid, thumbnails, fps: float, params: dict) -> IdleGraph:
    pose = pose_vectors(landmarks)
    pose = pose - pose.mean(axis=0)  # centred: the matrix-product distances lose no precision
    n = len(pose)
    valid = np.asarray(valid, bool)
    min_gap = max(2, int(round(params["min_gap_s"] * fps)))
    empty = IdleGraph(n, float(fps), np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros(0, np.float32),
                      np.zeros(0, np.float32), 0.0, 0.0, 0, 0.0, {**params, "min_gap": min_gap})
    if n < 2 * min_gap + 2:
        return empty
    steps = rms_distance(pose[1:], pose[:-1])
    step_ok = valid[1:] & valid[:-1]
    natural = steps[step_ok] if step_ok.any() else steps
    step_p95 = float(np.percentile(natural, params["displacement_quantile"]))
    step_median = max(float(np.median(natural)), _FLOOR)
    vel = central_velocity(pose)
    vel_changes = rms_distance(vel[1:], vel[:-1])[step_ok] if step_ok.any() else rms_distance(vel[1:], vel[:-1])
    vel_median = max(float(np.median(vel_changes)), _FLOOR)
    empty.step_p95, empty.step_median = step_p95, step_median

    # candidates by pose and velocity, in row blocks: row r of a block is source frame i = r
    cand_i, cand_j, cand_pose, cand_vel, cand_disp = [], [], [], [], []
    pose_cap = params["pose_factor"] * step_median
    vel_cap = params["velocity_factor"] * vel_median
    block = int(params["block"])
    per_source = int(params["per_source"])
    wrap_best = (np.inf, 0, 0.0)
    jj = np.arange(1, n)  # candidate targets (j-1 must exist)
    for a in range(0, n, block):
        b = min(n, a + block)
        rows = np.arange(a, b)
        d = cross_rms(pose[a:min(n, b + 1)], pose)  # rows a..b (b included for the i+1 term)
        dv = cross_rms(vel[a:min(n, b + 1)], vel)
        if b == n:  # the last frame has no i+1: its errors use j-1 vs i alone
            d = np.vstack([d, np.full((1, n), np.nan)])
            dv = np.vstack([dv, np.full((1, n), np.nan)])
        has_next = (rows + 1 < n)[:, None]
        # pose error: j-1 vs i and (where i+1 exists) j vs i+1; the same for the velocities
        err = np.where(has_next, np.sqrt((d[:-1, :-1] ** 2 + d[1:, 1:] ** 2) / 2.0), d[:-1, :-1])
        verr = np.where(has_next, (dv[:-1, :-1] + dv[1:, 1:]) / 2.0, dv[:-1, :-1])
        disp = d[:-1, 1:]
        far = np.abs(jj[None, :] - (rows[:, None] + 1)) >= min_gap
        if b == n:
            k = np.flatnonzero(far[-1] & valid[jj])
            if len(k):
                best = k[np.argmin(err[-1, k])]
                wrap_best = (float(err[-1, best]), int(jj[best]), float(disp[-1, best]))
        ok = far & (disp <= step_p95) & (err <= pose_cap) & (verr <= vel_cap)
        ok &= (valid[rows] & np.where(rows + 1 < n, valid[np.minimum(rows + 1, n - 1)], True))[:, None]
        ok &= (valid[jj] & valid[jj - 1])[None, :]
        score = np.where(ok, err / step_median + verr / vel_median, np.inf)
        if score.shape[1] > per_source:  # calm footage: the best per source (bounds memory for long avatars)
            keep = np.argpartition(score, per_source - 1, axis=1)[:, :per_source]
        else:
            keep = np.broadcast_to(np.arange(score.shape[1]), score.shape)
        r_idx = np.repeat(np.arange(len(rows)), keep.shape[1])
        c_idx = keep.reshape(-1)
        finite = np.isfinite(score[r_idx, c_idx])
        r_idx, c_idx = r_idx[finite], c_idx[finite]
        if len(r_idx):
            cand_i.append(rows[r_idx])
            cand_j.append(jj[c_idx])
            cand_pose.append(err[r_idx, c_idx])
            cand_vel.append(verr[r_idx, c_idx])
            cand_disp.append(disp[r_idx, c_idx])
    if wrap_best[0] < np.inf:
        empty.wrap_target, empty.wrap_displacement = wrap_best[1], wrap_best[2]
    if not cand_i:
        return empty
    ci, cj = np.concatenate(cand_i), np.concatenate(cand_j)
    cost = np.concatenate(cand_pose) / step_median + np.concatenate(cand_vel) / vel_median
    disp = np.concatenate(cand_disp)
    if thumbnails is not None:
        thumbs = np.asarray(thumbnails, np.float32)
        app_steps = np.sqrt(np.mean((thumbs[1:] - thumbs[:-1]) ** 2, axis=1))
        app_median = max(float(np.median(app_steps[step_ok] if step_ok.any() else app_steps)), _FLOOR)
        nxt = np.minimum(ci + 1, n - 1)
        app = np.empty(len(ci), np.float32)
        for a in range(0, len(ci), 16384):  # in chunks: candidates x thumbnail pixels can be large
            app[a:a + 16384] = np.sqrt(np.mean((thumbs[nxt[a:a + 16384]] - thumbs[cj[a:a + 16384]]) ** 2, axis=1))
        keep = app <= params["appearance_factor"] * app_median
        ci, cj, cost, disp = ci[keep], cj[keep], (cost + app / app_median)[keep], disp[keep]
    keep = cost <= params["cost_cap"]
    ci, cj, cost, disp = ci[keep], cj[keep], cost[keep], disp[keep]
    ci, cj, cost, disp = _suppress(ci, cj, cost, disp, int(params["suppress_radius"]))
    order = np.lexsort((cj, ci))
    return IdleGraph(n, float(fps), ci[order].astype(np.int32), cj[order].astype(np.int32),
                     cost[order].astype(np.float32), disp[order].astype(np.float32), step_p95, step_median,
                     empty.wrap_target, empty.wrap_displacement, {**params, "min_gap": min_gap})


def _suppress(ci, cj, cost, disp, radius: int):
    """Best-first: drop a jump when a better one starts and lands within `radius` frames of it."""
    order = np.argsort(cost, kind="stable")
    kept: list[int] = []
    taken: dict[tuple[int, int], list[int]] = {}  # coarse grid cell -> kept rows, for a local search
    cell = max(1, radius)
    for r in order:
        i, j = int(ci[r]), int(cj[r])
        gi, gj = i // cell, j // cell
        near = False
        for a in (gi - 1, gi, gi + 1):
            for b in (gj - 1, gj, gj + 1):
                for q in taken.get((a, b), ()):
                    if abs(int(ci[q]) - i) <= radius and abs(int(cj[q]) - j) <= radius:
                        near = True
                        break
        if not near:
            kept.append(r)
            taken.setdefault((gi, gj), []).append(r)
    k = np.asarray(kept, np.int64)
    return ci[k], cj[k], cost[k], disp[k]


# ------------------------------------------------------------------------------------------------- usability
def alive_frames(n: int, sources: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """(n,) bool: frames from which a forward-only walk can go on for ever (never stuck at the last frame).

    The greatest fixed point of: alive[i] = alive[i+1] or any jump i -> alive j. Frames after the last
    jump back are dead, and so are jumps into them.
    """
    alive = np.ones(n, bool)
    alive[n - 1] = False  # until a jump proves otherwise
    by_source: dict[int, list[int]] = {}
    for i, j in zip(sources.tolist(), targets.tolist()):
        by_source.setdefault(i, []).append(j)
    changed = True
    while changed:
        changed = False
        for i in range(n - 1, -1, -1):
            ok = (i + 1 < n and alive[i + 1]) or any(alive[j] for j in by_source.get(i, ()))
            if ok != alive[i]:
                alive[i] = ok
                changed = True
    return alive


def texture_usable(n: int, sources, targets, fps: float = 25.0, alive: np.ndarray | None = None) -> tuple[bool, str]:
    """(usable, why not): enough of the footage lies on jump cycles for a texture walk to beat ping-pong.
    `alive`: alive_frames of this table when the caller has it already."""
    sources, targets = np.asarray(sources, np.int64), np.asarray(targets, np.int64)
    if not np.any(targets < sources):
        return False, "no jump back found (footage too short or too lively)"
    alive = alive if alive is not None else alive_frames(n, sources, targets)
    if alive.sum() < MIN_TEXTURE_S * fps:
        return False, f"jump cycles cover only {int(alive.sum())} frames"
    return True, ""


# ------------------------------------------------------------------------------------------------- packages
def build_for_package(package_dir: str | Path) -> IdleGraph:
    """The graph of a package folder from its face_det.npz and head crops."""
    root = Path(package_dir)
    manifest = json.loads((root / "manifest.json").read_text(encoding="utf-8"))
    with np.load(root / "face_det.npz") as z:
        landmarks, valid = z["landmarks"], z["valid"]
    thumbs = head_thumbnails(root, len(valid))
    return build_idle_graph(landmarks, valid, thumbs, float(manifest.get("fps", 25)))


def write_to_package(package_dir: str | Path) -> IdleGraph:
    """Build the graph, store it as <package>/idle_graph.json and describe it in manifest.json (preprocess)."""
    from preprocess.writer import update_manifest

    root = Path(package_dir)
    graph = build_for_package(root)
    graph.save(root / GRAPH_FILE)
    update_manifest(root, MANIFEST_FIELD, summary(graph))
    return graph


def summary(graph: IdleGraph) -> dict:
    """What manifest.json says about the table."""
    return {"file": GRAPH_FILE, "format": FORMAT, "jumps": graph.count, "tier": int(graph.params.get("tier", 0)),
            "step_p95_px": round(graph.step_p95, 3),
            "note": "jump i->j: after frame i show frame j (video-texture idle, preprocess/idle_graph.py)"}


def cache_key(package_dir: Path) -> dict:
    """What a cached graph was built from: a rebuilt package (new face_det.npz) invalidates it."""
    st = (package_dir / "face_det.npz").stat()
    return {"face_det_size": st.st_size, "face_det_mtime_ns": st.st_mtime_ns}


def load_or_build(package_dir: str | Path, frame_count: int) -> IdleGraph:
    """The package's own table, else the one cached in .cache/, else build it now and cache it there."""
    root = Path(package_dir)
    own = root / GRAPH_FILE
    if own.is_file():
        try:
            graph = IdleGraph.load(own)
            if graph.frame_count == frame_count:
                return graph
        except (OSError, ValueError, KeyError):
            pass
    cached = root / ".cache" / GRAPH_FILE
    key = cache_key(root)
    if cached.is_file():
        try:
            data = json.loads(cached.read_text(encoding="utf-8"))
            if data.get("built_from") == key and int(data.get("frame_count", -1)) == frame_count:
                return IdleGraph.from_json(data)
        except (OSError, ValueError, KeyError):
            pass
    graph = build_for_package(root)
    try:
        from stream_wav2lip.atomic import atomic_path

        cached.parent.mkdir(exist_ok=True)
        with atomic_path(cached) as tmp:
            tmp.write_text(json.dumps({**graph.to_json(), "built_from": key}, separators=(",", ":")) + "\n",
                           encoding="utf-8")
    except OSError:  # a read-only package still gets its graph, just not cached
        pass
    return graph

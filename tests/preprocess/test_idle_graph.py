"""The video-texture jump table: landmarks (and thumbnails) in, jumps out."""
from __future__ import annotations

import json

import numpy as np
import pytest

from preprocess import landmarks as L
from preprocess.idle_graph import (GRAPH_FILE, IdleGraph, build_idle_graph, load_or_build, pose_vectors,
                                   rms_distance, write_to_package)

PERIOD = 40


def _face(n: int, pos: np.ndarray) -> np.ndarray:
    """(n, 478, 2) landmarks: a fixed random face shape translated by pos (n, 2) pixels."""
    shape = np.random.default_rng(1).uniform(-40, 40, (L.NUM_LANDMARKS, 2))
    return shape[None] + 200.0 + pos[:, None, :]


def _periodic(n: int = 200, period: int = PERIOD) -> np.ndarray:
    t = np.arange(n)
    pos = np.stack([6 * np.sin(2 * np.pi * t / period), 3 * np.cos(2 * np.pi * t / period)], axis=1)
    return _face(n, pos)


def _natural_steps(lm):
    pose = pose_vectors(lm)
    return rms_distance(pose[1:], pose[:-1])


def test_periodic_motion_jumps_by_whole_periods():
    lm = _periodic()
    g = build_idle_graph(lm, np.ones(len(lm), bool), None)
    assert g.count > 0
    assert np.any(g.targets < g.sources) and np.any(g.targets > g.sources + 1)
    skips = g.targets - (g.sources + 1)
    phase = np.minimum(skips % PERIOD, PERIOD - skips % PERIOD)
    assert phase.max() <= 2 and phase[np.argmin(g.costs)] == 0  # lands where the motion was going
    assert np.all(np.abs(skips) >= g.params["min_gap"])  # no trivial jumps
    assert np.all(g.displacements <= g.step_p95 + 1e-6)
    assert g.step_p95 == pytest.approx(np.percentile(_natural_steps(lm), 95), rel=1e-6)
    # the stored displacement is what a viewer sees: frame i then frame j
    pose = pose_vectors(lm)
    assert np.allclose(g.displacements, rms_distance(pose[g.sources], pose[g.targets]), atol=1e-3)


def test_a_nod_never_continues_in_the_other_direction():
    t = np.arange(240)
    tri = np.abs((t % 40) - 20).astype(float)  # goes down 20 frames, up 20 frames
    lm = _face(len(t), np.stack([np.zeros_like(tri), tri], axis=1))
    g = build_idle_graph(lm, np.ones(len(t), bool), None)
    assert g.count > 0
    direction = np.sign(np.gradient(tri))
    assert np.all(direction[g.sources] == direction[g.targets])


def test_appearance_keeps_jumps_inside_one_lighting():
    lm = _periodic(240)
    thumbs = np.zeros((240, 16), np.float32)
    thumbs[120:] = 0.8  # the light changes half-way: same poses, different look
    thumbs += np.random.default_rng(0).normal(0, 0.01, thumbs.shape).astype(np.float32)
    g = build_idle_graph(lm, np.ones(240, bool), thumbs)
    assert g.count > 0
    before = g.sources + 1 < 120
    assert np.all((g.targets < 120) == before)


def test_invalid_frames_are_never_jump_ends():
    lm = _periodic()
    valid = np.ones(len(lm), bool)
    valid[[45, 46, 47, 130]] = False
    g = build_idle_graph(lm, valid, None)
    assert g.count > 0
    for i, j in zip(g.sources, g.targets):
        assert valid[i] and valid[j] and valid[j - 1] and (i + 1 >= len(lm) or valid[i + 1])


def test_short_or_still_footage():
    assert build_idle_graph(_periodic(40), np.ones(40, bool), None).count == 0  # < 2 s of jumps apart
    still = _face(120, np.zeros((120, 2)))
    g = build_idle_graph(still, np.ones(120, bool), None)
    assert np.all(g.displacements <= 1e-3)


def test_near_duplicates_are_suppressed():
    g = build_idle_graph(_periodic(), np.ones(200, bool), None)
    pairs = list(zip(g.sources.tolist(), g.targets.tolist()))
    r = g.params["suppress_radius"]
    for a, (i, j) in enumerate(pairs):
        for i2, j2 in pairs[a + 1:]:
            assert abs(i - i2) > r or abs(j - j2) > r


def test_json_round_trip_and_lookup(tmp_path):
    g = build_idle_graph(_periodic(), np.ones(200, bool), None)
    g.save(tmp_path / "g.json")
    h = IdleGraph.load(tmp_path / "g.json")
    assert h.count == g.count and np.array_equal(h.sources, g.sources) and np.array_equal(h.targets, g.targets)
    i = int(g.sources[0])
    assert [t for t, _ in h.jumps_from(i)] == g.targets[g.sources == i].tolist()
    assert h.jumps_from(-5) == []


def test_package_stores_and_caches_the_table(tmp_path):
    from preprocess.package import AvatarPackage
    from preprocess.synthetic import write_synthetic_package

    root = write_synthetic_package(tmp_path / "synthetic", frames=60, width=160, height=120, head_size=64)
    # an older package: no table, built lazily into .cache/ and reused
    pkg = AvatarPackage.open(root)
    g = pkg.idle_graph()
    assert g.frame_count == 60 and (root / ".cache" / GRAPH_FILE).is_file()
    assert not (root / GRAPH_FILE).exists()
    assert load_or_build(root, 60).count == g.count
    # preprocess writes it into the package and describes it in the manifest
    g2 = write_to_package(root)
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["idle_graph"]["file"] == GRAPH_FILE and manifest["idle_graph"]["jumps"] == g2.count
    assert AvatarPackage.open(root).idle_graph().count == g2.count


@pytest.mark.slow
def test_preprocess_writes_the_table(small_avatar):
    manifest = json.loads((small_avatar / "manifest.json").read_text())
    assert manifest["idle_graph"]["file"] == GRAPH_FILE
    g = IdleGraph.load(small_avatar / GRAPH_FILE)
    assert g.frame_count == manifest["frame_count"] and g.count == manifest["idle_graph"]["jumps"]


@pytest.mark.slow
def test_real_clip_walks_forward_with_invisible_jumps(tmp_path, media_dir):
    """5 s of a real talking head: a texture idle exists, and two minutes of it never play backwards."""
    from backend.idle_walk import TextureWalk, make_walk
    from preprocess.api import preprocess_video
    from preprocess.package import AvatarPackage

    clip = media_dir / "video-retalking__examples_face_2.mp4"
    if not clip.is_file():
        pytest.skip(f"{clip} not found")
    pkg = AvatarPackage.open(preprocess_video(clip, tmp_path, workers=1))
    g = pkg.idle_graph()
    assert g.count > 0 and (pkg.root / GRAPH_FILE).is_file()
    walk = make_walk(pkg, "auto")
    assert isinstance(walk, TextureWalk)
    seq = [walk.next() for _ in range(3000)]
    table = set(zip(g.sources.tolist(), g.targets.tolist()))
    pose = pose_vectors(pkg.track.landmarks)
    jumps = [(a, b) for a, b in zip(seq, seq[1:]) if b != a + 1]
    assert jumps and all(j in table for j in jumps)
    assert all(rms_distance(pose[a], pose[b]) <= g.step_p95 + 1e-3 for a, b in jumps)


def test_tolerances_relax_until_a_texture_walk_exists(monkeypatch):
    import preprocess.idle_graph as ig

    lm = _periodic()
    assert build_idle_graph(lm, np.ones(200, bool), None).params["tier"] == 0
    monkeypatch.setitem(ig.DEFAULTS, "pose_factor", -1.0)  # nothing passes the strict tier
    g = build_idle_graph(lm, np.ones(200, bool), None)
    assert g.params["tier"] == 1 and g.count > 0 and np.all(g.displacements <= g.step_p95 + 1e-6)
    assert build_idle_graph(lm, np.ones(200, bool), None, pose_factor=-1.0).count == 0  # explicit: no ladder

"""Smoothing (zero lag, less jitter), gap filling, and the head alignment maths."""
from __future__ import annotations

import numpy as np

from preprocess import geometry as G
from preprocess import landmarks as L
from preprocess.smoothing import fill_gaps, smooth_series, valid_runs
from preprocess.synthetic import synthetic_landmarks


def test_valid_runs():
    assert valid_runs(np.array([1, 1, 0, 0, 1, 0, 1, 1, 1], bool)) == [(0, 2), (4, 5), (6, 9)]
    assert valid_runs(np.zeros(3, bool)) == []


def test_fill_gaps_takes_the_nearest_valid_frame():
    values = np.arange(10, dtype=float)[:, None] * 10
    valid = np.array([0, 1, 1, 0, 0, 0, 1, 0, 0, 0], bool)
    out = fill_gaps(values, valid)[:, 0]
    assert out.tolist() == [10, 10, 20, 20, 20, 60, 60, 60, 60, 60]  # tie at 4 -> earlier
    assert fill_gaps(values, np.zeros(10, bool)).tolist() == values.tolist()


def test_smoothing_removes_jitter_without_lag():
    rng = np.random.default_rng(0)
    t = np.arange(200, dtype=float)
    motion = 3.0 * t  # steady pan: any lag would show as an offset
    noisy = motion + rng.normal(0, 2.0, t.size)
    out = smooth_series(noisy[:, None], np.ones(200, bool), 5)[:, 0]
    assert abs(np.mean(out - motion)) < 0.2  # no lag on steady motion
    assert np.std(out - motion) < 0.6 * np.std(noisy - motion)
    nod = np.sin(2 * np.pi * 1.5 * t / 25)  # a 1.5 Hz head nod keeps >= 90 % of its amplitude
    assert smooth_series(nod[:, None], np.ones(200, bool), 5)[20:-20].max() > 0.9


def test_smoothing_stays_inside_valid_runs():
    values = np.r_[np.zeros(20), np.full(20, 100.0)][:, None]
    valid = np.ones(40, bool)
    valid[20] = False  # a cut between two shots
    out = smooth_series(values, valid, 5)
    assert np.allclose(out[:20], 0) and np.allclose(out[21:], 100)


def test_head_affine_round_trip_and_upright():
    lm = synthetic_landmarks(5, 320, 240)  # tilted ~6 degrees
    raw = G.raw_geometry(lm)
    geo = G.build_geometry(raw, 320, 240, 128, (0, 10, 0, 0))
    head_pts = G.apply_affine(geo.head_affine, lm)
    back = G.apply_affine(G.invert_affine(geo.head_affine), head_pts)
    assert np.abs(back - lm).max() < 1e-3
    right, left = L.eye_centers(head_pts)
    tilt = np.degrees(np.arctan2(left[:, 1] - right[:, 1], left[:, 0] - right[:, 0]))
    assert np.abs(tilt).max() < 1.0  # eyes level in the head crop
    assert np.all(geo.head_face_box[:, 0] < geo.head_face_box[:, 2])
    assert np.all((geo.head_face_box >= 0) & (geo.head_face_box <= 128))
    b = geo.body_face_box
    assert np.all((b[:, 0] >= 0) & (b[:, 2] <= 320) & (b[:, 1] >= 0) & (b[:, 3] <= 240))


def test_pads_follow_wav2lip_order():
    box = np.array([[10.0, 20.0, 50.0, 60.0]])
    out = G.pad_box(box, (1, 2, 3, 4), 100, 100)
    assert out.tolist() == [[7.0, 19.0, 54.0, 62.0]]
    assert G.pad_box(box, (30, 50, 30, 60), 100, 100).tolist() == [[0.0, 0.0, 100.0, 100.0]]

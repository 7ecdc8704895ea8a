"""The idle walk: a jump table in, avatar frame indices (and cross-fades) out."""
from __future__ import annotations

import logging
from types import SimpleNamespace

import numpy as np
import pytest

from backend.idle_walk import (ScheduleWalk, TextureWalk, WalkStep, alive_frames, make_walk, repeated_steps,
                               texture_usable)
from backend.schedule import schedule

FPS = 25


def _table(n: int, period: int = 50, every: int = 3, seed: int = 0):
    """Jumps of periodic footage: after i, continue at i + 1 + k * period (k != 0), from every `every`-th frame."""
    rng = np.random.default_rng(seed)
    src, dst, cost = [], [], []
    for i in range(0, n, every):
        for k in range(-(n // period), n // period + 1):
            j = i + 1 + k * period
            if k and 0 <= j < n:
                src.append(i)
                dst.append(j)
                cost.append(float(rng.uniform(0.5, 3.0)))
    return np.array(src), np.array(dst), np.array(cost)


def _walk(n=750, steps=15000, seed=0, **kw):
    s, d, c = _table(n)
    w = TextureWalk(n, s, d, c, seed=seed, fps=FPS, **kw)
    return w, [w.next() for _ in range(steps)], set(zip(s.tolist(), d.tolist()))


def _repeats(seq, stretch=50, window=1500) -> int:
    return repeated_steps(seq, stretch, window)


def test_plays_only_forward_and_jumps_only_from_the_table():
    w, seq, table = _walk(steps=5000)
    jumps = 0
    for a, b in zip(seq, seq[1:]):
        if b != a + 1:
            assert (a, b) in table
            jumps += 1
    assert jumps > 20 and w.rescues == 0
    assert len(set(seq)) > 600  # it visits the footage, not one loop


def test_the_same_two_seconds_do_not_come_back_within_a_minute():
    _, seq, _ = _walk(n=750, steps=15000)  # 30 s of footage, a 10-minute walk
    assert _repeats(seq) == 0


def test_deterministic_for_a_seed():
    _, a, _ = _walk(steps=3000, seed=3)
    _, b, _ = _walk(steps=3000, seed=3)
    _, c, _ = _walk(steps=3000, seed=4)
    assert a == b and a != c


def test_index_at_is_pure_whatever_the_order_of_questions():
    w, seq, _ = _walk(steps=3000)
    s, d, c = _table(750)
    fresh = TextureWalk(750, s, d, c, fps=FPS)
    order = np.random.default_rng(0).permutation(3000)
    assert [fresh.index_at(int(k)) for k in order] == [seq[k] for k in order]
    # peek/next consistency while the engine reserves steps ahead
    other = TextureWalk(750, s, d, c, fps=FPS)
    reserved = [other.peek(ahead) for ahead in range(10)]
    assert [other.next() for _ in range(10)] == reserved == seq[:10]
    other.step = 100  # the engine moves the cursor past steps it gave to speech
    assert other.next() == seq[100] and other.peek(5) == seq[106]


def test_forgotten_steps_are_regenerated_identically():
    s, d, c = _table(300)
    w = TextureWalk(300, s, d, c, fps=FPS, keep_behind_s=1.0)
    seq = [w.next() for _ in range(9000)]
    assert w._base > 0  # the memo was trimmed
    assert w.index_at(5) == seq[5] and w.index_at(w._base - 1) == seq[w._base - 1]


def test_cross_fade_across_each_jump():
    w, seq, _ = _walk(steps=2000, fade=3)
    steps = [w.frame_at(k) for k in range(2000)]
    for k in range(1, 1990):
        if seq[k] != seq[k - 1] + 1:  # a jump into step k
            fades = steps[k:k + 3]
            # the old path goes on under the fade (held at the last frame when it runs off the end)
            assert [f.other for f in fades] == [min(seq[k - 1] + 1 + m, 749) for m in range(3)]
            assert [f.weight for f in fades] == pytest.approx([0.75, 0.5, 0.25])
            assert steps[k + 3].other is None or seq[k + 3] != seq[k + 2] + 1
    assert steps[0] == WalkStep(seq[0])


def test_dead_end_after_the_last_jump_back():
    n = 200
    alive = alive_frames(n, np.array([150]), np.array([60]))
    assert alive[:151].all() and not alive[151:].any()
    w = TextureWalk(n, [150], [60], start=170, fps=FPS, wrap_target=40)
    seq = [w.next() for _ in range(400)]
    assert seq[:30] == list(range(170, 200)) and seq[30] == 40  # the one cut: a start in the dead tail
    assert w.rescues == 1
    assert all(b == a + 1 or (a, b) == (150, 60) for a, b in zip(seq[31:], seq[32:]))


def test_short_footage_cannot_avoid_repeats_but_still_never_reverses():
    s, d, c = _table(125, period=40)
    w = TextureWalk(125, s, d, c, fps=FPS)
    seq = [w.next() for _ in range(3000)]
    table = set(zip(s.tolist(), d.tolist()))
    assert all(b == a + 1 or (a, b) in table for a, b in zip(seq, seq[1:]))


def test_schedule_walk_is_the_old_walk():
    for loop in ("pingpong", "forward"):
        new = ScheduleWalk(7, 2, loop)
        assert [new.next() for _ in range(30)] == schedule(30, 7, 2, loop)
        assert new.peek(3) == schedule(34, 7, 2, loop)[33] and new.index_at(4) == schedule(5, 7, 2, loop)[4]
        assert new.frame_at(3).other is None


def _package(n, graph):
    return SimpleNamespace(frame_count=n, fps=25.0, name="fake", idle_graph=lambda: graph)


def _graph(sources, targets):
    return SimpleNamespace(sources=np.array(sources, np.int32), targets=np.array(targets, np.int32),
                           costs=np.ones(len(sources), np.float32), wrap_target=0)


def test_make_walk_modes(caplog):
    n = 300
    s, d, _ = _table(n)
    rich, empty = _package(n, _graph(s, d)), _package(n, _graph([], []))
    assert isinstance(make_walk(rich, "auto"), TextureWalk)
    assert isinstance(make_walk(rich, "texture"), TextureWalk)
    auto = make_walk(empty, "auto")
    assert isinstance(auto, ScheduleWalk) and auto.mode == "pingpong" and auto.reason
    with caplog.at_level(logging.WARNING):
        assert make_walk(empty, "texture").mode == "pingpong"
    assert "ping-pong instead" in caplog.text
    assert make_walk(rich, "forward").mode == "forward" and make_walk(rich, "pingpong").mode == "pingpong"
    with pytest.raises(ValueError):
        make_walk(rich, "sideways")
    # only forward jumps, or a jump cycle shorter than 2 s: not worth a texture
    assert not texture_usable(n, [10], [100])[0]
    assert not texture_usable(n, [40], [10])[0] and texture_usable(n, [120], [10])[0]


def test_hold_keeps_jumps_off_a_speech_onset():
    w, seq, _ = _walk(steps=3000)
    jumps = [k for k in range(1, 3000) if seq[k] != seq[k - 1] + 1]
    s, d, c = _table(750)
    held = TextureWalk(750, s, d, c, fps=FPS)
    k = jumps[3]
    assert [held.next() for _ in range(k - 5)] == seq[:k - 5]
    held.hold(k + 1)  # speech will start at step k, where the free walk jumped
    assert held.index_at(k) == held.index_at(k - 1) + 1
    assert held.index_at(k - 6) == seq[k - 6]  # steps already given out never change

"""Actions on cue: landmarks in, entry/exit tables and walk steps out."""
from __future__ import annotations

import json

import numpy as np
import pytest

from backend.action_walk import ActionClip, ActionWalk, with_actions
from backend.idle_walk import ScheduleWalk, TextureWalk
from preprocess import landmarks as L
from preprocess.actions import match_transitions
from preprocess.idle_graph import build_idle_graph

SHAPE = np.random.default_rng(1).uniform(-40, 40, (L.NUM_LANDMARKS, 2))


def _face(pos: np.ndarray) -> np.ndarray:
    return SHAPE[None] + 200.0 + pos[:, None, :]


def _main(n: int = 300) -> np.ndarray:
    t = np.arange(n)
    return _face(np.stack([6 * np.sin(2 * np.pi * t / 50), 3 * np.cos(2 * np.pi * t / 50)], axis=1))


def _wave(m: int = 75) -> np.ndarray:
    """Starts in the main footage's phase 10, swings 40 px aside and back, ends in its phase 30."""
    t = np.arange(m)
    phase = 2 * np.pi * (10 + t * (20 / (m - 1))) / 50
    swing = 40 * np.sin(np.pi * t / (m - 1)) ** 2
    return _face(np.stack([6 * np.sin(phase) + swing, 3 * np.cos(phase)], axis=1))


@pytest.fixture(scope="module")
def setup():
    main, wave = _main(), _wave()
    table = match_transitions(main, np.ones(len(main), bool), None, wave, np.ones(len(wave), bool), None)
    clip = ActionClip.from_table("wave", table)
    g = build_idle_graph(main, np.ones(len(main), bool), None)
    return main, wave, table, clip, g


def test_entries_land_early_and_exits_leave_late_where_the_poses_match(setup):
    main, wave, table, clip, _ = setup
    m = len(wave)
    assert len(table["entries"]) == len(main)
    assert all(1 <= a <= m // 3 for _i, a, _c, _d in table["entries"])
    assert all(b >= m - m // 3 for b, _j, _c, _d in table["exits"])
    # the best entry is from a main frame in the wave's starting phase, the best exit into its ending phase
    i, a, _, disp = min(table["entries"], key=lambda e: e[2])
    assert abs(((i + 1) - (10 + a * 20 / (m - 1))) % 50) < 2 or abs(((i + 1) - (10 + a * 20 / (m - 1))) % 50) > 48
    assert disp <= table["step_p95"] * 1.5
    b, j, _, _ = min(table["exits"], key=lambda e: e[2])
    assert abs((j - (10 + (b + 1) * 20 / (m - 1))) % 50) < 2 or abs((j - (10 + (b + 1) * 20 / (m - 1))) % 50) > 48


def test_a_cue_plays_the_clip_forward_and_returns_to_the_idle(setup):
    main, wave, table, clip, g = setup
    base = TextureWalk(len(main), g.sources, g.targets, g.costs, fps=25)
    walk = ActionWalk(base, {"wave": clip})
    before = [walk.next() for _ in range(40)]
    seg = walk.cue("wave")
    assert 40 <= seg.first <= 40 + 25  # within the entry window
    steps = [walk.frame_at(k) for k in range(seg.first - 1, seg.end + 10)]
    assert walk.index_at(39) == before[-1]  # handed-out steps never change
    # into the clip: from the main frame shown, at an entry of the table
    assert steps[0].clip is None and clip.entries[steps[0].index][0] == steps[1].index == seg.entry
    inside = steps[1:seg.end - seg.first + 1]
    assert all(s.clip == "wave" for s in inside)
    assert [s.index for s in inside] == list(range(seg.entry, seg.exit_from + 1))  # forward, no reversal
    assert [s.weight for s in inside[:3]] == pytest.approx([0.75, 0.5, 0.25]) and inside[3].other is None
    back = steps[seg.end - seg.first + 1:]
    assert back[0].clip is None and back[0].index == seg.exit_to
    assert seg.exit_to in [j for j, _ in clip.exits[seg.exit_from]]
    assert [s.other_clip for s in back[:3]] == ["wave"] * 3 and back[3].other is None
    idx = [s.index for s in back]
    table_jumps = set(zip(g.sources.tolist(), g.targets.tolist()))
    assert all(b2 == a2 + 1 or (a2, b2) in table_jumps for a2, b2 in zip(idx, idx[1:]))


def test_speech_reserved_during_an_action_gets_the_action_frames(setup):
    main, _, _, clip, _ = setup
    walk = ActionWalk(ScheduleWalk(len(main), 0, "pingpong"), {"wave": clip})
    seg = walk.cue("wave", at_step=10)
    reserved = {k: walk.frame_at(k) for k in range(seg.first + 5, seg.first + 15)}  # speech steps, out of order
    for k, st in reserved.items():
        assert st.clip == "wave" and st.index == seg.entry + (k - seg.first)
    assert [walk.next() for _ in range(seg.first + 5)][-1] == seg.entry + 4


def test_cues_queue_and_unknown_names_fail(setup):
    main, _, _, clip, g = setup
    walk = ActionWalk(ScheduleWalk(len(main), 0, "pingpong"), {"wave": clip})
    a = walk.cue("wave")
    b = walk.cue("wave")
    assert b.first > a.end + 3
    with pytest.raises(ValueError, match="unknown action 'jump'"):
        walk.cue("jump")


def test_package_actions_round_trip(tmp_path):
    from backend.idle_walk import make_walk
    from preprocess.actions import load_transitions, write_transitions
    from preprocess.package import AvatarPackage
    from preprocess.synthetic import write_synthetic_package

    root = write_synthetic_package(tmp_path / "avatar", frames=60, width=160, height=120, head_size=64)
    pkg = AvatarPackage.open(root)
    assert with_actions(make_walk(pkg, "pingpong"), pkg).clips == {}  # a package without actions works as before
    write_synthetic_package(root / "actions" / "nod", frames=30, width=160, height=120, head_size=64)
    table = write_transitions(root, "nod")
    assert table["frames"] == 30 and load_transitions(root)["nod"]["entries"]
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["actions"]["nod"]["folder"] == "actions/nod"
    walk = with_actions(make_walk(pkg, "pingpong"), pkg)
    seg = walk.cue("nod")
    assert walk.frame_at(seg.first).clip == "nod"
    assert AvatarPackage.open(root).action("nod").frame_count == 30  # where the engine finds the clip's frames


def test_an_action_filmed_differently_is_refused(tmp_path):
    from preprocess.actions import write_transitions
    from preprocess.synthetic import write_synthetic_package
    from stream_wav2lip.errors import UserError

    root = write_synthetic_package(tmp_path / "avatar", frames=20, width=160, height=120, head_size=64)
    write_synthetic_package(root / "actions" / "wave", frames=20, width=200, height=120, head_size=64)
    with pytest.raises(UserError, match="film actions like the main footage"):
        write_transitions(root, "wave")
    with pytest.raises(UserError, match="action name"):
        write_transitions(root, "Wave Hello")


def test_cli_specs():
    from pathlib import Path

    from preprocess.actions import parse_action_cue, parse_action_spec
    from stream_wav2lip.errors import UserError

    assert parse_action_spec("wave=clips/wave.mp4") == ("wave", Path("clips/wave.mp4"))
    assert parse_action_cue("nod@3.5") == ("nod", 3.5)
    for bad in ("wave", "wave=", "=x.mp4"):
        with pytest.raises(UserError):
            parse_action_spec(bad)
    for bad in ("nod", "nod@", "nod@-1", "nod@soon"):
        with pytest.raises(UserError):
            parse_action_cue(bad)

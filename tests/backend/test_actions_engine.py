"""Actions on cue through the engine (frames in, frames out): render's --action timeline, speech during an
action lip-synced on the action's frames, serve's cue (the same engine), and the errors a user can meet."""
from __future__ import annotations

import numpy as np
import pytest

from backend.engine import Engine
from backend.frames import AudioFrame, SpeechEndFrame, SpeechStartFrame
from backend.generators.base import NullGenerator
from preprocess.package import AvatarPackage
from stream_wav2lip.errors import UserError
from tests.backend.helpers import RecordingGenerator, speak, speech_like


@pytest.fixture(scope="module")
def avatar(tmp_path_factory):
    from preprocess.actions import write_transitions
    from preprocess.synthetic import write_synthetic_package

    root = write_synthetic_package(tmp_path_factory.mktemp("actions") / "main", frames=60)
    write_synthetic_package(root / "actions" / "wave", frames=40)
    write_transitions(root, "wave")
    return root


def test_a_cued_action_plays_its_own_frames_and_returns_to_the_idle(avatar):
    pkg = AvatarPackage.open(avatar)
    eng = Engine(pkg, NullGenerator(96), loop="pingpong")
    assert eng.actions == ["wave"]
    start = eng.cue("wave", at_k=10)
    plans = [eng.plan_idle() for _ in range(90)]
    clip = [p for p in plans if p.clip == "wave"]
    assert clip and clip[0].k == start >= 10, "the action starts at its best entry, not before the cue"
    assert [p.k for p in clip] == list(range(start, start + len(clip))), "played in one piece"
    assert all(b.avatar_index == a.avatar_index + 1 for a, b in zip(clip, clip[1:])), "forward, frame by frame"
    assert plans[-1].clip is None, "back to the main footage"
    eng.render(clip[3:4])
    p = clip[3]
    assert p.package is pkg.action("wave") and np.array_equal(p.image, pkg.action("wave").frame(p.avatar_index))


def test_speech_during_an_action_is_generated_on_the_actions_frames(avatar):
    pkg = AvatarPackage.open(avatar)
    gen = RecordingGenerator()
    eng = Engine(pkg, gen, loop="pingpong", silence_gate=False, batch_size=4)
    start = eng.cue("wave", at_k=0)
    eng.push(SpeechStartFrame(0))
    eng.push(AudioFrame(0, speech_like(1.2)))
    eng.push(SpeechEndFrame(0))
    plans = []
    while batch := eng.plan(force=True):
        eng.render(batch)
        plans += batch
    during = [p for p in plans if p.clip == "wave"]
    assert during and during[0].k == start
    items = [item for batch in gen.batches for item in batch]
    on_clip = [item for item, p in zip(items, plans) if p.clip == "wave"]
    assert on_clip and all(item.package is pkg.action("wave") for item in on_clip)
    assert all(np.array_equal(item.face, pkg.action("wave").face(item.avatar_index, "head")) for item in on_clip)


def test_unknown_actions_and_avatars_without_actions_are_one_line_errors(avatar, synthetic_avatar):
    with pytest.raises(UserError, match="unknown action 'jump'.*wave"):
        Engine(AvatarPackage.open(avatar), NullGenerator(96)).cue("jump")
    with pytest.raises(UserError, match="unknown action"):
        Engine(AvatarPackage.open(synthetic_avatar), NullGenerator(96)).cue("wave")


def test_render_places_actions_on_a_timeline(avatar, tmp_path):
    import soundfile

    from backend.render import render

    wav = tmp_path / "s.wav"
    soundfile.write(wav, speech_like(2.0), 16000)
    frames = tmp_path / "frames"
    render(avatar, [wav], None, frames_dir=frames, generator=NullGenerator(96), loop="pingpong",
           actions=[("wave", 0.4)], progress=False)
    pkg = AvatarPackage.open(avatar)
    import cv2

    images = [cv2.imread(str(p)) for p in sorted(frames.glob("*.png"))]
    action = pkg.action("wave")
    shown = [any(np.array_equal(img, action.frame(j)) for j in range(action.frame_count)) for img in images[10:20]]
    assert len(images) == 50 and any(shown)


def test_serve_cues_an_action_through_its_command_surface(avatar, monkeypatch, tmp_path):
    """ServeCommands.action → the live loop's engine; the status lists the avatar's actions."""
    from backend.live.clock import VirtualClock
    from backend.live.commands import ServeCommands
    from backend.live.loop import LiveLoop
    from backend.sources.queue import SpeechQueue

    pkg = AvatarPackage.open(avatar)
    clock = VirtualClock(0)
    shown = []
    loop = LiveLoop(SpeechQueue(), Engine(pkg, NullGenerator(96), loop="pingpong"),
                    [lambda plan, image: shown.append(plan)], clock=clock)
    app = type("App", (), {"loop": loop})()
    commands = ServeCommands(app)
    assert commands.actions() == ["wave"]
    loop.run_virtual(5)
    reply = commands.action("wave")
    assert reply["action"] == "wave" and reply["starts_in_ms"] >= 0
    loop.run_virtual(80)
    assert any(p.clip == "wave" for p in shown)
    with pytest.raises(UserError):
        commands.action("nope")


def test_the_mouth_engine_speaks_on_an_actions_frames(tmp_path):
    """The default generator during an action: real mouths of the avatar transplanted onto the clip's frames,
    aligned with the clip's own landmarks."""
    import sys
    from pathlib import Path

    from backend.mouth import MouthGenerator
    from preprocess.actions import write_transitions

    sys.path.insert(0, str(Path(__file__).parents[1] / "mouth"))
    from synthetic import write_package

    root = write_package(tmp_path / "talking", n=120)
    write_package(root / "actions" / "nod", n=50)
    write_transitions(root, "nod")
    pkg = AvatarPackage.open(root)
    eng = Engine(pkg, MouthGenerator(pkg), loop="pingpong", batch_size=4)
    start = eng.cue("nod", at_k=0)
    plans = speak(eng, speech_like(2.0, level=0.4))
    on_clip = [p for p in plans if p.clip == "nod" and p.generate]
    assert on_clip and on_clip[0].k >= start
    action = pkg.action("nod")
    changed = [not np.array_equal(p.image, action.frame(p.avatar_index)) for p in on_clip]
    assert sum(changed) >= len(on_clip) // 2, "the mouth is redrawn on the action's frames"

"""The acceptance test of "one engine, two drivers": for the same avatar, audio, generator and start state,
the frames `serve` publishes (its live loop on a virtual clock, so it never falls behind) equal the frames
`render` writes with --frames-dir, frame for frame (within 1 grey level), for the mouth engine and for
wav2lip96 with deterministic weights: a pause inside an utterance, two utterances back to back, and a flush
in the middle followed by a new utterance. (The walk is pinned to ping-pong: render's start state is a frame to start
from, while the video-texture idle's state is also the random walk it took before.)"""
from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import soundfile

from backend.engine import Engine
from backend.live.clock import VirtualClock
from backend.live.loop import LiveLoop
from backend.render import render
from backend.schedule import schedule_index
from backend.sources.queue import SpeechQueue
from models.audio import load_audio
from preprocess.package import AvatarPackage
from tests.backend.helpers import speech_like

sys.path.insert(0, str(Path(__file__).parents[1] / "mouth"))
from synthetic import write_package  # noqa: E402

pytestmark = pytest.mark.slow
BATCH = 4


@pytest.fixture(scope="module")
def avatar(tmp_path_factory) -> Path:
    return write_package(tmp_path_factory.mktemp("parity") / "talking", n=120)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    from models.testing import deterministic_model, save_reference_checkpoint

    path = tmp_path_factory.mktemp("ckpt") / "wav2lip96.pth"
    save_reference_checkpoint(deterministic_model("wav2lip96"), path, with_optimizer=False)
    return path


@pytest.fixture(scope="module", params=["mouth", "wav2lip96"])
def make_generator(request, avatar, checkpoint):
    import torch

    torch.set_num_threads(1)
    if request.param == "mouth":
        from backend.mouth import MouthGenerator

        return lambda pkg: MouthGenerator(pkg)
    from backend.generators.wav2lip import Wav2LipGenerator

    return lambda pkg: Wav2LipGenerator(checkpoint, device="cpu", streams=1)


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    """Float WAVs (read back bit-exact): a pause inside an utterance, and three short utterances."""
    folder = tmp_path_factory.mktemp("speech")
    pause = np.concatenate([speech_like(0.8, seed=1, level=0.4), np.zeros(16000, np.float32),
                            speech_like(0.6, seed=2, level=0.4)])
    waves = {"pause": pause, "a": speech_like(0.6, seed=3, level=0.4), "b": speech_like(0.5, seed=4, level=0.4),
             "long": speech_like(1.8, seed=5, level=0.4), "c": speech_like(0.6, seed=6, level=0.4)}
    paths = {}
    for name, wav in waves.items():
        paths[name] = folder / f"{name}.wav"
        soundfile.write(paths[name], wav, 16000, subtype="FLOAT")
    return paths


def serve_frames(avatar: Path, generator, frames: int, events) -> dict:
    """{k: (plan, image)} published by serve's live loop on a virtual clock; events(loop, queue) between steps."""
    pkg = AvatarPackage.open(avatar)
    clock = VirtualClock(t0_ns=0)
    queue = SpeechQueue()
    out = {}
    loop = LiveLoop(queue, Engine(pkg, generator, batch_size=BATCH, loop="pingpong"),
                    [lambda plan, image: out.__setitem__(plan.k, (plan, np.array(image)))], clock=clock,
                    audio_lead_ms=60)
    loop.run_virtual(frames, lambda lp: events(lp, queue))
    assert loop.stats.repeated == 0 and loop.stats.skipped == 0, "the virtual clock never falls behind"
    return out


def render_frames(avatar: Path, generator, files: list[Path], start_frame: int, tmp: Path) -> list[np.ndarray]:
    folder = tmp / f"frames{len(list(tmp.iterdir()))}"
    render(avatar, files, None, frames_dir=folder, generator=generator, batch_size=BATCH, start_frame=start_frame,
           loop="pingpong", progress=False, frame_cache=False)
    return [cv2.imread(str(p)) for p in sorted(folder.glob("*.png"))]


def first_speech(frames: dict, after: int = 0) -> int:
    return min(k for k, (plan, _image) in frames.items() if plan.speech and k >= after)


def assert_same(served: dict, k0: int, rendered: list[np.ndarray], what: str) -> None:
    for i, image in enumerate(rendered):
        plan, shown = served[k0 + i]
        diff = np.abs(shown.astype(np.int16) - image.astype(np.int16)).max()
        assert diff <= 1, f"{what}: serve frame {k0 + i} (render frame {i}, avatar {plan.avatar_index}) differs " \
                          f"by {diff} grey levels"


def queue_at_start(*names):
    """Queue the files once, a few idle frames after the start (as a streamer's first `say` would)."""
    done = []

    def events(loop, queue):
        if not done and loop.clock.now() >= loop.clock.pts(5):
            done.append(True)
            for name in names:
                queue.add(load_audio(name))
    return events


def test_a_pause_inside_an_utterance(avatar, make_generator, clips, tmp_path):
    pkg = AvatarPackage.open(avatar)
    served = serve_frames(avatar, make_generator(pkg), 75, queue_at_start(clips["pause"]))
    k0 = first_speech(served)
    rendered = render_frames(avatar, make_generator(pkg), [clips["pause"]], k0, tmp_path)
    assert len(rendered) == 60
    assert_same(served, k0, rendered, "pause")
    plans = [served[k0 + i][0] for i in range(60)]
    silent = plans[30:42]  # inside the 1 s of digital silence (frames 20-44), clear of hang-over and ramps
    if make_generator(pkg).handles_silence:  # the mouth engine draws its resting mouth in the pause
        assert all(p.generate for p in silent)
    else:  # the network leaves the footage's own mouth
        assert not any(p.generate for p in silent)


def test_two_utterances_back_to_back(avatar, make_generator, clips, tmp_path):
    pkg = AvatarPackage.open(avatar)
    served = serve_frames(avatar, make_generator(pkg), 40, queue_at_start(clips["a"], clips["b"]))
    k0 = first_speech(served)
    rendered = render_frames(avatar, make_generator(pkg), [clips["a"], clips["b"]], k0, tmp_path)
    assert len(rendered) == 15 + 13
    assert_same(served, k0, rendered, "back to back")


def test_a_flush_in_the_middle_then_a_new_utterance(avatar, make_generator, clips, tmp_path):
    pkg = AvatarPackage.open(avatar)
    start = queue_at_start(clips["long"])
    state = {}

    def events(loop, queue):
        start(loop, queue)
        now = loop.clock.now()
        if "flush" not in state and now >= loop.clock.pts(25):
            loop.flush()
            state["flush"] = loop._ka  # the first frame re-planned after the flush
        if "c" not in state and now >= loop.clock.pts(35):
            queue.add(load_audio(clips["c"]))
            state["c"] = True

    served = serve_frames(avatar, make_generator(pkg), 60, events)
    k0 = first_speech(served)
    cut = state["flush"]
    rendered = render_frames(avatar, make_generator(pkg), [clips["long"]], k0, tmp_path)
    assert_same(served, k0, rendered[:cut - k0], "before the flush")
    k1 = first_speech(served, after=cut)
    for k in range(cut, k1):  # idle footage between the flush and the next utterance
        plan, shown = served[k]
        assert not plan.speech and np.array_equal(shown, pkg.frame(schedule_index(k, pkg.frame_count)))
    rendered = render_frames(avatar, make_generator(pkg), [clips["c"]], k1, tmp_path)
    assert len(rendered) == 15
    assert_same(served, k1, rendered, "after the flush")

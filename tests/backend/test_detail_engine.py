"""The detail stage inside the engine: on by default after a low-resolution network when the face is larger
on screen, off with detail="off", never after generators of real pixels, reset at each utterance."""
from __future__ import annotations

import numpy as np
import pytest

from backend.engine import Engine
from backend.generators.base import NullGenerator
from preprocess.package import AvatarPackage
from tests.backend.helpers import RecordingGenerator, speak, speech_like


class Network96(RecordingGenerator):
    """A stand-in network: a 96 px face, blurred like a generator's output, returned at the crop's size."""

    def generate(self, batch):
        import cv2

        self.batches.append(list(batch))
        s = batch[0].face.shape[0]
        small = [cv2.resize(item.face, (96, 96), interpolation=cv2.INTER_AREA) for item in batch]
        return np.stack([cv2.resize(cv2.GaussianBlur(f, (0, 0), 1.0), (s, s), interpolation=cv2.INTER_CUBIC)
                         for f in small])


def _say(eng):
    return speak(eng, speech_like(0.6, level=0.4))


def test_on_after_a_low_resolution_network_and_off_when_asked(big_face):
    on = Engine(big_face, Network96(), loop="pingpong", silence_gate=False)
    off = Engine(big_face, Network96(), loop="pingpong", silence_gate=False, detail="off")
    assert on.compositor.detail is not None and off.compositor.detail is None
    a, b = _say(on), _say(off)
    assert len(a) == len(b) == 15
    sharper = 0
    for p, q in zip(a, b):
        assert p.image.shape == q.image.shape
        gp = np.abs(np.diff(p.image.astype(np.int16), axis=1)).mean()
        gq = np.abs(np.diff(q.image.astype(np.int16), axis=1)).mean()
        sharper += gp >= gq
    assert sharper >= 0.8 * len(a), "the detail stage adds gradient energy back"


def test_never_after_generators_of_real_pixels_or_small_faces(big_face, synthetic_avatar):
    from backend.mouth.generator import MouthGenerator

    assert MouthGenerator.real_pixels and NullGenerator.real_pixels
    assert Engine(big_face, NullGenerator(96), loop="pingpong").compositor.detail is None
    small = AvatarPackage.open(synthetic_avatar)  # a face about as large on screen as the network draws it
    assert Engine(small, Network96(), loop="pingpong").compositor.detail is None


def test_the_stage_starts_afresh_at_every_utterance(big_face, monkeypatch):
    eng = Engine(big_face, Network96(), loop="pingpong", silence_gate=False)
    resets = []
    monkeypatch.setattr(eng.compositor.detail, "reset", lambda: resets.append(True))
    _say(eng)
    _say(eng)
    assert len(resets) == 2


@pytest.mark.parametrize("mode, cost_ms, kept", [("auto", 70, False), ("on", 70, True), ("auto", 5, True)])
def test_serve_gives_the_stage_up_between_utterances_when_its_renderer_lags(big_face, mode, cost_ms, kept):
    """detail "auto" in a live loop: a renderer that cannot draw every speech frame (70 ms a frame against the
    clock's 40) gives the stage up when the utterance is over, from the next one on -- never within one -- and
    says why; "on" keeps it, and so does a renderer with time to spare."""
    from backend.live.clock import VirtualClock
    from backend.live.loop import LiveLoop
    from backend.sources.queue import SpeechQueue

    clock = VirtualClock(t0_ns=1_000_000_000,
                         render_cost_ns=lambda plans: cost_ms * 1_000_000 * sum(p.generate and not p.skip
                                                                                 for p in plans) + 1_000_000)
    network = Network96()
    engine = Engine(big_face, network, loop="pingpong", batch_size=1, detail=mode)
    network.batches.clear()  # the stage's softness probe at start (backend/detail/softness.py) is no live frame
    stage = engine.compositor.detail
    apply, applied = stage.apply, []
    stage.apply = lambda face, index: applied.append(len(network.batches)) or apply(face, index)
    queue = SpeechQueue()
    second = []  # the number of faces generated when the second utterance was queued

    def later(lp):
        if not second and lp.clock.now() >= lp.clock.pts(100):  # the first (2.4 s, 60 frames) is over by then
            second.append(sum(len(b) for b in network.batches))
            queue.add(speech_like(2.4, level=0.4))
    loop = LiveLoop(queue, engine, [], clock=clock)
    queue.add(speech_like(2.4, level=0.4))  # long enough to be judged (backend/live/stats.py JUDGED_FRAMES)
    loop.run_virtual(200, later)
    first_faces = second[0]
    assert first_faces > 0 and sum(len(b) for b in network.batches) > first_faces, "both utterances were drawn"
    assert len([n for n in applied if n <= first_faces]) == first_faces, "the whole first one has the stage"
    assert any(n > first_faces for n in applied) == kept and (engine.compositor.detail is not None) == kept
    assert engine.detail_note.startswith("off: the network draws") != kept
    # decided once: a stage given up stays given up, "on" stays on, and a fast renderer's first slow utterance
    # would still count
    assert engine.fit_to_clock(0.5) is (mode == "auto" and kept)


def test_an_utterance_is_judged_by_the_share_of_its_speech_frames_drawn():
    """LiveStats.utterance_edge: drawn / (drawn + skipped) over the utterance; none for a short one (too little
    to say anything about the machine) or an end without a start."""
    from backend.live.stats import JUDGED_FRAMES, LiveStats

    stats = LiveStats(generated=7, skipped=3)
    assert stats.utterance_edge(False) is None
    stats.utterance_edge(True)
    stats.generated += 45
    stats.skipped += 15
    assert stats.utterance_edge(False) == pytest.approx(0.75)
    stats.utterance_edge(True)
    stats.generated += JUDGED_FRAMES - 1
    assert stats.utterance_edge(False) is None

"""The detail stage inside the engine: on by default after a low-resolution network when the face is larger
on screen, off with detail="off", never after generators of real pixels, reset at each utterance."""
from __future__ import annotations

import numpy as np
import pytest

from backend.engine import Engine
from backend.generators.base import NullGenerator
from preprocess.package import AvatarPackage
from tests.backend.helpers import RecordingGenerator, speak, speech_like


@pytest.fixture(scope="module")
def big_face(tmp_path_factory):
    """A synthetic avatar whose face is ~200 px on screen: a 96 px network leaves detail to restore."""
    from preprocess.synthetic import write_synthetic_package

    return AvatarPackage.open(write_synthetic_package(tmp_path_factory.mktemp("detail") / "big", frames=24,
                                                      width=640, height=480))


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

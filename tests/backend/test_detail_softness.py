"""The generator's softness, measured on the avatar at start: where the detail library's band is cut."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from backend.detail.library import SOFTNESS, cache_path
from backend.detail.softness import blurred as _blur
from backend.detail.softness import estimate_softness, library_softness
from backend.engine import Engine
from tests.backend.helpers import RecordingGenerator


@pytest.fixture(scope="module")
def real_faces(media_dir):
    """Eight 96 px crops of a real talking face (its middle square, area-downscaled like a package crop)."""
    cap = cv2.VideoCapture(str(media_dir / "LivePortrait__assets_examples_driving_d13.mp4"))
    faces = []
    while len(faces) < 8:
        ok, frame = cap.read()
        assert ok, "the clip has at least 8 frames"
        h, w = frame.shape[:2]
        side = min(h, w) // 2
        y, x = (h - side) // 2, (w - side) // 2
        faces.append(cv2.resize(frame[y:y + side, x:x + side], (96, 96), interpolation=cv2.INTER_AREA))
    cap.release()
    return np.stack(faces)


@pytest.mark.parametrize("sigma", [0.0, 0.3, 0.6, 1.0, 1.5])
def test_the_blur_of_a_network_is_recovered_from_its_faces(real_faces, sigma):
    estimate = estimate_softness(_blur(real_faces, sigma), real_faces)
    assert estimate is not None and abs(estimate - sigma) <= 0.1, estimate


def test_another_mouth_is_still_measured_but_faces_that_are_not_the_avatars_give_no_estimate(real_faces):
    # the network draws the mouth its audio asks for: other frames of the same face keep the verdict
    assert abs(estimate_softness(_blur(np.roll(real_faces, 1, axis=0), 0.6), real_faces) - 0.6) <= 0.15
    noise = np.random.default_rng(0).integers(0, 256, real_faces.shape, dtype=np.uint8)  # untrained weights
    assert estimate_softness(noise, real_faces) is None
    assert estimate_softness(np.full_like(real_faces, 128), real_faces) is None  # a flat grey face


def test_the_band_is_cut_at_a_sharper_networks_softness_and_below_a_softer_ones():
    assert library_softness(None) == SOFTNESS
    assert library_softness(0.3) == 0.3
    assert library_softness(0.0) == 0.0
    assert library_softness(SOFTNESS + 0.1) == SOFTNESS  # a little softer: the default cut is already below it
    assert library_softness(1.0) == 0.8  # SOFTER_SHARE of it (docstring: the oracle)
    assert library_softness(1.5) == 1.2
    assert all(library_softness(e) <= max(e, SOFTNESS) for e in np.arange(0, 2.01, 0.05))


class _Blurring(RecordingGenerator):
    """A 96 px network whose faces are its input blurred by `sigma` native pixels."""

    def __init__(self, sigma: float):
        super().__init__()
        self.sigma = sigma

    def generate(self, batch):
        self.batches.append(list(batch))
        return _blur(np.stack([item.face for item in batch]), self.sigma)


def test_the_engine_measures_its_generator_once_at_start_and_the_library_follows(big_face):
    soft, sharp = _Blurring(1.0), _Blurring(0.4)
    soft_engine = Engine(big_face, soft, loop="pingpong", silence_gate=False)
    sharp_engine = Engine(big_face, sharp, loop="pingpong", silence_gate=False)
    assert len(soft.batches) == len(sharp.batches) == 1  # one batch of the avatar's own faces, then nothing
    assert 0.7 <= soft_engine.compositor.detail.softness <= 0.9  # measured ~1.0: cut at SOFTER_SHARE of it
    stage = sharp_engine.compositor.detail
    assert 0.3 <= stage.softness <= 0.5
    stage.library  # built and cached under its own name: the default-cut library of the other engine stays
    assert cache_path(big_face, stage.crop, stage.size, stage.native_size, stage.softness).is_file()
    assert Engine(big_face, soft, loop="pingpong", detail="off").compositor.detail is None
    assert len(soft.batches) == 1  # detail off: nothing to measure


class _Named(_Blurring):
    """A blurring network with an identity: its softness may be cached per avatar."""

    def __init__(self, sigma: float, identity: str | None):
        super().__init__(sigma)
        self._identity = identity

    @property
    def identity(self):
        return self._identity


def test_a_generator_with_an_identity_is_measured_once_per_avatar(big_face):
    from backend.detail.softness import _cache_file

    _cache_file(big_face).unlink(missing_ok=True)
    first, again, other = _Named(0.4, "blur-a"), _Named(0.4, "blur-a"), _Named(0.4, "blur-b")
    softness = Engine(big_face, first, loop="pingpong", silence_gate=False).compositor.detail.softness
    assert len(first.batches) == 1 and _cache_file(big_face).is_file()
    # the next start with the same network: the cached estimate, no network work
    assert Engine(big_face, again, loop="pingpong", silence_gate=False).compositor.detail.softness == softness
    assert again.batches == []
    Engine(big_face, other, loop="pingpong", silence_gate=False)  # another network: measured
    assert len(other.batches) == 1
    _cache_file(big_face).write_text("{damaged", encoding="utf-8")  # never trusted: measured again, rewritten
    assert Engine(big_face, again, loop="pingpong", silence_gate=False).compositor.detail.softness == softness
    assert len(again.batches) == 1 and '"recipe"' in _cache_file(big_face).read_text(encoding="utf-8")


def test_a_failed_measurement_is_not_cached(big_face):
    from backend.detail.softness import _read_cache, measure_softness

    class Failing(_Named):
        def generate(self, batch):
            self.batches.append(list(batch))
            raise RuntimeError("out of memory")

    failing, before = Failing(0.4, "failing"), _read_cache(big_face)
    assert measure_softness(failing, big_face, "head") is None
    assert measure_softness(failing, big_face, "head") is None  # tried again at the next start
    assert len(failing.batches) == 2 and _read_cache(big_face) == before


def test_the_live_warm_up_measures_nothing_again(big_face, monkeypatch):
    import backend.detail.softness as softness

    calls = []
    measure = softness.measure_softness
    monkeypatch.setattr(softness, "measure_softness", lambda *args: calls.append(args) or measure(*args))
    engine = Engine(big_face, _Blurring(0.4), loop="pingpong", silence_gate=False)
    engine.warm_up()  # serve's: its throwaway engine composes with this one's stage
    assert len(calls) == 1

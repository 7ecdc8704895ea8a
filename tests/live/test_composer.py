"""serve's compositing thread and parallel render workers (real threads; correctness only, no timing targets)."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from backend.engine import Engine
from backend.frames import FRAME_NS, SAMPLES_PER_FRAME
from backend.generators.base import NullGenerator
from backend.live.composer import Composer
from backend.live.loop import LiveLoop
from backend.sources.queue import SpeechQueue


class Plan:
    def __init__(self, k):
        self.k, self.pts_ns, self.skip, self.image, self.rendered_ns = k, k * FRAME_NS, False, None, 0


class OrderedEngine:
    def __init__(self):
        self.order = []

    def compose(self, plan):
        self.order.append(plan.k)
        return np.full((2, 2, 3), plan.k, np.uint8)


def test_frames_are_composed_in_plan_order_once_their_faces_are_there():
    engine, ready = OrderedEngine(), []
    composer = Composer(time.monotonic_ns, lambda plan, now: ready.append(plan.k))
    try:
        plans = [Plan(k) for k in range(4)]
        plans[2].skip = True
        composer.put(engine, plans[:2])
        composer.put(engine, plans[2:])
        composer.generated([plans[1], plans[3]])  # the second worker finished first
        time.sleep(0.05)
        assert engine.order == [], "frame 0's face is not there yet: nothing goes before it"
        composer.generated([plans[0], plans[2]])
        deadline = time.monotonic() + 2
        while len(ready) < 3 and time.monotonic() < deadline:
            time.sleep(0.005)
        assert engine.order == [0, 1, 3] and ready == [0, 1, 3], "in order; a skipped plan is not composed"
        assert plans[3].image[0, 0, 0] == 3 and plans[3].rendered_ns > 0 and plans[2].image is None
    finally:
        composer.close()


def test_a_failing_compose_is_reported():
    class Broken:
        def compose(self, plan):
            raise RuntimeError("no frame")

    composer = Composer(time.monotonic_ns, lambda plan, now: None)
    plan = Plan(0)
    composer.put(Broken(), [plan])
    composer.generated([plan])
    deadline = time.monotonic() + 2
    while composer.error is None and time.monotonic() < deadline:
        time.sleep(0.005)
    composer.close()
    assert isinstance(composer.error, RuntimeError)


@pytest.fixture(scope="module")
def pkg(synthetic_avatar):
    from preprocess.package import AvatarPackage

    pkg = AvatarPackage.open(synthetic_avatar)
    pkg.preload(("bg", "head"))
    return pkg


def test_parallel_render_workers_keep_frames_and_audio_in_order(pkg):
    """A generator that allows two calls at once gets two render workers; every speech frame's audio goes out
    once, in order, pts advance by 40 ms, and both workers draw frames."""

    class TwoAtOnce(NullGenerator):
        parallel_calls = 2

        def __init__(self, size):
            super().__init__(size)
            self.threads, self.inside, self.most = set(), 0, 0
            self._lock = threading.Lock()

        def generate(self, batch):
            with self._lock:
                self.threads.add(threading.current_thread().name)
                self.inside += 1
                self.most = max(self.most, self.inside)
            time.sleep(0.06)  # a 60 ms call, 2 at once: 33 frames/s of capacity
            with self._lock:
                self.inside -= 1
            return super().generate(batch)

    gen = TwoAtOnce(pkg.face_size)
    q, published = SpeechQueue(), []
    loop = LiveLoop(q, Engine(pkg, gen, batch_size=1), [lambda plan, image: published.append((plan, image))])
    clip = (0.3 * np.random.default_rng(5).standard_normal(24000)).astype(np.float32)
    loop.start()
    try:
        assert loop.workers == 2
        time.sleep(0.2)
        q.add(clip)
        time.sleep(2.2)
    finally:
        loop.stop()
    assert loop.error is None
    assert all(b[0].pts_ns - a[0].pts_ns == FRAME_NS for a, b in zip(published, published[1:]))
    speech = [p for p, _i in published if p.speech]
    assert len(speech) == -(-clip.size // SAMPLES_PER_FRAME)
    np.testing.assert_array_equal(np.concatenate([p.audio for p in speech])[:clip.size], clip)
    assert len(gen.threads) == 2 and gen.most == 2, "two calls side by side, on both workers"
    assert sum(not p.repeated for p in speech) > len(speech) // 2

"""serve's driver under a virtual clock (deterministic): pts, the walk, audio paired with frames, gaps for late
streams, ramps, repeats below 25 fps, the audio lead and barge-in. One real-time run on threads on top."""
from __future__ import annotations

import time

import numpy as np
import pytest

from backend.engine import Engine
from backend.frames import FRAME_NS, SAMPLES_PER_FRAME
from backend.generators.base import NullGenerator
from backend.live.clock import VirtualClock
from backend.live.loop import LiveLoop
from backend.schedule import schedule
from backend.sources.queue import SpeechQueue


@pytest.fixture(scope="module")
def pkg(synthetic_avatar):
    from preprocess.package import AvatarPackage

    pkg = AvatarPackage.open(synthetic_avatar)
    pkg.preload(("bg", "head"))
    return pkg


def _speech(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.3 * rng.standard_normal(int(16000 * seconds))).astype(np.float32)


class Recorder:
    """Video and audio sinks that keep what was published and when (virtual ns)."""

    def __init__(self, clock):
        self.clock, self.video, self.audio = clock, [], []

    def on_video(self, plan, image):
        self.video.append((plan, image, self.clock.now()))

    def on_audio(self, plan):
        self.audio.append((plan, plan.pts_ns, plan.audio.copy(), plan.speech, self.clock.now()))


def _loop(pkg, generator=None, audio_lead_ms=0.0, cost=None, batch_size=4):
    clock = VirtualClock(t0_ns=1_000_000_000, render_cost_ns=cost)
    rec = Recorder(clock)
    engine = Engine(pkg, generator or NullGenerator(pkg.face_size), batch_size=batch_size)
    queue = SpeechQueue()
    loop = LiveLoop(queue, engine, [rec.on_video], audio_sinks=[rec.on_audio], clock=clock,
                    audio_lead_ms=audio_lead_ms)
    return loop, queue, rec


def _streamed(utterance, clip, start_ns, period_ns):
    """A `between` hook that appends `clip` to `utterance` in 20 ms chunks, one every `period_ns` of virtual time
    from `start_ns`, and ends it with the last; and the list of the times each chunk went in."""
    chunk, sent_at = SAMPLES_PER_FRAME // 2, []

    def arrive(loop):
        while len(sent_at) * chunk < clip.size and loop.clock.now() >= start_ns + len(sent_at) * period_ns:
            utterance.append(clip[len(sent_at) * chunk:(len(sent_at) + 1) * chunk])
            sent_at.append(loop.clock.now())
            if len(sent_at) * chunk >= clip.size:
                utterance.end()
    return arrive, sent_at


def at_frame(k, action):
    """A `between` hook that runs `action(loop)` once, when the publisher is about to reach frame k."""
    done = []

    def hook(loop):
        if not done and loop.clock.now() >= loop.clock.pts(k) - 200_000_000:
            done.append(True)
            action(loop)
    return hook


def test_idle_frames_have_strictly_increasing_pts_and_walk_the_avatar(pkg):
    loop, _q, rec = _loop(pkg)
    loop.run_virtual(45)
    assert [p.pts_ns for p, _i, _t in rec.video] == [loop.clock.pts(k) for k in range(45)]
    assert [p.avatar_index for p, _i, _t in rec.video] == schedule(45, pkg.frame_count)
    assert all(t == p.pts_ns for p, _i, t in rec.video), "every frame goes out exactly at its pts"
    for p, image, _t in rec.video:
        assert not p.speech and not p.audio.any() and np.array_equal(image, pkg.frame(p.avatar_index))


def test_a_queued_clip_plays_whole_in_order_with_its_frames(pkg):
    loop, q, rec = _loop(pkg)
    clip = _speech(1.01)
    loop.run_virtual(40, at_frame(3, lambda _l: q.add(clip)))
    speech = [p for p, _i, _t in rec.video if p.speech]
    assert len(speech) == -(-clip.size // SAMPLES_PER_FRAME)
    assert [p.mel.index for p in speech] == list(range(len(speech)))
    ks = [p.k for p in speech]
    assert ks == list(range(ks[0], ks[0] + len(speech))), "an available clip plays without gaps"
    audio = np.concatenate([p.audio for p in speech])
    np.testing.assert_array_equal(audio[:clip.size], clip)
    assert not audio[clip.size:].any() and not rec.video[-1][0].speech
    assert loop.stats.repeated == 0 and loop.stats.skipped == 0


def test_a_stream_that_arrives_late_gets_silent_idle_frames_never_stretched_audio(pkg):
    loop, q, rec = _loop(pkg)
    clip = _speech(0.8, seed=1)
    u = q.open("pcm")
    u.append(clip[:2000])  # less than the 0.2 s look-ahead: nothing can be shown yet

    def rest(_loop):
        u.append(clip[2000:])
        u.end()
    loop.run_virtual(50, at_frame(14, rest))
    assert not any(p.speech for p, _i, _t in rec.video[:8])
    audio = np.concatenate([p.audio for p, _i, _t in rec.video if p.speech])
    np.testing.assert_array_equal(audio[:clip.size], clip)


def test_blend_ramps_down_after_speech(pkg):
    loop, q, rec = _loop(pkg)
    q.add(np.concatenate([_speech(0.6), np.zeros(16000, np.float32)]))
    loop.run_virtual(45)
    blends = [p.blend for p, _i, _t in rec.video]
    j = len(blends) - 1 - blends[::-1].index(1.0)
    assert blends[j + 1: j + 3] == pytest.approx([2 / 3, 1 / 3]) and blends[j + 3] == 0.0


def test_a_renderer_slower_than_25fps_repeats_frames_evenly_but_never_audio(pkg):
    loop, q, rec = _loop(pkg, cost=lambda plans: 70_000_000 * sum(p.generate and not p.skip for p in plans) + 2_000_000)
    for b in range(1, 5):  # as measured after the first batches
        loop.batch_times.set(b, 72e6 * b)
    clip = _speech(2.0, seed=4)
    q.add(clip)
    loop.run_virtual(70)
    assert all(b[0].pts_ns - a[0].pts_ns == FRAME_NS for a, b in zip(rec.video, rec.video[1:]))
    speech = [p for p, _i, _t in rec.video if p.speech]
    np.testing.assert_array_equal(np.concatenate([p.audio for p in speech])[:clip.size], clip)
    fresh = [p.k for p in speech if not p.repeated]
    assert 0.4 * len(speech) < len(fresh) < 0.8 * len(speech), "~40/70 of the frames rendered, the rest repeated"
    assert np.diff(fresh[5:]).max() <= 3, f"rendered frames are spread out, not bursts and freezes: {fresh}"


def test_a_face_that_misses_its_pts_by_less_than_a_frame_is_shown_next_instead_of_a_repeat(pkg):
    calls = []

    def cost(plans):  # a renderer below 25 fps (so it never runs ahead) whose every fourth call takes 75 ms
        if not any(p.generate and not p.skip for p in plans):  # where 45 are expected: that frame is late
            return 1_000_000
        calls.append(1)
        return 75_000_000 if len(calls) % 4 == 0 else 45_000_000

    loop, q, rec = _loop(pkg, cost=cost, batch_size=1)
    loop.batch_times.set(1, 45e6)
    clip = _speech(2.0, seed=5)
    q.add(clip)
    loop.run_virtual(70)
    speech = [p for p, _i, _t in rec.video if p.speech]
    np.testing.assert_array_equal(np.concatenate([p.audio for p in speech])[:clip.size], clip)
    assert loop.stats.late > 0
    for (before, _img0, _t0), (plan, image, _t) in zip(rec.video, rec.video[1:]):
        if plan.generate and not plan.repeated and plan.shown_index != plan.avatar_index:  # a late face shown
            assert image is before.image and plan.shown_index == before.avatar_index and plan.shown_generated
            assert before.repeated, "its own slot had repeated the image before it"


def test_audio_goes_out_a_lead_ahead_and_a_flush_keeps_only_what_is_out(pkg):
    """audio_lead_ms=100: audio block k goes out 100 ms before pts_k, stamped pts_k; video k at pts_k. Every
    frame's audio exactly once, in order; a flush re-plans only frames whose audio is not out yet."""
    loop, q, rec = _loop(pkg, audio_lead_ms=100)
    flushed = []

    def events(lp):
        now = lp.clock.now()
        if now >= lp.clock.pts(5) and not q.generation and len(q) == 0 and not flushed:
            q.add(_speech(3.0, seed=6))
        if now >= lp.clock.pts(30) and not flushed:
            flushed.append(now)
            lp.flush()
    loop.run_virtual(60, events)
    apts = [pts for _p, pts, _a, _s, _t in rec.audio]
    assert (np.diff(apts) == FRAME_NS).all(), "one audio block per frame, in order, none twice"
    assert all(pts - t == 100_000_000 for p, pts, _a, _s, t in rec.audio if p.k >= 3)  # 0-2: due before t0
    by_k = {p.k: (a, sp) for p, _pts, a, sp, _t in rec.audio}
    for p, _i, t in rec.video:  # the audio that went out for frame k is the audio of the frame shown at pts_k
        a, sp = by_k[p.k]
        assert t == p.pts_ns and sp == p.speech and np.array_equal(a, p.audio)
    after = [sp for _p, _pts, _a, sp, t in rec.audio if t > flushed[0]]
    assert not any(after), "no speech audio is published after the flush"
    still = [p.k for p, _i, t in rec.video if p.speech and t > flushed[0]]
    assert 0 < len(still) <= 3, f"only what was already out (<= 100 ms) plays after the flush: {still}"
    assert loop.queued_samples() == 0


def test_a_flush_on_another_thread_never_resets_the_generator_inside_generate(pkg):
    """Hammer flush from a thread while the real worker generates: resets happen only between batches, on
    the render thread, and the output stays well-formed."""
    import threading

    class Watchful(NullGenerator):
        def __init__(self, size):
            super().__init__(size)
            self.inside, self.bad, self.resets = False, 0, 0

        def generate(self, batch):
            self.inside = True
            time.sleep(0.004)
            out = super().generate(batch)
            self.inside = False
            return out

        def reset(self):
            self.resets += 1
            self.bad += self.inside

    gen = Watchful(pkg.face_size)
    q = SpeechQueue()
    published = []
    loop = LiveLoop(q, Engine(pkg, gen, batch_size=4), [lambda plan, image: published.append((plan, image))])
    stop = threading.Event()

    def hammer():
        while not stop.is_set():
            q.add(_speech(0.3))
            time.sleep(0.03)
            loop.flush()
    loop.start()
    t = threading.Thread(target=hammer)
    t.start()
    time.sleep(1.5)
    stop.set()
    t.join()
    loop.stop()
    assert loop.error is None and gen.resets >= 1 and gen.bad == 0
    assert all(b[0].pts_ns - a[0].pts_ns == FRAME_NS for a, b in zip(published, published[1:]))
    assert all(image.shape == (pkg.height, pkg.width, 3) for _p, image in published)


def test_real_time_threads_publish_at_25fps_with_audio_paired_to_frames(pkg):
    q = SpeechQueue()
    published = []
    loop = LiveLoop(q, Engine(pkg, NullGenerator(pkg.face_size)),
                    [lambda plan, image: published.append((plan, image, time.monotonic_ns()))])
    loop.start()
    try:
        time.sleep(0.3)
        clip = _speech(0.5, seed=3)
        q.add(clip)
        time.sleep(1.0)
    finally:
        loop.stop()
    assert loop.error is None
    pts = np.array([p.pts_ns for p, _i, _t in published])
    assert (np.diff(pts) == FRAME_NS).all()
    late = np.array([t - p.pts_ns for p, _i, t in published]) / 1e6
    assert np.median(late) < 15, "frames go out at their pts"
    speech = [p for p, _i, _t in published if p.speech]
    assert len(speech) == -(-clip.size // SAMPLES_PER_FRAME)
    np.testing.assert_array_equal(np.concatenate([p.audio for p in speech])[:clip.size], clip)
    assert loop.stats.percentile(95) < 300


def test_lead_and_arguments(pkg):
    loop, _q, _r = _loop(pkg)
    assert loop._lead_ns(False) < 50e6, "no audio lead: planned just a render lead ahead"
    lead, _q, _r = _loop(pkg, audio_lead_ms=100)
    assert lead._lead_ns(False) >= 100e6 + lead.min_lead_ns, "frames are planned before their audio is due"
    with pytest.raises(ValueError):
        _loop(pkg, audio_lead_ms=-1)


def test_the_end_of_a_live_stream_is_rendered_not_repeated(pkg):
    """When a stream ends, the rest of its audio is there at once and a batch of queued size has the best rate,
    but the first of those frames is already close to its pts: the call shrinks (Pacer.fitting) instead of
    skipping frames for a call size it could not reach (it repeated the last frames of every utterance)."""
    def per_call(b):  # one frame a call live (a batch of 4 cheaper per frame, but its wait for audio is too long)
        return {1: 36e6, 2: 72e6, 3: 108e6, 4: 120e6}[b]

    loop, q, rec = _loop(pkg, cost=lambda plans: int(per_call(max(1, sum(p.generate and not p.skip for p in plans)))))
    for b in range(1, 5):
        loop.batch_times.set(b, per_call(b))
    clip = _speech(1.6, seed=6)
    # 20 ms chunks every 21 ms (a stream a little slower than real time, so its last frames are ready closer to
    # their pts than a call of 4 needs); it ends with its last chunk
    arrive, _sent_at = _streamed(q.open("pcm"), clip, loop.clock.now(), 21_000_000)
    loop.run_virtual(80, arrive)
    speech = [p for p, _i, _t in rec.video if p.speech]
    assert len(speech) >= clip.size // SAMPLES_PER_FRAME
    assert loop.stats.repeated == 0 and not any(p.repeated for p in speech), \
        [p.k for p in speech if p.repeated]


def test_frames_planned_before_an_avatar_switch_show_the_old_avatar(pkg, tmp_path):
    """Frames whose audio is out when the avatar switches still go out as planned: their footage comes from the
    old package (whose frame indices they carry), not from the new one, which may have fewer frames (the clock
    thread crashed on a missing frame file and the backend restarted: seen in the OBS switch test)."""
    from preprocess.package import AvatarPackage
    from preprocess.synthetic import write_synthetic_package

    big = AvatarPackage.open(write_synthetic_package(tmp_path / "big", frames=60))
    loop, _q, rec = _loop(big, audio_lead_ms=200.0)
    switched = []

    def switch(loop_):
        if not switched and loop_.clock.now() >= loop_.clock.pts(40):
            switched.append(max(loop_._planned))  # frames up to here were planned with the big avatar
            loop_.switch_avatar(Engine(pkg, NullGenerator(pkg.face_size)))
    loop.run_virtual(70, switch)
    assert loop.error is None and switched
    old = [(p, image) for p, image, _t in rec.video if p.k <= switched[0]]
    assert any(p.avatar_index >= pkg.frame_count for p, _i in old), "old frames past the new avatar's last one"
    for p, image in old:
        assert np.array_equal(image, big.frame(p.avatar_index)), p.k
    assert rec.video[-1][1].shape == pkg.frame(0).shape, "then the new avatar"


def test_a_live_stream_that_starts_with_silence_is_shown_without_waiting_for_the_ramps_look_ahead(pkg):
    """A stream (20 ms chunks in real time) that starts with silence, as TTS output does: its frames are planned
    as soon as their mel window is in (the ramp's look-ahead comes from the gate's flags ahead), so every speech
    frame is shown 212.5 ms + the lead + the jitter margin + at most one 40-ms grid step after its audio
    began, never 80 ms later; and no idle frame is planned inside the utterance."""
    from backend.live.pacing import LIVE_JITTER_MS

    loop, q, rec = _loop(pkg, batch_size=1)
    clip = np.concatenate([np.zeros(4800, np.float32), _speech(1.2, seed=8)])
    arrive, sent_at = _streamed(q.open("pcm"), clip, loop.clock.now() + 200_000_000, 20_000_000)
    loop.run_virtual(80, arrive)
    frames = [(p, t) for p, _i, t in rec.video if p.speech_id]
    assert [p.k for p, _t in frames] == list(range(frames[0][0].k, frames[0][0].k + len(frames)))  # no gap
    lead = loop._lead_ns(True)
    limit = 212.5e6 + lead + LIVE_JITTER_MS * 1e6 + FRAME_NS + 20e6
    latencies = [t - sent_at[p.mel.index * 2] for p, t in frames if p.mel is not None]
    assert len(latencies) >= clip.size // SAMPLES_PER_FRAME and max(latencies) <= limit, (max(latencies), limit)

"""The one clock: planning order, pts, audio/video pairing, gaps for late streams, barge-in, the threaded loop."""
from __future__ import annotations

import time

import numpy as np
import pytest

from backend.frames import FRAME_NS, SAMPLES_PER_FRAME
from backend.generator import NullGenerator
from backend.live import AvatarView, Clock, LiveLoop, Timeline
from backend.sources.queue import SpeechQueue


@pytest.fixture(scope="module")
def view(synthetic_avatar):
    from backend.compositor import Compositor
    from preprocess.package import AvatarPackage

    pkg = AvatarPackage.open(synthetic_avatar)
    pkg.preload(("bg", "head"))
    return AvatarView(pkg, NullGenerator(pkg.face_size), Compositor(pkg))


def _speech(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.3 * rng.standard_normal(int(16000 * seconds))).astype(np.float32)


def test_plans_have_strictly_increasing_pts_and_walk_the_avatar_pingpong(view):
    tl = Timeline(SpeechQueue(), view, Clock(t0_ns=5_000))
    plans = [tl.plan() for _ in range(45)]
    assert [p.pts_ns for p in plans] == [5_000 + k * FRAME_NS for k in range(45)]
    n = view.frame_count
    assert [p.avatar_index for p in plans[: 2 * n - 1]] == list(range(n)) + list(range(n - 2, -1, -1))
    assert all(not p.speech and p.mel is None and not p.audio.any() for p in plans)


def test_a_queued_clip_plays_whole_and_in_order_with_its_frames(view):
    q = SpeechQueue()
    tl = Timeline(q, view, Clock(t0_ns=0))
    [tl.plan() for _ in range(3)]
    clip = _speech(1.01)
    q.add(clip)
    plans = [tl.plan() for _ in range(40)]
    speech = [p for p in plans if p.speech]
    assert len(speech) == -(-clip.size // SAMPLES_PER_FRAME)  # ceil(n / 640) frames
    assert [p.mel.index for p in speech] == list(range(len(speech)))
    ks = [p.k for p in speech]
    assert ks == list(range(ks[0], ks[0] + len(speech))), "an available clip plays without gaps"
    audio = np.concatenate([p.audio for p in speech])
    np.testing.assert_array_equal(audio[: clip.size], clip)
    assert not audio[clip.size:].any()
    assert not plans[-1].speech and not plans[-1].audio.any()


def test_a_stream_that_arrives_late_gets_silent_idle_frames_never_stretched_audio(view):
    q = SpeechQueue()
    tl = Timeline(q, view, Clock(t0_ns=0))
    clip = _speech(0.8, seed=1)
    u = q.open("pcm")
    u.append(clip[:2000])  # less than the 0.2 s look-ahead: nothing can be shown yet
    first = [tl.plan() for _ in range(3)]
    assert not any(p.speech for p in first)
    u.append(clip[2000:])
    u.end()
    rest = [tl.plan() for _ in range(30)]
    audio = np.concatenate([p.audio for p in rest if p.speech])
    np.testing.assert_array_equal(audio[: clip.size], clip)


def test_flush_drops_planned_speech_at_once(view):
    q = SpeechQueue()
    tl = Timeline(q, view, Clock(t0_ns=0))
    q.add(_speech(2.0))
    assert tl.plan().speech
    q.flush()
    after = [tl.plan() for _ in range(5)]
    assert not any(p.speech for p in after)
    assert tl.queued_samples() == 0


def test_blend_ramps_down_after_speech(view):
    q = SpeechQueue()
    tl = Timeline(q, view, Clock(t0_ns=0), ramp=3)
    loud, quiet = _speech(0.6), np.zeros(16000, np.float32)
    q.add(np.concatenate([loud, quiet]))
    blends = [tl.plan().blend for _ in range(40)]
    i = blends.index(1.0)
    j = len(blends) - 1 - blends[::-1].index(1.0)
    assert blends[j + 1: j + 3] == pytest.approx([2 / 3, 1 / 3]) and blends[j + 3] == 0.0 and i < j


def test_threaded_loop_publishes_at_25fps_with_audio_paired_to_frames(view):
    q = SpeechQueue()
    published = []
    loop = LiveLoop(q, view, [lambda plan, image: published.append((plan, image, time.monotonic_ns()))])
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
    np.testing.assert_array_equal(np.concatenate([p.audio for p in speech])[: clip.size], clip)
    for p, image, _t in published:
        if p.mel is None:
            assert np.array_equal(image, view.package.frame(p.avatar_index)), "idle = avatar footage"
    assert loop.stats.percentile(95) < 300


class SlowGenerator(NullGenerator):
    """A generator slower than real time (like Wav2Lip on a busy CPU): 70 ms per frame."""

    def generate(self, batch):
        time.sleep(0.07 * len(batch))
        return super().generate(batch)


def test_a_renderer_slower_than_25fps_drops_frames_evenly_but_never_audio(view):
    slow = AvatarView(view.package, SlowGenerator(view.package.face_size), view.compositor)
    q = SpeechQueue()
    published = []
    loop = LiveLoop(q, slow, [lambda plan, image: published.append(plan)])
    loop._frame_ema_ns = 70e6  # as measured after the first batches
    loop._render_ema_ns[True] = 280e6
    loop.start()
    try:
        clip = _speech(0.8, seed=4)
        q.add(clip)
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline and (loop.queued_samples() or not published or published[-1].speech):
            time.sleep(0.02)
    finally:
        loop.stop()
    assert loop.error is None
    assert all(b.pts_ns - a.pts_ns == FRAME_NS for a, b in zip(published, published[1:]))
    speech = [p for p in published if p.speech]
    np.testing.assert_array_equal(np.concatenate([p.audio for p in speech])[: clip.size], clip)
    rendered = [p.k for p in speech if not p.repeated]
    assert 0 < len(rendered) < len(speech), "some frames rendered, the rest repeated"
    gaps = np.diff(rendered)
    assert gaps.max() <= 4, f"rendered frames are spread out, not bursts and freezes: {rendered}"


def test_audio_goes_out_a_lead_ahead_with_its_frames_pts_and_flush_keeps_only_what_is_out(view):
    """audio_lead_ms=100: audio block k is handed to the audio sinks ~100 ms before pts_k, stamped pts_k; video
    frame k still at pts_k. Every frame's audio exactly once, in order; a flush only re-plans frames whose
    audio is not out yet, so the old speech that still plays (<= the lead) keeps its own frames."""
    q = SpeechQueue()
    video, audio = [], []
    loop = LiveLoop(q, view, [lambda plan, image: video.append((plan, time.monotonic_ns()))],
                    audio_sinks=[lambda plan: audio.append((plan, plan.pts_ns, plan.audio.copy(), plan.speech,
                                                            time.monotonic_ns()))],
                    audio_lead_ms=100)
    loop.start()
    try:
        time.sleep(0.3)
        clip = _speech(0.5, seed=5)
        q.add(clip)
        time.sleep(1.0)
        long = _speech(3.0, seed=6)
        q.add(long)
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and not (video and video[-1][0].speech):
            time.sleep(0.005)
        time.sleep(0.3)
        loop.flush()
        t_flush = time.monotonic_ns()
        time.sleep(0.5)
    finally:
        loop.stop()
    assert loop.error is None
    apts = [pts for _p, pts, _a, _s, _t in audio]
    assert (np.diff(apts) == FRAME_NS).all(), "one audio block per frame, in order, none twice"
    ahead = np.array([pts - t for _p, pts, _a, _s, t in audio]) / 1e6
    assert 80 < np.median(ahead) <= 100, f"audio goes out ~100 ms before its pts: {np.median(ahead):.1f} ms"
    late = np.array([t - p.pts_ns for p, t in video]) / 1e6
    assert np.median(late) < 15, "video still goes out at its pts"
    by_k = {p.k: (pts, a, sp) for p, pts, a, sp, _t in audio}
    for p, _t in video:  # the audio that went out for frame k is the audio of the frame shown at pts_k
        pts, a, sp = by_k[p.k]
        assert pts == p.pts_ns and sp == p.speech and np.array_equal(a, p.audio)
    first = [a for _p, _pts, a, sp, _t in audio if sp][: -(-clip.size // SAMPLES_PER_FRAME)]
    np.testing.assert_array_equal(np.concatenate(first)[: clip.size], clip)
    after = [(pts, sp) for _p, pts, _a, sp, t in audio if t > t_flush]
    assert not any(sp for _pts, sp in after), "no speech audio is published after the flush"
    still = [pts for _p, pts, _a, sp, t in audio if sp and pts > t_flush]
    assert len(still) <= 3, f"only what was already out (<= 100 ms) plays after the flush: {len(still)} blocks"
    assert not video[-1][0].speech and loop.queued_samples() == 0


def test_without_audio_sinks_or_lead_the_loop_behaves_as_before(view):
    loop = LiveLoop(SpeechQueue(), view, [])
    assert loop._lead_ns(False) < 50e6, "no audio lead: planned just a render lead ahead"
    lead = LiveLoop(SpeechQueue(), view, [], audio_lead_ms=100)
    assert lead._lead_ns(False) >= 100e6 + lead.min_lead_ns, "frames are planned before their audio is due"
    with pytest.raises(ValueError):
        LiveLoop(SpeechQueue(), view, [], audio_lead_ms=-1)

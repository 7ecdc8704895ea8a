"""The engine on its own (frames in, frames out, no I/O): one timeline, the walk, silence, barge-in, resets."""
import numpy as np
import pytest

from backend.engine import Engine
from backend.frames import AudioFrame, FlushFrame, SpeechEndFrame, SpeechStartFrame
from backend.generators.base import NullGenerator
from backend.schedule import schedule
from preprocess.package import AvatarPackage
from tests.backend.helpers import RecordingGenerator, speech_like


@pytest.fixture()
def pkg(synthetic_avatar):
    return AvatarPackage.open(synthetic_avatar)


def _take(engine, force=False):
    plans = []
    while True:
        batch = engine.plan(force=force)
        if not batch:
            return plans
        engine.render(batch)
        plans += batch


def _say(engine, wav, chunk=640, speech_id=0):
    plans = []
    engine.push(SpeechStartFrame(0, speech_id))
    for k in range(0, wav.size, chunk):
        engine.push(AudioFrame(0, wav[k:k + chunk], speech_id))
        plans += _take(engine)
    engine.push(SpeechEndFrame(0, speech_id))
    return plans + _take(engine, force=True)


def test_one_clock_video_and_audio(pkg):
    eng = Engine(pkg, NullGenerator(96), batch_size=3, t0_ns=5_000)
    wav = speech_like(1.23)
    plans = _say(eng, wav, chunk=517)
    assert len(plans) == -(-wav.size // 640)
    for k, p in enumerate(plans):
        assert p.pts_ns == 5_000 + k * 40_000_000 and p.k == k
        assert p.image.shape == (pkg.height, pkg.width, 3) and p.audio.size == 640
    audio = np.concatenate([p.audio for p in plans])
    np.testing.assert_array_equal(audio[:wav.size], wav)
    assert not audio[wav.size:].any() and plans[-1].samples == wav.size - 640 * (len(plans) - 1)
    assert [p.avatar_index for p in plans] == schedule(len(plans), pkg.frame_count)


def test_silence_gives_the_footage_and_skips_the_generator(pkg):
    gen = RecordingGenerator()
    eng = Engine(pkg, gen)
    plans = _say(eng, np.zeros(16000, np.float32))
    assert len(plans) == 25 and gen.batches == []
    for p in plans:
        assert np.array_equal(p.image, pkg.frame(p.avatar_index)) and not p.generate


def test_speech_changes_only_speech_frames(pkg):
    gen = RecordingGenerator()
    eng = Engine(pkg, gen, batch_size=4)
    wav = np.concatenate([np.zeros(8000, np.float32), speech_like(1.0, level=0.4), np.zeros(16000, np.float32)])
    plans = _say(eng, wav)
    changed = [not np.array_equal(p.image, pkg.frame(p.avatar_index)) for p in plans]
    assert not any(changed[:9]) and any(changed[13:30]) and not any(changed[-10:])


def test_a_generator_that_handles_silence_runs_on_every_frame_of_an_utterance(pkg):
    class Resting(RecordingGenerator):
        handles_silence = True

    gen = Resting()
    plans = _say(Engine(pkg, gen, batch_size=4), np.zeros(8000, np.float32))
    assert all(p.generate and p.blend == 1.0 for p in plans)
    assert sum(len(b) for b in gen.batches) == len(plans) == 13
    assert [b[0].speech for b in gen.batches] == [False] * len(gen.batches)


def test_idle_then_speech_continues_the_walk(pkg):
    eng = Engine(pkg, NullGenerator(96), start_frame=3)
    idle = [eng.plan_idle() for _ in range(5)]
    assert all(not p.audio.any() and p.audio.size == 640 and not p.speech for p in idle)
    plans = _say(eng, speech_like(0.4))
    idle2 = [eng.plan_idle() for _ in range(2)]
    seq = [p.avatar_index for p in idle + plans + idle2]
    assert seq == schedule(len(seq), pkg.frame_count, start=3)
    assert [p.pts_ns for p in idle + plans + idle2] == [k * 40_000_000 for k in range(len(seq))]
    eng.render(idle)
    for p in idle:
        assert np.array_equal(p.image, pkg.frame(p.avatar_index))


def test_flush_is_barge_in_and_the_generator_is_reset_before_the_next_utterance(pkg):
    gen = RecordingGenerator()
    eng = Engine(pkg, gen, batch_size=50, silence_gate=False)
    eng.push(SpeechStartFrame(0))
    eng.push(AudioFrame(0, speech_like(2.0)))
    assert eng.speech_pending
    resets = gen.resets
    eng.push(FlushFrame(0))
    assert not eng.speech_pending and eng.plan(force=True) == []
    assert gen.resets == resets, "a flush never touches the generator (it may be inside generate())"
    plans = _say(eng, speech_like(0.3, seed=4))
    assert len(plans) == 8 and plans[0].k == 0  # nothing of the dropped speech was planned
    assert gen.resets == resets + 1 and plans[0].first


def test_two_utterances_back_to_back_never_share_a_batch(pkg):
    gen = RecordingGenerator()
    eng = Engine(pkg, gen, batch_size=4, silence_gate=False)
    a, b = speech_like(0.5, seed=1), speech_like(0.7, seed=2)
    plans = _say(eng, a, speech_id=1) + _say(eng, b, speech_id=2)
    assert len(plans) == 13 + 18
    assert [p.pts_ns for p in plans] == [k * 40_000_000 for k in range(len(plans))]
    assert [len(x) for x in gen.batches] == [4, 4, 4, 1, 4, 4, 4, 4, 2]
    assert gen.resets == 2 and [p.speech_id for p in plans] == [1] * 13 + [2] * 18
    audio = np.concatenate([p.audio[:p.samples] for p in plans])
    np.testing.assert_array_equal(audio, np.concatenate([a, b]))


def test_warm_up_leaves_no_state(pkg):
    gen = RecordingGenerator()
    eng = Engine(pkg, gen)
    eng.warm_up()
    assert eng.next_k == 0 and not eng.speech_pending and gen.batches


def test_the_texture_idle_walks_forward_and_cross_fades_its_jumps(pkg):
    from backend.idle_walk import TextureWalk

    n = pkg.frame_count  # 20 frames: jumps from every frame back or ahead by 10 (periodic footage)
    src = np.array([i for i in range(n) for j in (i + 1 - 10, i + 1 + 10) if 0 <= j < n])
    dst = np.array([j for i in range(n) for j in (i + 1 - 10, i + 1 + 10) if 0 <= j < n])
    eng = Engine(pkg, NullGenerator(96), loop="pingpong")
    eng.walk = TextureWalk(n, src, dst, np.ones(src.size), fps=25.0, min_run_s=0.2, mean_extra_run_s=0.2,
                           avoid_s=0.5, stretch_s=0.2)
    plans = [eng.plan_idle() for _ in range(120)]
    seq = [p.avatar_index for p in plans]
    pairs = set(zip(src.tolist(), dst.tolist()))
    assert all(b == a + 1 or (a, b) in pairs for a, b in zip(seq, seq[1:])), "forward, or a jump of the table"
    jumps = [i for i, (a, b) in enumerate(zip(seq, seq[1:]), start=1) if b != a + 1]
    assert jumps, "the walk took jumps"
    faded = [p for p in plans if p.other_index is not None]
    assert faded and all(0 < p.other_weight < 1 for p in faded)
    eng.render(faded[:1])
    p = faded[0]
    want = (1 - p.other_weight) * pkg.frame(p.avatar_index) + p.other_weight * pkg.frame(p.other_index)
    assert np.abs(p.image.astype(np.float32) - want).max() <= 1, "the footage is cross-faded across the jump"
    # speech starts on the frame the idle was heading for, not on a jump
    onset = eng.next_k
    plans = _say(eng, speech_like(0.6))
    assert plans[0].k == onset and plans[0].other_index is None

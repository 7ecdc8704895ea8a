import numpy as np
import pytest

from backend.engine import Engine
from backend.frames import AudioFrame, FlushFrame, SpeechEndFrame, SpeechStartFrame
from backend.generator import NullGenerator
from backend.schedule import schedule
from preprocess.package import AvatarPackage
from tests.backend.helpers import RecordingGenerator, speech_like


@pytest.fixture()
def pkg(synthetic_avatar):
    return AvatarPackage.open(synthetic_avatar)


def _say(engine, wav, chunk=640, speech_id=0):
    out = []
    engine.push(SpeechStartFrame(0, speech_id))
    for k in range(0, wav.size, chunk):
        engine.push(AudioFrame(0, wav[k:k + chunk], speech_id))
        out += engine.poll()
    engine.push(SpeechEndFrame(0, speech_id))
    return out + engine.drain()


def test_one_clock_video_and_audio(pkg):
    eng = Engine(pkg, NullGenerator(96), batch_size=3, t0_ns=5_000)
    wav = speech_like(1.23)
    pairs = _say(eng, wav, chunk=517)
    assert len(pairs) == -(-wav.size // 640)
    for k, (video, audio) in enumerate(pairs):
        assert video.pts_ns == audio.pts_ns == 5_000 + k * 40_000_000
        assert video.index == k and video.image.shape == (pkg.height, pkg.width, 3)
    np.testing.assert_array_equal(np.concatenate([a.pcm for _, a in pairs]), wav)
    assert [v.avatar_index for v, _ in pairs] == schedule(len(pairs), pkg.frame_count)


def test_silence_gives_the_footage_and_skips_the_generator(pkg):
    gen = RecordingGenerator()
    eng = Engine(pkg, gen)
    pairs = _say(eng, np.zeros(16000, np.float32))
    assert len(pairs) == 25 and gen.batches == []
    for video, audio in pairs:
        assert np.array_equal(video.image, pkg.frame(video.avatar_index)) and not video.speech
        assert not audio.speech


def test_speech_changes_only_speech_frames(pkg):
    gen = RecordingGenerator()
    eng = Engine(pkg, gen, batch_size=4)
    wav = np.concatenate([np.zeros(8000, np.float32), speech_like(1.0, level=0.4), np.zeros(16000, np.float32)])
    pairs = _say(eng, wav)
    changed = [not np.array_equal(v.image, pkg.frame(v.avatar_index)) for v, _ in pairs]
    assert not any(changed[:9]) and any(changed[13:30]) and not any(changed[-10:])


def test_idle_then_speech_continues_the_walk(pkg):
    eng = Engine(pkg, NullGenerator(96), start_frame=3)
    idle = eng.idle(5)
    assert all(not a.pcm.any() and a.pcm.size == 640 for _, a in idle)
    pairs = _say(eng, speech_like(0.4))
    idle2 = eng.idle(2)
    seq = [v.avatar_index for v, _ in idle + pairs + idle2]
    assert seq == schedule(len(seq), pkg.frame_count, start=3)
    assert [v.pts_ns for v, _ in idle + pairs + idle2] == [k * 40_000_000 for k in range(len(seq))]
    for v, _ in idle:
        assert np.array_equal(v.image, pkg.frame(v.avatar_index))


def test_onset_lead_reserves_schedule_steps(pkg):
    eng = Engine(pkg, NullGenerator(96), onset_lead=3, silence_gate=False, lookahead=0, batch_size=1)
    eng.push(SpeechStartFrame(0))
    eng.push(AudioFrame(0, speech_like(0.5)))
    idle = eng.idle(3)  # shown while the speech was being computed
    pairs = eng.poll(force=True)
    seq = [v.avatar_index for v, _ in idle + pairs]
    assert seq == schedule(len(seq), pkg.frame_count)


def test_flush_is_barge_in(pkg):
    gen = RecordingGenerator()
    eng = Engine(pkg, gen, batch_size=50, silence_gate=False)
    eng.push(SpeechStartFrame(0))
    eng.push(AudioFrame(0, speech_like(2.0)))
    assert eng.speaking
    eng.push(FlushFrame(0))
    assert not eng.speaking and eng.drain() == []
    pairs = _say(eng, speech_like(0.3, seed=4))
    assert len(pairs) == 8 and pairs[0][0].index == 0  # nothing of the dropped speech was emitted


def test_two_utterances_back_to_back(pkg):
    eng = Engine(pkg, NullGenerator(96))
    a, b = speech_like(0.5, seed=1), speech_like(0.7, seed=2)
    pairs = _say(eng, a, speech_id=1) + _say(eng, b, speech_id=2)
    assert len(pairs) == 13 + 18
    assert [v.pts_ns for v, _ in pairs] == [k * 40_000_000 for k in range(len(pairs))]
    np.testing.assert_array_equal(np.concatenate([x.pcm for _, x in pairs]), np.concatenate([a, b]))

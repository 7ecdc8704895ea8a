import numpy as np
import pytest

from backend.features import FeatureStage, MelStream, SilenceGate, frames_for_samples
from backend.frames import AudioFrame, AudioOutFrame, FlushFrame, MelFrame, SpeechEndFrame, SpeechStartFrame
from models import audio as A
from tests.backend.helpers import speech_like


def _stream(wav, chunks):
    s = MelStream()
    pos = 0
    for c in chunks:
        s.push(wav[pos:pos + c])
        pos += c
    s.push(wav[pos:])
    s.finish()
    return s


@pytest.mark.parametrize("n", [1, 150, 400, 401, 799, 1000, 3000, 12345, 16000])
def test_incremental_mel_equals_batch(n):
    wav = speech_like(n / 16000 + 0.01, seed=n)[:n]
    rng = np.random.default_rng(n)
    chunks = list(rng.integers(1, 700, size=40))
    s = _stream(wav, chunks)
    ref = A.melspectrogram(wav)
    assert s.columns == ref.shape[1]
    got = s._mel[:, :]  # nothing dropped: forget_before is only called by the stage
    # same arithmetic; only BLAS blocking of the mel projection (batch vs a few columns) moves the last bit
    np.testing.assert_allclose(got, ref, rtol=0, atol=2e-6)


def _run_stage(wav, chunk, gate=None):
    st = FeatureStage(gate or SilenceGate(enabled=False))
    out = st.push(SpeechStartFrame(pts_ns=1000, speech_id=7))
    for k in range(0, wav.size, chunk):
        out += st.push(AudioFrame(pts_ns=0, pcm=wav[k:k + chunk], speech_id=7))
    out += st.push(SpeechEndFrame(pts_ns=0, speech_id=7))
    return out


@pytest.mark.parametrize("n,chunk", [(48000, 320), (32000, 1234), (20011, 640), (2500, 100), (300, 50)])
def test_windows_follow_the_reference_rule(n, chunk):
    wav = speech_like(n / 16000, seed=3)[:n]
    out = _run_stage(wav, chunk)
    assert isinstance(out[0], SpeechStartFrame) and isinstance(out[-1], SpeechEndFrame)
    mels = [f for f in out if isinstance(f, MelFrame)]
    audio = [f for f in out if isinstance(f, AudioOutFrame)]
    assert len(mels) == len(audio) == frames_for_samples(n)
    assert [m.index for m in mels] == list(range(len(mels)))
    assert all(m.pts_ns == 1000 + m.index * 40_000_000 == a.pts_ns for m, a in zip(mels, audio))
    np.testing.assert_array_equal(np.concatenate([a.pcm for a in audio]), wav)  # every sample, once, in order
    mel = A.melspectrogram(wav)
    if mel.shape[1] >= 16:
        ref = A.mel_windows(mel)
        for i, m in enumerate(mels):  # frames past the reference's count repeat its last window
            np.testing.assert_allclose(m.mel, ref[min(i, len(ref) - 1)], rtol=0, atol=2e-6)
    # MelFrame is always followed by its own audio block
    kinds = [type(f).__name__ for f in out[1:-1]]
    assert kinds == ["MelFrame", "AudioOutFrame"] * len(mels)


def test_frames_are_emitted_with_only_the_lookahead_needed():
    st = FeatureStage(SilenceGate(enabled=False))
    wav = speech_like(2.0)
    emitted = []
    for k in range(0, wav.size, 640):
        emitted += [f for f in st.push(AudioFrame(0, wav[k:k + 640])) if isinstance(f, MelFrame)]
        if k >= 640 * 10:
            # after k samples frame i is out once its 16 columns are stable: i >= (k - 3400) / 640 - 1
            assert emitted[-1].index >= (k + 640 - 3400) // 640 - 2


def test_silence_gate_and_levels():
    silence = np.zeros(16000, np.float32)
    out = _run_stage(silence, 800, SilenceGate())
    mels = [f for f in out if isinstance(f, MelFrame)]
    assert not any(m.speech for m in mels) and all(m.level_db <= -119 for m in mels)
    loud = speech_like(1.0, level=0.3)
    mels = [f for f in _run_stage(loud, 800, SilenceGate()) if isinstance(f, MelFrame)]
    assert sum(m.speech for m in mels) > len(mels) // 2


def test_gate_hysteresis_and_hangover():
    g = SilenceGate(open_db=-40, close_db=-50, hang_frames=2)
    levels = [-60, -45, -35, -45, -55, -55, -55, -60, -45]
    assert [g(x) for x in levels] == [False, False, True, True, True, True, False, False, False]


def test_flush_drops_the_open_utterance():
    st = FeatureStage()
    st.push(AudioFrame(0, speech_like(0.5)))
    out = st.push(FlushFrame(0))
    assert out == [FlushFrame(0)] and st.stream is None
    assert st.push(SpeechEndFrame(0)) == []


def test_implicit_start_and_back_to_back_utterances():
    st = FeatureStage(SilenceGate(enabled=False))
    a, b = speech_like(0.3, seed=1), speech_like(0.5, seed=2)
    out = st.push(AudioFrame(0, a, speech_id=1))
    out += st.push(SpeechStartFrame(0, speech_id=2))  # ends utterance 1
    out += st.push(AudioFrame(0, b, speech_id=2))
    out += st.push(SpeechEndFrame(0, speech_id=2))
    ends = [f for f in out if isinstance(f, SpeechEndFrame)]
    assert [e.speech_id for e in ends] == [1, 2]
    mels = [f for f in out if isinstance(f, MelFrame)]
    assert len(mels) == frames_for_samples(a.size) + frames_for_samples(b.size)


@pytest.mark.parametrize("chunk", [320, 8000])
def test_each_frame_carries_the_gate_of_the_frames_after_it(chunk):
    """MelFrame.ahead: the gate's flags of the next frames, judged as soon as their 40 ms of audio is there
    (inside this frame's window), so the planner's ramp need not wait for their windows. Same flags as the
    frames themselves get, whatever the chunking; at least 4 inside an utterance still arriving."""
    rng = np.random.default_rng(chunk)
    wav = np.concatenate([speech_like(0.3, level=0.3, seed=1) * (rng.random() > 0.5) for _ in range(12)])
    st = FeatureStage(SilenceGate())
    mels = []
    for k in range(0, wav.size, chunk):
        mels += [f for f in st.push(AudioFrame(0, wav[k:k + chunk])) if isinstance(f, MelFrame)]
    before_end = len(mels)
    mels += [f for f in st.push(SpeechEndFrame(0)) if isinstance(f, MelFrame)]
    flags = [m.speech for m in mels]
    assert len(set(flags)) == 2  # speech and silence both present
    for i, m in enumerate(mels):
        assert m.ahead == tuple(flags[i + 1:i + 1 + len(m.ahead)])
        if i < before_end:
            assert len(m.ahead) >= 4
    assert mels[-1].ahead == ()
    reference = [m.speech for m in _run_stage(wav, wav.size, SilenceGate()) if isinstance(m, MelFrame)]
    assert flags == reference

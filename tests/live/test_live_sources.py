"""Sources: PCM decoding/resampling at the edge, the speech queue, the microphone gate."""
from __future__ import annotations

import time

import numpy as np
import pytest

from backend.sources.mic import MicGate
from backend.sources.pcm import PcmDecoder
from backend.sources.queue import SpeechQueue
from stream_wav2lip.errors import UserError


def _tone(rate: int, seconds: float, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _feed_in_pieces(dec: PcmDecoder, data: bytes, sizes) -> np.ndarray:
    out, pos, i = [], 0, 0
    while pos < len(data):
        n = sizes[i % len(sizes)]
        out.append(dec.feed(data[pos:pos + n]))
        pos, i = pos + n, i + 1
    out.append(dec.finish())
    return np.concatenate(out)


def test_s16_stereo_at_16k_is_averaged_exactly():
    left, right = np.array([1000, -2000, 300], np.int16), np.array([3000, 2000, -300], np.int16)
    data = np.stack([left, right], 1).astype("<i2").tobytes()
    got = _feed_in_pieces(PcmDecoder(16000, 2, "s16"), data, [3, 1, 5])  # splits inside samples
    np.testing.assert_allclose(got, (left.astype(np.float32) + right) / 2 / 32768, atol=1e-7)


def test_streamed_resampling_in_odd_chunks_equals_one_shot_soxr():
    import soxr

    x = _tone(22050, 1.0)
    data = x.astype("<f4").tobytes()
    got = _feed_in_pieces(PcmDecoder(22050, 1, "f32"), data, [4 * 97, 4 * 1, 4 * 441, 7])
    ref = soxr.resample(x, 22050, 16000, quality="HQ")
    assert abs(got.size - ref.size) <= 1
    n = min(got.size, ref.size)
    assert np.max(np.abs(got[:n] - ref[:n])) < 1e-3


def test_bad_pcm_parameters_are_user_errors():
    with pytest.raises(UserError):
        PcmDecoder(16000, 1, "u8")
    with pytest.raises(UserError):
        PcmDecoder(10, 1, "s16")
    with pytest.raises(UserError):
        PcmDecoder(16000, 0, "s16")


def test_queue_order_flush_and_cancelled_streams():
    q = SpeechQueue()
    a = q.add(np.ones(10, np.float32))
    b = q.open("pcm")
    assert q.head() is a and len(q) == 2 and q.queued_samples() == 10
    assert q.flush() == 2 and q.head() is None and q.generation == 1
    b.append(np.ones(5, np.float32))  # a TTS still sending after barge-in: ignored
    assert b.cancelled and b.n == 0


def test_utterance_take_new_and_entered_time():
    q = SpeechQueue()
    u = q.open("pcm")
    t0 = 1_000_000_000
    u.append(np.zeros(1600, np.float32), now_ns=t0)
    u.append(np.zeros(1600, np.float32), now_ns=t0 + 50_000_000)  # arrived late
    pcm, ended = u.take_new()
    assert pcm.size == 3200 and not ended and u.take_new()[0].size == 0
    assert u.entered_ns(0) == t0
    assert u.entered_ns(800) == t0 + 50_000_000  # 'due' at +50 ms anyway
    assert u.entered_ns(1600) == t0 + 100_000_000  # due at 100 ms, after it arrived
    u.end()
    assert u.take_new()[1]


def test_mic_gate_opens_on_speech_with_preroll_and_closes_after_hangover():
    q = SpeechQueue()
    gate = MicGate(q, open_db=-40, close_db=-48, hang_ms=200, preroll_ms=40)
    noise = np.full(320 * 10, 1e-4, np.float32)  # -80 dBFS room noise
    gate.push(noise)
    assert q.head() is None
    speech = _tone(16000, 0.5) * 0.5
    gate.push(speech[:1000])
    gate.push(speech[1000:])
    u = q.head()
    assert u is not None and u.origin == "mic" and not u.ended
    gate.push(np.zeros(320 * 11, np.float32))
    assert u.ended
    # pre-roll (2 blocks) + speech + hang-over, all in 20 ms blocks
    assert u.n == 640 + 8000 + 320 * 10


def test_mic_gate_starts_a_new_utterance_after_a_flush():
    q = SpeechQueue()
    gate = MicGate(q)
    loud = _tone(16000, 0.2)
    gate.push(loud)
    first = q.head()
    q.flush()
    gate.push(loud)
    second = q.head()
    assert second is not None and second is not first and first.cancelled


def test_file_source_decodes_before_queueing(tmp_path, media_dir):
    from backend.sources.files import queue_files

    q = SpeechQueue()
    with pytest.raises(UserError):
        queue_files(q, [media_dir / "tts_espeakng_en.wav", tmp_path / "missing.wav"])
    assert len(q) == 0
    t = time.monotonic()
    (u,) = queue_files(q, [media_dir / "tts_espeakng_en.wav"])
    assert u.ended and u.n > 16000 and time.monotonic() - t < 2

"""NaN/Inf (and absurd) samples are cleaned where speech enters: the PCM decoder, the file loader's queueing and
every `Utterance.append`, so neither the features nor the audio handed to OBS ever see a non-finite value."""
from __future__ import annotations

import numpy as np
import pytest

from backend.sources.pcm import HEADROOM, PcmDecoder, finite_samples
from backend.sources.queue import SpeechQueue
from models.audio import melspectrogram


def _dirty(n: int = 4800, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = (0.5 * np.sin(np.arange(n) / 5.0)).astype(np.float32)
    for value in (np.nan, np.inf, -np.inf, 3e38, -1e30):
        x[rng.integers(0, n, 20)] = value
    return x


def _features_finite(wav: np.ndarray) -> bool:
    return bool(np.isfinite(melspectrogram(wav)).all())


def test_dirty_audio_would_poison_the_features():
    """Why the cleaning exists: one NaN makes whole mel frames NaN."""
    with np.errstate(all="ignore"):
        assert not _features_finite(_dirty())


def test_finite_samples_rules():
    x = np.array([0.25, np.nan, np.inf, -np.inf, 1.5, 20.0, -1e30], np.float32)
    np.testing.assert_array_equal(finite_samples(x), [0.25, 0.0, 1.0, -1.0, 1.5, HEADROOM, -HEADROOM])
    assert np.isnan(x[1]), "the caller's array is not changed"
    clean = np.array([0.5, -1.2], np.float32)
    assert finite_samples(clean) is clean, "clean audio is passed through without a copy"


@pytest.mark.parametrize("rate,channels", [(16000, 1), (24000, 1), (22050, 2)])
def test_pcm_decoder_cleans_float_pcm_before_mixing_and_resampling(rate, channels):
    x = np.repeat(_dirty(), channels)
    if channels == 2:
        x[0::2][:100], x[1::2][:100] = np.inf, -np.inf  # inf + -inf would mix to NaN
    decoder = PcmDecoder(rate, channels, "f32")
    data = x.astype("<f4").tobytes()
    out = np.concatenate([decoder.feed(data[i:i + 1001]) for i in range(0, len(data), 1001)] + [decoder.finish()])
    assert out.size > 0 and np.isfinite(out).all() and np.abs(out).max() <= 2 * HEADROOM
    assert _features_finite(out)


def test_a_nan_costs_only_its_own_sample_not_the_resampler_block_around_it():
    """Uncleaned, one NaN at 24 kHz turns ~490 resampled samples NaN; cleaned, it is one zero sample."""
    tone = (0.5 * np.sin(2 * np.pi * 440 * np.arange(24000) / 24000)).astype("<f4")
    bad = tone.copy()
    bad[100:110] = np.nan
    clean_decoder, dirty_decoder = PcmDecoder(24000, 1, "f32"), PcmDecoder(24000, 1, "f32")
    expected = np.concatenate([clean_decoder.feed(np.where(np.isnan(bad), 0, bad).astype("<f4").tobytes()),
                               clean_decoder.finish()])
    got = np.concatenate([dirty_decoder.feed(bad.tobytes()), dirty_decoder.finish()])
    np.testing.assert_array_equal(got, expected)


def test_utterance_append_cleans_whatever_the_source():
    q = SpeechQueue()
    u = q.open("mic")
    dirty = _dirty()
    u.append(dirty)
    u.append(np.array([np.nan, np.inf], np.float64))  # any dtype, converted then cleaned
    u.end()
    pcm, ended = u.take_new()
    assert ended and pcm.size == dirty.size + 2 and np.isfinite(pcm).all() and np.abs(pcm).max() <= HEADROOM
    assert np.isnan(dirty).any(), "the caller's buffer is left alone"
    assert _features_finite(pcm)


def test_queued_files_with_nan_and_inf_samples_are_cleaned(tmp_path):
    import soundfile

    from backend.sources.files import queue_files

    path = tmp_path / "float_with_nan.wav"
    soundfile.write(str(path), _dirty(8000), 16000, subtype="FLOAT")
    raw, _ = soundfile.read(str(path), dtype="float32")
    assert not np.isfinite(raw).all(), "the file really carries NaN/Inf"
    q = SpeechQueue()
    (u,) = queue_files(q, [path])
    pcm, _ = u.take_new()
    assert pcm.size == 8000 and np.isfinite(pcm).all()
    assert _features_finite(pcm)


@pytest.mark.parametrize("bad", [5, None, b"bytes.wav", "", "  ", "a\0b.wav"])
def test_queue_files_refuses_names_that_are_not_file_names(bad):
    from backend.sources.files import queue_files
    from stream_wav2lip.errors import UserError

    q = SpeechQueue()
    with pytest.raises(UserError):
        queue_files(q, [bad])
    assert len(q) == 0

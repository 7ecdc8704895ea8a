"""Audio front-end: golden mel / windows, index rule, loading real files of every kind."""
from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile

from models import audio
from stream_wav2lip.errors import UserError


@pytest.fixture(scope="module")
def test_signal(golden_dir):
    return audio.load_audio(golden_dir / "test_signal.wav")


def test_load_wav_is_int16_over_32768(test_signal):
    assert test_signal.dtype == np.float32 and test_signal.shape == (48000,)
    assert (test_signal[:8] * 32768).round().astype(int).tolist() == [2140, 4179, 5072, 5258, 5194, 4653, 3437, 2255]


def test_mel_basis_matches_golden(golden_dir):
    np.testing.assert_allclose(audio.mel_basis(), np.load(golden_dir / "mel_basis_80x401.npy"), atol=1e-7)


def test_melspectrogram_matches_golden(test_signal, golden_dir):
    mel = audio.melspectrogram(test_signal)
    golden = np.load(golden_dir / "test_signal_mel.npy")
    assert mel.dtype == np.float32 and mel.shape == golden.shape == (80, 241)
    np.testing.assert_allclose(mel, golden, atol=1e-4, rtol=0)
    # reflect padding, not librosa>=0.9's zeros: the edge columns must differ from the const-pad file
    constpad = np.load(golden_dir / "test_signal_mel_librosa_constpad.npy")
    assert np.abs(mel[:, 0] - constpad[:, 0]).max() > 1e-2


def test_mel_for_range_equals_batch(test_signal):
    mel = audio.melspectrogram(test_signal)
    for start, stop in [(0, 3), (0, 241), (57, 73), (225, 241), (240, 241)]:
        np.testing.assert_allclose(audio.mel_for_range(test_signal, start, stop), mel[:, start:stop], atol=1e-5)


def test_mel_windows_match_golden(test_signal, golden_dir):
    meta = json.loads((golden_dir / "test_signal_meta.json").read_text())
    windows = audio.mel_windows(audio.melspectrogram(test_signal))
    golden = np.load(golden_dir / "test_signal_mel_chunks.npy")
    assert windows.shape == golden.shape == (72, 80, 16)
    np.testing.assert_allclose(windows, golden, atol=1e-4, rtol=0)
    starts = meta["chunks"]["start_indices"]
    assert [audio.mel_window_start(i) for i in range(len(starts) - 1)] == starts[:-1]
    assert audio.num_mel_windows(241) == 72


def test_window_start_rule():
    assert all(audio.mel_window_start(i) == int(i * 80 / 25) for i in range(5000))
    assert audio.mel_window_start(7, fps=30.0) == int(7 * (80.0 / 30.0))
    assert (audio.SAMPLE_RATE, audio.HOP, audio.MEL_STEPS_PER_SECOND, audio.WINDOW_STEPS) == (16000, 200, 80, 16)


def test_mel_windows_rejects_too_short():
    with pytest.raises(ValueError):
        audio.mel_windows(np.zeros((80, 10), np.float32))


@pytest.mark.parametrize("name", [
    "dreamtalk__data_audio_acknowledgement_english.m4a",  # AAC in MP4 (PyAV)
    "whisper__tests_jfk.flac",  # stereo 44.1 kHz 24-bit FLAC (libsndfile)
    "EchoMimic__assets_test_audios_chunwang.wav",  # 24 kHz mono WAV
    "video-retalking__examples_face_2.mp4",  # audio track of a video
])
def test_load_real_media(media_dir, name):
    path = media_dir / name
    if not path.exists():
        pytest.skip(f"{path} missing")
    wav = audio.load_audio(path)
    assert wav.dtype == np.float32 and wav.ndim == 1
    assert wav.size > 16000 and 0.01 < np.abs(wav).max() <= 1.0


def test_stereo_44k_is_downmixed_and_resampled(media_dir):
    path = media_dir / "whisper__tests_jfk.flac"
    if not path.exists():
        pytest.skip(f"{path} missing")
    info = soundfile.info(str(path))
    assert (info.samplerate, info.channels) == (44100, 2)
    wav = audio.load_audio(path)
    assert abs(wav.size - round(info.frames * 16000 / 44100)) <= 1
    # same result when FFmpeg decodes it: the two readers agree on a lossless file
    decoded, rate = audio._read_with_pyav(path)
    raw, _ = soundfile.read(str(path), dtype="float32", always_2d=True)
    assert rate == 44100 and np.abs(decoded - raw).max() < 1e-6


def test_stereo_wav_from_synthesised_file(tmp_path):
    t = np.arange(44100) / 44100
    left, right = 0.5 * np.sin(2 * np.pi * 440 * t), np.zeros_like(t)
    path = tmp_path / "stereo.wav"
    soundfile.write(str(path), np.stack([left, right], axis=1), 44100, subtype="PCM_16")
    wav = audio.load_audio(path)
    assert wav.size == 16000
    assert 0.2 < np.abs(wav[1000:-1000]).max() < 0.3  # mean of the two channels


@pytest.mark.parametrize("content", [b"", b"this is not audio at all" * 10])
def test_unreadable_files_raise_user_error(tmp_path, content):
    path = tmp_path / "broken.m4a"
    path.write_bytes(content)
    with pytest.raises(UserError, match="broken.m4a"):
        audio.load_audio(path)


def test_missing_file_and_zero_samples(tmp_path):
    with pytest.raises(UserError, match="not found"):
        audio.load_audio(tmp_path / "nope.wav")
    empty = tmp_path / "empty.wav"
    soundfile.write(str(empty), np.zeros((0, 1)), 16000)
    with pytest.raises(UserError, match="zero samples"):
        audio.load_audio(empty)


def test_video_without_audio_stream(tmp_path):
    import av

    path = tmp_path / "silent.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width = stream.height = 32
        stream.pix_fmt = "yuv420p"
        for _ in range(3):
            frame = av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    with pytest.raises(UserError, match="no audio stream"):
        audio.load_audio(path)

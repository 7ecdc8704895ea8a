"""`serve` options and the small shared helpers of the live backend (no processes, no devices)."""
from __future__ import annotations

import argparse
import os
import time

import numpy as np
import pytest

from stream_wav2lip.errors import UserError


def _serve_args(*argv: str) -> argparse.Namespace:
    from backend import serve_cli

    p = argparse.ArgumentParser()
    serve_cli.add_arguments(p)
    return p.parse_args(["--avatar", "x", *argv])


def test_serve_defaults_leave_the_crop_to_the_engine_and_lead_audio_by_60ms():
    args = _serve_args()
    assert args.crop is None and args.audio_lead_ms == 60.0
    assert _serve_args("--crop", "heads", "--audio-lead-ms", "40").crop == "heads"


def test_mouth_engine_gets_crop_none_so_it_picks_its_own_head_crop(synthetic_avatar, monkeypatch):
    from backend.generators import registry
    from backend.generators.registry import GeneratorOptions, make_generator
    from preprocess.package import AvatarPackage

    seen = []
    entry = registry.get("mouth")
    monkeypatch.setitem(registry._REGISTRY, "mouth", registry.GeneratorEntry(
        "mouth", entry.summary, entry.target, lambda options, pkg: seen.append(options.crop)))
    pkg = AvatarPackage.open(synthetic_avatar)
    make_generator("mouth", pkg, GeneratorOptions())
    make_generator(None, pkg, GeneratorOptions())  # no checkpoint: the mouth engine by default
    make_generator("mouth", pkg, GeneratorOptions(crop="body"))  # an explicit --crop is passed on
    assert seen == [None, None, "body"]
    assert make_generator("null", pkg, GeneratorOptions()).crop == "head"


def test_the_engine_feeds_a_heads_generator_the_whole_head_crop(synthetic_avatar):
    from backend.engine import Engine
    from backend.frames import AudioFrame, SpeechEndFrame
    from preprocess.package import AvatarPackage
    from tests.backend.helpers import RecordingGenerator, speech_like

    pkg = AvatarPackage.open(synthetic_avatar)
    gen = RecordingGenerator(pkg.head_size, crop="heads")
    eng = Engine(pkg, gen, silence_gate=False, batch_size=2)
    eng.push(AudioFrame(0, speech_like(0.2)))
    eng.push(SpeechEndFrame(0))
    eng.render(eng.plan())
    item = gen.batches[0][0]
    assert np.array_equal(item.face, pkg.image("heads", item.avatar_index))


class FakePyAudio:
    devices = [{"name": "Built-in Mic", "maxInputChannels": 2, "maxOutputChannels": 0},
               {"name": "USB Headset", "maxInputChannels": 1, "maxOutputChannels": 2}]

    def get_device_count(self):
        return len(self.devices)

    def get_device_info_by_index(self, i):
        return self.devices[i]


def test_one_device_lookup_for_microphone_and_playback():
    from backend.portaudio import find_device

    pa = FakePyAudio()
    assert find_device(pa, None, output=False, option="--mic") is None
    assert find_device(pa, "default", output=True, option="--play-audio") is None
    assert find_device(pa, "3", output=False, option="--mic") == 3
    assert find_device(pa, "usb", output=False, option="--mic") == 1
    assert find_device(pa, "headset", output=True, option="--play-audio") == 1
    with pytest.raises(UserError, match=r"--play-audio built-in: no such output device \(available: USB Headset\)"):
        find_device(pa, "built-in", output=True, option="--play-audio")


def test_read_audio_keeps_the_native_rate_and_channels_load_audio_resamples(tmp_path):
    import soundfile

    from models.audio import load_audio, read_audio

    rate = 22050
    t = np.arange(rate // 2) / rate
    stereo = np.stack([0.3 * np.sin(2 * np.pi * 440 * t), 0.1 * np.sin(2 * np.pi * 880 * t)], 1).astype(np.float32)
    path = tmp_path / "tts.wav"
    soundfile.write(path, stereo, rate, subtype="FLOAT")
    samples, got_rate = read_audio(path)
    assert got_rate == rate and samples.shape == stereo.shape
    np.testing.assert_array_equal(samples, stereo)
    assert load_audio(path).size == 8000
    with pytest.raises(UserError, match="file not found"):
        read_audio(tmp_path / "missing.wav")


def test_frames_to_mel_is_the_last_step_of_melspectrogram():
    from models import audio

    wav = (0.2 * np.random.default_rng(0).standard_normal(4000)).astype(np.float32)
    emphasised = audio.preemphasis(wav)
    padded = np.pad(emphasised, audio.N_FFT // 2, mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(padded, audio.N_FFT)[::audio.HOP][: audio.num_mel_frames(wav.size)]
    np.testing.assert_array_equal(audio.frames_to_mel(frames), audio.melspectrogram(wav))


def test_status_liveness_is_the_rings_rule():
    import shm_protocol as C
    import shm_protocol as S

    now = time.monotonic_ns()
    alive = {"pid": os.getpid(), "heartbeat": now, "state": "idle"}
    assert C.status_is_alive(alive, now)
    assert not C.status_is_alive({**alive, "heartbeat": now - S.HEARTBEAT_STALE_NS - 1}, now)
    assert not C.status_is_alive({**alive, "pid": "123"}, now)
    assert not C.status_is_alive({**alive, "state": "stopped"}, now)
    assert not C.status_is_alive(None, now)
    assert not S.pid_alive(None) and not S.pid_alive(0)

"""Microphone path with a real PortAudio stream: a private PulseAudio daemon with a null sink whose monitor
is the default source; the test plays a speech clip into the sink and the backend hears it via `--mic`."""
from __future__ import annotations

import os
import shutil
import subprocess
import time

import numpy as np
import pytest

import shm_protocol as S
from tests.live.serve_harness import ServeProcess, collect, open_readers, segments

pytestmark = pytest.mark.e2e


@pytest.fixture
def pulse(tmp_path):
    """A private PulseAudio server (own socket, nothing shared with the machine's sound setup)."""
    if not shutil.which("pulseaudio") or not shutil.which("paplay"):
        pytest.skip("no virtual audio device possible: pulseaudio/pacat not installed (apt install pulseaudio pulseaudio-utils)")
    sock = tmp_path / "native"
    env = {**os.environ, "PULSE_RUNTIME_PATH": str(tmp_path / "rt"), "PULSE_STATE_PATH": str(tmp_path / "st"),
           "PULSE_SERVER": f"unix:{sock}"}
    daemon = subprocess.Popen(
        ["pulseaudio", "-n", "--daemonize=no", "--exit-idle-time=-1", "--use-pid-file=no", "--disable-shm=yes",
         "-L", f"module-native-protocol-unix socket={sock} auth-anonymous=1",
         "-L", "module-null-sink sink_name=s2lmic", "-L", "module-null-sink sink_name=s2lout"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while subprocess.run(["pactl", "info"], env=env, capture_output=True).returncode != 0:
            if daemon.poll() is not None or time.monotonic() > deadline:
                pytest.skip(f"no virtual audio device possible: pulseaudio did not start "
                            f"({daemon.stderr.read().decode()[-300:] if daemon.poll() is not None else 'timeout'})")
            time.sleep(0.1)
        subprocess.run(["pactl", "set-default-source", "s2lmic.monitor"], env=env, check=True)
        subprocess.run(["pactl", "set-default-sink", "s2lout"], env=env, check=True)
        yield {k: env[k] for k in ("PULSE_RUNTIME_PATH", "PULSE_STATE_PATH", "PULSE_SERVER")}
    finally:
        daemon.terminate()
        try:
            daemon.wait(5)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()


def test_microphone_speech_drives_the_avatar_and_silence_stays_idle(pulse, synthetic_avatar, media_dir, tmp_path):
    from models.audio import load_audio

    session = f"mic{os.getpid()}"
    env = {**pulse, "S2L_RUNTIME_DIR": str(tmp_path / "run")}
    serve = ServeProcess(session, synthetic_avatar, "--engine", "null", "--mic", "pulse", "--play-audio", "pulse",
                         env=env)
    try:
        serve.wait_ready()
        video, audio = open_readers(session)
        quiet = collect(video, audio, 1.0)
        assert quiet.audio and not any(s.flags & S.FLAG_SPEECH for s in quiet.audio), "silence stays idle"
        clip_path = media_dir / "tts_espeakng_en.wav"
        player = subprocess.Popen(["paplay", "--device=s2lmic", str(clip_path)], env={**os.environ, **pulse})
        cap = collect(video, audio, 12, until=lambda c: player.poll() is not None and c.audio
                      and not c.audio[-1].flags & S.FLAG_SPEECH)
        player.wait(10)
        heard = np.concatenate([audio.audio_array(s)[:, 0] for s in cap.audio if s.flags & S.FLAG_SPEECH])
        clip = load_audio(clip_path)
        assert heard.size > 0.6 * clip.size, f"heard {heard.size / 16000:.2f}s of {clip.size / 16000:.2f}s"
        # it is the clip (through PulseAudio's resampler): strong normalised cross-correlation at some lag
        # (skip the first 0.1 s: the gate's 60 ms preroll may put quiet audio from before the clip in front of it,
        # a negative lag that mode="valid" cannot see)
        a = heard[1600:1600 + 16000 * 2] - heard[1600:1600 + 16000 * 2].mean()
        corr = np.correlate(clip[: 16000 * 3], a, mode="valid")
        norm = np.sqrt(np.sum(a * a) * np.max(np.convolve(clip[: 16000 * 3] ** 2, np.ones(a.size), "valid")))
        assert corr.max() / norm > 0.8
        assert any(s.flags & S.FLAG_SPEECH for s in cap.video), "speech frames shown"
        video.close(), audio.close()
    finally:
        assert serve.stop() == 0, serve.stderr
    assert segments(session) == []

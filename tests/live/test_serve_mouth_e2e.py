"""End to end with the default engine: a real `serve` process, no checkpoint (the weightless mouth engine),
a file with a pause inside it. The mouth rests in the pause (the engine runs the mouth engine on silent frames
of an utterance, as `render` does), every frame of the pause is flagged as a generated mouth, audio is exact."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

import shm_protocol as S
from backend.frames import SAMPLES_PER_FRAME
from tests.backend.helpers import speech_like
from tests.live.serve_harness import REPO, ServeProcess, collect, open_readers, segments

sys.path.insert(0, str(Path(__file__).parents[1] / "mouth"))
from synthetic import write_package  # noqa: E402

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_the_default_engine_rests_the_mouth_in_a_pause(tmp_path, runtime_dir, session):
    avatar = write_package(tmp_path / "talking", n=120)
    clip = np.concatenate([speech_like(1.0, seed=1, level=0.4), np.zeros(24000, np.float32),
                           speech_like(0.8, seed=2, level=0.4)])
    wav = tmp_path / "pause.wav"
    soundfile.write(wav, clip, 16000, subtype="FLOAT")
    env = {"S2L_RUNTIME_DIR": str(runtime_dir)}
    serve = ServeProcess(session, avatar, env=env)
    try:
        status = serve.wait_ready(timeout=120)
        assert status["engine"] == "mouth", "no checkpoint: the mouth engine is the default"
        video, audio = open_readers(session)
        subprocess.run([sys.executable, "-m", "stream_wav2lip", "say", "--session", session, str(wav)], cwd=REPO,
                       check=True, capture_output=True, timeout=60, env={**os.environ, **env})
        n = -(-clip.size // SAMPLES_PER_FRAME)
        cap = collect(video, audio, 20, until=lambda c: sum(1 for s in c.audio if s.flags & 1) >= n
                      and not c.audio[-1].flags & 1)
        speech = [s for s in cap.audio if s.flags & S.FLAG_SPEECH]
        played = np.concatenate([audio.audio_array(s)[:, 0] for s in speech])
        np.testing.assert_array_equal(played[:clip.size], clip)
        first = speech[0].pts_ns
        pause = [s for s in cap.video if first + 40 * 40_000_000 <= s.pts_ns < first + 60 * 40_000_000]
        assert len(pause) >= 5, "the video ring was read during the pause"
        assert all(s.flags & S.FLAG_SPEECH for s in pause if not s.flags & S.FLAG_REPEAT), \
            "the pause shows the mouth engine's resting mouth, not the talking footage"
        video.close(), audio.close()
    finally:
        assert serve.stop() == 0, serve.stderr
    assert segments(session) == []

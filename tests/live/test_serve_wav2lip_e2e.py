"""`serve` with the real Wav2Lip 96 network (deterministic weights, docs/models.md §10 recipe) on the synthetic avatar.

On a shared 2-core CPU the network is slower than 25 fps, so this also checks the degraded mode: the clock
keeps publishing 25 fps with every audio block, repeats images it could not render in time (flag bit 1), and
every rendered speech frame differs from the footage only in the mouth area.
"""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from backend.frames import FRAME_NS, SAMPLES_PER_FRAME
import shm_protocol as S
from tests.live.serve_harness import REPO, ServeProcess, collect, open_readers, segments, shown_footage

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from models.testing import deterministic_model, save_reference_checkpoint

    path = tmp_path_factory.mktemp("ckpt") / "wav2lip96_deterministic.pth"
    save_reference_checkpoint(deterministic_model("wav2lip96"), path, with_optimizer=False)
    return path


def test_network_backend_keeps_the_clock_and_changes_only_the_mouth(synthetic_avatar, checkpoint, media_dir,
                                                                     runtime_dir, session):
    from backend.compositor import Compositor
    from models.audio import load_audio
    from preprocess.package import AvatarPackage

    pkg = AvatarPackage.open(synthetic_avatar)
    clip_path = media_dir / "tts_espeakng_en.wav"
    clip = load_audio(clip_path)
    serve = ServeProcess(session, synthetic_avatar, "--checkpoint", str(checkpoint), "--device", "cpu",
                         "--precision", "fp32", env={"S2L_RUNTIME_DIR": str(runtime_dir), "OMP_NUM_THREADS": "2"})
    try:
        status = serve.wait_ready(timeout=120)
        assert status["engine"] == "wav2lip:wav2lip96"
        video, audio = open_readers(session)
        subprocess.run([sys.executable, "-m", "stream_wav2lip", "say", "--session", session, str(clip_path)],
                       cwd=REPO, check=True, capture_output=True, timeout=60,
                       env={**os.environ, "S2L_RUNTIME_DIR": str(runtime_dir)})
        n_frames = -(-clip.size // SAMPLES_PER_FRAME)
        cap = collect(video, audio, 30, until=lambda c: sum(1 for s in c.audio if s.flags & 1) >= n_frames
                      and not c.audio[-1].flags & 1)
        speech = np.concatenate([audio.audio_array(s)[:, 0] for s in cap.audio if s.flags & S.FLAG_SPEECH])
        np.testing.assert_array_equal(speech[: clip.size], clip)  # audio is never stretched or dropped
        pts = np.array([s.pts_ns for s in cap.video])
        seq = np.array([s.sequence for s in cap.video])  # a reader starved by a busy machine may miss a slot
        assert (np.diff(pts) == FRAME_NS * np.diff(seq)).all(), "25 fps on the clock even when the network is slower"
        comp, footage = Compositor(pkg), shown_footage(pkg)
        generated = [s for s in cap.video if s.flags & S.FLAG_SPEECH and not s.flags & S.FLAG_REPEAT]
        assert generated, "at least some speech frames were rendered by the network"
        for slot in generated:
            frame, ref = video.video_array(slot)[:, :, :3], footage(slot.index)
            x, y, w, h = comp.placement(slot.index, "head", pkg.face_size).roi
            outside = np.ones(ref.shape[:2], bool)
            outside[y:y + h, x:x + w] = False
            assert np.array_equal(frame[outside], ref[outside])
            assert not np.array_equal(frame, ref)
        video.close(), audio.close()
        print(f"network e2e: {len(generated)} rendered speech frames of {n_frames}; "
              f"{sum(1 for s in cap.video if s.flags & S.FLAG_REPEAT)} repeats")
    finally:
        assert serve.stop() == 0, serve.stderr
    assert segments(session) == []

"""Slow: a real avatar (preprocess fixture) + a deterministic-weight Wav2Lip 96 checkpoint + real speech."""
from pathlib import Path

import numpy as np
import pytest
import soundfile

from tests.backend.test_render import probe

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wav2lip96_checkpoint(tmp_path_factory) -> Path:
    from models.testing import deterministic_state_dict, save_reference_checkpoint

    return save_reference_checkpoint(deterministic_state_dict("wav2lip96"),
                                     tmp_path_factory.mktemp("ckpt") / "wav2lip96.pth", with_optimizer=False)


@pytest.fixture(scope="module")
def speech_2s(tmp_path_factory, media_dir) -> Path:
    from models.audio import load_audio

    src = media_dir / "whisper__tests_jfk.flac"
    if not src.is_file():
        pytest.skip(f"{src} missing")
    wav = load_audio(src)[16000:16000 + 32000]  # 2 s of speech ("...my fellow Americans...")
    out = tmp_path_factory.mktemp("speech") / "speech_2s.wav"
    soundfile.write(out, wav, 16000)
    return out


@pytest.mark.parametrize("crop,seconds", [("head", 2), ("body", 1)])
def test_render_real_avatar_with_wav2lip96(small_avatar, wav2lip96_checkpoint, speech_2s, tmp_path, crop, seconds,
                                           monkeypatch):
    import cv2
    import torch

    from backend.cpu_streams import CpuStreams
    from backend.render import render
    from preprocess.package import AvatarPackage

    torch.set_num_threads(2)
    streams_used = []
    real_run = CpuStreams.run
    monkeypatch.setattr(CpuStreams, "run", lambda self, *a: streams_used.append(self.count) or real_run(self, *a))
    out = tmp_path / "out.mp4"
    if seconds != 2:
        wav, _ = soundfile.read(speech_2s, dtype="float32")
        soundfile.write(tmp_path / "short.wav", wav[:16000 * seconds], 16000)
        speech_2s = tmp_path / "short.wav"
    n = 25 * seconds
    r = render(small_avatar, [speech_2s], out, checkpoint=wav2lip96_checkpoint, device="cpu", batch_size=8,
               crop=crop, frames_dir=tmp_path / "frames", progress=False)
    assert r.frames == n
    assert r.detail == "on, band cut at σ 0.60"  # the test weights draw no face: the default cut (detail/softness.py)
    assert streams_used and set(streams_used) == {2}  # on the CPU the network ran as two single-threaded streams
    info = probe(out)
    assert info["fps"] == 25 and info["frames"] == n
    assert info["samples"] == 640 * n
    pkg = AvatarPackage.open(small_avatar)
    changed = 0
    for k, png in enumerate(sorted((tmp_path / "frames").glob("*.png"))):
        img = cv2.imread(str(png))
        base = pkg.frame(r_index(k, pkg.frame_count))
        diff = np.any(img != base, axis=2)
        if diff.any():
            changed += 1
            ys, xs = np.nonzero(diff)
            lm = pkg.track.landmarks[r_index(k, pkg.frame_count)]
            from preprocess import landmarks as L

            assert ys.min() > lm[list(L.RIGHT_EYE + L.LEFT_EYE), 1].max()  # never the eyes
    assert changed >= n // 2  # speech moved the mouth on most frames


def r_index(k: int, n: int) -> int:
    from backend.schedule import pingpong_index

    return pingpong_index(k, n)


def test_silent_audio_keeps_the_footage_mouth(small_avatar, wav2lip96_checkpoint, tmp_path):
    import cv2

    from backend.render import render
    from preprocess.package import AvatarPackage

    wav = tmp_path / "silence.wav"
    soundfile.write(wav, np.zeros(16000, np.float32), 16000)
    render(small_avatar, [wav], None, checkpoint=wav2lip96_checkpoint, device="cpu", frames_dir=tmp_path / "f",
           progress=False)
    pkg = AvatarPackage.open(small_avatar)
    pngs = sorted((tmp_path / "f").glob("*.png"))
    assert len(pngs) == 25
    for k, png in enumerate(pngs):
        assert np.array_equal(cv2.imread(str(png)), pkg.frame(r_index(k, pkg.frame_count)))

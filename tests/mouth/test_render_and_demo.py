"""The mouth engine through the real render path, and the `demo` command end to end."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from synthetic import audio_for, openings


def streams(path: Path) -> dict:
    """{'video': (frames, fps, w, h), 'audio': seconds} of an mp4."""
    import av

    with av.open(str(path)) as c:
        v = c.streams.video[0]
        a = c.streams.audio[0] if c.streams.audio else None
        frames = sum(1 for _ in c.decode(video=0))
        info = {"video": (frames, float(v.average_rate), v.width, v.height)}
    if a is not None:
        with av.open(str(path)) as c:
            info["audio"] = sum(f.samples for f in c.decode(audio=0)) / c.streams.audio[0].rate
    return info


def test_render_with_the_mouth_engine(talking_avatar, tmp_path):
    import soundfile

    from backend.render import render

    speech = tmp_path / "speech.wav"
    soundfile.write(str(speech), audio_for(openings(50, seed=3), seed=4), 16000)
    result = render(talking_avatar, [speech], tmp_path / "out.mp4", engine="mouth", progress=False)
    assert result.generator == "mouth" and result.frames == 50
    info = streams(tmp_path / "out.mp4")
    assert info["video"][:2] == (50, 25.0)
    assert abs(info["audio"] - 2.0) < 0.1


def test_transfer_changes_only_the_lower_face(talking_avatar):
    from backend.mouth.geometry import crop_landmarks
    from backend.mouth.transfer import transfer_mouth
    from preprocess.package import AvatarPackage

    pkg = AvatarPackage.open(talking_avatar)
    target, source = pkg.image("heads", 0), pkg.image("heads", 20)
    out = transfer_mouth(target, crop_landmarks(pkg, 0, "heads", 160), source,
                              crop_landmarks(pkg, 20, "heads", 160))
    changed = np.abs(out.astype(int) - target.astype(int)).sum(-1) > 0
    ys, _ = np.nonzero(changed)
    assert ys.size > 0 and ys.min() > 85  # below the nose (y ~ 90): eyes and forehead untouched


@pytest.mark.slow
def test_demo_writes_a_valid_mp4_with_audio(tmp_path):
    from backend.demo import next_steps, run_demo

    result = run_demo(tmp_path / "demo", lang="en", progress=False)
    info = streams(result.video)
    frames, fps, w, h = info["video"]
    assert fps == 25.0 and frames == result.frames and (w, h) == (512, 512)
    assert abs(info["audio"] - frames / 25) < 0.1
    assert result.mode == "warp"  # a still photo: the lowest-quality mode, and it says so
    text = next_steps(result, used_own_video=False)
    assert "demo --video" in text and "OBS" in text

"""Adding a generator = one module + one registry entry: a tiny generator registered only here runs through
`render` (the CLI, --engine choices included) and a real `serve` (its rings) unchanged."""
from __future__ import annotations


import numpy as np
import pytest
import soundfile

from backend.generators import registry
from backend.generators.base import Generator
from tests.backend.helpers import speech_like
from tests.live.serve_harness import collect, open_readers


class TintGenerator(Generator):
    """Paints the mouth region's red channel: visibly 'generated', nothing else changed."""

    name = "tint"

    def __init__(self, package):
        self.face_size, self.crop = package.face_size, "head"
        self.resets = 0

    def generate(self, batch):
        faces = np.stack([item.face for item in batch])
        s = faces.shape[1]
        faces[:, 2 * s // 3:, s // 3:2 * s // 3, 2] = 255
        return faces

    def reset(self):
        self.resets += 1


@pytest.fixture()
def tint():
    entry = registry.register(registry.GeneratorEntry(
        "tint", "raises the mouth's red (a test plug-in)", f"{__name__}:TintGenerator",
        lambda options, package: TintGenerator(package)))
    yield entry
    registry.unregister("tint")


@pytest.fixture()
def wav(tmp_path):
    path = tmp_path / "speech.wav"
    soundfile.write(path, speech_like(1.0, level=0.4), 16000)
    return path


def _red_excess(image, reference):
    """How far the reddest changed pixel moved (0 for the footage itself)."""
    return float((image[..., 2].astype(np.int16) - reference[..., 2].astype(np.int16)).max())


def test_a_registered_generator_renders_through_the_cli(tint, synthetic_avatar, wav, tmp_path):
    import cv2

    from preprocess.package import AvatarPackage
    from stream_wav2lip.cli import main

    assert "tint" in registry.engine_names()
    frames = tmp_path / "frames"
    assert main(["render", "--avatar", str(synthetic_avatar), "--audio", str(wav), "--engine", "tint",
                 "-o", str(tmp_path / "out.mp4"), "--frames-dir", str(frames)]) == 0
    pkg = AvatarPackage.open(synthetic_avatar)
    images = [cv2.imread(str(p)) for p in sorted(frames.glob("*.png"))]
    assert len(images) == 25
    assert max(_red_excess(image, pkg.frame(i % pkg.frame_count)) for i, image in enumerate(images[:18])) > 40


@pytest.mark.e2e
def test_a_registered_generator_drives_serve(tint, synthetic_avatar, wav, session):
    from backend.serve_app import ServeApp

    app = ServeApp(session, str(synthetic_avatar), engine="tint", api_port=None)
    try:
        app.start()
        assert app.engine.generator.name == "tint" and app.control.values["engine"] == "tint"
        video, audio = open_readers(session)
        collect(video, audio, 0.3)
        app.commands.say([str(wav)])
        cap = collect(video, audio, 2.5)
    finally:
        app.close()
    speech = [s for s in cap.video if s.flags & 1]
    assert len(speech) >= 10, "speech frames published with the generated mouth"
    pkg = app.engine.package
    excess = [_red_excess(video.video_array(s)[..., :3], pkg.frame(s.index)) for s in speech]
    assert max(excess) > 40 and app.engine.generator.resets >= 1

"""Transparency in real OBS: the avatar source carries the matte as real alpha (`background` property ->
`serve --background transparent`), and OBS's own media source plays render's .webm with its alpha."""
from __future__ import annotations

import base64
import io
import os
import subprocess

import numpy as np
import pytest
import soundfile

from obs_harness import VENV_PY, ObsSession, obs_available, unique_name
from tests.backend.helpers import half_matted_package

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(bool(obs_available()), reason=obs_available() or "ok")]


def _rgba(sess, source: str) -> np.ndarray:
    from PIL import Image

    r = sess.client.get_source_screenshot(source, "png", None, None, -1)
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(r.image_data.split(",", 1)[1]))).convert("RGBA"))


@pytest.fixture(scope="module")
def matted(tmp_path_factory):
    """A synthetic avatar whose matte keeps its left half (the 'person') and drops the right half."""
    return half_matted_package(tmp_path_factory.mktemp("obs_alpha") / "avatars" / "half")


def test_live_source_and_rendered_webm_are_transparent_in_obs(matted, tmp_path):
    wav = tmp_path / "s.wav"
    soundfile.write(wav, np.zeros(8000, np.float32), 16000)
    webm = tmp_path / "avatar.webm"
    out = subprocess.run([str(VENV_PY), "-m", "stream_wav2lip", "render", "--avatar", str(matted), "--audio", str(wav),
                          "--engine", "null", "--background", "transparent", "-o", str(webm), "--no-progress"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    live, media, under = unique_name("Alpha"), unique_name("Media"), unique_name("Game")
    colour = (40, 90, 200)  # RGB of the "game" below the avatars
    abgr = 0xFF000000 | (colour[2] << 16) | (colour[1] << 8) | colour[0]
    sources = [{"name": under, "id": "color_source_v3", "settings": {"color": abgr, "width": 1280, "height": 720}},
               {"name": live, "settings": {"avatars_root": str(matted.parent), "avatar": "half",
                                            "serve_args": "--engine null", "background": "transparent"}},
               {"name": media, "id": "ffmpeg_source", "pos": {"x": 400, "y": 0},
                "settings": {"local_file": str(webm), "looping": True, "is_local_file": True}}]
    with ObsSession(sources, workdir=tmp_path / "obs") as sess:
        sess.start()
        sess.client.press_input_properties_button(live, "start")
        sess.wait_status(live, "running", timeout=90)
        for name in (live, media):
            seen = {}

            def shown(name=name):
                seen["img"] = _rgba(sess, name)
                return seen["img"].shape[1] > 8 and seen["img"][..., 3].max() > 200
            sess.wait_for(shown, 15, interval=0.3, what=f"{name} on screen")
            img = seen["img"]
            w = img.shape[1]
            assert img[:, : w // 2 - 4, 3].min() > 200, f"{name}: the person is opaque"
            assert img[:, w // 2 + 4:, 3].max() < 30, f"{name}: the background is transparent"
        scene = _rgba(sess, "Scene")  # what the viewers see: the avatars over the source below them
        for x0 in (0, 400):
            assert np.abs(scene[100, x0 + 300, :3].astype(int) - colour).max() <= 3, "the game shows through"
            assert np.abs(scene[100, x0 + 20, :3].astype(int) - colour).max() > 20, "the avatar covers it"
        if os.environ.get("S2L_SAVE_SCREENSHOT"):  # the picture in docs/transparency.md
            from PIL import Image

            Image.fromarray(scene[:260, :760]).save(os.environ["S2L_SAVE_SCREENSHOT"])

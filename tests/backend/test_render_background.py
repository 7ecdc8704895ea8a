"""Backgrounds through the engine: the matte of the frame actually shown, over a colour or transparent, in
render's files (webm with alpha, PNG frames with alpha, mp4 over a colour) and in serve's frames."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import soundfile

from backend.background import parse_background
from backend.engine import Engine
from backend.generators.base import NullGenerator
from backend.render import render
from preprocess.package import AvatarPackage
from stream_wav2lip.errors import UserError
from tests.backend.helpers import half_matted_package, speech_like
from tests.backend.test_alpha_sinks import _decode_rgba


@pytest.fixture(scope="module")
def matted(tmp_path_factory):
    """The synthetic avatar with a matte: left half the person (255), right half background (0), a soft edge."""
    return half_matted_package(tmp_path_factory.mktemp("matted") / "avatar", soft_edge=4)


@pytest.fixture()
def wav(tmp_path):
    path = tmp_path / "s.wav"
    soundfile.write(path, speech_like(0.6), 16000)
    return path


def test_transparent_webm_and_png_frames_carry_the_matte(matted, wav, tmp_path):
    out, frames = tmp_path / "o.webm", tmp_path / "frames"
    render(matted, [wav], out, frames_dir=frames, generator=NullGenerator(96), loop="pingpong",
           background=parse_background("transparent"), progress=False)
    pngs = [cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in sorted(frames.glob("*.png"))]
    assert len(pngs) == 15 and all(p.shape[2] == 4 for p in pngs)
    w = pngs[0].shape[1]
    assert (pngs[0][:, : w // 2 - 2, 3] == 255).all() and (pngs[0][:, w // 2 + 8:, 3] == 0).all()
    decoded, _info = _decode_rgba(out)
    assert len(decoded) == 15 and decoded[3][5, 5, 3] > 250 and decoded[3][5, w - 5, 3] < 5


def test_a_colour_background_shows_where_the_matte_is_empty(matted, wav, tmp_path):
    frames = tmp_path / "frames"
    render(matted, [wav], tmp_path / "o.mp4", frames_dir=frames, generator=NullGenerator(96), loop="pingpong",
           background=parse_background("#00ff00"), progress=False)
    pkg = AvatarPackage.open(matted)
    first = cv2.imread(str(sorted(frames.glob("*.png"))[0]))
    w = first.shape[1]
    assert (first[:, w // 2 + 8:] == (0, 255, 0)).all()
    assert np.array_equal(first[:, : w // 2 - 2], pkg.frame(0)[:, : w // 2 - 2])


def test_serve_frames_come_out_with_alpha(matted):
    pkg = AvatarPackage.open(matted)
    eng = Engine(pkg, NullGenerator(96), loop="pingpong", background=parse_background("transparent"))
    plan = eng.plan_idle()
    eng.render([plan])
    assert plan.image.shape[2] == 4 and np.array_equal(plan.image[..., 3], pkg.alpha(plan.avatar_index))
    assert np.array_equal(eng.footage(plan), plan.image), "a frame serve repeats looks like a rendered one"


def test_transparent_mp4_is_refused_before_any_work(matted, wav, tmp_path):
    with pytest.raises(UserError, match="cannot carry transparency"):
        render(matted, [wav], tmp_path / "o.mp4", generator=NullGenerator(96),
               background=parse_background("transparent"), progress=False)
    assert not list(tmp_path.glob("*.mp4")) and not list(tmp_path.glob(".tmp-*"))


def test_an_image_background_fills_where_the_matte_is_empty(matted, wav, tmp_path):
    image = np.zeros((60, 80, 3), np.uint8)
    image[:, :, 0] = 200  # blue
    image[30:, :, 2] = 150  # a red lower half, to see that it is scaled, not tiled
    path = tmp_path / "bg.png"
    cv2.imwrite(str(path), image)
    frames = tmp_path / "frames"
    render(matted, [wav], tmp_path / "o.mp4", frames_dir=frames, generator=NullGenerator(96), loop="pingpong",
           background=parse_background(str(path)), progress=False)
    first = cv2.imread(str(sorted(frames.glob("*.png"))[0]))
    h, w = first.shape[:2]
    assert np.abs(first[5, w - 5].astype(int) - (200, 0, 0)).max() <= 2
    assert np.abs(first[h - 5, w - 5].astype(int) - (200, 0, 150)).max() <= 2

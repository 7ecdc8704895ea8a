"""`--background` parsing and alpha compositing: frames in, frames out (backend.background)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from backend.background import Background, composite, parse_background
from stream_wav2lip.errors import UserError


def _frame_and_matte(h=45, w=67, seed=0):
    """A random frame and a matte with all three kinds of pixel (0, 255, in between); odd sizes on purpose."""
    rng = np.random.default_rng(seed)
    frame = rng.integers(0, 256, (h, w, 3), np.uint8)
    alpha = np.zeros((h, w), np.uint8)
    cv2.circle(alpha, (w // 2, h // 2), min(h, w) // 3, 255, -1)
    alpha = cv2.GaussianBlur(alpha, (0, 0), 2.0)
    return frame, alpha


def _exact(frame, alpha, under):
    a = alpha.astype(np.int32)[:, :, None]
    return (frame.astype(np.int32) * a + np.asarray(under, np.int32) * (255 - a) + 127) // 255


# ------------------------------------------------------------------------------------------------ parsing
@pytest.mark.parametrize("text, kind", [("original", "original"), ("Transparent", "transparent"),
                                        ("#00ff00", "color"), ("00FF00", "color")])
def test_parse_keywords_and_colours(text, kind):
    assert parse_background(text).kind == kind


def test_colour_is_stored_bgr_and_printed_rgb():
    bg = parse_background("#ff8000")
    assert bg.color == (0, 128, 255)
    assert str(bg) == "#ff8000"
    assert bg.needs_matte and not bg.transparent


@pytest.mark.parametrize("text, problem", [("#12345", "not a colour"), ("#gg0000", "not a colour"),
                                           ("nosuch.png", "no such image file"), ("", "empty value")])
def test_bad_values_are_one_line_user_errors(text, problem):
    with pytest.raises(UserError, match=problem) as info:
        parse_background(text)
    assert "\n" not in str(info.value)


def test_image_background_must_be_a_readable_image(tmp_path):
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(UserError, match="not an image file"):
        parse_background(str(tmp_path / "notes.txt"))
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(UserError, match="unreadable image"):
        parse_background(str(tmp_path / "broken.png"))
    cv2.imwrite(str(tmp_path / "ok.png"), np.zeros((4, 4, 3), np.uint8))
    bg = parse_background(str(tmp_path / "ok.png"))
    assert bg.kind == "image" and bg.image.is_absolute() and str(bg) == str(bg.image)


# ------------------------------------------------------------------------------------------------ compositing
def test_original_returns_the_frame_itself():
    frame, alpha = _frame_and_matte()
    assert composite(frame, alpha, Background("original")) is frame


def test_transparent_is_bgra_with_the_matte_as_alpha():
    frame, alpha = _frame_and_matte()
    out = composite(frame, alpha, parse_background("transparent"))
    assert out.shape == frame.shape[:2] + (4,) and out.dtype == np.uint8
    assert np.array_equal(out[:, :, :3], frame) and np.array_equal(out[:, :, 3], alpha)
    opaque = composite(frame, None, parse_background("transparent"))
    assert (opaque[:, :, 3] == 255).all()


@pytest.mark.parametrize("size", [(45, 67), (64, 96), (1080 // 8, 1920 // 8)])
def test_colour_blend_is_within_one_of_exact(size):
    frame, alpha = _frame_and_matte(*size)
    out = composite(frame, alpha, parse_background("#00ff00"))
    assert out.shape == frame.shape
    expected = _exact(frame, alpha, (0, 255, 0))
    assert np.abs(out.astype(np.int32) - expected).max() <= 1
    assert np.array_equal(out[alpha == 255], frame[alpha == 255])  # the person is untouched
    assert (out[alpha == 0] == (0, 255, 0)).all()  # a keyable green where the background was


def test_image_background_covers_the_frame(tmp_path):
    h, w = 40, 64
    left_right = np.zeros((10, 40, 3), np.uint8)  # a wide image: blue left half, red right half
    left_right[:, :20] = (255, 0, 0)
    left_right[:, 20:] = (0, 0, 255)
    cv2.imwrite(str(tmp_path / "bg.png"), left_right)
    bg = parse_background(str(tmp_path / "bg.png"))
    frame = np.full((h, w, 3), 128, np.uint8)
    alpha = np.zeros((h, w), np.uint8)  # nothing of the person: the image alone, scaled to cover
    out = composite(frame, alpha, bg)
    assert out.shape == (h, w, 3)
    assert (out[:, :w // 2 - 2] == (255, 0, 0)).all() and (out[:, w // 2 + 2:] == (0, 0, 255)).all()
    frame, alpha = _frame_and_matte(h, w)
    out = composite(frame, alpha, bg)
    from backend.background import background_image

    under = background_image(bg.image, w, h)
    assert np.abs(out.astype(np.int32) - _exact(frame, alpha, under)).max() <= 1


@pytest.mark.parametrize("spec", ["#3080ff", "image"])
def test_in_place_composite_equals_the_copying_one(spec, tmp_path):
    frame, alpha = _frame_and_matte(64, 96)
    if spec == "image":
        cv2.imwrite(str(tmp_path / "bg.png"), np.random.default_rng(3).integers(0, 256, (30, 50, 3), np.uint8))
        spec = str(tmp_path / "bg.png")
    bg = parse_background(spec)
    copied = composite(frame, alpha, bg)
    work = frame.copy()
    assert composite(work, alpha, bg, out=work) is work
    assert np.array_equal(work, copied)


def test_out_buffer_is_reused_and_no_matte_means_opaque():
    frame, alpha = _frame_and_matte()
    out = np.empty_like(frame)
    assert composite(frame, alpha, parse_background("#000000"), out=out) is out
    assert np.array_equal(composite(frame, None, parse_background("#000000")), frame)


def test_matte_of_the_wrong_size_is_refused():
    frame, alpha = _frame_and_matte()
    with pytest.raises(ValueError, match="does not match"):
        composite(frame, alpha[:-1], parse_background("transparent"))

"""The avatar matte's parts on tiny drawn inputs (fast): storage, package access, green keying, the guided
filter, the temporal stabiliser (smooths noise, does not trail a moving edge), --matte-only on the synthetic
package, the preview tile."""
from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest

from preprocess import matte as M
from preprocess.matte_green import GreenKeyer, despill, estimate_key, key_alpha
from preprocess.matte_store import MATTE_FOLDER, encode_alpha, matte_entry, matte_name, read_alpha, write_alpha
from preprocess.package import AvatarPackage
from stream_wav2lip.errors import UserError


def _disc_alpha(h=60, w=80, cx=40, cy=30, r=18) -> np.ndarray:
    a = np.zeros((h, w), np.uint8)
    cv2.circle(a, (cx, cy), r, 255, -1, cv2.LINE_AA)
    return a


# ------------------------------------------------------------------------------------------------ storage
def test_alpha_round_trip_is_lossless(tmp_path):
    a = _disc_alpha()
    write_alpha(tmp_path / "x.alpha.z", a)
    back = read_alpha(tmp_path / "x.alpha.z", 80, 60)
    assert back.dtype == np.uint8 and np.array_equal(back, a)
    assert len(encode_alpha(a)) < a.size // 4  # runs of 0 and 255 compress well


def test_damaged_or_wrong_sized_alpha_is_one_line_user_error(tmp_path):
    (tmp_path / "bad.alpha.z").write_bytes(b"not zlib")
    with pytest.raises(UserError, match="unreadable matte"):
        read_alpha(tmp_path / "bad.alpha.z", 8, 8)
    write_alpha(tmp_path / "small.alpha.z", np.zeros((4, 4), np.uint8))
    with pytest.raises(UserError, match="expected 8x8"):
        read_alpha(tmp_path / "small.alpha.z", 8, 8)


# ------------------------------------------------------------------------------------------------ package
def _give_matte(pkg_dir, alpha_of) -> None:
    manifest = json.loads((pkg_dir / "manifest.json").read_text())
    n, w, h = manifest["frame_count"], manifest["width"], manifest["height"]
    (pkg_dir / MATTE_FOLDER).mkdir()
    for i in range(n):
        write_alpha(pkg_dir / MATTE_FOLDER / matte_name(i), alpha_of(i, w, h))
    manifest["matte"] = matte_entry("segment", w, h, n)
    (pkg_dir / "manifest.json").write_text(json.dumps(manifest))


def test_package_without_matte_keeps_working(synthetic_avatar):
    pkg = AvatarPackage.open(synthetic_avatar)
    assert not pkg.has_matte
    pkg.frame(0)
    with pytest.raises(UserError, match="--matte-only"):
        pkg.alpha(0)


def test_package_alpha_reads_the_stored_matte(synthetic_avatar, tmp_path):
    pkg_dir = tmp_path / "pkg"
    shutil.copytree(synthetic_avatar, pkg_dir)
    _give_matte(pkg_dir, lambda i, w, h: np.full((h, w), i, np.uint8))
    pkg = AvatarPackage.open(pkg_dir)
    assert pkg.has_matte
    a = pkg.alpha(3)
    assert a.shape == (pkg.height, pkg.width) and a.dtype == np.uint8 and (a == 3).all()
    assert not a.flags.writeable  # cached: nobody may scribble on it
    assert pkg.alpha(3) is a


def test_package_with_missing_matte_files_is_refused(synthetic_avatar, tmp_path):
    pkg_dir = tmp_path / "pkg"
    shutil.copytree(synthetic_avatar, pkg_dir)
    _give_matte(pkg_dir, lambda i, w, h: np.zeros((h, w), np.uint8))
    last = json.loads((pkg_dir / "manifest.json").read_text())["frame_count"] - 1
    (pkg_dir / MATTE_FOLDER / matte_name(last)).unlink()
    with pytest.raises(UserError, match="incomplete package.*matte"):
        AvatarPackage.open(pkg_dir)


# ------------------------------------------------------------------------------------------------ green
def _green_frame(h=90, w=120, person=(40, 40, 200)) -> np.ndarray:
    frame = np.zeros((h, w, 3), np.uint8)
    frame[:] = (60, 190, 50)  # BGR screen green
    cv2.circle(frame, (60, 55), 25, person, -1)
    return frame


def test_green_key_finds_the_screen_and_the_person():
    frame = _green_frame()
    key = estimate_key(frame)
    assert key == (60, 190, 50)
    a = key_alpha(frame, key)
    assert a[5, 5] == 0 and a[55, 60] == 255


def test_green_key_refuses_a_frame_without_a_screen():
    frame = np.full((40, 40, 3), 128, np.uint8)
    with pytest.raises(UserError, match="not a green or blue screen"):
        estimate_key(frame, "clip.mp4")


def test_despill_removes_a_green_tint_and_keeps_other_colours():
    frame = np.array([[[100, 180, 120], [40, 40, 200], [30, 200, 220]]], np.uint8)  # tinted grey, red, yellow
    out = despill(frame, (60, 190, 50))
    assert out[0, 0, 1] == 120  # green limited to max(blue, red)
    assert np.array_equal(out[0, 1], frame[0, 1])
    assert out[0, 2, 1] == 200  # yellow: red is larger, green stays


def test_blue_screen_keys_too():
    frame = _green_frame()
    frame[:] = (200, 60, 40)
    cv2.circle(frame, (60, 55), 25, (40, 40, 200), -1)
    keyer = GreenKeyer()
    a = keyer.alpha(frame)
    assert a[5, 5] == 0 and a[55, 60] == 255
    assert keyer.describe()["key_color"] == "#283cc8"


# ------------------------------------------------------------------------------------------------ parts of the segmentation matte
def test_guided_filter_keeps_an_edge_of_the_full_size_frame():
    full = np.zeros((80, 80), np.float32)
    full[:, 41:] = 1.0  # the picture's edge, at full resolution
    small = cv2.resize(full, (20, 20), interpolation=cv2.INTER_AREA)
    blurry = cv2.GaussianBlur(small, (0, 0), 2.0)  # a soft, coarse segmentation of the same thing
    out = M.fast_guided_filter(small, blurry, full, 2, 1e-4)
    assert out[40, 10] < 0.1 and out[40, 70] > 0.9
    assert out[40, 40] < 0.5 < out[40, 41]  # the edge sits where the full-size picture has it


def test_face_prior_fills_the_landmark_hull():
    pts = np.array([[20, 20], [60, 20], [60, 60], [20, 60]], np.float64)
    mask = M.face_prior(pts, (80, 80), 1.0, shrink=1.0)
    assert mask[40, 40] == 255 and mask[10, 10] == 0 and mask[20, 20] == 255
    assert M.face_prior(None, (80, 80), 1.0) is None


def _scene(x: int, noise: np.random.Generator | None = None, size=(96, 128)):
    """A bright square at column x on a textured background (the texture lets optical flow lock on)."""
    h, w = size
    rng = np.random.default_rng(1)
    gray = (rng.integers(40, 90, (h // 8, w // 8)).repeat(8, 0).repeat(8, 1)).astype(np.uint8)
    gray[30:70, x:x + 40] = 220
    alpha = np.zeros((h, w), np.float32)
    alpha[30:70, x:x + 40] = 1.0
    alpha = cv2.GaussianBlur(alpha, (0, 0), 1.5)
    if noise is not None:
        alpha = np.clip(alpha + noise.normal(0, 0.08, alpha.shape).astype(np.float32) * (alpha > 0.05), 0, 1)
    return gray, alpha


def test_stabiliser_smooths_flicker_on_a_still_edge():
    rng = np.random.default_rng(0)
    stab = M.TemporalStabiliser()
    outs, raws = [], []
    for _ in range(12):
        gray, alpha = _scene(40, rng)
        raws.append(alpha)
        outs.append(stab(gray, alpha))
    raw_flicker = np.mean([np.abs(b - a).mean() for a, b in zip(raws[4:], raws[5:])])
    out_flicker = np.mean([np.abs(b - a).mean() for a, b in zip(outs[4:], outs[5:])])
    assert out_flicker < 0.5 * raw_flicker


def test_stabiliser_does_not_trail_a_moving_edge():
    stab = M.TemporalStabiliser()
    for step in range(8):
        x = 20 + 4 * step  # 4 px a frame
        gray, alpha = _scene(x)
        out = stab(gray, alpha)
    centre_col = np.argmax(out[50] > 0.5), 127 - np.argmax(out[50][::-1] > 0.5)
    assert abs(centre_col[0] - x) <= 1 and abs(centre_col[1] - (x + 39)) <= 1


# ------------------------------------------------------------------------------------------------ --matte-only, preview
def test_matte_only_adds_a_matte_without_touching_the_tracking(synthetic_avatar, tmp_path):
    from preprocess.matte_build import add_matte

    pkg_dir = tmp_path / "pkg"
    shutil.copytree(synthetic_avatar, pkg_dir)
    face_det = (pkg_dir / "face_det.npz").read_bytes()
    entry = add_matte(pkg_dir, "segment", workers=1)
    assert entry["method"] == "segment" and entry["format"] == "zlib-u8"
    pkg = AvatarPackage.open(pkg_dir)
    assert pkg.has_matte and pkg.manifest["matte"]["frames"] == pkg.frame_count
    assert (pkg_dir / "face_det.npz").read_bytes() == face_det
    for i in np.flatnonzero(pkg.track.valid):  # the drawn face's inner hull is opaque wherever it was tracked
        lm = pkg.track.landmarks[i]
        inner = M.face_prior(lm, (pkg.width, pkg.height), 1.0, M.INNER_SHRINK)
        assert pkg.alpha(i)[inner > 0].min() == 255
    assert cv2.imread(str(pkg_dir / "preview.jpg")) is not None
    # a second run keeps the matte it has
    stamp = (pkg_dir / MATTE_FOLDER / matte_name(0)).stat().st_mtime_ns
    add_matte(pkg_dir, "segment")
    assert (pkg_dir / MATTE_FOLDER / matte_name(0)).stat().st_mtime_ns == stamp


def test_matte_only_cli_refuses_a_non_package(tmp_path, capsys):
    import argparse

    from preprocess import cli

    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    args = parser.parse_args(["--matte-only", str(tmp_path)])
    assert cli.run(args) == 1
    assert "not an avatar package" in capsys.readouterr().err


def test_unknown_matte_method_is_a_user_error():
    from preprocess.matte_build import check_method

    with pytest.raises(UserError, match="--matte chroma: unknown"):
        check_method("chroma")


def test_matte_tile_shows_a_checkerboard_where_alpha_is_zero():
    from preprocess.preview import TILE_WIDTH, matte_tile, paired_sheet

    frame = np.full((60, 80, 3), (0, 0, 255), np.uint8)
    tile = matte_tile(frame, _disc_alpha(), 7)
    assert tile.shape == (240, TILE_WIDTH, 3)
    corner = tile[200:240, 0:40].reshape(-1, 3)
    assert set(np.unique(corner[:, 0])) <= {153, 204}  # grey squares, not the red frame
    assert tile[120, 160, 2] > 200 and tile[120, 160, 0] < 30  # the person shows
    assert paired_sheet([tile], [tile]).shape == (240, 2 * TILE_WIDTH, 3)

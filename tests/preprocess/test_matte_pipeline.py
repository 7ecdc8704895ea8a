"""The matte through the real pipeline on a shared clip (slow: mediapipe + video, ~10-20 s in all):
default preprocess makes one that keeps the face and drops the corners, --no-matte then --matte-only adds the
same one later, and --matte green keys a green-screen recording and takes the green out of the frames."""
from __future__ import annotations

import argparse
import json

import cv2
import numpy as np
import pytest

from preprocess.package import AvatarPackage

pytestmark = pytest.mark.slow

CLIP = "video-retalking__examples_face_2.mp4"
SECONDS = 1.2


@pytest.fixture(scope="module")
def matted(tmp_path_factory, media_dir):
    from preprocess.api import preprocess_video

    return preprocess_video(media_dir / CLIP, tmp_path_factory.mktemp("matted"), max_seconds=SECONDS, workers=2)


def _run_cli(argv: list[str]) -> int:
    from preprocess import cli

    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return cli.run(parser.parse_args(argv))


def test_default_preprocess_stores_a_matte_that_keeps_the_face(matted):
    pkg = AvatarPackage.open(matted)
    assert pkg.has_matte
    entry = pkg.manifest["matte"]
    assert entry["method"] == "segment" and entry["frames"] == pkg.frame_count
    assert (entry["width"], entry["height"]) == (pkg.width, pkg.height)
    side = max(4, int(0.03 * min(pkg.width, pkg.height)))
    for i in range(pkg.frame_count):
        a = pkg.alpha(i)
        lm = np.round(pkg.track.landmarks[i]).astype(int)
        assert (a[lm[:, 1].clip(0, pkg.height - 1), lm[:, 0].clip(0, pkg.width - 1)] >= 128).all()
        assert a[:side, :side].mean() <= 25.5 and a[:side, -side:].mean() <= 25.5
    sheet = cv2.imread(str(matted / "preview.jpg"))
    assert sheet.shape[1] == 4 * 320  # tracking tile | matte tile, two pairs a row


def test_no_matte_then_matte_only(matted, tmp_path, media_dir):
    assert _run_cli([str(media_dir / CLIP), "--out", str(tmp_path), "--max-seconds", str(SECONDS), "--no-matte"]) == 0
    pkg_dir = tmp_path / matted.name
    assert not AvatarPackage.open(pkg_dir).has_matte
    assert _run_cli(["--matte-only", str(pkg_dir)]) == 0
    later, first = AvatarPackage.open(pkg_dir), AvatarPackage.open(matted)
    assert later.has_matte
    # made from the stored JPEGs instead of the decoded frames: the same matte up to JPEG noise
    diff = np.mean([np.abs(later.alpha(i).astype(int) - first.alpha(i)).mean() for i in range(later.frame_count)])
    assert diff < 2.0


def test_green_screen_is_keyed_and_despilled(matted, tmp_path):
    import av

    from preprocess.api import preprocess_video

    pkg = AvatarPackage.open(matted)
    green = np.array([40, 200, 60], np.float32)  # BGR
    video = tmp_path / "green.mp4"
    truth = []
    with av.open(str(video), "w") as out:  # the clip's person over a green screen, with a green tint on them
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = pkg.width, pkg.height, "yuv420p"
        stream.options = {"crf": "12", "preset": "ultrafast"}
        for i in range(pkg.frame_count):
            a = pkg.alpha(i).astype(np.float32)[:, :, None] / 255
            person = pkg.frame(i).astype(np.float32)
            person[:, :, 1] = np.minimum(255, person[:, :, 1] + 25)  # spill
            img = np.round(person * a + green * (1 - a)).astype(np.uint8)
            truth.append(pkg.alpha(i) >= 128)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="bgr24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    keyed = AvatarPackage.open(preprocess_video(video, tmp_path / "avatars", matte="green", workers=2))
    assert keyed.manifest["matte"]["method"] == "green"
    assert keyed.manifest["matte"]["key_color"].startswith("#")
    for i in range(keyed.frame_count):
        mine = keyed.alpha(i) >= 128
        iou = (mine & truth[i]).sum() / (mine | truth[i]).sum()
        assert iou > 0.95
    frame = keyed.frame(keyed.frame_count // 2).astype(int)
    person = truth[keyed.frame_count // 2]
    tint = frame[:, :, 1] - np.maximum(frame[:, :, 0], frame[:, :, 2])
    assert np.percentile(tint[person], 99) <= 6  # green no longer exceeds the other channels on the person
    manifest = json.loads((keyed.root / "manifest.json").read_text())
    assert manifest["matte"]["frames"] == keyed.frame_count

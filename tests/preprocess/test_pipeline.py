"""The real pipeline on short real clips (marked slow: mediapipe + video decoding, a few seconds each)."""
from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest

from preprocess.package import AvatarPackage, frame_name

pytestmark = pytest.mark.slow

FACE_CLIP = "video-retalking__examples_face_2.mp4"
VFR_CLIP = "video-retalking__examples_face_1.mp4"
NO_AUDIO_CLIP = "LivePortrait__assets_examples_driving_d13.mp4"


def _write_mp4(path: Path, frames: list[np.ndarray], with_audio: bool = True) -> Path:
    """A small H.264/AAC test video at 25 fps (frames BGR), written with PyAV."""
    import av

    h, w = frames[0].shape[:2]
    with av.open(str(path), "w") as out:
        v = out.add_stream("libx264", rate=25)
        v.width, v.height, v.pix_fmt = w, h, "yuv420p"
        v.options = {"crf": "18", "preset": "ultrafast"}
        a = out.add_stream("aac", rate=16000) if with_audio else None
        if a is not None:
            a.layout = "mono"
        for img in frames:
            for packet in v.encode(av.VideoFrame.from_ndarray(img, format="bgr24")):
                out.mux(packet)
        for packet in v.encode():
            out.mux(packet)
        if a is not None:
            n = int(len(frames) / 25 * 16000)
            t = np.arange(n) / 16000
            tone = (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t)) / 2).astype(np.float32)
            for start in range(0, n, 1024):
                chunk = tone[start:start + 1024][None, :]
                frame = av.AudioFrame.from_ndarray(chunk, format="flt", layout="mono")
                frame.sample_rate, frame.pts, frame.time_base = 16000, start, Fraction(1, 16000)
                for packet in a.encode(frame):
                    out.mux(packet)
            for packet in a.encode():
                out.mux(packet)
    return path


@pytest.fixture(scope="module")
def face_frames(media_dir) -> list[np.ndarray]:
    """2 s of a real talking face at 25 fps, halved to 422x422 to keep encoding/tracking quick."""
    from preprocess.video import iter_frames_25fps, probe

    frames = list(iter_frames_25fps(probe(media_dir / FACE_CLIP), 50))
    return [cv2.resize(f, (422, 422), interpolation=cv2.INTER_AREA) for f in frames]


@pytest.fixture(scope="module")
def gap_video(tmp_path_factory, face_frames) -> Path:
    """1 s face, 1 s black, 1 s face."""
    black = [np.zeros_like(face_frames[0])] * 25
    return _write_mp4(tmp_path_factory.mktemp("gap") / "gap_clip.mp4", face_frames[:25] + black + face_frames[25:])


def test_small_avatar_layout_and_manifest(small_avatar):
    pkg = AvatarPackage.open(small_avatar)
    m = pkg.manifest
    assert pkg.frame_count == 50 and m["fps"] == 25 and m["duration_s"] == 2.0
    for key in ("format_version", "width", "height", "face_size", "head_size", "detector", "detector_version",
                "pads", "smooth", "source", "source_sha256", "created_at", "has_audio", "valid_fraction"):
        assert key in m, key
    assert (m["width"], m["height"], m["face_size"], m["head_size"]) == (844, 844, 96, 256)
    assert m["has_audio"] and m["valid_fraction"] == 1.0 and "0.10.21" in m["detector_version"]
    for folder, size in (("bg", (844, 844)), ("body_face", (96, 96)), ("head_face", (96, 96)), ("heads", (256, 256))):
        files = sorted((small_avatar / folder).iterdir())
        assert [f.name for f in files] == [frame_name(i) for i in range(50)]
        assert cv2.imread(str(files[0])).shape[:2] == size
    assert (small_avatar / "preview.jpg").is_file()
    import wave

    with wave.open(str(pkg.audio_path)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth(), w.getnframes()) == (16000, 1, 2, 32000)
    t = pkg.track
    assert t.landmarks.shape == (50, 478, 2) and t.valid.all()
    assert not list(small_avatar.parent.glob(".tmp-*"))
    from backend.frame_cache import FrameCache

    cache = FrameCache.open(pkg)  # decoded once here, so serve's first start does not
    assert cache is not None and cache.count == 50


def test_head_inverse_maps_the_head_crop_back_within_1px(small_avatar):
    pkg = AvatarPackage.open(small_avatar)
    i = 20
    frame = pkg.frame(i).astype(np.float32)
    head = pkg.image("heads", i)
    inv = pkg.track.head_inverse(i)
    x1, y1, x2, y2 = pkg.track.body_face_box[i].astype(int)

    def error(dx: float, dy: float) -> float:
        m = inv.astype(np.float64).copy()
        m[:, 2] += (dx, dy)
        back = cv2.warpAffine(head, m, (pkg.width, pkg.height), flags=cv2.INTER_LINEAR).astype(np.float32)
        return float(np.abs(back[y1:y2, x1:x2] - frame[y1:y2, x1:x2]).mean())

    errors = {(dx, dy): error(dx, dy) for dx in (-2, -1, 0, 1, 2) for dy in (-2, -1, 0, 1, 2)}
    best = min(errors, key=errors.get)
    assert max(abs(best[0]), abs(best[1])) <= 1, errors
    assert errors[(0, 0)] < 6.0  # JPEG + resampling noise only
    # The stored affine and its inverse agree to well under a pixel on the landmarks.
    lm = pkg.track.landmarks[i]
    a = pkg.track.head_affine[i]
    head_pts = lm @ a[:, :2].T + a[:, 2]
    assert np.abs(head_pts @ inv[:, :2].T + inv[:, 2] - lm).max() < 0.05


def test_rerun_is_skipped_unless_forced(small_avatar):
    from preprocess.api import build_package

    report = build_package(_media(small_avatar, FACE_CLIP), small_avatar.parent, max_seconds=2.0)
    assert report.status == "skipped" and report.path == small_avatar


def _media(small_avatar: Path, name: str) -> Path:
    return Path(json.loads((small_avatar / "manifest.json").read_text())["source"]).parent / name


def test_vfr_input_becomes_25fps_by_timestamp(media_dir):
    import av

    from preprocess.video import iter_frames_25fps, probe

    path = media_dir / VFR_CLIP
    with av.open(str(path)) as c:
        src = [(f.time, cv2.cvtColor(f.to_ndarray(format="bgr24"), cv2.COLOR_BGR2GRAY))
               for f in c.decode(c.streams.video[0])]
    times = np.array([t for t, _ in src])
    assert np.ptp(np.diff(times)) > 0.02  # really variable frame rate
    info = probe(path)
    out = [cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in iter_frames_25fps(info)]
    duration = times[-1] + np.diff(times)[-1] - info.origin_s
    assert abs(len(out) - duration * 25) <= 1
    for i in range(0, len(out), 7):  # each output frame is the source frame nearest to i/25 s
        k = int(np.argmin(np.abs(times - (info.origin_s + i / 25))))
        assert np.array_equal(out[i], src[k][1]), i


def test_no_audio_input_gives_a_package_without_audio(media_dir, tmp_path):
    from preprocess.api import preprocess_video

    pkg_dir = preprocess_video(media_dir / NO_AUDIO_CLIP, tmp_path, max_seconds=1.0)
    pkg = AvatarPackage.open(pkg_dir)
    assert pkg.audio_path is None and pkg.manifest["has_audio"] is False
    assert (pkg.width, pkg.height, pkg.frame_count) == (720, 1280, 25)
    assert pkg.track.valid.mean() > 0.9


def test_black_gap_is_flagged_and_filled_and_splits_training_clips(gap_video, tmp_path):
    from preprocess.api import preprocess_video
    from preprocess.trainset import iter_clips

    pkg_dir = preprocess_video(gap_video, tmp_path / "avatars", train_dir=tmp_path / "train")
    pkg = AvatarPackage.open(pkg_dir)
    valid = pkg.track.valid
    assert pkg.frame_count == 75
    assert not valid[27:48].any()  # the black second (a frame of slack at each edge for the encoder)
    assert valid[:24].all() and valid[51:].all()
    boxes = pkg.track.body_face_box
    assert np.allclose(boxes[30], boxes[valid[:30].nonzero()[0][-1]])  # held from the nearest valid frame
    assert np.allclose(boxes[45], boxes[48 + valid[48:].argmax()])
    clips = list(iter_clips(tmp_path / "train", "train")) + list(iter_clips(tmp_path / "train", "val"))
    assert len(clips) == 2 and all(len(c) >= 24 for c in clips)
    assert not (pkg_dir / ".cache" / "bg_i420.raw").exists()  # a training corpus gets no avatar frame caches
    assert cv2.imread(str(clips[0].frames[0])).shape == (96, 96, 3)


def test_bad_inputs_give_one_line_errors_and_the_rest_still_runs(tmp_path, face_frames, media_dir, capsys):
    from stream_wav2lip.cli import main

    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 40)
    audio_only = media_dir / "tts_espeakng_en.wav"
    good = _write_mp4(tmp_path / "good.mp4", face_frames[:15], with_audio=False)
    code = main(["preprocess", str(empty), str(corrupt), str(audio_only), str(good), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 1
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 3, err
    for path in (empty, corrupt, audio_only):
        assert sum(str(path) in line for line in errors) == 1
    assert "Traceback" not in err
    assert AvatarPackage.open(tmp_path / "out" / "good").frame_count == 15


def test_two_faces_the_larger_one_is_tracked_consistently(face_frames):
    from preprocess.tracking import FaceTracker

    h, w = face_frames[0].shape[:2]
    xs = []
    with FaceTracker() as tracker:
        for frame in face_frames[:12]:
            canvas = np.full((h, 2 * w, 3), 90, np.uint8)
            canvas[:, w:] = frame  # large face on the right
            small = cv2.resize(frame, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
            canvas[h // 4: h // 4 + h // 2, w // 4: w // 4 + w // 2] = small  # smaller face on the left
            lm = tracker.process(canvas)
            assert lm is not None
            xs.append(lm[:, 0].mean())
    assert min(xs) > w  # always the large face


def test_30fps_input_gives_25fps_count_matching_duration(media_dir):
    from preprocess.video import iter_frames_25fps, probe

    info = probe(media_dir / "video-retalking__examples_face_4.mp4")  # 30 fps, 6.634 s
    assert round(info.source_fps) == 30
    count = sum(1 for _ in iter_frames_25fps(info))
    assert abs(count - info.duration_s * 25) <= 1

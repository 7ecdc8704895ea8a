"""The weightless mouth engine as a Generator: determinism, silence, retrieval quality, still images."""
from __future__ import annotations

import logging

import numpy as np
import pytest

from backend.generators.base import GeneratorInput
from backend.mouth import MouthGenerator
from models.audio import mel_windows, melspectrogram
from preprocess.mouth_calibration import CALIB_FILE, MouthCalibration, calibrate
from preprocess.package import AvatarPackage
from synthetic import audio_for, openings


def drive(gen: MouthGenerator, pkg: AvatarPackage, windows: np.ndarray, batch: int = 5, speech: bool = True):
    """Run the generator over `windows` like the engine does; returns (faces, chosen source frames)."""
    faces, chosen = [], []
    for b in range(0, len(windows), batch):
        items = [GeneratorInput(face=pkg.image(gen.crop, i % pkg.frame_count), mel=windows[i],
                                avatar_index=i % pkg.frame_count, speech=speech)
                 for i in range(b, min(b + batch, len(windows)))]
        faces.append(gen.generate(items))
        chosen.extend(gen.last_choice.tolist())
    return np.concatenate(faces), np.array(chosen)


@pytest.fixture(scope="module")
def held_out():
    """Speech the avatar never heard (another seed), with its true opening per frame."""
    o = openings(150, seed=5)
    windows = mel_windows(melspectrogram(audio_for(o, seed=7)))[:150]
    return o[: len(windows)], windows


def test_calibration_is_cached_in_the_package(talking_avatar):
    summary = calibrate(talking_avatar)
    assert summary["mode"] == "retrieval" and summary["usable_speech_s"] > 3
    assert summary["warning"]  # under 30 s of speech is reported
    assert (talking_avatar / CALIB_FILE).is_file()
    pkg = AvatarPackage.open(talking_avatar)
    assert pkg.manifest["mouth_calibration"]["av_offset_frames"] == summary["av_offset_frames"]
    assert MouthCalibration.load(talking_avatar / CALIB_FILE).descriptors.shape == (300, 3)


def test_output_shape_and_determinism(talking_avatar, held_out):
    pkg = AvatarPackage.open(talking_avatar)
    gen = MouthGenerator(pkg)
    assert gen.crop == "heads" and gen.face_size == pkg.head_size
    _, windows = held_out
    a, ca = drive(gen, pkg, windows[:40])
    gen.reset()
    b, cb = drive(gen, pkg, windows[:40])
    assert a.shape == (40, pkg.head_size, pkg.head_size, 3) and a.dtype == np.uint8
    assert np.array_equal(ca, cb) and np.array_equal(a, b)


def test_retrieval_picks_frames_whose_mouth_matches(talking_avatar, held_out):
    pkg = AvatarPackage.open(talking_avatar)
    gen = MouthGenerator(pkg)
    true_open, windows = held_out
    _, chosen = drive(gen, pkg, windows)
    library_open = np.load(talking_avatar / "true_opening.npy")
    r = np.corrcoef(library_open[chosen], true_open)[0, 1]
    assert r > 0.7, r
    assert np.mean(np.diff(chosen) != 1) < 0.5  # smooth: mostly consecutive source frames


def test_silence_gives_the_resting_mouth(talking_avatar):
    pkg = AvatarPackage.open(talking_avatar)
    gen = MouthGenerator(pkg)
    silent = np.full((20, 80, 16), -4.0, np.float32)
    _, chosen = drive(gen, pkg, silent)
    library_open = np.load(talking_avatar / "true_opening.npy")
    assert library_open[chosen].max() <= 1.0  # closed mouths only
    _, chosen = drive(gen, pkg, np.random.default_rng(0).uniform(-1, 1, (10, 80, 16)).astype(np.float32),
                      speech=False)  # the engine's silence gate wins over loud-looking windows
    assert library_open[chosen].max() <= 1.0


def test_still_image_uses_the_lip_warp(still_avatar, caplog):
    pkg = AvatarPackage.open(still_avatar)
    with caplog.at_level(logging.WARNING):
        gen = MouthGenerator(pkg)
    assert gen.mode == "warp" and "lowest quality" in caplog.text
    loud = mel_windows(melspectrogram(audio_for(np.full(20, 14.0, np.float32))))[:10]
    silent = np.full((10, 80, 16), -4.0, np.float32)
    talking, _ = drive(gen, pkg, loud)
    gen.reset()
    quiet, _ = drive(gen, pkg, silent)
    original = pkg.image("heads", 0).astype(int)
    assert np.abs(quiet.astype(int) - original).max() == 0  # silence: the picture's own mouth
    diff = np.abs(talking[-1].astype(int) - original).sum(-1)
    ys, xs = np.nonzero(diff > 30)
    assert ys.size > 20 and ys.min() >= 100  # only the mouth and jaw moved, never the eyes or nose

"""Training-set clip cutting, split lists and the reader, on the synthetic package (fast)."""
from __future__ import annotations

import wave

import numpy as np
import pytest

from preprocess.trainset import clip_ranges, iter_clips, split_of, update_split_lists, write_video_clips


def test_clip_ranges_start_a_new_clip_at_every_gap():
    valid = np.ones(400, bool)
    valid[100:110] = False  # gap
    valid[300:380] = False  # leaves a 20-frame run (< 1 s) at the end: dropped
    ranges = clip_ranges(valid, clip_frames=125, min_frames=25)
    assert ranges[0] == (0, 100)
    assert all(b - a <= 125 for a, b in ranges)
    assert sum(b - a for a, b in ranges) == 100 + 190
    assert all(valid[a:b].all() for a, b in ranges)


def test_split_is_deterministic():
    assert split_of("video/00001") == split_of("video/00001")
    names = [f"v/{i:05d}" for i in range(200)]
    val = sum(split_of(n) == "val" for n in names)
    assert 5 < val < 40


def test_trainset_from_synthetic_package(synthetic_avatar, tmp_path):
    n_clips = write_video_clips(synthetic_avatar, tmp_path, force=True)
    # 20 frames with 2 invalid ones in the middle -> runs of 6 and 12 frames, both < 1 s -> nothing
    assert n_clips == 0
    assert (tmp_path / "train.txt").read_text() == ""


def test_trainset_layout_readable(tmp_path, monkeypatch):
    import preprocess.trainset as T
    from preprocess.synthetic import write_synthetic_package

    pkg = write_synthetic_package(tmp_path / "avatars" / "talk", frames=60, width=160, height=120, head_size=96)
    monkeypatch.setattr(T, "CLIP_SECONDS", 1.0)
    monkeypatch.setattr(T, "MIN_CLIP_SECONDS", 0.2)
    monkeypatch.setattr(T, "clip_ranges", lambda v: clip_ranges(v, clip_frames=25, min_frames=5))
    train_dir = tmp_path / "train"
    n = write_video_clips(pkg, train_dir)
    assert n >= 3
    clips = list(iter_clips(train_dir, "train")) + list(iter_clips(train_dir, "val"))
    assert len(clips) == n and len(list(iter_clips(train_dir, "val"))) >= 1
    for clip in clips:
        assert clip.name.startswith("talk/")
        assert [p.name for p in clip.frames] == [f"{i}.jpg" for i in range(len(clip))]
        with wave.open(str(clip.audio)) as w:
            assert w.getframerate() == 16000 and w.getnframes() == len(clip) * 640
    with pytest.raises(ValueError):
        list(iter_clips(train_dir, "test"))
    # Rewriting the lists gives the same split.
    before = (train_dir / "train.txt").read_text(), (train_dir / "val.txt").read_text()
    update_split_lists(train_dir)
    assert ((train_dir / "train.txt").read_text(), (train_dir / "val.txt").read_text()) == before

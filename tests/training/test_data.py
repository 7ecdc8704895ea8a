"""Data side of training on tiny synthetic clips: file lists, skipping, sampling rules, caches, check-data."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from training.dataset_index import read_filelist, scan_split
from training.samples import SyncNetSamples, Wav2LipSamples
from training.windows import sync_mel_start


def _frame_number(face_channels: np.ndarray) -> int:
    """Synthetic frames carry 6 x their number in channel 1 (G) of every pixel."""
    return int(round(float(face_channels[1].mean()) * 255 / 6))


def test_filelist_relative_absolute_and_extra_tokens(synthetic_set: Path):
    paths = read_filelist(synthetic_set / "train.txt", synthetic_set)
    assert paths[0] == synthetic_set / "vid_a" / "00000"
    assert paths[1] == synthetic_set / "vid_a" / "00001"  # "extra-token" ignored, like the reference
    assert paths[2] == synthetic_set / "vid_b" / "00000"  # absolute line kept
    assert len(paths) == 5  # blank line skipped


def test_scan_skips_bad_clips_with_one_warning_each(synthetic_set: Path, capsys):
    index = scan_split(synthetic_set, "train")
    assert [c.path.name for c in index.clips] == ["00000", "00001", "00000"]
    reasons = dict((p.name, r) for p, r in index.skipped)
    assert "too short" in reasons["short"] and reasons["missing"] == "folder not found"
    err = capsys.readouterr().err
    assert err.count("skipped") == 2
    padded = index.clips[2]
    assert padded.name_width == 5 and padded.frame_path(3).name == "00003.jpg"
    assert padded.audio_path.name == "synced.wav"


def test_filelists_in_filelists_folder_and_test_txt(tmp_path: Path, synthetic_set: Path):
    lists = synthetic_set / "filelists"
    lists.mkdir()
    (synthetic_set / "train.txt").rename(lists / "train.txt")
    (synthetic_set / "val.txt").rename(lists / "test.txt")  # primepake's name for the validation list
    assert len(scan_split(synthetic_set, "train", warn=False).clips) == 3
    assert len(scan_split(synthetic_set, "val", warn=False).clips) == 1


def test_syncnet_samples_positive_and_negative_pairs(synthetic_set: Path):
    clips = scan_split(synthetic_set, "train", warn=False).clips
    data = SyncNetSamples(clips, image_size=32, seed=3)
    labels = []
    for i in range(60):
        s = data[(0, i)]
        assert s["face"].shape == (15, 16, 32) and s["mel"].shape == (1, 80, 16)
        video, audio = int(s["video_start"]), int(s["audio_start"])
        assert _frame_number(s["face"][0:3].numpy()) == video  # the window really starts there
        assert _frame_number(s["face"][12:15].numpy()) == video + 4
        if s["label"] == 1:
            assert video == audio
        else:
            assert video != audio  # negatives come from another position of the same clip
        mel = data.reader.mel(int(s["clip"]))
        start = sync_mel_start(audio)
        np.testing.assert_array_equal(s["mel"][0].numpy(), mel[:, start:start + 16])
        labels.append(float(s["label"]))
    assert 0.25 < np.mean(labels) < 0.75


def test_syncnet_face_is_the_lower_half(synthetic_set: Path):
    clips = scan_split(synthetic_set, "train", warn=False).clips
    s = SyncNetSamples(clips, image_size=32, seed=0)[(0, 0)]
    blue = s["face"][0].numpy() * 255  # channel 0 (B) was set to 255 - n in rows S/2..S-1
    assert abs(blue.mean() - (255 - 6 * int(s["video_start"]))) < 3


def test_negative_min_distance(synthetic_set: Path):
    clips = scan_split(synthetic_set, "train", warn=False).clips
    data = SyncNetSamples(clips, image_size=32, seed=1, negative_min_distance=5)
    for i in range(40):
        s = data[(0, i)]
        if s["label"] == 0:
            assert abs(int(s["video_start"]) - int(s["audio_start"])) >= 5


def test_samples_are_a_function_of_seed_epoch_index(synthetic_set: Path):
    clips = scan_split(synthetic_set, "train", warn=False).clips
    a = SyncNetSamples(clips, image_size=32, seed=7)
    b = SyncNetSamples(clips, image_size=32, seed=7, frame_cache_mb=0)
    for key in [(0, 0), (0, 5), (3, 5)]:
        for name in ("face", "mel", "label"):
            assert np.array_equal(a[key][name].numpy(), b[key][name].numpy())
    assert any(int(a[(0, i)]["video_start"]) != int(a[(1, i)]["video_start"]) for i in range(5))


def test_mel_is_computed_once_per_clip(synthetic_set: Path, monkeypatch):
    import models.audio

    calls = []
    real = models.audio.melspectrogram
    monkeypatch.setattr(models.audio, "melspectrogram", lambda wav: calls.append(1) or real(wav))
    clips = scan_split(synthetic_set, "train", warn=False).clips
    data = SyncNetSamples(clips, image_size=32, seed=0)
    for i in range(30):
        data[(0, i)]
    assert len(calls) == len(clips)


def test_wav2lip_samples_layout_and_audio_offset(synthetic_set: Path):
    clips = scan_split(synthetic_set, "train", warn=False).clips
    for offset in (0, -1):
        data = Wav2LipSamples(clips, image_size=32, seed=2, audio_offset=offset)
        for i in range(10):
            s = data[(0, i)]
            assert s["x"].shape == (6, 5, 32, 32) and s["gt"].shape == (3, 5, 32, 32)
            assert s["indiv_mels"].shape == (5, 1, 80, 16) and s["mel"].shape == (1, 80, 16)
            target, ref = int(s["target_start"]), int(s["reference_start"])
            assert target != ref
            assert float(s["x"][0:3, :, 16:].abs().max()) == 0.0  # lower half of the target masked
            assert _frame_number(s["x"][0:3, 0, :16].numpy()) == target
            assert _frame_number(s["x"][3:6, 0].numpy()) == ref
            mel = data.reader.mel(int(s["clip"]))
            for k in range(5):
                start = int(80 * (target + k + offset) / 25)
                np.testing.assert_array_equal(s["indiv_mels"][k, 0].numpy(), mel[:, start:start + 16])
            if offset == -1:
                assert target >= 1


def test_gap_windows_are_never_drawn(synthetic_set: Path):
    clips = scan_split(synthetic_set, "train", warn=False).clips
    gap_clip = next(i for i, c in enumerate(clips) if 12 not in c.frames)
    data = SyncNetSamples([clips[gap_clip]], image_size=32, seed=0)
    for i in range(40):
        first = int(data[(0, i)]["video_start"])
        assert not first <= 12 <= first + 4


def test_check_data_reports(synthetic_set: Path, capsys):
    from stream_wav2lip.cli import main

    assert main(["check-data", str(synthetic_set)]) == 0
    out = capsys.readouterr().out
    assert "clips    3 usable, 2 skipped" in out
    assert "frames   104" in out
    assert "1 x folder not found" in out and "too short" in out
    assert "val:" in out


def test_check_data_without_train_list(tmp_path: Path, capsys):
    from stream_wav2lip.cli import main

    assert main(["check-data", str(tmp_path)]) == 2
    assert "no train.txt" in capsys.readouterr().err


def test_unreadable_frame_is_skipped_with_a_warning(synthetic_set: Path):
    clip_dir = synthetic_set / "vid_a" / "00000"
    (clip_dir / "20.jpg").write_bytes(b"not a jpeg")
    clips = scan_split(synthetic_set, "train", warn=False).clips
    data = SyncNetSamples(clips[:1], image_size=32, seed=0)
    with pytest.warns(UserWarning, match="unreadable frame"):
        starts = [int(data[(0, i)]["video_start"]) for i in range(80)]
    assert not any(s <= 20 <= s + 4 for s in starts)

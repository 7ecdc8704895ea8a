"""Alignment of video and mel windows against docs/models.md §4 and §12: the rules a silent off-by-one would break."""
from __future__ import annotations

import numpy as np
import pytest

from models.audio import mel_windows
from training import windows


@pytest.mark.parametrize("frame", [0, 1, 2, 3, 4, 5, 7, 24, 25, 99, 1234, 199_999])
def test_mel_window_of_frame_i_starts_at_int_80i_over_25(frame):
    assert windows.mel_start(frame) == int(80 * frame / 25)
    assert windows.sync_mel_start(frame) == int(80 * frame / 25)


@pytest.mark.parametrize("frame", [1, 2, 5, 26, 1000])
def test_reference_audio_offset_uses_previous_frame(frame):
    assert windows.mel_start(frame, audio_offset=-1) == int(80 * (frame - 1) / 25)
    assert windows.generator_mel_starts(frame, -1) == [int(80 * (frame + k - 1) / 25) for k in range(5)]


def test_default_generator_windows_equal_inference_windows():
    mel = np.arange(80 * 400, dtype=np.float32).reshape(80, 400)
    inference = mel_windows(mel)
    for first in (0, 3, 10, 50):
        for k, start in enumerate(windows.generator_mel_starts(first, 0)):
            np.testing.assert_array_equal(mel[:, start:start + 16], inference[first + k])


def test_frame_zero_has_no_audio_with_reference_offset():
    assert windows.mel_start(0, -1) is None
    starts = windows.generator_window_starts(np.arange(30), num_mel_frames=200, audio_offset=-1)
    assert 0 not in starts and 1 in starts
    assert 0 in windows.generator_window_starts(np.arange(30), num_mel_frames=200, audio_offset=0)


@pytest.mark.parametrize("first", [0, 5, 10, 250])
def test_five_frames_and_their_mel_window_cover_the_same_0_2_s(first):
    v0, v1 = windows.video_span_seconds(first)
    m0, m1 = windows.mel_span_seconds(windows.sync_mel_start(first))
    assert v1 - v0 == pytest.approx(0.2) and m1 - m0 == pytest.approx(0.2)
    assert m0 == pytest.approx(v0) and m1 == pytest.approx(v1)


@pytest.mark.parametrize("first", [1, 2, 3, 4, 6, 77])
def test_truncation_moves_the_mel_window_at_most_one_mel_step_earlier(first):
    v0, _ = windows.video_span_seconds(first)
    m0, _ = windows.mel_span_seconds(windows.sync_mel_start(first))
    assert 0 <= v0 - m0 < 1 / 80


def test_windows_need_complete_mel_and_no_frame_gap():
    frames = [f for f in range(20) if f != 12]
    starts = windows.sync_window_starts(frames, num_mel_frames=1 + 20 * 640 // 200)
    assert not any(s <= 12 <= s + 4 for s in starts)  # no window touches the gap
    last = max(starts)
    assert windows.sync_mel_start(last) + 16 <= 1 + 20 * 640 // 200
    assert starts.tolist() == [s for s in range(16) if not s <= 12 <= s + 4]


def test_windows_valid_for_every_shift_of_a_sweep():
    starts = windows.sync_window_starts(range(100), num_mel_frames=321, shifts=range(-10, 11))
    assert starts.min() == 10
    assert windows.sync_mel_start(int(starts.max()), 10) + 16 <= 321


def test_lower_half_is_rows_s_over_2_to_s_minus_1():
    for size in (96, 288, 384, 192):
        image = np.arange(size)[:, None, None].repeat(size, 1).repeat(3, 2)
        half = windows.lower_half(image)
        assert half.shape == (size // 2, size, 3)
        assert half[0, 0, 0] == size // 2 and half[-1, 0, 0] == size - 1


def test_stack_window_is_frame_major_bgr():
    frames = [np.full((4, 8, 3), [10 * n, 10 * n + 1, 10 * n + 2], np.uint8) for n in range(5)]
    stacked = windows.stack_window(frames)
    assert stacked.shape == (15, 4, 8)
    assert [round(float(stacked[c, 0, 0]) * 255) for c in range(6)] == [0, 1, 2, 10, 11, 12]

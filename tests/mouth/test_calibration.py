"""Calibration pieces: features, the footage's own A/V offset, the speech gate."""
from __future__ import annotations

import numpy as np

from preprocess.mouth_calibration import (audio_features, estimate_av_offset, mouth_descriptor, shift_rows,
                                          speech_thresholds, speech_weight)
from synthetic import landmarks_for, openings


def test_av_offset_is_found_and_undone():
    rng = np.random.default_rng(0)
    opening = openings(400, seed=2) + rng.normal(0, 0.3, 400).astype(np.float32)
    loud = np.roll(opening, 4) * 0.2 - 3.0  # the audio arrives 4 frames after the mouth moves
    k, r = estimate_av_offset(opening, loud)
    assert k == 4 and r > 0.9
    assert np.corrcoef(shift_rows(loud, k)[:-8], opening[:-8])[0, 1] > 0.99


def test_descriptor_is_scale_free_and_tracks_the_opening():
    small = np.stack([landmarks_for(o) for o in (0.0, 10.0)])
    big = small * 3.0
    assert np.allclose(mouth_descriptor(small), mouth_descriptor(big), atol=1e-5)
    d = mouth_descriptor(small)
    assert d[0, 0] < 0.01 and d[1, 0] > 0.1


def test_features_and_gate():
    windows = np.random.default_rng(1).uniform(-4, 4, (3, 80, 16)).astype(np.float32)
    assert audio_features(windows).shape == (3, 80)
    loud = np.concatenate([np.full(50, -4.0), np.full(50, -1.0)]).astype(np.float32)
    gate = speech_weight(loud, speech_thresholds(loud))
    assert gate[:50].max() == 0.0 and gate[50:].min() == 1.0

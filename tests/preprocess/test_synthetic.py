"""The synthetic avatar other areas test against must be a valid, self-consistent package."""
from __future__ import annotations

import wave

import numpy as np

from preprocess import landmarks as L
from preprocess.package import AvatarPackage


def test_synthetic_avatar_opens_and_is_consistent(synthetic_avatar):
    pkg = AvatarPackage.open(synthetic_avatar)
    assert pkg.frame_count == 20 and pkg.fps == 25
    t = pkg.track
    assert t.landmarks.shape == (20, L.NUM_LANDMARKS, 2)
    assert t.head_affine.shape == (20, 2, 3)
    assert (~t.valid).sum() == 2
    assert pkg.face(0).shape == (96, 96, 3) and pkg.image("heads", 0).shape == (128, 128, 3)
    assert pkg.frame(0).shape == (240, 320, 3)
    opening = L.mouth_opening(t.landmarks)
    assert opening.max() > 0.1 and opening.min() < 0.05  # the mouth really moves
    # The mouth centre maps inside the head-face box.
    m = L.mouth_center(t.landmarks)
    head = np.einsum("nij,nj->ni", t.head_affine[:, :, :2], m) + t.head_affine[:, :, 2]
    b = t.head_face_box
    assert np.all((head[:, 0] > b[:, 0]) & (head[:, 0] < b[:, 2]) & (head[:, 1] > b[:, 1]) & (head[:, 1] < b[:, 3]))
    with wave.open(str(pkg.audio_path)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (16000, 1, 2)
        assert abs(w.getnframes() / 16000 - 20 / 25) < 1e-3

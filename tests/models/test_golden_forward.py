"""Deterministic weights (docs/models.md §10) reproduce the reference outputs computed with the original classes."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from models import testing

TOL = 1e-4


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(2)


def _load(golden_dir, name):
    return torch.from_numpy(np.load(golden_dir / name))


def _assert_checksums(variant, golden_dir, state):
    golden = json.loads((golden_dir / f"{variant}_det_weights_checksums.json").read_text())
    ours = testing.weight_checksums(state)
    assert list(ours) == list(golden)
    for key, want in golden.items():
        got = ours[key]
        assert got["first4"] == pytest.approx(want["first4"], abs=1e-7), key
        assert got["sum"] == pytest.approx(want["sum"], abs=1e-6 * max(1.0, want["abs_sum"])), key
        assert got["abs_sum"] == pytest.approx(want["abs_sum"], rel=1e-9, abs=1e-9), key


@pytest.mark.parametrize("variant", ["wav2lip96", "syncnet96", "disc_qual96"])
def test_deterministic_weights_match_checksums(variant, golden_dir):
    _assert_checksums(variant, golden_dir, testing.deterministic_state_dict(variant))


def test_deterministic_state_dict_from_golden_json_is_identical(golden_dir):
    shapes = json.loads((golden_dir / "disc_qual96_state_dict.json").read_text())
    a, b = testing.deterministic_state_dict(shapes), testing.deterministic_state_dict("disc_qual96")
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)


def test_deterministic_state_dict_leaves_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    testing.deterministic_state_dict("disc_qual96")
    assert torch.equal(torch.rand(3), expected)


def test_golden_inputs_are_the_pattern(golden_dir):
    np.testing.assert_array_equal(testing.generator_face(2, 96), np.load(golden_dir / "wav2lip96_det_input_face.npy"))
    np.testing.assert_array_equal(testing.generator_face_5d(5, 96),
                                  np.load(golden_dir / "wav2lip96_det5d_input_face.npy"))
    np.testing.assert_array_equal(testing.syncnet_face(2), np.load(golden_dir / "syncnet96_det_input_face.npy"))
    np.testing.assert_array_equal(testing.discriminator_faces(5, 96),
                                  np.load(golden_dir / "disc_qual96_det_input_face.npy"))


@pytest.fixture(scope="module")
def wav2lip96():
    return testing.deterministic_model("wav2lip96")


def test_wav2lip96_4d(wav2lip96, golden_dir):
    with torch.inference_mode():
        out = wav2lip96(_load(golden_dir, "wav2lip96_det_input_audio.npy"), _load(golden_dir, "wav2lip96_det_input_face.npy"))
    np.testing.assert_allclose(out.numpy(), np.load(golden_dir / "wav2lip96_det_output.npy"), atol=TOL, rtol=0)


def test_wav2lip96_5d(wav2lip96, golden_dir):
    with torch.inference_mode():
        out = wav2lip96(_load(golden_dir, "wav2lip96_det5d_input_audio.npy"),
                        _load(golden_dir, "wav2lip96_det5d_input_face.npy"))
    assert out.shape == (1, 3, 5, 96, 96)
    np.testing.assert_allclose(out.numpy(), np.load(golden_dir / "wav2lip96_det5d_output.npy"), atol=TOL, rtol=0)


def test_syncnet96(golden_dir):
    model = testing.deterministic_model("syncnet96")
    with torch.inference_mode():
        audio_emb, face_emb = model(_load(golden_dir, "syncnet96_det_input_audio.npy"),
                                    _load(golden_dir, "syncnet96_det_input_face.npy"))
    np.testing.assert_allclose(audio_emb.numpy(), np.load(golden_dir / "syncnet96_det_output_audio_emb.npy"), atol=TOL)
    np.testing.assert_allclose(face_emb.numpy(), np.load(golden_dir / "syncnet96_det_output_face_emb.npy"), atol=TOL)
    cosine = (audio_emb * face_emb).sum(1)
    assert cosine.tolist() == pytest.approx([0.328290, 0.305733], abs=1e-5)


def test_disc_qual96(golden_dir):
    model = testing.deterministic_model("disc_qual96")
    with torch.inference_mode():
        out = model(_load(golden_dir, "disc_qual96_det_input_face.npy"))
    assert out.shape == (5, 1)
    np.testing.assert_allclose(out.numpy(), np.load(golden_dir / "disc_qual96_det_output.npy"), atol=TOL)


@pytest.mark.slow
def test_wav2lip288(golden_dir):
    _assert_checksums("wav2lip288", golden_dir, testing.deterministic_state_dict("wav2lip288"))
    model = testing.deterministic_model("wav2lip288")
    with torch.inference_mode():
        out = model(_load(golden_dir, "wav2lip288_det_input_audio.npy"), _load(golden_dir, "wav2lip288_det_input_face.npy"))
    np.testing.assert_allclose(out.numpy(), np.load(golden_dir / "wav2lip288_det_output.npy"), atol=TOL, rtol=0)

"""render end to end on CUDA with deterministic wav2lip96 weights, and the fp16 precision check on a real GPU
(skipped without one; bench/gpu_check.sh runs them with `-m cuda`)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA-only: no CUDA device here")]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from models.testing import deterministic_model, save_reference_checkpoint

    return save_reference_checkpoint(deterministic_model("wav2lip96"), tmp_path_factory.mktemp("w") / "w96.pth",
                                     with_optimizer=False)


def test_render_on_cuda_matches_the_cpu(synthetic_avatar, checkpoint, tmp_path):
    import cv2

    from backend.render import render

    audio = [synthetic_avatar / "audio.wav"]
    gpu = render(synthetic_avatar, audio, tmp_path / "gpu.mp4", checkpoint=checkpoint, device="cuda",
                 precision="fp32", frames_dir=tmp_path / "gpu", progress=False)
    cpu = render(synthetic_avatar, audio, None, checkpoint=checkpoint, device="cpu", precision="fp32",
                 frames_dir=tmp_path / "cpu", progress=False)
    assert gpu.frames == cpu.frames > 0 and (tmp_path / "gpu.mp4").stat().st_size > 0
    for a, b in zip(sorted((tmp_path / "gpu").glob("*.png")), sorted((tmp_path / "cpu").glob("*.png"))):
        diff = np.abs(cv2.imread(str(a)).astype(int) - cv2.imread(str(b)).astype(int))
        assert diff.max() <= 3, a.name  # TF32 convolutions round differently; a grey level or so


def test_cuda_generator_batches_and_fp16_check(synthetic_avatar, checkpoint, tmp_path):
    import shutil

    from backend.generators.precision_data import MIN_PSNR_DB, lower_face_psnr
    from backend.generators.wav2lip import Wav2LipGenerator
    from preprocess.package import AvatarPackage

    package = AvatarPackage.open(shutil.copytree(synthetic_avatar, tmp_path / "avatar"))  # the cache goes inside
    fp32 = Wav2LipGenerator(checkpoint, device="cuda", precision="auto", package=package)
    assert fp32.device_type == "cuda" and fp32.precision == "fp32" and fp32.preferred_batch == 16
    half = Wav2LipGenerator(checkpoint, device="cuda", precision="fp16", package=package)
    verdict_file = next((package.root / ".cache" / "precision").glob("*/fp16.json"))
    print("fp16 on CUDA:", half.precision, half.precision_reason, verdict_file.read_text())
    faces = np.stack([package.face(i) for i in range(8)])
    mels = np.random.default_rng(0).uniform(-4, 0, (8, 80, 16)).astype(np.float32)
    a, b = fp32.forward(faces, mels), half.forward(faces, mels)
    if half.precision == "fp16":
        assert lower_face_psnr(a, b)[0] >= MIN_PSNR_DB
    else:
        assert half.precision == "fp32" and np.array_equal(a, b)

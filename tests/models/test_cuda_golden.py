"""The golden forwards on CUDA (skipped without a GPU): fp32 to the CPU tests' 1e-4 with TF32 off, TF32 and
fp16 to bounds of their own. bench/gpu_check.sh runs these (`-m cuda`)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from models import testing

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA-only: no CUDA device here")]

TOL = 1e-4
# fp16 keeps ~3 significant digits per layer; over the ~20 layers of the 96 network outputs in [0, 1] move by
# a few 1e-3. The bound is loose enough for that and tight enough to catch a wrong layer or a lost scale.
FP16_TOL = 2e-2


@pytest.fixture(autouse=True)
def _strict_fp32():
    """cuDNN convolutions use TF32 by default on Ampere and later (~1e-3 relative): not fp32."""
    conv, matmul = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = conv, matmul


def _cuda(golden_dir, name, dtype=torch.float32):
    return torch.from_numpy(np.load(golden_dir / name)).to("cuda", dtype)


@pytest.mark.parametrize("variant", ["wav2lip96", "wav2lip288"])
def test_generator_golden_on_cuda_fp32(golden_dir, variant):
    model = testing.deterministic_model(variant).cuda()
    with torch.inference_mode():
        out = model(_cuda(golden_dir, f"{variant}_det_input_audio.npy"),
                    _cuda(golden_dir, f"{variant}_det_input_face.npy"))
    np.testing.assert_allclose(out.cpu().numpy(), np.load(golden_dir / f"{variant}_det_output.npy"), atol=TOL, rtol=0)


def test_wav2lip96_golden_on_cuda_prepared_fp32(golden_dir):
    """The product's inference form (BN folded, channels_last) on CUDA."""
    from models.inference import prepare_for_inference

    model = prepare_for_inference(testing.deterministic_model("wav2lip96"), "cuda")
    with torch.inference_mode():
        out = model(_cuda(golden_dir, "wav2lip96_det_input_audio.npy"),
                    _cuda(golden_dir, "wav2lip96_det_input_face.npy"))
    np.testing.assert_allclose(out.cpu().numpy(), np.load(golden_dir / "wav2lip96_det_output.npy"), atol=TOL, rtol=0)


def test_syncnet96_and_disc_qual96_golden_on_cuda(golden_dir):
    sync = testing.deterministic_model("syncnet96").cuda()
    disc = testing.deterministic_model("disc_qual96").cuda()
    with torch.inference_mode():
        audio_emb, face_emb = sync(_cuda(golden_dir, "syncnet96_det_input_audio.npy"),
                                   _cuda(golden_dir, "syncnet96_det_input_face.npy"))
        judged = disc(_cuda(golden_dir, "disc_qual96_det_input_face.npy"))
    np.testing.assert_allclose(audio_emb.cpu().numpy(), np.load(golden_dir / "syncnet96_det_output_audio_emb.npy"),
                               atol=TOL)
    np.testing.assert_allclose(face_emb.cpu().numpy(), np.load(golden_dir / "syncnet96_det_output_face_emb.npy"),
                               atol=TOL)
    np.testing.assert_allclose(judged.cpu().numpy(), np.load(golden_dir / "disc_qual96_det_output.npy"), atol=TOL)


def test_wav2lip96_golden_on_cuda_tf32_and_fp16(golden_dir):
    golden = np.load(golden_dir / "wav2lip96_det_output.npy")
    model = testing.deterministic_model("wav2lip96").cuda()
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
    with torch.inference_mode():
        tf32 = model(_cuda(golden_dir, "wav2lip96_det_input_audio.npy"),
                     _cuda(golden_dir, "wav2lip96_det_input_face.npy"))
        half = model.half()(_cuda(golden_dir, "wav2lip96_det_input_audio.npy", torch.float16),
                            _cuda(golden_dir, "wav2lip96_det_input_face.npy", torch.float16))
    np.testing.assert_allclose(tf32.cpu().numpy(), golden, atol=FP16_TOL, rtol=0)  # TF32: fp16's 10-bit mantissa
    err = np.abs(half.float().cpu().numpy() - golden)
    print(f"fp16 vs golden: max {err.max():.2e}, mean {err.mean():.2e}")
    assert err.max() < FP16_TOL

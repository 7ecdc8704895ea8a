"""Optional ONNX Runtime path: fp32 export equals torch; int8 (reduce_range) stays close on the golden inputs."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from models import testing

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")


@pytest.mark.slow
def test_wav2lip96_onnx_fp32_and_int8(tmp_path, golden_dir, caplog):
    from models.onnx_int8 import OnnxGenerator, export_generator_onnx, psnr, quantize_generator_int8

    torch.set_num_threads(2)
    model = testing.deterministic_model("wav2lip96")
    fp32 = export_generator_onnx(model, tmp_path / "w96.onnx")
    chunks = np.load(golden_dir / "test_signal_mel_chunks.npy")
    calibration = [(chunks[i * 8:i * 8 + 2][:, None], testing.generator_face(2, 96, b_offset=i)) for i in range(3)]
    import logging

    with caplog.at_level(logging.INFO):
        int8 = quantize_generator_int8(fp32, tmp_path / "w96_int8.onnx", calibration)
    assert not (tmp_path / "w96_int8.pre.onnx").exists()
    assert not [r for r in caplog.records if r.levelno < logging.WARNING and "onnxruntime" in r.pathname], \
        "the quantizer's per-tensor INFO notes stay out of serve's log"

    audio = np.load(golden_dir / "wav2lip96_det_input_audio.npy")
    face = np.load(golden_dir / "wav2lip96_det_input_face.npy")
    golden = np.load(golden_dir / "wav2lip96_det_output.npy")
    out32 = OnnxGenerator(fp32, threads=2)(audio, face)
    np.testing.assert_allclose(out32, golden, atol=1e-4)
    out8 = OnnxGenerator(int8, threads=2)(torch.from_numpy(audio), torch.from_numpy(face))
    assert out8.shape == golden.shape and psnr(golden, out8) > 35.0


def test_onnx_generator_missing_file(tmp_path):
    from models.onnx_int8 import OnnxGenerator
    from stream_wav2lip.errors import UserError

    with pytest.raises(UserError, match="not found"):
        OnnxGenerator(tmp_path / "absent.onnx")

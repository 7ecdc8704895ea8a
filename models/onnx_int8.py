"""Optional int8 path for generators: export to ONNX, quantise statically, run with ONNX Runtime.

Why: on a 2-core AVX2 CPU the fp32 96 model tops out near 21 fps (docs/benchmarks.md); ONNX Runtime's
static int8 (QDQ, per-channel weights) reaches ~28-30 fps. `reduce_range=True` (7-bit weights) is required on
CPUs without VNNI: the AVX2 u8s8 kernel saturates otherwise and the error jumps (measured 23.7 dB vs 30.7 dB).
Quantisation error depends on the weights and on the calibration data, so calibrate with real face crops and
mel windows of the avatar that will be driven, and check `psnr()` against the fp32 model before using it.
"""
from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import torch
from torch import nn

from models.inference import fold_batchnorm
from stream_wav2lip.errors import UserError

INPUT_NAMES = ("audio", "face")


def export_generator_onnx(model: nn.Module, path: str | Path, *, opset: int = 17) -> Path:
    """Write `model` (a generator, 4-D inputs) as ONNX with a dynamic batch axis; BatchNorm folded first."""
    import warnings

    from stream_wav2lip.atomic import atomic_path

    if getattr(model, "kind", None) != "generator":
        raise ValueError("export_generator_onnx expects a generator network")
    net = copy.deepcopy(model).eval().float().cpu()
    fold_batchnorm(net)
    size = int(net.image_size)
    example = (torch.zeros(1, 1, 80, 16), torch.zeros(1, 6, size, size))
    path = Path(path)
    with atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter announces its own deprecation
        torch.onnx.export(net, example, str(tmp), dynamo=False, opset_version=opset, input_names=list(INPUT_NAMES),
                          output_names=["image"], dynamic_axes={"audio": {0: "batch"}, "face": {0: "batch"},
                                                                "image": {0: "batch"}})
    return path


class _Calibration:
    """onnxruntime CalibrationDataReader over (audio (B,1,80,16), face (B,6,S,S)) float32 batches."""

    def __init__(self, batches: Iterable[tuple[np.ndarray, np.ndarray]]):
        self._iter: Iterator = iter(batches)

    def get_next(self):
        item = next(self._iter, None)
        if item is None:
            return None
        audio, face = item
        return {"audio": np.ascontiguousarray(audio, np.float32), "face": np.ascontiguousarray(face, np.float32)}

    def rewind(self):  # not needed for MinMax; present for API completeness
        pass


def quantize_generator_int8(fp32_path: str | Path, int8_path: str | Path,
                            calibration: Iterable[tuple[np.ndarray, np.ndarray]], *, reduce_range: bool = True,
                            per_channel: bool = True) -> Path:
    """Static QDQ int8 (uint8 activations, int8 per-channel weights, MinMax calibration)."""
    int8_path = Path(int8_path)
    quiet = _QuantizerInfo()  # its per-tensor notes go to the root logger at INFO: 40 lines in serve's log
    logging.getLogger().addFilter(quiet)
    try:
        _quantize(fp32_path, int8_path, calibration, reduce_range, per_channel)
    finally:
        logging.getLogger().removeFilter(quiet)
    return int8_path


class _QuantizerInfo(logging.Filter):
    """Drops ONNX Runtime's quantizer INFO records (warnings and errors pass)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or "onnxruntime" not in record.pathname


def _quantize(fp32_path, int8_path: Path, calibration, reduce_range: bool, per_channel: bool) -> None:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from stream_wav2lip.atomic import atomic_path

    with atomic_path(int8_path.with_suffix(".pre.onnx")) as pre, atomic_path(int8_path) as tmp:
        quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=True)
        quantize_static(str(pre), str(tmp), _Calibration(calibration), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=per_channel,
                        reduce_range=reduce_range, calibrate_method=CalibrationMethod.MinMax)
    int8_path.with_suffix(".pre.onnx").unlink(missing_ok=True)


class OnnxGenerator:
    """Runs an exported generator: `(audio (B,1,80,16), face (B,6,S,S)) -> (B,3,S,S)` float32 numpy."""

    def __init__(self, path: str | Path, *, threads: int = 0, variant: str = "", image_size: int = 0,
                 output_activation: str = "sigmoid"):
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise UserError(f"{path}: ONNX model not found")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.inter_op_num_threads = 1
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise UserError(f"{path}: not a loadable ONNX model ({str(exc).splitlines()[0][:200]})") from None
        self.kind, self.variant, self.output_activation = "generator", variant, output_activation
        self.image_size = image_size or int(self.session.get_inputs()[1].shape[2])

    def __call__(self, audio, face) -> np.ndarray:
        audio = audio.detach().cpu().numpy() if isinstance(audio, torch.Tensor) else audio
        face = face.detach().cpu().numpy() if isinstance(face, torch.Tensor) else face
        return self.session.run(None, {"audio": np.ascontiguousarray(audio, np.float32),
                                       "face": np.ascontiguousarray(face, np.float32)})[0]


def psnr(reference: np.ndarray, test: np.ndarray, peak: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB (inf when identical)."""
    mse = float(np.mean((np.asarray(reference, np.float64) - np.asarray(test, np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(peak**2 / mse)

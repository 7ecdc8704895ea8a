"""Which numeric precision the Wav2Lip network runs at, decided per checkpoint and avatar, and proved before use.

Why: on a 2-core CPU the fp32 96 network runs ~23-28 fps, int8 (ONNX Runtime static quantisation,
models/onnx_int8.py) ~40. But quantisation error depends on the weights and on the data: a checkpoint whose
activations span a huge range loses its small values to 8 bits and draws a grey smear. So int8 is never
trusted blindly: it is calibrated on the avatar's own face crops and mel windows of its own audio, then
compared with fp32 on held-out samples of that avatar, and used only when the lower half of the face (the
part the network redraws) keeps a PSNR of at least `MIN_PSNR_DB`; otherwise one warning and fp32. fp16 on
CUDA goes through the same comparison (`half_network`).

The quantised model and the verdict are cached in `<avatar>/.cache/precision/<checkpoint hash>-<avatar
hash>-<crop>/`: the calibration belongs to the avatar (its crops, its audio), `.cache/` is the package's
documented place for derived, deletable data, the checkpoint's folder may be read-only or shared by many
avatars, and deleting an avatar then takes its cache with it. A second start loads the cached ONNX model
(~0.1 s) instead of exporting, calibrating and validating again (~10-20 s).

`auto`: on the CPU, int8 when fp32 is below `REALTIME_FPS` (a few batches measured at load, cached per
machine), int8 validates, and int8 is the faster of the two; fp32 otherwise. On CUDA, fp32 (`--precision
fp16` asks for the validated fp16 path).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from stream_wav2lip.errors import UserError

from backend.generators.precision_data import (MIN_PSNR_DB, Verdict, avatar_samples, cache_folder,
                                               lower_face_psnr, machine_key, read_verdict, write_verdict)
from backend.generators.registry import PRECISIONS

VALIDATION_SAMPLES = 32
CALIBRATION_SAMPLES = 32
REALTIME_FPS = 25.0

log = logging.getLogger("stream_wav2lip.precision")

# forward(network, faces (B,S,S,3) uint8, mels (B,80,16)) -> (B,S,S,3) uint8: the generator's own forward
Forward = Callable[[object, np.ndarray, np.ndarray], np.ndarray]


@dataclass
class PrecisionChoice:
    """What the generator runs: `network` is called like the torch model, `network(mel, face) -> tensor`."""

    network: object
    precision: str  # in use: fp32, int8 or fp16
    reason: str
    verdict: Verdict | None = None


# ------------------------------------------------------------------------------------------------ measuring
def measure_fps(forward: Forward, network, faces: np.ndarray, mels: np.ndarray, batch: int, calls: int = 2) -> float:
    """Frames per second of `forward` at `batch` (one warm-up call, then `calls` timed ones)."""
    reps = -(-batch // len(faces))
    f, m = np.concatenate([faces] * reps)[:batch], np.concatenate([mels] * reps)[:batch]
    forward(network, f, m)
    start = time.perf_counter()
    for _ in range(calls):
        forward(network, f, m)
    return batch * calls / (time.perf_counter() - start)


def validate(forward: Forward, reference, candidate, faces: np.ndarray, mels: np.ndarray, precision: str,
             batch: int = 8) -> Verdict:
    """Run both networks on the same samples and compare their faces' lower halves."""
    ref = np.concatenate([forward(reference, faces[i:i + batch], mels[i:i + batch])
                          for i in range(0, len(faces), batch)])
    out = np.concatenate([forward(candidate, faces[i:i + batch], mels[i:i + batch])
                          for i in range(0, len(faces), batch)])
    pooled, worst = lower_face_psnr(ref, out)
    return Verdict(precision, bool(pooled >= MIN_PSNR_DB), round(pooled, 2), round(worst, 2), len(faces))


# ------------------------------------------------------------------------------------------------ networks
class OnnxNetwork:
    """An ONNX Runtime session called like the torch model: `(mel, face) tensors -> tensor`."""

    def __init__(self, path: Path, threads: int):
        from models.onnx_int8 import OnnxGenerator

        self.path = Path(path)
        self.runner = OnnxGenerator(path, threads=threads)

    def with_threads(self, threads: int) -> "OnnxNetwork":
        """The same model in a session with `threads` intra-op threads (ONNX Runtime fixes them per session)."""
        return OnnxNetwork(self.path, threads)

    def __call__(self, mel, face):
        import torch

        return torch.from_numpy(self.runner(mel, face))


class HalfNetwork:
    """fp16 weights and activations (CUDA), fp32 in and out: the caller's pre/post-processing is unchanged."""

    def __init__(self, model):
        import copy

        self.model = copy.deepcopy(model).half()

    def __call__(self, mel, face):
        return self.model(mel.half(), face.half()).float()


def build_int8(model, folder: Path, faces: np.ndarray, mels: np.ndarray, *, progress: bool = False) -> Path:
    """Export `model` to ONNX and quantise it statically with the avatar's samples as calibration."""
    import torch

    from backend.generators.wav2lip import build_network_input
    from models.onnx_int8 import export_generator_onnx, quantize_generator_int8

    folder.mkdir(parents=True, exist_ok=True)
    fp32_path = export_generator_onnx(model, folder / "fp32.onnx")
    batches = []
    for i in range(0, len(faces), 4):
        x, mel = build_network_input(faces[i:i + 4], mels[i:i + 4])
        batches.append((mel.numpy(), x.contiguous().numpy()))
    try:
        with torch.inference_mode():
            return quantize_generator_int8(fp32_path, folder / "int8.onnx", batches)
    finally:
        fp32_path.unlink(missing_ok=True)


def _note(message: str, warn: bool = False) -> None:
    (log.warning if warn else log.info)(message)


def choose_network(model, forward: Forward, *, precision: str, device_type: str, checkpoint: str | Path | None,
                   package, crop: str, size: int, batch: int, threads: int,
                   notify: Callable[[str, bool], None] = _note) -> PrecisionChoice:
    """Decide (and prove) the precision for `model` on this avatar; see the module docstring.

    `forward(network, faces, mels)` is the generator's own forward (pre/post-processing included), so the
    comparison sees exactly the faces the user would see. `notify(message, warn)` gets the one-line reasons.
    """
    if precision not in PRECISIONS:
        raise UserError(f"--precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    fp32 = PrecisionChoice(model, "fp32", "fp32 requested")
    if precision == "fp32":
        return fp32
    if device_type == "cuda":
        if precision == "int8":
            notify("--precision int8 is the CPU path (ONNX Runtime); fp32 on CUDA (try --precision fp16)", True)
            return PrecisionChoice(model, "fp32", "int8 is CPU-only")
        if precision == "auto":
            return PrecisionChoice(model, "fp32", "auto on CUDA: fp32")
        return _choose_fp16(model, forward, checkpoint, package, crop, size, notify)
    if precision == "fp16":
        notify("--precision fp16 is the CUDA path; fp32 on the CPU (try --precision int8)", True)
        return PrecisionChoice(model, "fp32", "fp16 is CUDA-only")
    if package is None or checkpoint is None:
        if precision == "int8":
            notify("--precision int8 needs an avatar to validate on; fp32", True)
        return PrecisionChoice(model, "fp32", "nothing to validate int8 on")
    try:
        import onnxruntime  # noqa: F401
        import onnx  # noqa: F401
    except ImportError:
        if precision == "int8":
            notify("--precision int8 needs onnx and onnxruntime (pip install onnx onnxruntime); fp32", True)
        return PrecisionChoice(model, "fp32", "onnxruntime missing")
    return _choose_int8(model, forward, precision, checkpoint, package, crop, size, batch, threads, notify)


def _choose_int8(model, forward, precision, checkpoint, package, crop, size, batch, threads, notify):
    folder = cache_folder(package, checkpoint, crop)
    verdict = read_verdict(folder, "int8")
    key = machine_key(threads, batch)
    int8_path = folder / "int8.onnx"
    samples, fps32 = None, None
    if precision == "auto":
        speeds = (verdict.fps.get(key) if verdict is not None else None) or {}
        fps32 = speeds.get("fp32")
        if fps32 is None:
            samples = avatar_samples(package, crop, size, VALIDATION_SAMPLES, offset=0.5)
            fps32 = measure_fps(forward, model, *samples, batch)
        if fps32 >= REALTIME_FPS:
            if verdict is not None and key not in verdict.fps:
                verdict.fps[key] = {"fp32": round(fps32, 1)}
                write_verdict(folder, verdict)
            return PrecisionChoice(model, "fp32", f"auto: fp32 runs {fps32:.0f} fps here", verdict)
    if verdict is None or (verdict.accepted and not int8_path.is_file()):
        started = time.perf_counter()
        notify(f"int8: calibrating and validating on this avatar (once; cached in {folder})", False)
        calib = avatar_samples(package, crop, size, CALIBRATION_SAMPLES, offset=0.0)
        samples = samples or avatar_samples(package, crop, size, VALIDATION_SAMPLES, offset=0.5)
        try:
            build_int8(model, folder, *calib)
            network = OnnxNetwork(int8_path, threads)
            verdict = validate(forward, model, network, *samples, "int8")
        except Exception as exc:  # noqa: BLE001 - any failure of the optional path means fp32
            verdict = Verdict("int8", False, 0.0, 0.0, 0, detail=f"{type(exc).__name__}: {str(exc)[:200]}")
        verdict.detail = verdict.detail or f"built in {time.perf_counter() - started:.1f} s"
        if not verdict.accepted:
            int8_path.unlink(missing_ok=True)
        write_verdict(folder, verdict)
        if verdict.accepted:
            notify(f"int8 accepted ({verdict.detail}): {verdict.summary()}", False)
    if not verdict.accepted:
        why = verdict.summary() if verdict.samples else f"int8 failed ({verdict.detail})"
        notify(f"int8 refused for this checkpoint and avatar, running fp32: {why}", True)
        return PrecisionChoice(model, "fp32", "int8 refused", verdict)
    try:
        network = OnnxNetwork(int8_path, threads)
    except UserError as exc:  # a damaged cache file: fp32 now, rebuilt on the next start
        int8_path.unlink(missing_ok=True)
        notify(f"int8 model in the cache did not load, running fp32 ({exc})", True)
        return PrecisionChoice(model, "fp32", "int8 cache unreadable", verdict)
    if precision == "auto":
        speeds = verdict.fps.get(key) or {}
        if "int8" not in speeds or "fp32" not in speeds:
            samples = samples or avatar_samples(package, crop, size, VALIDATION_SAMPLES, offset=0.5)
            speeds = {"fp32": round(fps32 or speeds.get("fp32") or measure_fps(forward, model, *samples, batch), 1),
                      "int8": round(measure_fps(forward, network, *samples, batch), 1)}
            verdict.fps[key] = speeds
            write_verdict(folder, verdict)
        if speeds["int8"] <= speeds["fp32"]:
            return PrecisionChoice(model, "fp32", f"auto: int8 ({speeds['int8']:.0f} fps) is not faster than fp32 "
                                                  f"({speeds['fp32']:.0f} fps) here", verdict)
        return PrecisionChoice(network, "int8", f"auto: fp32 {speeds['fp32']:.0f} fps < {REALTIME_FPS:.0f}, int8 "
                                                f"{speeds['int8']:.0f} fps; {verdict.summary()}", verdict)
    return PrecisionChoice(network, "int8", verdict.summary(), verdict)


def _choose_fp16(model, forward, checkpoint, package, crop, size, notify) -> PrecisionChoice:
    """fp16 on CUDA, used only when it validates like int8 (the verdict is cached; the model is not)."""
    network = HalfNetwork(model)
    if package is None or checkpoint is None:
        notify("--precision fp16 needs an avatar to validate on; fp32", True)
        return PrecisionChoice(model, "fp32", "nothing to validate fp16 on")
    folder = cache_folder(package, checkpoint, crop)
    verdict = read_verdict(folder, "fp16")
    if verdict is None:
        samples = avatar_samples(package, crop, size, VALIDATION_SAMPLES, offset=0.5)
        try:
            verdict = validate(forward, model, network, *samples, "fp16")
        except Exception as exc:  # noqa: BLE001
            verdict = Verdict("fp16", False, 0.0, 0.0, 0, detail=f"{type(exc).__name__}: {str(exc)[:200]}")
        write_verdict(folder, verdict)
    if not verdict.accepted:
        why = verdict.summary() if verdict.samples else f"fp16 failed ({verdict.detail})"
        notify(f"fp16 refused for this checkpoint and avatar, running fp32: {why}", True)
        return PrecisionChoice(model, "fp32", "fp16 refused", verdict)
    return PrecisionChoice(network, "fp16", verdict.summary(), verdict)


def cpu_fp32_fps(variant: str = "wav2lip96", batch: int = 4) -> float:
    """The fp32 network's speed on this CPU (untrained weights: the speed does not depend on them)."""
    import torch

    import models
    from backend.generators.wav2lip import build_network_input
    from models.inference import prepare_for_inference

    net = prepare_for_inference(models.build(variant), "cpu", inplace=True)
    size = int(net.image_size)

    def forward(network, faces, mels):
        with torch.inference_mode():
            x, mel = build_network_input(faces, mels)
            return network(mel, x).numpy()

    faces = np.full((batch, size, size, 3), 128, np.uint8)
    return measure_fps(forward, net, faces, np.zeros((batch, 80, 16), np.float32), batch)


def device_plans(measure: bool = True) -> list[tuple[str, bool, str]]:
    """`doctor`'s rows: which precision `--precision auto` would use on each device of this machine."""
    rows = []
    try:
        import onnxruntime as ort

        import onnx  # noqa: F401

        int8 = f"onnxruntime {ort.__version__}"
    except ImportError:
        int8 = None
    cpu = f"int8 if it validates on the avatar (>= {MIN_PSNR_DB:.0f} dB), else fp32"
    if measure:
        try:
            fps = cpu_fp32_fps()
            cpu = (f"fp32 (wav2lip96 fp32 runs {fps:.0f} fps at batch 4)" if fps >= REALTIME_FPS else
                   f"{cpu} (wav2lip96 fp32 runs {fps:.0f} fps < {REALTIME_FPS:.0f} at batch 4)")
        except Exception as exc:  # noqa: BLE001 - a report line, never a failure
            cpu = f"{cpu} (speed not measured: {type(exc).__name__})"
    if int8 is None:
        cpu = "fp32 (int8 needs onnx + onnxruntime)"
    rows.append(("precision cpu", True, f"auto -> {cpu}" + (f"; {int8}" if int8 else "")))
    try:
        import torch

        cuda = torch.cuda.is_available()
    except ImportError:
        cuda = False
    rows.append(("precision cuda", True, "auto -> fp32; --precision fp16 after validation on the avatar"
                 if cuda else "no CUDA device"))
    return rows

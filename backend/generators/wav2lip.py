"""The Wav2Lip network as a `Generator`: face crops + mel windows → new faces.

Input is built exactly as the reference `inference.py` builds it (docs/models.md §2): BGR /255, 6 channels =
[the crop with its lower half (rows S/2..S-1) zeroed, the same crop], NCHW, mel as (B, 1, 80, 16).
Sigmoid networks give [0, 1]; Tanh ones (Wav2Lip_384) give [-1, 1] and are mapped by (x + 1) / 2.
When the avatar's face crops are not the network's size (a 96 network on a package cut at 288, say), the
crops are resized in and the outputs resized back, so the compositor always gets the package's size.
The network is prepared for inference once (BatchNorm folded, channels_last: ~20 % faster on CPU). `render`
splits each CPU batch between single-threaded streams, one per torch thread (backend.cpu_streams: the network
keeps its speed while compositing and encoding share the cores).
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from backend.generators.base import Generator, GeneratorInput
from stream_wav2lip.errors import UserError


def load_generator_network(checkpoint: str | Path, device: str = "auto"):
    """(prepared model, CheckpointInfo, torch.device); refuses SyncNet / discriminator checkpoints."""
    import models
    from models.checkpoint import resolve_device
    from models.inference import prepare_for_inference

    path = Path(checkpoint)
    if not path.is_file():
        raise UserError(f"{path}: checkpoint file not found")
    dev = resolve_device(device)
    if dev.type == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise UserError(f"{path}: --device cuda requested but CUDA is not available (use --device auto or cpu)")
    model, info = models.load_checkpoint(path, "cpu")
    if info.kind != "generator":
        raise UserError(f"{path}: this is a {info.variant} {info.kind} checkpoint, not a Wav2Lip generator")
    prepared = prepare_for_inference(model, dev, channels_last=True, fold_bn=True, inplace=True)
    return prepared, info, dev


def build_network_input(faces: np.ndarray, mels: np.ndarray, device=None):
    """(B,S,S,3) uint8 BGR + (B,80,16) float → the reference's (face (B,6,S,S), mel (B,1,80,16)) float32 tensors.

    The uint8 pixels are moved to `device` before the float conversion (4x less to copy to a GPU).
    """
    import torch

    b, s = faces.shape[0], faces.shape[1]
    img = torch.from_numpy(np.ascontiguousarray(faces)).to(device or "cpu").float().div_(255.0)  # B,S,S,3
    masked = img.clone()
    masked[:, s // 2:] = 0.0
    x = torch.cat([masked, img], dim=3).permute(0, 3, 1, 2)  # B,6,S,S (channels_last strides, no copy)
    mel = torch.from_numpy(np.ascontiguousarray(mels, dtype=np.float32)).reshape(b, 1, mels.shape[1], mels.shape[2])
    return x, mel.to(device or "cpu")


class Wav2LipGenerator(Generator):
    """`Generator` over a network from `models.load_checkpoint` (see module docstring)."""

    name = "wav2lip"
    streams = None  # backend.cpu_streams.CpuStreams on a multi-threaded CPU
    handles_silence = False  # silent frames keep the footage's own mouth
    needs_calibration = False

    def __init__(self, checkpoint: str | Path, device: str = "auto", crop: str = "head", batch_size: int | None = None,
                 streams: int | None = 1, precision: str = "fp32", package=None, parallel: bool = False):
        """streams: CPU streams a batch is split into (1 = one call on torch's threads, None = one stream per
        torch thread on the CPU). `serve` keeps one call: measured there, streams cut the streamed p95 latency
        (357 -> 318 ms) but raised the queued-file one (76 -> 87 ms) and repeated more frames; a mixed result.
        precision: auto | fp32 | int8 | fp16, decided and validated on `package` (backend/generators/precision.py).
        parallel: the caller (serve) runs one single-threaded call per CPU thread side by side
        (`parallel_calls`); an int8 session is then opened single-threaded, and fp32 runs through an ONNX
        Runtime session checked against torch (`runtime` says which)."""
        from backend.cpu_streams import CpuStreams, default_stream_count, thread_count

        self.model, self.info, self.device = load_generator_network(checkpoint, device)
        self.checkpoint = Path(checkpoint)
        count = default_stream_count(self.device.type) if streams is None else max(1, int(streams))
        self.streams = CpuStreams(count) if count > 1 and self.device.type == "cpu" else None
        self.face_size = int(self.info.image_size)
        self.device_type = self.device.type
        self.crop = crop
        self.tanh = (self.info.output_activation or "sigmoid").lower() == "tanh"
        self._batch = batch_size
        self.name = f"wav2lip:{self.info.variant}"
        self.precision, self.precision_reason, self._validated_on_avatar = "fp32", "fp32", False
        if precision != "fp32":
            self._choose_precision(precision, checkpoint, package)
        # on a multi-core CPU `serve` runs one single-threaded call per thread side by side (backend/live/loop.py):
        # a call on all threads waits at every layer for the slowest one, and something always interrupts one.
        # ONNX Runtime's pool the same: int8, 2 EPYC cores, B1 22.6 fps as one 2-thread call, 33.4 as two
        # 1-thread calls (docs/benchmarks.md)
        threads = thread_count()
        self.runtime = "onnxruntime" if self.precision == "int8" else "torch"  # what runs the network
        if parallel and self.device.type == "cpu" and self.streams is None and threads > 1:
            if self.precision == "int8":
                self.model = self.model.with_threads(1)
            elif self.precision == "fp32":  # the same fp32 network ~20 % faster (backend/generators/onnx_fp32.py)
                from backend.generators.onnx_fp32 import fp32_session

                session = fp32_session(self.model, self._forward_with, package=package, crop=self.crop,
                                       size=self.face_size, checkpoint=checkpoint)
                if session is not None:
                    self.model, self.runtime = session, "onnxruntime"
            self.parallel_calls = min(4, threads)

    def _choose_precision(self, precision: str, checkpoint, package) -> None:
        """Swap the network for a validated lower-precision one when it is safe and useful (precision.py)."""
        import torch

        from backend.generators.precision import choose_network

        batch = self.round_batch(self.throughput_batch if self.streams is not None else self.preferred_batch)
        choice = choose_network(self.model, self._forward_with, precision=precision,
                                device_type=self.device.type, checkpoint=checkpoint, package=package,
                                crop=self.crop, size=self.face_size, batch=batch,
                                threads=1 if self.streams is not None else torch.get_num_threads())
        self.model, self.precision, self.precision_reason = choice.network, choice.precision, choice.reason
        self._validated_on_avatar = choice.precision == "int8"  # calibrated on this avatar

    @property
    def identity(self) -> str | None:
        """The checkpoint's content hash (the one that keys the int8 cache and the fp32 ONNX export:
        precision_data.file_sha256, read once per process) and the precision it runs in; None once the file is
        gone."""
        from backend.generators.precision_data import file_sha256

        try:
            digest = file_sha256(self.checkpoint)
        except OSError:
            return None
        return f"{self.info.variant}-{digest[:16]}-{self.precision}"

    @property
    def preferred_batch(self) -> int:
        if self._batch:
            return self._batch
        return 16 if self.device.type == "cuda" else 4

    @property
    def per_avatar(self) -> bool:
        """int8 was calibrated and validated on this avatar: another avatar gets a network of its own."""
        return self._validated_on_avatar

    @property
    def throughput_batch(self) -> int:
        return self._batch or (16 if self.device.type == "cuda" else 8)

    def round_batch(self, n: int) -> int:
        """CPU streams split only equal parts (backend.cpu_streams): a multiple of their count."""
        return self.streams.even_batch(n) if self.streams is not None else max(1, int(n))

    def generate(self, batch: list[GeneratorInput]) -> np.ndarray:
        if not batch:
            return np.zeros((0, self.face_size, self.face_size, 3), np.uint8)
        size_in = batch[0].face.shape[0]
        faces = np.stack([self._to_network_size(item.face) for item in batch])
        mels = np.stack([item.mel for item in batch])
        out = self.forward(faces, mels)
        if size_in != self.face_size:
            out = np.stack([cv2.resize(f, (size_in, size_in), interpolation=cv2.INTER_LINEAR) for f in out])
        return out

    def forward(self, faces: np.ndarray, mels: np.ndarray) -> np.ndarray:
        """Network only: (B,S,S,3) uint8 at the network's size + (B,80,16) → (B,S,S,3) uint8."""
        if self.streams is not None:
            return self.streams.run(self._forward, faces, mels)
        return self._forward(faces, mels)

    def _forward_with(self, network, faces: np.ndarray, mels: np.ndarray) -> np.ndarray:
        """`forward` with another network in place of self.model (the precision checks compare them)."""
        if self.streams is not None:
            return self.streams.run(lambda f, m: self._forward(f, m, network), faces, mels)
        return self._forward(faces, mels, network)

    def _forward(self, faces: np.ndarray, mels: np.ndarray, network=None) -> np.ndarray:
        import torch

        with torch.inference_mode():
            x, mel = build_network_input(faces, mels, self.device)
            y = (self.model if network is None else network)(mel, x)
            if self.tanh:
                y = (y + 1.0) * 0.5
            y = (y.clamp_(0.0, 1.0) * 255.0).round_().to(torch.uint8).permute(0, 2, 3, 1).contiguous().cpu()
        return y.numpy()

    def _to_network_size(self, face: np.ndarray) -> np.ndarray:
        s = self.face_size
        if face.shape[0] == s and face.shape[1] == s:
            return face
        interp = cv2.INTER_AREA if face.shape[0] > s else cv2.INTER_LINEAR
        return cv2.resize(face, (s, s), interpolation=interp)

import numpy as np
import pytest
import torch

from backend.generators.base import GeneratorInput
from backend.generators.wav2lip import Wav2LipGenerator, build_network_input


def test_network_input_is_the_reference_layout():
    faces = np.random.default_rng(0).integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    mels = np.random.default_rng(1).standard_normal((2, 80, 16)).astype(np.float32)
    x, mel = build_network_input(faces, mels)
    assert tuple(x.shape) == (2, 6, 8, 8) and tuple(mel.shape) == (2, 1, 80, 16)
    ref = torch.from_numpy(faces).permute(0, 3, 1, 2).float() / 255.0  # BGR kept, /255, NCHW
    assert torch.equal(x[:, 3:], ref)  # channels 3-5: the reference (same crop)
    assert torch.equal(x[:, :3, :4], ref[:, :, :4]) and not x[:, :3, 4:].any()  # 0-2: lower half masked
    assert torch.equal(mel[:, 0], torch.from_numpy(mels))


class _Constant(torch.nn.Module):
    def __init__(self, value: float):
        super().__init__()
        self.value = value
        self.seen = []

    def forward(self, mel, face):
        self.seen.append((tuple(mel.shape), tuple(face.shape)))
        return torch.full((face.shape[0], 3, face.shape[2], face.shape[3]), self.value)


def _fake(value: float, tanh: bool, size: int = 96) -> Wav2LipGenerator:
    g = Wav2LipGenerator.__new__(Wav2LipGenerator)
    g.model, g.device, g.face_size, g.tanh, g.crop, g._batch = _Constant(value), torch.device("cpu"), size, tanh, "head", 4
    return g


@pytest.mark.parametrize("value,tanh,expected", [(0.5, False, 128), (0.0, True, 128), (-1.0, True, 0), (1.0, False, 255)])
def test_sigmoid_and_tanh_outputs(value, tanh, expected):
    g = _fake(value, tanh)
    item = GeneratorInput(face=np.zeros((96, 96, 3), np.uint8), mel=np.zeros((80, 16), np.float32), avatar_index=0)
    out = g.generate([item, item])
    assert out.shape == (2, 96, 96, 3) and out.dtype == np.uint8 and np.all(out == expected)


def test_package_face_size_differs_from_the_network():
    g = _fake(0.5, False, size=96)
    item = GeneratorInput(face=np.zeros((192, 192, 3), np.uint8), mel=np.zeros((80, 16), np.float32), avatar_index=0)
    out = g.generate([item])
    assert g.model.seen == [((1, 1, 80, 16), (1, 6, 96, 96))]  # the network saw its own size
    assert out.shape == (1, 192, 192, 3)  # the compositor gets the package's size back


@pytest.mark.parametrize("variant", ["syncnet96"])  # discriminator: test_render.py (CLI)
def test_refuses_syncnet_and_discriminator(tmp_path, variant):
    from models.testing import deterministic_state_dict, save_reference_checkpoint
    from stream_wav2lip.errors import UserError

    ckpt = save_reference_checkpoint(deterministic_state_dict(variant), tmp_path / "x.pth", with_optimizer=False)
    with pytest.raises(UserError, match="not a Wav2Lip generator"):
        Wav2LipGenerator(ckpt, device="cpu")


@pytest.mark.slow
def test_real_wav2lip96_forward_matches_eager(tmp_path):
    import models
    from models.testing import deterministic_state_dict, save_reference_checkpoint

    torch.set_num_threads(2)
    ckpt = save_reference_checkpoint(deterministic_state_dict("wav2lip96"), tmp_path / "g.pth", with_optimizer=False)
    g = Wav2LipGenerator(ckpt, device="cpu")
    rng = np.random.default_rng(0)
    faces = rng.integers(0, 256, (2, 96, 96, 3), dtype=np.uint8)
    mels = rng.uniform(-4, 4, (2, 80, 16)).astype(np.float32)
    out = g.forward(faces, mels)
    eager, _ = models.load_checkpoint(ckpt, "cpu")
    x, mel = build_network_input(faces, mels)
    with torch.no_grad():
        ref = (eager(mel, x.contiguous()).clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    assert np.abs(out.astype(int) - ref.astype(int)).max() <= 1  # BN folding / channels_last: float rounding only
    # the identity that keys per-avatar measurements of the network (backend/detail/softness.py)
    first = g.identity
    assert first == Wav2LipGenerator(ckpt, device="cpu").identity and first.startswith("wav2lip96-")
    g.precision = "int8"
    assert g.identity != first  # other arithmetic, other faces
    g.precision = "fp32"
    other = deterministic_state_dict("wav2lip96")
    next(t for t in other.values() if t.is_floating_point()).add_(0.01)
    save_reference_checkpoint(other, ckpt, with_optimizer=False)  # the file replaced by other weights
    assert g.identity != first

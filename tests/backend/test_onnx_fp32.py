"""fp32 through ONNX Runtime for serve's single-threaded CPU calls (backend/generators/onnx_fp32.py): exported
once per checkpoint into the user's cache folder (or a temporary one), checked at every start, used only when it
draws torch's faces (within a grey level), torch otherwise."""
from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from tests.backend.test_precision import TinyGenerator, avatar, network_forward  # noqa: E402,F401 - fixture


def _session(model, avatar, forward=network_forward, checkpoint=None):
    from backend.generators.onnx_fp32 import fp32_session

    return fp32_session(model, forward, package=avatar, crop="head", size=96, checkpoint=checkpoint)


def test_the_session_draws_torchs_faces_and_leaves_no_file_behind(avatar):
    from backend.generators import onnx_fp32
    from backend.generators.precision import OnnxNetwork, avatar_samples

    model = TinyGenerator().eval()
    network = _session(model, avatar)
    assert isinstance(network, OnnxNetwork)
    assert network.runner.session.get_session_options().intra_op_num_threads == 1
    assert not network.path.exists(), "no checkpoint to key a cache on: the export was temporary"
    assert not (avatar.root / ".cache" / "precision").exists(), "nothing cached next to the avatar"
    faces, mels = avatar_samples(avatar, "head", 96, 6)
    apart = np.abs(network_forward(model, faces, mels).astype(np.int16) - network_forward(network, faces, mels))
    assert apart.max() <= onnx_fp32.MAX_LEVELS


def test_a_session_that_differs_from_torch_is_refused(avatar, caplog):
    from backend.generators import onnx_fp32

    model = TinyGenerator().eval()

    def drifting(network, faces, mels):  # the session's faces 3 grey levels off
        out = network_forward(network, faces, mels)
        return out if network is model else np.clip(out.astype(np.int16) + 3, 0, 255).astype(np.uint8)

    with caplog.at_level("WARNING", logger=onnx_fp32.log.name):
        assert _session(model, avatar, drifting) is None
    assert any("3 grey levels" in r.message for r in caplog.records)


def test_a_failing_export_or_nothing_to_check_on_means_torch(avatar, monkeypatch, caplog):
    from backend.generators.onnx_fp32 import fp32_session

    model = TinyGenerator().eval()
    assert fp32_session(model, network_forward, package=None, crop="head", size=96) is None

    def broken(*_a, **_k):
        raise RuntimeError("exporter crashed")
    monkeypatch.setattr("models.onnx_int8.export_generator_onnx", broken)
    with caplog.at_level("WARNING"):
        assert _session(model, avatar) is None
    assert any("exporter crashed" in r.message and "running torch" in r.message for r in caplog.records)


def test_an_export_is_cached_per_checkpoint_reused_repaired_and_pruned(avatar, tmp_path, monkeypatch):
    from backend.generators import onnx_fp32
    from backend.generators.precision import OnnxNetwork

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    model = TinyGenerator().eval()
    checkpoints = []
    for i in range(3):
        checkpoints.append(tmp_path / f"w{i}.pth")
        checkpoints[-1].write_bytes(b"weights %d" % i)  # the key is the file's content (and torch's version)
    first = _session(model, avatar, checkpoint=checkpoints[0])
    cached = sorted(onnx_fp32.cache_folder().iterdir())
    assert [p.suffix for p in cached] == [".onnx"] and first.path == cached[0], "one file, no temporary left"

    def broken(*_a, **_k):
        raise RuntimeError("exported again")
    with monkeypatch.context() as m:  # a second start loads the file: no export
        m.setattr("models.onnx_int8.export_generator_onnx", broken)
        assert _session(model, avatar, checkpoint=checkpoints[0]).path == cached[0]

    cached[0].write_bytes(b"half a file")  # damaged (a full disk, a killed copy): exported again, then used
    repaired = _session(model, avatar, checkpoint=checkpoints[0])
    assert isinstance(repaired, OnnxNetwork) and repaired.path == cached[0] and cached[0].stat().st_size > 1000

    _session(model, avatar, checkpoint=checkpoints[1])
    _session(model, avatar, checkpoint=checkpoints[2])
    kept = sorted(onnx_fp32.cache_folder().glob("*.onnx"))
    assert len(kept) == onnx_fp32.CACHE_KEEP and cached[0] not in kept, "the least recently used one goes"


def test_an_unwritable_cache_means_a_temporary_export(avatar, tmp_path, monkeypatch):
    (tmp_path / "not-a-folder").write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "not-a-folder"))
    checkpoint = tmp_path / "w.pth"
    checkpoint.write_bytes(b"weights")
    network = _session(TinyGenerator().eval(), avatar, checkpoint=checkpoint)
    assert network is not None and not network.path.exists()


@pytest.mark.slow
def test_serve_runs_wav2lip96_fp32_through_the_session(avatar, tmp_path):
    """serve's generator (parallel calls on a 2-thread CPU): ONNX Runtime, the same faces as torch's."""
    from backend.generators.wav2lip import Wav2LipGenerator
    from models.testing import deterministic_state_dict, save_reference_checkpoint

    checkpoint = save_reference_checkpoint(deterministic_state_dict("wav2lip96"), tmp_path / "w96.pth",
                                           with_optimizer=False)
    torch.set_num_threads(2)
    live = Wav2LipGenerator(checkpoint, device="cpu", precision="fp32", package=avatar, parallel=True)
    plain = Wav2LipGenerator(checkpoint, device="cpu", precision="fp32", package=avatar)
    assert live.runtime == "onnxruntime" and live.parallel_calls == 2 and live.precision == "fp32"
    assert plain.runtime == "torch"  # render: torch's own streams
    faces = np.stack([avatar.face(i) for i in range(4)])
    mels = np.zeros((4, 80, 16), np.float32) - 2
    assert np.abs(live.forward(faces, mels).astype(np.int16) - plain.forward(faces, mels)).max() <= 1


def test_a_checkpoint_is_hashed_once_per_process_until_it_changes(tmp_path, monkeypatch):
    """int8's cache and the fp32 export are both keyed by the checkpoint's hash: read once, re-read when the
    file changes."""
    import os

    from backend.generators import precision_data

    path = tmp_path / "w.pth"
    path.write_bytes(b"first")
    first = precision_data.file_sha256(path)
    reads = []
    real_open = open
    monkeypatch.setattr("builtins.open", lambda *a, **k: reads.append(a[0]) or real_open(*a, **k))
    assert precision_data.file_sha256(path) == first and not reads, "the second call reads nothing"
    monkeypatch.undo()
    path.write_bytes(b"second, longer")
    os.utime(path, ns=(1, 1))
    assert precision_data.file_sha256(path) != first

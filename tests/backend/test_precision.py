"""--precision: int8 is calibrated on the avatar and used only when it validates against fp32; refused weights
fall back to fp32 with one warning; the verdict is cached per checkpoint and avatar; every CLI and the OBS
panel pass the flag. Fast tests use a tiny two-layer "generator" (ONNX export + quantisation in well under a
second); the slow ones run the real wav2lip96 network with deterministic weights."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class TinyGenerator(nn.Module):
    """Shaped like a Wav2Lip generator (mel (B,1,80,16), face (B,6,S,S) -> (B,3,S,S) in [0, 1]), two convs."""

    kind, variant, image_size = "generator", "tiny", 96

    def __init__(self):
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            self.conv1 = nn.Conv2d(6, 8, 3, padding=1)
            self.conv2 = nn.Conv2d(8, 3, 1)
            with torch.no_grad():
                self.conv2.weight *= 6  # faces that use most of the 0..255 range, as a trained network's do

    def forward(self, audio, face):
        speech = 0.2 * (audio.mean(dim=(2, 3), keepdim=True) + 2.0)  # mels are about -4..0
        return torch.sigmoid(self.conv2(torch.relu(self.conv1(face))) + speech)


def spread_channel(model: nn.Module, first: nn.Module, second: nn.Module, factor: float) -> nn.Module:
    """The same function in fp32, but one channel between `first` and `second` spans `factor` times the range
    of the others (scaled up before a ReLU, down after it): per-tensor 8-bit activations then round every other
    channel to a few levels. How a trained checkpoint with one exploding channel would look to int8."""
    with torch.no_grad():
        first.weight[0] *= factor
        first.bias[0] *= factor
        second.weight[:, 0] /= factor
    return model


def network_forward(network, faces, mels):
    """What Wav2LipGenerator._forward does around the network: the faces the user would see."""
    from backend.generators.wav2lip import build_network_input

    with torch.inference_mode():
        x, mel = build_network_input(faces, mels)
        y = network(mel, x)
        return (y.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


@pytest.fixture
def avatar(synthetic_avatar, tmp_path):
    """A private copy: the precision cache is written into <avatar>/.cache."""
    from preprocess.package import AvatarPackage

    return AvatarPackage.open(shutil.copytree(synthetic_avatar, tmp_path / "avatar"))


def choose(model, avatar, tmp_path, precision="int8", warnings=None, name="ckpt.pth"):
    from backend.generators.precision import choose_network

    checkpoint = tmp_path / name
    if not checkpoint.exists():
        torch.save(model.state_dict(), checkpoint)  # only hashed here
    notes = warnings if warnings is not None else []
    return choose_network(model, network_forward, precision=precision, device_type="cpu", checkpoint=checkpoint,
                          package=avatar, crop="head", size=96, batch=4, threads=1,
                          notify=lambda message, warn: notes.append((message, warn)))


def test_lower_face_psnr_looks_only_at_the_lower_half():
    from backend.generators.precision_data import lower_face_psnr

    ref = np.full((2, 8, 8, 3), 100, np.uint8)
    test = ref.copy()
    test[:, :4] = 0  # the upper half: not redrawn by the network, not counted
    assert lower_face_psnr(ref, test) == (float("inf"), float("inf"))
    test[1, 6:] = 110
    pooled, worst = lower_face_psnr(ref, test)
    assert worst < pooled < 60 and worst == pytest.approx(10 * np.log10(255**2 / 50), abs=1e-6)


def test_samples_come_from_the_avatar_and_its_audio(avatar):
    from backend.generators.precision_data import avatar_samples, synthetic_mels
    from models.audio import load_audio, mel_windows, melspectrogram

    faces, mels = avatar_samples(avatar, "head", 96, 32)
    assert faces.shape == (32, 96, 96, 3) and faces.dtype == np.uint8 and mels.shape == (32, 80, 16)
    assert np.array_equal(faces[0], avatar.face(0, "head"))
    assert len({m.tobytes() for m in mels}) == 32  # different speech windows, not one repeated
    own = mel_windows(melspectrogram(load_audio(avatar.audio_path)))
    assert np.array_equal(mels[0], own[0])  # its own audio first (20 windows here, topped up with stand-ins)
    held_out, held_mels = avatar_samples(avatar, "head", 96, 32, offset=0.5)
    assert held_out.shape == faces.shape
    assert not {m.tobytes() for m in mels} & {m.tobytes() for m in held_mels}  # validation is held out
    fake = synthetic_mels(8)
    assert fake.shape == (8, 80, 16) and np.isfinite(fake).all() and fake.std() > 0.1


def test_good_weights_are_accepted_cached_and_loaded_from_the_cache(avatar, tmp_path, monkeypatch):
    from backend.generators import precision

    notes = []
    choice = choose(TinyGenerator().eval(), avatar, tmp_path, warnings=notes)
    assert choice.precision == "int8" and isinstance(choice.network, precision.OnnxNetwork)
    assert choice.verdict.accepted and choice.verdict.samples >= precision.VALIDATION_SAMPLES
    assert choice.verdict.psnr_db >= precision.MIN_PSNR_DB
    assert not any(warn for _, warn in notes)
    assert [m.split(" (")[0] for m, _ in notes] == ["int8: calibrating and validating on this avatar", "int8 accepted"]
    folder = precision.cache_folder(avatar, tmp_path / "ckpt.pth", "head")
    assert folder.parent == avatar.root / ".cache" / "precision"
    assert (folder / "int8.onnx").is_file() and (folder / "int8.json").is_file()
    faces, mels = precision.avatar_samples(avatar, "head", 96, 4)
    out = network_forward(choice.network, faces, mels)
    assert precision.lower_face_psnr(network_forward(TinyGenerator().eval(), faces, mels), out)[0] >= 35

    # the second start: the cached model and verdict, nothing exported, calibrated or compared
    monkeypatch.setattr(precision, "build_int8", lambda *a, **k: pytest.fail("rebuilt instead of the cache"))
    monkeypatch.setattr(precision, "validate", lambda *a, **k: pytest.fail("validated again"))
    second = choose(TinyGenerator().eval(), avatar, tmp_path)
    assert second.precision == "int8" and second.verdict == choice.verdict
    assert np.array_equal(network_forward(second.network, faces, mels), out)
    # a damaged cached model: fp32 with a warning now, and the file is dropped so the next start rebuilds it
    (folder / "int8.onnx").write_bytes(b"not onnx")
    notes.clear()
    assert choose(TinyGenerator().eval(), avatar, tmp_path, warnings=notes).precision == "fp32"
    assert [w for _, w in notes] == [True] and not (folder / "int8.onnx").exists()
    # another checkpoint is another key: it is built and validated again
    other = TinyGenerator().eval()
    with torch.no_grad():
        other.conv2.bias += 0.01
    with pytest.raises(pytest.fail.Exception, match="rebuilt"):
        choose(other, avatar, tmp_path, name="other.pth")


def test_badly_quantising_weights_are_refused_with_one_warning(avatar, tmp_path, monkeypatch):
    from backend.generators import precision

    good = TinyGenerator().eval()
    bad = TinyGenerator().eval()
    spread_channel(bad, bad.conv1, bad.conv2, 1e4)
    faces, mels = precision.avatar_samples(avatar, "head", 96, 4)
    assert precision.lower_face_psnr(network_forward(good, faces, mels), network_forward(bad, faces, mels))[0] > 45
    notes = []
    choice = choose(bad, avatar, tmp_path, warnings=notes)
    assert choice.precision == "fp32" and choice.network is bad
    assert not choice.verdict.accepted and choice.verdict.psnr_db < precision.MIN_PSNR_DB
    warnings = [message for message, warn in notes if warn]
    assert len(warnings) == 1 and "int8 refused" in warnings[0] and "\n" not in warnings[0]
    folder = precision.cache_folder(avatar, tmp_path / "ckpt.pth", "head")
    assert not (folder / "int8.onnx").exists()  # a refused model is not kept
    # the refusal is cached too: the next start goes straight to fp32, with the same warning
    monkeypatch.setattr(precision, "build_int8", lambda *a, **k: pytest.fail("rebuilt a refused model"))
    notes.clear()
    assert choose(bad, avatar, tmp_path, warnings=notes).precision == "fp32"
    assert [w for _, w in notes] == [True]


def test_auto_keeps_fp32_where_it_is_fast_enough(avatar, tmp_path, monkeypatch):
    from backend.generators import precision

    monkeypatch.setattr(precision, "measure_fps", lambda *a, **k: 40.0)
    monkeypatch.setattr(precision, "build_int8", lambda *a, **k: pytest.fail("int8 built although fp32 is real time"))
    choice = choose(TinyGenerator().eval(), avatar, tmp_path, precision="auto")
    assert choice.precision == "fp32" and "40 fps" in choice.reason


def test_auto_takes_validated_int8_on_a_slow_cpu_only_when_faster(avatar, tmp_path, monkeypatch):
    from backend.generators import precision

    speeds = iter([10.0, 30.0])  # fp32, then int8
    monkeypatch.setattr(precision, "measure_fps", lambda *a, **k: next(speeds))
    choice = choose(TinyGenerator().eval(), avatar, tmp_path, precision="auto")
    assert choice.precision == "int8" and "fp32 10 fps" in choice.reason
    key = precision.machine_key(1, 4)
    assert choice.verdict.fps[key] == {"fp32": 10.0, "int8": 30.0}
    # cached speeds: nothing is measured on the next start
    monkeypatch.setattr(precision, "measure_fps", lambda *a, **k: pytest.fail("measured again"))
    assert choose(TinyGenerator().eval(), avatar, tmp_path, precision="auto").precision == "int8"


def test_device_rules_without_validation(avatar, tmp_path):
    model = TinyGenerator().eval()
    notes = []
    from backend.generators.precision import choose_network

    def run(precision, device, package=avatar):
        return choose_network(model, network_forward, precision=precision, device_type=device,
                              checkpoint=tmp_path / "x.pth", package=package, crop="head", size=96, batch=4,
                              threads=1, notify=lambda m, w: notes.append((m, w)))

    assert run("fp32", "cpu").network is model
    assert run("auto", "cuda").precision == "fp32" and not notes
    assert run("int8", "cuda").precision == "fp32" and notes[-1][1]
    assert run("fp16", "cpu").precision == "fp32" and "CUDA" in notes[-1][0]
    assert run("int8", "cpu", package=None).precision == "fp32" and "avatar" in notes[-1][0]
    from stream_wav2lip.errors import UserError

    with pytest.raises(UserError, match="precision"):
        run("int4", "cpu")


def test_fp16_validation_hook(avatar, tmp_path):
    """The CUDA fp16 path's check, run here on the CPU (torch computes fp16 convolutions on the CPU too)."""
    from backend.generators import precision

    model = TinyGenerator().eval()
    torch.save(model.state_dict(), tmp_path / "h.pth")
    choice = precision._choose_fp16(model, network_forward, tmp_path / "h.pth", avatar, "head", 96,
                                    lambda m, w: None)
    assert choice.precision == "fp16" and isinstance(choice.network, precision.HalfNetwork)
    folder = precision.cache_folder(avatar, tmp_path / "h.pth", "head")
    assert choice.verdict.accepted and (folder / "fp16.json").is_file()


# ------------------------------------------------------------------------------------------ the flag everywhere
def test_render_and_serve_parse_precision(monkeypatch):
    import argparse

    from backend import render_cli, serve_cli
    from backend.generators.registry import PRECISIONS, GeneratorOptions

    assert GeneratorOptions().precision == "auto"
    for module, required in ((render_cli, ["--avatar", "a", "--audio", "b.wav"]), (serve_cli, ["--avatar", "a"])):
        parser = argparse.ArgumentParser()
        module.add_arguments(parser)
        assert parser.parse_args(required).precision == "auto"
        for value in PRECISIONS:
            assert parser.parse_args(required + ["--precision", value]).precision == value
        with pytest.raises(SystemExit):
            parser.parse_args(required + ["--precision", "int4"])

    seen = {}

    def fake_render(*args, **kwargs):
        seen.update(kwargs)
        raise SystemExit(0)

    monkeypatch.setattr("backend.render.render", fake_render)
    parser = argparse.ArgumentParser()
    render_cli.add_arguments(parser)
    with pytest.raises(SystemExit):
        render_cli.run(parser.parse_args(["--avatar", "a", "--audio", "b.wav", "--precision", "int8"]))
    assert seen["precision"] == "int8"

    class FakeServeApp:
        def __init__(self, *args, **kwargs):
            seen["serve"] = kwargs["precision"]

        def start(self):
            raise RuntimeError("stop here")

        def close(self):
            pass

    monkeypatch.setattr("backend.serve_app.ServeApp", FakeServeApp)
    parser = argparse.ArgumentParser()
    serve_cli.add_arguments(parser)
    with pytest.raises(RuntimeError, match="stop here"):
        serve_cli.run(parser.parse_args(["--avatar", "a", "--precision", "fp16", "--quiet", "--no-api"]))
    assert seen["serve"] == "fp16"


def test_render_shows_its_notes_unless_asked_for_no_progress():
    """The first render's int8 calibration (~15 s) must not look like a hang: its INFO notes reach stderr."""
    import logging

    from backend import render_cli

    loggers = [logging.getLogger(name) for name in ("backend", "stream_wav2lip", "preprocess", "models")]
    before = [lg.level for lg in loggers]
    try:
        render_cli.show_notes(True)
        for name in ("stream_wav2lip.precision", "backend.detail.softness", "backend.generators.onnx_fp32"):
            assert logging.getLogger(name).isEnabledFor(logging.INFO)
        render_cli.show_notes(False)
        assert not logging.getLogger("stream_wav2lip.precision").isEnabledFor(logging.INFO)
        assert logging.getLogger("stream_wav2lip.precision").isEnabledFor(logging.WARNING)
    finally:
        for lg, level in zip(loggers, before):
            lg.setLevel(level)


def test_registry_passes_precision_and_the_package_to_the_network(monkeypatch):
    from backend.generators import registry

    captured = {}

    class Fake:
        def __init__(self, checkpoint, **kwargs):
            captured.update(kwargs)

    monkeypatch.setattr("backend.generators.wav2lip.Wav2LipGenerator", Fake)
    package = object()
    registry.make_generator("wav2lip", package, registry.GeneratorOptions("w.pth", precision="int8"))
    assert captured["precision"] == "int8" and captured["package"] is package and not captured["parallel"]
    registry.make_generator("wav2lip", package, registry.GeneratorOptions("w.pth", parallel_calls=True))
    assert captured["parallel"], "serve asks for calls side by side"


def test_obs_panel_and_supervisor_pass_precision(tmp_path):
    from backend.generators.registry import PRECISIONS
    from obs_plugin import panel
    from obs_plugin.supervisor import BackendConfig

    assert [value for value, _ in panel.precisions()] == list(PRECISIONS)
    assert panel.DEFAULTS_STR["precision"] == "auto"
    cfg = BackendConfig(session="S", avatar_dir=str(tmp_path), precision="int8", backend_python="/bin/sh")
    cmd = cfg.command()
    assert cmd[cmd.index("--precision") + 1] == "int8"
    assert "--precision" not in BackendConfig(session="S", avatar_dir=str(tmp_path), backend_python="/bin/sh").command()


def test_plugin_reads_the_precision_setting():
    from obs_plugin import plugin

    source = object.__new__(plugin.AvatarSource)
    source.session, source.settings = "S", {"precision": "fp32", "device": "cpu"}
    assert source.backend_config().precision == "fp32"
    source.settings = {}
    assert source.backend_config().precision == "auto"


# ------------------------------------------------------------------------------------------ the real network
@pytest.fixture(scope="module")
def w96_checkpoints(tmp_path_factory):
    """Deterministic wav2lip96 weights, and the same function with one exploding channel before the output."""
    from models.testing import deterministic_model, save_reference_checkpoint

    folder = tmp_path_factory.mktemp("w96")
    good = deterministic_model("wav2lip96")
    bad = deterministic_model("wav2lip96")
    conv = bad.output_block[0].conv_block[0]
    spread_channel(bad, conv, bad.output_block[1], 1e4)
    return (save_reference_checkpoint(good, folder / "good.pth", with_optimizer=False),
            save_reference_checkpoint(bad, folder / "bad.pth", with_optimizer=False))


@pytest.mark.slow
def test_wav2lip96_int8_validates_on_the_avatar_and_refuses_bad_weights(w96_checkpoints, avatar, caplog):
    import logging
    import time

    from backend.generators.wav2lip import Wav2LipGenerator

    torch.set_num_threads(2)
    good, bad = w96_checkpoints
    gen = Wav2LipGenerator(good, device="cpu", precision="int8", package=avatar)
    assert gen.precision == "int8" and gen.per_avatar
    print("wav2lip96 deterministic, synthetic avatar:", gen.precision_reason)
    started = time.perf_counter()
    again = Wav2LipGenerator(good, device="cpu", precision="int8", package=avatar)
    assert again.precision == "int8" and time.perf_counter() - started < 5  # cached: no export, no calibration
    fp32 = Wav2LipGenerator(good, device="cpu", precision="fp32")
    faces = np.stack([avatar.face(i) for i in range(4)])
    mels = np.zeros((4, 80, 16), np.float32) - 2
    from backend.generators.precision_data import lower_face_psnr

    assert lower_face_psnr(fp32.forward(faces, mels), again.forward(faces, mels))[0] >= 35
    # serve's way: one single-threaded session per call, two calls side by side (the same numbers)
    live = Wav2LipGenerator(good, device="cpu", precision="int8", package=avatar, parallel=True)
    assert live.precision == "int8" and live.parallel_calls == 2 and again.parallel_calls == 1
    assert live.model.runner.session.get_session_options().intra_op_num_threads == 1
    np.testing.assert_allclose(live.forward(faces, mels), again.forward(faces, mels), atol=2)
    with caplog.at_level(logging.WARNING, logger="stream_wav2lip.precision"):
        refused = Wav2LipGenerator(bad, device="cpu", precision="int8", package=avatar)
    assert refused.precision == "fp32" and not refused.per_avatar
    assert any("int8 refused" in r.message for r in caplog.records)
    print("wav2lip96 with one exploding channel:", [r.message for r in caplog.records][-1])

"""load_checkpoint: the original file formats, safety against pickled code, clear errors."""
from __future__ import annotations

import builtins
from collections import OrderedDict

import pytest
import torch

import models
from models import testing
from models.checkpoint import UnknownVariantError, read_checkpoint
from stream_wav2lip.errors import UserError


def _shape_only_state(shapes):
    """Tensors with the right shapes but a 1-element storage: identification only needs shapes, files stay tiny."""
    return OrderedDict((k, torch.zeros(1).expand(*s) if s else torch.tensor(0)) for k, s in shapes.items())


def test_reference_format_roundtrip_with_prefix_and_optimizer(tmp_path):
    state = testing.deterministic_state_dict("nlayer_disc")
    path = testing.save_reference_checkpoint(state, tmp_path / "disc_checkpoint_step000004000.pth",
                                             module_prefix=True, with_optimizer=True, global_step=4000, global_epoch=7)
    raw = torch.load(path, weights_only=True)
    assert set(raw) == {"state_dict", "optimizer", "global_step", "global_epoch"}
    assert all(k.startswith("module.") for k in raw["state_dict"]) and raw["optimizer"]["state"]

    model, info = models.load_checkpoint(path)
    assert (info.variant, info.kind, info.global_step, info.global_epoch) == ("nlayer_disc", "discriminator", 4000, 7)
    assert info.has_optimizer and info.module_prefix and info.param_count == 2_765_633
    assert info.path == str(path) and info.file_size == path.stat().st_size
    assert not model.training and model.variant == "nlayer_disc"
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key


def test_bare_state_dict(tmp_path):
    state = testing.deterministic_state_dict("disc_qual96")
    path = tmp_path / "bare.pth"
    torch.save(state, path)
    model, info = models.load_checkpoint(path, device="auto")
    assert info.variant == "disc_qual96" and info.global_step is None and not info.has_optimizer
    assert not info.module_prefix and next(model.parameters()).device.type in ("cpu", "cuda")
    with torch.inference_mode():
        assert model(torch.rand(1, 3, 2, 96, 96)).shape == (2, 1)


@pytest.mark.slow
def test_wav2lip96_saved_like_the_original_release(tmp_path, golden_dir):
    """module. keys + Adam state (~416 MB like the published wav2lip.pth); numbers survive the round trip."""
    import numpy as np

    path = testing.save_reference_checkpoint(testing.deterministic_model("wav2lip96"), tmp_path / "wav2lip.pth",
                                             global_step=250000, global_epoch=100)
    model, info = models.load_checkpoint(path)
    assert info.variant == "wav2lip96" and info.global_step == 250000 and info.has_optimizer
    with torch.inference_mode():
        out = model(torch.from_numpy(np.load(golden_dir / "wav2lip96_det_input_audio.npy")),
                    torch.from_numpy(np.load(golden_dir / "wav2lip96_det_input_face.npy")))
    np.testing.assert_allclose(out.numpy(), np.load(golden_dir / "wav2lip96_det_output.npy"), atol=1e-4)


class _CreatesAFile:
    """Unpickling this would call open(marker, "w") -- a stand-in for arbitrary code in a hostile checkpoint."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (builtins.open, (self.marker, "w"))


def test_pickled_code_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned.txt"
    path = tmp_path / "evil.pth"
    state = testing.deterministic_state_dict("nlayer_disc")
    torch.save({"state_dict": state, "global_step": 1, "payload": _CreatesAFile(marker)}, path)
    with pytest.raises(UserError) as err:
        models.load_checkpoint(path)
    assert "evil.pth" in str(err.value) and "refused" in str(err.value)
    assert not marker.exists()


def test_legacy_pickle_with_code_is_refused(tmp_path):
    marker = tmp_path / "pwned2.txt"
    path = tmp_path / "legacy.pth"
    torch.save({"x": _CreatesAFile(marker)}, path, _use_new_zipfile_serialization=False)
    with pytest.raises(UserError, match="legacy.pth"):
        models.load_checkpoint(path)
    assert not marker.exists()


def test_mismatched_checkpoint_names_nearest_variant(tmp_path):
    shapes = testing.state_dict_shapes("wav2lip96")
    shapes["face_encoder_blocks.1.0.conv_block.0.weight"] = (32, 16, 4, 4)
    path = tmp_path / "odd.pth"
    torch.save({"state_dict": _shape_only_state(shapes)}, path)
    with pytest.raises(UnknownVariantError) as err:
        models.load_checkpoint(path)
    message = str(err.value)
    assert message.startswith(str(path)) and "nearest is wav2lip96" in message
    assert "face_encoder_blocks.1.0.conv_block.0.weight has shape [32, 16, 4, 4], expected [32, 16, 3, 3]" in message


def test_recognised_but_unrunnable_variant(tmp_path, golden_dir):
    import json

    shapes = json.loads((golden_dir / "wav2lip_sam_norefine_state_dict.json").read_text())
    path = tmp_path / "gen_last_wav128_1e4.pth"
    torch.save({"state_dict": _shape_only_state({k: tuple(v) for k, v in shapes.items()})}, path)
    with pytest.raises(UserError, match="wav2lip_sam_norefine"):
        models.load_checkpoint(path)


@pytest.mark.parametrize("content,match", [
    (b"", "not a readable PyTorch checkpoint"),
    (b"garbage" * 100, "not a readable PyTorch checkpoint"),
])
def test_unreadable_files(tmp_path, content, match):
    path = tmp_path / "broken.pth"
    path.write_bytes(content)
    with pytest.raises(UserError, match=match):
        models.load_checkpoint(path)


def test_wrong_top_level_and_missing(tmp_path):
    path = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], path)
    with pytest.raises(UserError, match="expected a dict"):
        models.load_checkpoint(path)
    with pytest.raises(UserError, match="not found"):
        models.load_checkpoint(tmp_path / "absent.pth")


def test_read_checkpoint_strips_prefix_and_keeps_extras(tmp_path):
    path = testing.save_reference_checkpoint(testing.deterministic_state_dict("nlayer_disc"), tmp_path / "c.pth",
                                             with_optimizer=False, extra={"best_loss": 0.25})
    raw = read_checkpoint(path)
    assert raw.module_prefix and not any(k.startswith("module.") for k in raw.state_dict)
    assert raw.optimizer is None and raw.extras == {"best_loss": 0.25}
    assert models.load_checkpoint(path)[1].best_loss == 0.25


def test_numpy_scalars_in_metadata_are_fine(tmp_path):
    import numpy as np

    path = testing.save_reference_checkpoint(testing.deterministic_state_dict("nlayer_disc"), tmp_path / "np.pth",
                                             with_optimizer=False,
                                             extra={"best_loss": np.float64(0.5)})
    raw = torch.load(path, weights_only=False)
    raw["global_step"] = np.int64(77)
    torch.save(raw, path)
    info = models.load_checkpoint(path)[1]
    assert info.global_step == 77 and info.best_loss == 0.5


def test_legacy_serialization_and_missing_bn_counters(tmp_path):
    """Files written by PyTorch 1.1 (the reference's pin) use the legacy format; very old ones lack
    num_batches_tracked. Both load."""
    state = testing.deterministic_state_dict("nlayer_disc")
    legacy = tmp_path / "legacy_ok.pth"
    torch.save({"state_dict": state, "global_step": 5}, legacy, _use_new_zipfile_serialization=False)
    assert models.load_checkpoint(legacy)[1].global_step == 5
    old = tmp_path / "old_bn.pth"
    torch.save({k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}, old)
    model, info = models.load_checkpoint(old)
    assert info.variant == "nlayer_disc" and int(model.main[3].num_batches_tracked) == 0

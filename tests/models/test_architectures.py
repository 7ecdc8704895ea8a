"""Every variant's state dict equals the reference's key list and shapes (in order); identification by shapes."""
from __future__ import annotations

import json

import pytest
import torch

import models
from models.checkpoint import UnknownVariantError, identify_variant
from models.variants import SPECS, UNSUPPORTED

ALL_GOLDEN = list(models.VARIANTS) + list(UNSUPPORTED)


def _meta_build(variant):
    with torch.device("meta"):
        return models.build(variant)


@pytest.mark.parametrize("variant", models.VARIANTS)
def test_state_dict_keys_and_shapes_equal_reference(variant, golden_dir):
    golden = json.loads((golden_dir / f"{variant}_state_dict.json").read_text())
    io = json.loads((golden_dir / f"{variant}_io.json").read_text())
    model = _meta_build(variant)
    ours = [(k, list(v.shape)) for k, v in model.state_dict().items()]
    assert ours == [(k, list(s)) for k, s in golden.items()]
    assert sum(p.numel() for p in model.parameters()) == io["param_count"]
    assert (model.variant, model.kind, model.image_size) == (variant, SPECS[variant].kind, SPECS[variant].image_size)
    if model.kind == "generator":
        assert model.output_activation in ("sigmoid", "tanh")


@pytest.mark.parametrize("variant", ALL_GOLDEN)
def test_identify_variant_from_golden_shapes(variant, golden_dir):
    shapes = json.loads((golden_dir / f"{variant}_state_dict.json").read_text())
    assert identify_variant(shapes) == variant
    assert identify_variant({"module." + k: v for k, v in shapes.items()}) == variant


def test_near_miss_names_nearest_variant(golden_dir):
    shapes = json.loads((golden_dir / "wav2lip96_state_dict.json").read_text())
    shapes["face_decoder_blocks.3.0.conv_block.0.weight"] = [768, 383, 3, 3]
    del shapes["output_block.1.bias"]
    with pytest.raises(UnknownVariantError) as err:
        identify_variant(shapes)
    message = str(err.value)
    assert "nearest is wav2lip96" in message
    assert "face_decoder_blocks.3.0.conv_block.0.weight" in message and "output_block.1.bias missing" in message


def test_unrelated_state_dict_is_rejected():
    with pytest.raises(UnknownVariantError, match="nearest is"):
        identify_variant({"fc.weight": [10, 4], "fc.bias": [10]})


def test_unknown_variant_name():
    with pytest.raises(ValueError, match="known variants"):
        models.build("wav2lip97")


@pytest.mark.parametrize("variant,audio_shape,face_shape,out_shape", [
    ("wav2lip_sam", (1, 1, 80, 16), (1, 6, 192, 192), (1, 3, 192, 192)),
    ("wav2lip384", (1, 1, 80, 16), (1, 6, 384, 384), (1, 3, 384, 384)),
    ("syncnet_v2_1024", (1, 1, 80, 16), (1, 15, 96, 192), (1, 1024)),
    ("syncnet288_prelu2021", (1, 1, 80, 16), (1, 15, 144, 288), (1, 512)),
    ("syncnet384", (1, 1, 80, 16), (1, 15, 192, 384), (1, 1024)),
])
def test_big_variants_run_on_meta(variant, audio_shape, face_shape, out_shape):
    """Shape propagation of the huge nets without spending seconds of CPU (meta tensors carry shapes only)."""
    model = _meta_build(variant).eval()
    with torch.device("meta"):
        out = model(torch.empty(audio_shape), torch.empty(face_shape))
    if isinstance(out, tuple):
        assert all(tuple(o.shape) == out_shape for o in out)
    else:
        assert tuple(out.shape) == out_shape


@pytest.mark.parametrize("variant,face_shape,out_shape", [
    ("disc_qual288", (1, 3, 5, 288, 288), (5, 1)),
    ("nlayer_disc", (1, 3, 5, 384, 384), (5, 1, 46, 46)),
])
def test_discriminators_run_on_meta(variant, face_shape, out_shape):
    model = _meta_build(variant).eval()
    with torch.device("meta"):
        assert tuple(model(torch.empty(face_shape)).shape) == out_shape


def test_sam_output_activation_override():
    with torch.device("meta"):
        assert models.build("wav2lip_sam", output_activation="tanh").output_activation == "tanh"
    with pytest.raises(ValueError):
        models.build("syncnet96", output_activation="tanh")

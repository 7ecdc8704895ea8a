"""prepare_for_inference: BN folding + channels_last keep the eager numbers."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from models import testing
from models.inference import fold_batchnorm, prepare_for_inference


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(2)


def _randomise_batchnorm(model: nn.Module) -> nn.Module:
    """Give BN non-trivial statistics so folding is not a no-op."""
    gen = torch.Generator().manual_seed(0)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.normal_(0, 0.1, generator=gen)
            module.running_var.uniform_(0.5, 2.0, generator=gen)
            module.weight.data.uniform_(0.5, 1.5, generator=gen)
            module.bias.data.normal_(0, 0.1, generator=gen)
    return model.eval()


@pytest.fixture(scope="module")
def generator96():
    return _randomise_batchnorm(testing.deterministic_model("wav2lip96"))


def test_prepared_generator_matches_eager_4d_and_5d(generator96):
    prepared = prepare_for_inference(generator96, "cpu")
    assert not any(isinstance(m, nn.BatchNorm2d) for m in prepared.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in generator96.modules())  # original untouched
    audio, face = torch.randn(1, 1, 80, 16) * 2, torch.rand(1, 6, 96, 96)
    with torch.inference_mode():
        eager, fast = generator96(audio, face), prepared(audio, face)
    assert fast.is_contiguous() and (eager - fast).abs().max() <= 1e-4
    audio5, face5 = torch.randn(1, 2, 1, 80, 16), torch.rand(1, 6, 2, 96, 96)
    with torch.inference_mode():
        assert (generator96(audio5, face5) - prepared(audio5, face5)).abs().max() <= 1e-4
    assert prepared.variant == "wav2lip96" and not prepared.training


@pytest.mark.parametrize("variant,inputs", [
    ("syncnet96", lambda: (torch.randn(2, 1, 80, 16), torch.rand(2, 15, 48, 96))),
    ("nlayer_disc", lambda: (torch.rand(1, 3, 2, 64, 64),)),
])
def test_prepared_other_kinds(variant, inputs):
    model = _randomise_batchnorm(testing.deterministic_model(variant))
    prepared = prepare_for_inference(model, fold_bn=True, channels_last=True)
    args = inputs()
    with torch.inference_mode():
        eager, fast = model(*args), prepared(*args)
    eager = eager if isinstance(eager, tuple) else (eager,)
    fast = fast if isinstance(fast, tuple) else (fast,)
    for a, b in zip(eager, fast):
        assert (a - b).abs().max() <= 1e-4


def test_fold_counts():
    model = testing.deterministic_model("disc_qual96")
    assert fold_batchnorm(model) == 0  # no BN in the quality discriminator
    assert fold_batchnorm(testing.deterministic_model("nlayer_disc")) == 3

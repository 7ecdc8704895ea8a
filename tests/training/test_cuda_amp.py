"""A few mixed-precision (AMP) training steps of each trainer on CUDA (skipped without a GPU)."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from conftest import trainer_args
from training.flags import add_syncnet_arguments, add_wav2lip_arguments

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA-only: no CUDA device here")]


def _common(out: Path, batch: int = 4) -> list[str]:
    return ["--out", str(out), "--batch-size", str(batch), "--workers", "0", "--eval-every", "3", "--eval-batches", "1",
            "--save-every", "3", "--max-steps", "3", "--no-progress", "--device", "cuda", "--amp"]


def test_syncnet_amp_steps_on_cuda(synthetic_set: Path, tmp_path: Path):
    from training import syncnet_trainer

    result = syncnet_trainer.train(trainer_args(add_syncnet_arguments, [str(synthetic_set), *_common(tmp_path / "s")]))
    assert [h["step"] for h in result["history"]] == [1, 2, 3]
    assert all(math.isfinite(h["loss"]) for h in result["history"])
    raw = torch.load(tmp_path / "s" / "checkpoint_step000000003.pth", weights_only=False)
    assert raw["global_step"] == 3


def test_wav2lip_amp_steps_on_cuda_with_expert_and_discriminator(synthetic_set: Path, tmp_path: Path):
    import models
    from models.testing import deterministic_model, save_reference_checkpoint
    from training import wav2lip_trainer

    expert = save_reference_checkpoint(deterministic_model("syncnet96"), tmp_path / "expert.pth")
    args = trainer_args(add_wav2lip_arguments, [str(synthetic_set), *_common(tmp_path / "g", 2), "--syncnet",
                                                str(expert), "--syncnet-wt", "0.03", "--disc", "disc_qual96"])
    result = wav2lip_trainer.train(args)
    last = result["history"][-1]
    assert last["step"] == 3 and all(math.isfinite(float(last[k])) for k in ("l1", "sync"))
    _, info = models.load_checkpoint(tmp_path / "g" / "checkpoint_step000000003.pth", "cpu")
    assert info.variant == "wav2lip96"

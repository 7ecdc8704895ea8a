"""The issue's learning gate: SyncNet96 on ~4 real clips, reference recipe, fixed seed, CPU.

Gate: the 20-step mean training BCE is below 0.60 at step 300. That only shows the loop learns (4 clips are
memorised: a run with audio shifted by 1 s drops as fast), so the offset sweep with the trained expert over
its training clips must also peak at shift 0 (within a tenth of the peak height: see the test) -- misaligned
windows would peak a frame or more away.
Several minutes on 2 free cores: marked slow.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

import media_set
from conftest import trainer_args
from training.flags import add_syncnet_arguments

STEPS = int(os.environ.get("S2L_SMOKE_STEPS", "300"))


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_syncnet96_learns_and_peaks_at_zero_offset(media_dir: Path, tmp_path: Path):
    import models
    from training import syncnet_trainer
    from training.dataset_index import scan_split
    from training.sync_offset import sweep

    data = media_set.training_set(media_dir, "lrs2-96")
    out = tmp_path / "run"
    progress = "--progress" if os.environ.get("S2L_SMOKE_PROGRESS") else "--no-progress"
    args = trainer_args(add_syncnet_arguments, [str(data), "--out", str(out), "--variant", "syncnet96",
                                                "--batch-size", "16", "--lr", "1e-4", "--seed", "1",
                                                "--max-steps", str(STEPS), "--eval-every", "100", "--eval-batches", "4",
                                                "--save-every", str(STEPS), "--workers", "0", "--threads", "2",
                                                "--resume", "none", "--log-every", "20", progress])
    result = syncnet_trainer.train(args)
    final = result["history"][-1]["mean20_loss"]
    crossed = next((h["step"] for h in result["history"] if h["mean20_loss"] < 0.6 and h["step"] >= 20), None)
    print(f"\nsmoke: {STEPS} steps in {result['seconds']:.0f} s ({result['seconds'] / STEPS:.2f} s/step); "
          f"20-step mean BCE {final:.4f} at step {STEPS}; first below 0.60 at step {crossed}; "
          f"evals {[(e['step'], round(e['loss'], 4), round(e['acc'], 3)) for e in result['evals']]}")
    assert final < 0.60

    expert, info = models.load_checkpoint(out / f"checkpoint_step{STEPS:09d}.pth", "cpu")
    assert info.variant == "syncnet96" and info.global_step == STEPS
    clips = scan_split(data, "train", warn=False).clips
    curve = sweep(expert, clips, max_shift=10, max_windows_per_clip=40)
    print(curve.format())
    # The peak must sit at shift 0. 300 steps on 4 clips learn the broad audio-visual correlation as well as
    # the memorised pairs, and these clips' own A/V offset lies between 0 and +1 frame, so on some CPUs (their
    # rounding) the neighbour wins by a hair (0.5788 vs 0.5770 in one CI run). An off-by-one in the windows
    # moves the whole curve a frame: shift 0 then loses about a fifth of the peak's height over the median
    # (0.0256 of 0.122 in that run). So: the best shift is 0 or a neighbour within a tenth of that height.
    zero = curve.scores[curve.shifts.index(0)]
    assert abs(curve.best_shift) <= 1
    assert max(curve.scores) - zero <= 0.1 * curve.confidence, "shift 0 is not the peak"

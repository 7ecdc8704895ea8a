"""Trainer mechanics: exact resume, checkpoints that the rest of the project loads, DDP, Wav2Lip learning.

Fast tests use the synthetic clips; the slow ones use real face crops from ../shared/media (cached).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import media_set
from conftest import trainer_args
from training.flags import add_syncnet_arguments, add_wav2lip_arguments

REPO = Path(__file__).resolve().parents[2]


def _syncnet_args(data: Path, out: Path, *extra: str):
    return trainer_args(add_syncnet_arguments, [str(data), "--out", str(out), "--batch-size", "4", "--workers",
                                                "0", "--eval-every", "1000", "--save-every", "1000", "--no-progress",
                                                "--seed", "5", *extra])


@pytest.mark.slow
def test_resume_continues_with_the_same_losses(synthetic_set: Path, tmp_path: Path):
    from training import syncnet_trainer

    straight = syncnet_trainer.train(_syncnet_args(synthetic_set, tmp_path / "a", "--max-steps", "6"))
    first = syncnet_trainer.train(_syncnet_args(synthetic_set, tmp_path / "b", "--max-steps", "3"))
    resumed = syncnet_trainer.train(_syncnet_args(synthetic_set, tmp_path / "b", "--max-steps", "6"))
    assert [h["step"] for h in resumed["history"]] == [4, 5, 6]
    assert [h["loss"] for h in first["history"] + resumed["history"]] == [h["loss"] for h in straight["history"]]
    a = torch.load(tmp_path / "a" / "checkpoint_step000000006.pth", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "b" / "checkpoint_step000000006.pth", weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_max_minutes_stops_and_saves_the_step_reached(synthetic_set: Path, tmp_path: Path):
    """A time budget ends the run like --max-steps: at a step boundary, with that step saved (a killed run
    would lose everything since the last --save-every)."""
    from training import syncnet_trainer

    out = tmp_path / "run"
    result = syncnet_trainer.train(_syncnet_args(synthetic_set, out, "--max-minutes", "1e-6", "--max-steps", "50"))
    assert result["step"] == 1
    assert (out / "checkpoint_step000000001.pth").is_file()


@pytest.mark.slow
def test_checkpoint_format_loads_in_models_and_inspect(synthetic_set: Path, tmp_path: Path, capsys):
    import models
    from stream_wav2lip.cli import main
    from training import syncnet_trainer

    out = tmp_path / "run"
    syncnet_trainer.train(_syncnet_args(synthetic_set, out, "--max-steps", "2", "--eval-every", "1",
                                        "--eval-batches", "1"))
    path = out / "checkpoint_step000000002.pth"
    raw = torch.load(path, weights_only=True)  # no pickled code: loadable by the safe loaders
    assert {"state_dict", "optimizer", "global_step", "global_epoch"} <= set(raw)
    assert raw["global_step"] == 2 and not any(k.startswith("module.") for k in raw["state_dict"])
    model, info = models.load_checkpoint(path, "cpu")
    assert info.variant == "syncnet96" and info.global_step == 2 and info.has_optimizer
    assert (out / "best_checkpoint.pth").is_file() and (out / "config.json").is_file()
    assert any((out / "tensorboard").iterdir())
    capsys.readouterr()
    assert main(["inspect", str(path)]) == 0
    assert "syncnet96" in capsys.readouterr().out


def test_config_file_values_and_flag_precedence(tmp_path: Path):
    import argparse

    from training.config import apply_config
    from training.flags import add_syncnet_arguments

    cfg = tmp_path / "c.yaml"
    cfg.write_text("batch-size: 32\nlr: 3.0e-4\nmax_steps: 7\n")
    parser = argparse.ArgumentParser()
    add_syncnet_arguments(parser)
    args = apply_config(parser, parser.parse_args(["d", "--out", "o", "--config", str(cfg), "--lr", "5e-5"]))
    assert args.batch_size == 32 and args.max_steps == 7 and args.lr == 5e-5
    bad = tmp_path / "bad.json"
    bad.write_text('{"no-such-flag": 1}')
    from stream_wav2lip.errors import UserError

    with pytest.raises(UserError, match="unknown setting"):
        apply_config(parser, parser.parse_args(["d", "--out", "o", "--config", str(bad)]))


def test_cli_errors_are_one_line(tmp_path: Path, capsys):
    from stream_wav2lip.cli import main

    assert main(["train-syncnet", str(tmp_path)]) == 2
    assert "--out is required" in capsys.readouterr().err
    assert main(["train-wav2lip", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    assert "data folder not found" in capsys.readouterr().err
    assert main(["train-syncnet", str(tmp_path), "--out", str(tmp_path / "o"), "--max-minutes", "0"]) == 2
    assert "--max-minutes must be positive" in capsys.readouterr().err


@pytest.mark.slow
def test_two_process_gloo_ranks_hold_identical_weights(synthetic_set: Path, tmp_path: Path):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(REPO / "tests" / "training" / "ddp_worker.py"), str(synthetic_set), "--out", str(out),
           "--batch-size", "2", "--max-steps", "3", "--workers", "0", "--eval-every", "2", "--eval-batches", "1",
           "--save-every", "1000", "--no-progress", "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert all(r["world"] == 2 and r["backend"] == "gloo" and r["step"] == 3 for r in ranks)
    assert ranks[0]["params"] == ranks[1]["params"]
    assert ranks[0]["state"] == ranks[1]["state"]  # BatchNorm running stats too
    assert ranks[0]["seen"] != ranks[1]["seen"]  # the DistributedSampler gave each rank its own samples
    assert (out / "checkpoint_step000000003.pth").is_file()


@pytest.mark.slow
def test_wav2lip96_l1_falls_on_real_faces(media_dir: Path, tmp_path: Path):
    from training import wav2lip_trainer

    data = media_set.training_set(media_dir, "lrs2-96")
    args = trainer_args(add_wav2lip_arguments, [str(data), "--out", str(tmp_path / "w"), "--batch-size", "2",
                                                "--max-steps", "20", "--workers", "0", "--eval-every", "1000",
                                                "--save-every", "1000", "--no-progress", "--seed", "0", "--lr", "3e-4"])
    result = wav2lip_trainer.train(args)
    l1 = [h["l1"] for h in result["history"]]
    print(f"\nwav2lip96 L1 first 5 {sum(l1[:5]) / 5:.4f} -> last 5 {sum(l1[-5:]) / 5:.4f} "
          f"({result['seconds']:.0f} s for {len(l1)} steps)")
    assert sum(l1[-5:]) / 5 < 0.8 * sum(l1[:5]) / 5


@pytest.mark.slow
@pytest.mark.parametrize("disc", ["disc_qual96", "nlayer_disc"])
def test_wav2lip_with_expert_and_discriminator(synthetic_set: Path, tmp_path: Path, disc: str):
    import models
    from models.testing import deterministic_model, save_reference_checkpoint
    from training import wav2lip_trainer

    expert_path = save_reference_checkpoint(deterministic_model("syncnet96"), tmp_path / "expert.pth")
    out = tmp_path / "g"
    args = trainer_args(add_wav2lip_arguments, [str(synthetic_set), "--out", str(out), "--batch-size", "2",
                                                "--max-steps", "2", "--workers", "0", "--eval-every", "2",
                                                "--eval-batches", "1", "--save-every", "2", "--no-progress",
                                                "--syncnet", str(expert_path), "--syncnet-wt", "0.03", "--disc", disc,
                                                "--audio-offset", "-1"])
    trainer = wav2lip_trainer.Wav2LipTrainer(args)
    result = trainer.run()
    assert not trainer.expert.training  # the frozen expert runs in eval mode
    assert all(not p.requires_grad for p in trainer.expert.parameters())
    assert {"sync", "adv", "d_real", "d_fake", "l1"} <= set(result["history"][-1])
    assert "sync" in result["evals"][-1]
    gen, info = models.load_checkpoint(out / "checkpoint_step000000002.pth", "cpu")
    assert info.variant == "wav2lip96"
    _, dinfo = models.load_checkpoint(out / "disc_checkpoint_step000000002.pth", "cpu")
    assert dinfo.variant == disc


@pytest.mark.slow
def test_trained_generator_checkpoint_drives_render_and_inspect(synthetic_set: Path, synthetic_avatar: Path,
                                                                tmp_path: Path, capsys):
    from stream_wav2lip.cli import main
    from training import wav2lip_trainer

    args = trainer_args(add_wav2lip_arguments, [str(synthetic_set), "--out", str(tmp_path / "w"), "--batch-size", "2",
                                                "--max-steps", "1", "--workers", "0", "--no-progress"])
    wav2lip_trainer.train(args)
    ckpt = tmp_path / "w" / "checkpoint_step000000001.pth"
    assert main(["inspect", str(ckpt)]) == 0
    assert "wav2lip96" in capsys.readouterr().out
    assert main(["render", "--avatar", str(synthetic_avatar), "--audio", str(synthetic_avatar / "audio.wav"),
                 "--checkpoint", str(ckpt),
                 "-o", str(tmp_path / "out.mp4"), "--device", "cpu", "--no-progress"]) == 0
    assert (tmp_path / "out.mp4").stat().st_size > 0

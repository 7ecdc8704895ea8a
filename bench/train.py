"""Training throughput on this machine: samples/s of one optimiser step of each trainer, per variant.

Uses the trainers' own step objects (training.syncnet_trainer.SyncNetStep, training.wav2lip_trainer.Wav2LipStep)
on random batches of the right shapes, so data loading is excluded; the Wav2Lip steps include the frozen
expert's sync loss and the discriminator step (disc_qual96/288 or nlayer_disc), like a full GAN run.
One warm-up step, then the mean of --steps timed steps.

    .venv/bin/python bench/train.py                 # every variant (the 384 ones take minutes on a CPU)
    .venv/bin/python bench/train.py --quick         # 96 only
    .venv/bin/python bench/train.py --json out.json
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SYNCNETS = {"syncnet96": 16, "syncnet_v2_1024": 8, "syncnet288_prelu2021": 8, "syncnet384": 4}
# generator -> (expert, discriminator, batch)
GENERATORS = {
    "wav2lip96": ("syncnet96", "disc_qual96", 4),
    "wav2lip288": ("syncnet288_prelu2021", "disc_qual288", 2),
    "wav2lip384": ("syncnet384", "nlayer_disc", 1),
    "wav2lip_sam": ("syncnet384", "nlayer_disc", 1),
}
QUICK = ("syncnet96", "wav2lip96")


def _time(step, batch, steps: int) -> float:
    step(batch)  # warm-up (allocations, oneDNN kernel selection)
    start = time.perf_counter()
    for _ in range(steps):
        step(batch)
    return (time.perf_counter() - start) / steps


def bench_syncnet(variant: str, batch_size: int, steps: int) -> dict:
    import models
    from training.loop import make_adam
    from training.syncnet_trainer import SyncNetStep

    net = models.build(variant).train()
    size = net.image_size
    step = SyncNetStep(net, make_adam(net.parameters(), 1e-4), torch.amp.GradScaler("cuda", enabled=False),
                       torch.device("cpu"), contextlib.nullcontext)
    batch = {"face": torch.rand(batch_size, 15, size // 2, size), "mel": torch.randn(batch_size, 1, 80, 16),
             "label": (torch.arange(batch_size) % 2).float()}
    seconds = _time(step, batch, steps)
    return {"trainer": "syncnet", "variant": variant, "face": size, "batch": batch_size,
            "s_per_step": seconds, "samples_per_s": batch_size / seconds}


def bench_wav2lip(variant: str, expert_name: str, disc_name: str, batch_size: int, steps: int) -> dict:
    import models
    from training.loop import make_adam
    from training.wav2lip_trainer import Wav2LipStep

    gen = models.build(variant).train()
    size = gen.image_size
    expert = models.build(expert_name).eval().requires_grad_(False)
    disc = models.build(disc_name).train()
    step = Wav2LipStep(gen, make_adam(gen.parameters(), 1e-4, (0.5, 0.999)),
                       torch.amp.GradScaler("cuda", enabled=False), torch.device("cpu"), contextlib.nullcontext,
                       expert=expert, disc=disc, disc_optimizer=make_adam(disc.parameters(), 1e-4, (0.5, 0.999)),
                       output_activation=gen.output_activation)
    step.sync_wt = 0.03
    batch = {"x": torch.rand(batch_size, 6, 5, size, size), "indiv_mels": torch.randn(batch_size, 5, 1, 80, 16),
             "mel": torch.randn(batch_size, 1, 80, 16), "gt": torch.rand(batch_size, 3, 5, size, size)}
    seconds = _time(step, batch, steps)
    return {"trainer": "wav2lip", "variant": variant, "expert": expert_name, "disc": disc_name, "face": size,
            "batch": batch_size, "frames_per_sample": 5, "s_per_step": seconds, "samples_per_s": batch_size / seconds}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="*", help="subset of variants (default: all)")
    parser.add_argument("--quick", action="store_true", help="only syncnet96 and wav2lip96")
    parser.add_argument("--steps", type=int, default=1, help="timed steps per variant [%(default)s]")
    parser.add_argument("--threads", type=int, default=2, help="torch threads [%(default)s]")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    wanted = args.variants or (QUICK if args.quick else list(SYNCNETS) + list(GENERATORS))
    rows = []
    print(f"{'trainer':8} {'variant':22} {'face':>4} {'batch':>5} {'s/step':>8} {'samples/s':>10}  notes")
    for name in wanted:
        if name in SYNCNETS:
            row = bench_syncnet(name, SYNCNETS[name], args.steps)
            note = ""
        elif name in GENERATORS:
            expert, disc, batch = GENERATORS[name]
            row = bench_wav2lip(name, expert, disc, batch, args.steps)
            note = f"5 frames/sample, + {expert} sync loss + {disc} step"
        else:
            parser.error(f"unknown variant {name}")
        rows.append(row)
        print(f"{row['trainer']:8} {row['variant']:22} {row['face']:>4} {row['batch']:>5} {row['s_per_step']:>8.2f} "
              f"{row['samples_per_s']:>10.2f}  {note}", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"threads": args.threads, "torch": torch.__version__, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

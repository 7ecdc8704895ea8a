"""Run under `torchrun --nproc_per_node 2`: train a few SyncNet steps with DDP (gloo), then write this rank's
weight checksum and the samples it saw, so the test can compare ranks."""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from training import distributed, syncnet_trainer  # noqa: E402
from training.flags import add_syncnet_arguments  # noqa: E402


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    add_syncnet_arguments(parser)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    trainer = syncnet_trainer.SyncNetTrainer(args)
    seen: list[int] = []
    step = trainer.train_step

    def recording_step(batch):
        seen.extend(int(v) for v in batch["video_start"] * 1000 + batch["clip"])
        return step(batch)

    trainer.train_step = recording_step
    result = trainer.run()
    digest = hashlib.sha256()
    for key, value in trainer.net.state_dict().items():
        digest.update(key.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    params = hashlib.sha256(b"".join(p.detach().numpy().tobytes() for p in trainer.net.parameters())).hexdigest()
    rank = trainer.ctx.rank
    (Path(args.out) / f"rank{rank}.json").write_text(json.dumps(
        {"state": digest.hexdigest(), "params": params, "seen": seen, "step": result["step"],
         "world": trainer.ctx.world_size, "backend": trainer.ctx.backend}))
    distributed.teardown(trainer.ctx)


if __name__ == "__main__":
    main(sys.argv[1:])

"""torchrun / DDP plumbing: one process per device, gloo on CPU, NCCL on CUDA.

Run `torchrun --nproc_per_node N -m stream_wav2lip train-syncnet ...` (or the `stream-wav2lip` script path);
a plain `stream-wav2lip train-...` is a world of one and skips all of this.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.distributed as dist
from torch.utils.data.distributed import DistributedSampler


@dataclass
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def setup(device: str = "auto") -> DistContext:
    """Read torchrun's environment, pick the device and start the process group when there is more than one."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if use_cuda and not torch.cuda.is_available():
        from stream_wav2lip.errors import UserError

        raise UserError("--device cuda: no CUDA device is available")
    if use_cuda:
        torch.cuda.set_device(local_rank % torch.cuda.device_count())
        dev = torch.device("cuda", local_rank % torch.cuda.device_count())
    else:
        dev = torch.device("cpu")
    ctx = DistContext(rank, world, local_rank, dev, None)
    if world > 1 and not dist.is_initialized():
        ctx.backend = "nccl" if use_cuda else "gloo"
        dist.init_process_group(backend=ctx.backend)
    elif dist.is_initialized():
        ctx.backend = dist.get_backend()
    return ctx


def teardown(ctx: DistContext) -> None:
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()


def wrap(model: torch.nn.Module, ctx: DistContext, find_unused_parameters: bool = False) -> torch.nn.Module:
    """DistributedDataParallel when world > 1, else the module itself."""
    if not ctx.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids, find_unused_parameters=find_unused_parameters)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return getattr(model, "module", model)


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        dist.barrier()


def broadcast_buffers(model: torch.nn.Module, ctx: DistContext) -> None:
    """Make BatchNorm running statistics equal to rank 0's on every rank.

    DDP broadcasts buffers at the start of each forward, but the last forward's updates stay per rank; doing
    this before evaluation and saving makes every rank hold bit-identical state."""
    if not ctx.distributed:
        return
    for buffer in unwrap(model).buffers():
        dist.broadcast(buffer.data, src=0)


def all_mean(values: dict[str, float], weight: float, ctx: DistContext) -> dict[str, float]:
    """Weighted mean of per-rank averages (weight = number of items this rank averaged)."""
    if not ctx.distributed:
        return dict(values)
    keys = sorted(values)
    tensor = torch.tensor([values[k] * weight for k in keys] + [weight], dtype=torch.float64)
    if ctx.backend == "nccl":
        tensor = tensor.to(ctx.device)
    dist.all_reduce(tensor)
    tensor = tensor.cpu()
    total = float(tensor[-1]) or 1.0
    return {k: float(tensor[i]) / total for i, k in enumerate(keys)}


def gather_objects(obj, ctx: DistContext) -> list:
    """Every rank's `obj` (used to store each rank's RNG state in the checkpoint)."""
    if not ctx.distributed:
        return [obj]
    out = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


class ResumableSampler(DistributedSampler):
    """DistributedSampler that yields `(epoch, index)` keys and can start part-way into an epoch.

    The epoch tag lets samples be a pure function of (seed, epoch, index) (see training.samples); `skip`
    drops the first samples of this rank's share so a resumed run continues with the very next batch.
    """

    def __init__(self, dataset, ctx: DistContext, seed: int, shuffle: bool = True):
        super().__init__(dataset, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=shuffle, seed=seed,
                         drop_last=False)
        self.skip = 0

    def start_at(self, epoch: int, skip: int) -> None:
        self.set_epoch(epoch)
        self.skip = int(skip)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        indices = list(super().__iter__())[self.skip:]
        epoch = self.epoch
        self.skip = 0
        return iter([(epoch, int(i)) for i in indices])

    def __len__(self) -> int:
        return max(0, self.num_samples - self.skip)

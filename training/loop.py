"""The training loop both trainers share: steps, epochs, evaluation, checkpoints, resume, logging.

A trainer subclass only says how to build its data and networks, what one optimiser step is, how to score
a validation batch and what goes into its checkpoints. Everything that must be identical between the
SyncNet and Wav2Lip trainers (exact resume, DDP, atomic checkpoints, progress) lives here once.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from stream_wav2lip.atomic import atomic_path
from stream_wav2lip.errors import UserError
from training import checkpoints, distributed
from training.config import config_dict, format_config
from training.dataset_index import SplitIndex, scan_split
from training.distributed import DistContext, ResumableSampler
from training.monitor import Monitor

SMOOTHING = 20  # steps in the running mean shown on the progress bar and kept in the history


def make_adam(params, lr: float, betas: tuple[float, float] = (0.9, 0.999)) -> torch.optim.Optimizer:
    """Adam as the reference (no weight decay), using the fused kernel where PyTorch has one: on this CPU the
    per-tensor loop took 5.4 s per step for SyncNet96's 16 M parameters, the fused kernel 0.8 s (same maths)."""
    params = [p for p in params if p.requires_grad]
    try:
        return torch.optim.Adam(params, lr=lr, betas=betas, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(params, lr=lr, betas=betas)


class Trainer:
    """Subclasses set `title` and `best_metric`, and implement the hooks below."""

    title = "training"
    best_metric = "loss"

    def __init__(self, args: argparse.Namespace, ctx: DistContext | None = None):
        self.args = args
        self.ctx = ctx or distributed.setup(args.device)
        self.out: Path = Path(args.out)
        self.use_amp = bool(args.amp) and self.ctx.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        self.step = 0
        self.epoch = 0
        self.position = 0  # samples of the current epoch this rank has consumed
        self.best: float | None = None
        self.history: list[dict[str, float]] = []  # one entry per step (rank-local)
        self.evals: list[dict[str, float]] = []
        self.train_index: SplitIndex | None = None
        self.val_index: SplitIndex | None = None

    # ------------------------------------------------------------------ hooks
    def build_data(self) -> tuple[Dataset, Dataset | None]:
        raise NotImplementedError

    def build_models(self) -> None:
        raise NotImplementedError

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        raise NotImplementedError

    def eval_batch(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        raise NotImplementedError

    def set_train(self, training: bool) -> None:
        raise NotImplementedError

    def checkpoint_files(self) -> list[tuple[str, torch.nn.Module, torch.optim.Optimizer]]:
        """(file prefix, unwrapped model, optimiser) per file written at each save ('' = main model)."""
        raise NotImplementedError

    def extra_state(self) -> dict[str, Any]:
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        pass

    def after_eval(self, metrics: dict[str, float]) -> None:
        pass

    def log_images(self, monitor: Monitor, batch: dict[str, torch.Tensor]) -> None:
        pass

    # ------------------------------------------------------------------ helpers for subclasses
    def autocast(self):
        if self.use_amp:
            return torch.autocast("cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    def to_device(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: v.to(self.ctx.device, non_blocking=True) for k, v in batch.items()}

    def scan(self) -> tuple[SplitIndex, SplitIndex]:
        args = self.args
        root = Path(args.data_root) if args.data_root is not None else None
        warn = self.ctx.is_main
        train = scan_split(root, "train", args.train_list, warn=warn, progress=warn and args.progress)
        if not train.clips:
            raise UserError(f"{train.list_path}: no usable training clips ({len(train.skipped)} skipped)")
        val = scan_split(root, "val", args.val_list, warn=warn)
        self.train_index, self.val_index = train, val
        return train, val

    # ------------------------------------------------------------------ the loop
    @classmethod
    def train(cls, args: argparse.Namespace) -> dict[str, Any]:
        """Build (setting up distribution from the environment), run, and tear distribution down."""
        trainer = cls(args)
        try:
            return trainer.run()
        finally:
            distributed.teardown(trainer.ctx)

    def run(self) -> dict[str, Any]:
        args, ctx = self.args, self.ctx
        if args.threads:
            torch.set_num_threads(int(args.threads))
        torch.manual_seed(args.seed)
        self.out.mkdir(parents=True, exist_ok=True)
        train_set, val_set = self.build_data()
        self.build_models()
        resumed_from = self.maybe_resume()
        config = config_dict(args)
        if ctx.is_main:
            config["world_size"] = ctx.world_size
            config["device"] = str(ctx.device)
            print(format_config(f"{self.title} config", config), file=sys.stderr)
            _describe_data(self.train_index, self.val_index)
            if resumed_from is not None:
                print(f"resumed from {resumed_from} at step {self.step}", file=sys.stderr)
            with atomic_path(self.out / "config.json") as tmp:
                tmp.write_text(json.dumps(config, indent=2))

        sampler = ResumableSampler(train_set, ctx, seed=args.seed, shuffle=True)
        loader = DataLoader(train_set, batch_size=args.batch_size, sampler=sampler, num_workers=args.workers,
                            drop_last=True, pin_memory=ctx.device.type == "cuda",
                            persistent_workers=args.workers > 0)  # keeps each worker's mel/crop caches
        val_loader = None
        if val_set is not None:
            val_sampler = ResumableSampler(val_set, ctx, seed=args.seed, shuffle=False)
            n_val = min(args.workers, 2)  # re-iterated at every eval: keep the workers and their caches
            val_loader = DataLoader(val_set, batch_size=args.batch_size, sampler=val_sampler,
                                    num_workers=n_val, drop_last=False, persistent_workers=n_val > 0)
        max_steps = args.max_steps if args.max_steps is not None else math.inf
        monitor = Monitor(self.out / "tensorboard", ctx.is_main,
                          total_steps=None if max_steps == math.inf else int(max_steps), start_step=self.step,
                          progress=args.progress)
        image_every = args.image_every or args.eval_every
        recent: deque[dict[str, float]] = deque(maxlen=SMOOTHING)
        last_saved = self.step
        started, steps_done = time.perf_counter(), 0
        deadline = started + 60.0 * args.max_minutes if args.max_minutes else math.inf
        self.set_train(True)
        try:
            while self.step < max_steps:
                sampler.start_at(self.epoch, self.position)
                consumed_any = False
                for batch in loader:
                    consumed_any = True
                    metrics = self.train_step(batch)
                    self.step += 1
                    steps_done += 1
                    self.position += args.batch_size
                    recent.append(metrics)
                    smooth = {k: sum(m[k] for m in recent) / len(recent) for k in metrics}
                    self.history.append({"step": self.step, **metrics, **{f"mean{SMOOTHING}_{k}": v
                                                                          for k, v in smooth.items()}})
                    rate = steps_done * args.batch_size * ctx.world_size / max(1e-9, time.perf_counter() - started)
                    monitor.step(self.step, smooth, write=self.step % args.log_every == 0)
                    if self.step % args.log_every == 0:
                        monitor.scalars(self.step, {"train/samples_per_s": rate})
                    if self.step % image_every == 0:
                        self.log_images(monitor, batch)
                    if val_loader is not None and self.step % args.eval_every == 0:
                        self.run_eval(val_loader, monitor)
                    if self.step % args.save_every == 0:
                        self.save()
                        last_saved = self.step
                    if self.step >= max_steps or self.out_of_time(deadline):
                        break
                else:
                    self.epoch += 1
                    self.position = 0
                    if not consumed_any and len(train_set) < args.batch_size * ctx.world_size:
                        raise UserError(f"the training set gives {len(train_set)} samples per epoch, fewer than "
                                        f"one batch ({args.batch_size} x {ctx.world_size} ranks)")
                    continue
                break
            if self.step != last_saved:
                self.save()
        finally:
            monitor.close()
        elapsed = time.perf_counter() - started
        if ctx.is_main and steps_done:
            print(f"{self.title}: {steps_done} steps in {elapsed:.1f} s "
                  f"({steps_done * args.batch_size * ctx.world_size / elapsed:.1f} samples/s), "
                  f"checkpoints in {self.out}", file=sys.stderr)
        return {"step": self.step, "history": self.history, "evals": self.evals, "best": self.best,
                "seconds": elapsed}

    def out_of_time(self, deadline: float) -> bool:
        """--max-minutes: past the deadline? Every rank stops at the same step (one rank's clock decides none)."""
        if deadline == math.inf:
            return False
        late = float(time.perf_counter() >= deadline)
        return distributed.all_mean({"late": late}, 1.0, self.ctx)["late"] > 0

    def run_eval(self, val_loader: DataLoader, monitor: Monitor) -> dict[str, float]:
        distributed.broadcast_buffers(self.main_model(), self.ctx)
        self.set_train(False)
        totals: dict[str, float] = {}
        count = 0
        with torch.no_grad():
            for i, batch in enumerate(val_loader):
                if i >= self.args.eval_batches:
                    break
                n = next(iter(batch.values())).size(0)
                for key, value in self.eval_batch(batch).items():
                    totals[key] = totals.get(key, 0.0) + value * n
                count += n
        self.set_train(True)
        local = {k: v / max(1, count) for k, v in totals.items()}
        metrics = distributed.all_mean(local, float(count), self.ctx)
        metrics["step"] = self.step
        self.evals.append(metrics)
        self.after_eval(metrics)
        monitor.scalars(self.step, {f"eval/{k}": v for k, v in metrics.items() if k != "step"})
        monitor.message(f"step {self.step} eval: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()
                                                                 if k != "step"))
        score = metrics.get(self.best_metric)
        if score is not None and (self.best is None or score < self.best):
            self.best = score
            self.save(best=True)
        return metrics

    def main_model(self) -> torch.nn.Module:
        return self.checkpoint_files()[0][1]

    # ------------------------------------------------------------------ checkpoints
    def save(self, best: bool = False) -> None:
        ctx = self.ctx
        for _, model, _ in self.checkpoint_files():
            distributed.broadcast_buffers(model, ctx)
        rng = distributed.gather_objects(checkpoints.rng_state(), ctx)
        if ctx.is_main:
            resume = {"scaler": self.scaler.state_dict(), "rng": rng, "position": self.position,
                      "world_size": ctx.world_size, "batch_size": self.args.batch_size, "seed": self.args.seed,
                      "extra": self.extra_state(), "config": config_dict(self.args)}
            for prefix, model, optimizer in self.checkpoint_files():
                name = f"{prefix}{checkpoints.BEST_NAME}" if best else checkpoints.step_name(self.step, prefix)
                checkpoints.save(self.out / name, model, optimizer, self.step, self.epoch,
                                 best_loss=self.best, variant=getattr(model, "variant", None),
                                 resume=resume if prefix == "" else None)
            if not best:
                checkpoints.prune(self.out, self.args.keep)
        distributed.barrier(ctx)

    def maybe_resume(self) -> Path | None:
        choice = str(self.args.resume)
        if choice == "none":
            return None
        path = checkpoints.latest(self.out) if choice == "auto" else Path(choice)
        if path is None:
            return None
        data = checkpoints.load(path)
        files = self.checkpoint_files()
        for prefix, model, optimizer in files:
            part = data if prefix == "" else checkpoints.load(path.parent / f"{prefix}{path.name}")
            model_variant = getattr(model, "variant", None)
            if part.get("variant") and model_variant and part["variant"] != model_variant:
                raise UserError(f"{path}: checkpoint is a {part['variant']}, this run trains {model_variant}")
            try:
                model.load_state_dict(checkpoints.strip_module(part["state_dict"]))
            except RuntimeError as exc:
                raise UserError(f"{path}: weights do not fit {model_variant} ({str(exc).splitlines()[0]})") from None
            if part.get("optimizer") is not None:
                optimizer.load_state_dict(part["optimizer"])
        self.step = int(data.get("global_step", 0))
        self.epoch = int(data.get("global_epoch", 0))
        self.best = data.get("best_loss")
        resume = data.get("resume") or {}
        if resume:
            if resume.get("scaler") and self.use_amp:
                self.scaler.load_state_dict(resume["scaler"])
            same_shape = (resume.get("world_size") == self.ctx.world_size
                          and resume.get("batch_size") == self.args.batch_size)
            self.position = int(resume.get("position", 0)) if same_shape else 0
            rng = resume.get("rng") or []
            if same_shape and len(rng) > self.ctx.rank:
                checkpoints.set_rng_state(rng[self.ctx.rank])
            elif self.ctx.is_main:
                print("warning: world size or batch size changed since the checkpoint; resuming at the next "
                      "epoch boundary (not bit-exact)", file=sys.stderr)
            self.load_extra_state(resume.get("extra") or {})
        return path


def _describe_data(train: SplitIndex | None, val: SplitIndex | None) -> None:
    for index in (train, val):
        if index is None:
            continue
        if index.list_path is None:
            print(f"{index.split}: no file list (evaluation disabled)", file=sys.stderr)
            continue
        print(f"{index.split}: {len(index.clips)} clips, {index.num_frames} frames ({index.hours:.3f} h) from "
              f"{index.list_path}; {len(index.skipped)} skipped", file=sys.stderr)

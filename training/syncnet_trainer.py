"""Expert SyncNet training (docs/models.md §12, §13): BCE on the cosine of audio and lower-face embeddings.

Supported experts: syncnet96 (face 96 -> 48x96 input), syncnet_v2_1024 (face 192), syncnet288_prelu2021
(288), syncnet384 (384). The face size is the variant's; crops are resized to it when read.
Evaluation reports BCE and accuracy (cos > 0.5 counts as "in sync") on the validation list; the checkpoint
with the lowest validation BCE is kept as best_checkpoint.pth. README of the reference: train until the
validation BCE is about 0.25 before using the expert for Wav2Lip; 0.693 (= ln 2) means it learned nothing.
"""
from __future__ import annotations

import argparse
from typing import Any

import torch

from training import distributed
from training.distributed import DistContext
from training.loop import Trainer, make_adam
from training.losses import cosine, cosine_bce
from training.monitor import Monitor, syncnet_grid
from training.samples import SyncNetSamples

from training.flags import SYNCNET_VARIANTS


class SyncNetStep:
    """One optimiser step on a batch (shared by the trainer and bench/train.py)."""

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
                 device: torch.device, autocast):
        self.model, self.optimizer, self.scaler, self.device, self.autocast = model, optimizer, scaler, device, autocast

    def __call__(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        face = batch["face"].to(self.device, non_blocking=True)
        mel = batch["mel"].to(self.device, non_blocking=True)
        label = batch["label"].to(self.device, non_blocking=True)
        self.optimizer.zero_grad(set_to_none=True)
        with self.autocast():
            audio_emb, face_emb = self.model(mel, face)
        loss = cosine_bce(audio_emb, face_emb, label)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        with torch.no_grad():
            acc = ((cosine(audio_emb, face_emb) > 0.5).float() == label).float().mean()
        return {"loss": float(loss.detach()), "acc": float(acc)}


class SyncNetTrainer(Trainer):
    title = "train-syncnet"
    best_metric = "loss"

    def __init__(self, args: argparse.Namespace, ctx: DistContext | None = None):
        super().__init__(args, ctx)
        from models.variants import SPECS

        if args.variant not in SYNCNET_VARIANTS:
            from stream_wav2lip.errors import UserError

            raise UserError(f"--variant {args.variant}: not a SyncNet; choose one of {', '.join(SYNCNET_VARIANTS)}")
        self.image_size = int(SPECS[args.variant].image_size)

    def build_data(self):
        args = self.args
        train, val = self.scan()
        common = dict(seed=args.seed, frame_cache_mb=args.frame_cache_mb,
                      negative_min_distance=args.negative_min_distance, audio_shift=args.audio_shift)
        train_set = SyncNetSamples(train.clips, self.image_size, split="train",
                                   samples_per_epoch=args.samples_per_epoch, **common)
        val_set = SyncNetSamples(val.clips, self.image_size, split="val", **common) if val.clips else None
        return train_set, val_set

    def build_models(self) -> None:
        import models

        net = models.build(self.args.variant).to(self.ctx.device)
        self.net = net
        self.model = distributed.wrap(net, self.ctx)
        self.optimizer = make_adam([p for p in net.parameters() if p.requires_grad], lr=self.args.lr)
        self.stepper = SyncNetStep(self.model, self.optimizer, self.scaler, self.ctx.device, self.autocast)

    def set_train(self, training: bool) -> None:
        self.model.train(training)

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        return self.stepper(batch)

    def eval_batch(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        batch = self.to_device(batch)
        with self.autocast():
            audio_emb, face_emb = self.net(batch["mel"], batch["face"])
        loss = cosine_bce(audio_emb, face_emb, batch["label"])
        acc = ((cosine(audio_emb, face_emb) > 0.5).float() == batch["label"]).float().mean()
        return {"loss": float(loss), "acc": float(acc)}

    def checkpoint_files(self):
        return [("", self.net, self.optimizer)]

    def log_images(self, monitor: Monitor, batch: dict[str, torch.Tensor]) -> None:
        if monitor.enabled:
            monitor.image(self.step, "train/windows", syncnet_grid(batch["face"], batch["label"]))


def train(args: argparse.Namespace) -> dict[str, Any]:
    return SyncNetTrainer.train(args)

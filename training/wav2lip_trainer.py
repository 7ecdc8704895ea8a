"""Wav2Lip generator training (docs/models.md §12-§14): L1, expert sync loss, optional visual-quality discriminator.

Defaults are the reference's: Adam 1e-4 (betas 0.5/0.999 with a discriminator, else 0.9/0.999), batch 16,
sync weight 0 until an evaluation's sync loss drops below 0.75, then 0.01 (no discriminator, like
`wav2lip_train.py`) or 0.03 (with one, like `hq_wav2lip_train.py`), discriminator weight 0.07.

Two deliberate differences from the reference, both switchable:
  * the frozen expert runs in **eval mode** (BatchNorm uses its trained running statistics). Rudrabha's
    scripts never called `.eval()` on it, so its BatchNorm normalised with each generated batch's own
    statistics and kept updating the running averages; the sync loss then depends on the batch, and the
    expert saved afterwards differs from the one loaded. `--expert-train-mode` reproduces the reference.
  * `--audio-offset 0` (default) conditions target frame j on the mel window inference gives frame j
    (`int(80*j/25)`); the reference trained with the window of frame j-1 (`--audio-offset -1`), so its
    generators are fed audio 40 ms later at inference than during training.

Generator/expert/discriminator sizes: the expert sees the generated lower halves resized to its own face size
(e.g. a 288 generator with syncnet_v2_1024 at 192); `disc_qual96/288` see lower halves, `nlayer_disc` (PatchGAN,
hinge loss as primepake) the full faces.
"""
from __future__ import annotations

import argparse
from typing import Any

import torch

from stream_wav2lip.errors import UserError
from training import distributed
from training.distributed import DistContext
from training.loop import Trainer, make_adam
from training.losses import hinge_d_loss, hinge_g_loss, quality_loss, sync_loss
from training.monitor import Monitor, generator_grid
from training.samples import Wav2LipSamples

from training.flags import GENERATOR_VARIANTS
# SAM generators detach their audio embedding: parts of the audio path get no gradient, DDP must know.
_UNUSED_PARAMETERS = ("wav2lip384", "wav2lip_sam")


def to_unit_range(generated: torch.Tensor, activation: str | None) -> torch.Tensor:
    """Tanh generators (wav2lip384) produce [-1, 1]; the data and every loss use [0, 1]."""
    return (generated + 1.0) * 0.5 if activation == "tanh" else generated


class Wav2LipStep:
    """One generator step (+ one discriminator step if any). Shared by the trainer and bench/train.py."""

    def __init__(self, generator: torch.nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
                 device: torch.device, autocast, *, expert: torch.nn.Module | None = None,
                 disc: torch.nn.Module | None = None, disc_optimizer: torch.optim.Optimizer | None = None,
                 disc_wt: float = 0.07, disc_start_step: int = 0, output_activation: str | None = "sigmoid"):
        self.generator, self.optimizer, self.scaler, self.device, self.autocast = (generator, optimizer, scaler,
                                                                                   device, autocast)
        self.expert, self.disc, self.disc_optimizer = expert, disc, disc_optimizer
        self.disc_wt, self.disc_start_step = float(disc_wt), int(disc_start_step)
        self.output_activation = output_activation
        self.sync_wt = 0.0
        self.patch = disc is not None and distributed.unwrap(disc).variant == "nlayer_disc"
        self.last_generated: torch.Tensor | None = None

    def generate(self, x: torch.Tensor, indiv_mels: torch.Tensor) -> torch.Tensor:
        return to_unit_range(self.generator(indiv_mels, x), self.output_activation)

    def __call__(self, batch: dict[str, torch.Tensor], step: int = 0) -> dict[str, float]:
        x = batch["x"].to(self.device, non_blocking=True)
        indiv = batch["indiv_mels"].to(self.device, non_blocking=True)
        mel = batch["mel"].to(self.device, non_blocking=True)
        gt = batch["gt"].to(self.device, non_blocking=True)
        use_disc = self.disc is not None and step >= self.disc_start_step
        disc_wt = self.disc_wt if use_disc else 0.0
        metrics: dict[str, float] = {}

        self.optimizer.zero_grad(set_to_none=True)
        with self.autocast():
            generated = self.generate(x, indiv)
        l1 = torch.nn.functional.l1_loss(generated.float(), gt)
        loss = (1.0 - self.sync_wt - disc_wt) * l1
        if self.expert is not None and self.sync_wt > 0:
            with self.autocast():
                sync = sync_loss(self.expert, mel, generated)
            loss = loss + self.sync_wt * sync
            metrics["sync"] = float(sync.detach())
        if use_disc:
            # Through the unwrapped discriminator with its weights frozen: the generator's adversarial term
            # must not produce (and all-reduce) discriminator gradients.
            raw = distributed.unwrap(self.disc)
            raw.requires_grad_(False)
            with self.autocast():
                pred = raw(generated)
            raw.requires_grad_(True)
            adv = hinge_g_loss(pred) if self.patch else quality_loss(pred, real=True)
            loss = loss + disc_wt * adv
            metrics["adv"] = float(adv.detach())
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        metrics.update(loss=float(loss.detach()), l1=float(l1.detach()))

        if use_disc:
            self.disc_optimizer.zero_grad(set_to_none=True)
            fake = generated.detach()
            with self.autocast():  # two forward/backward pairs, as the reference (keeps DDP happy)
                real_pred = self.disc(gt)
            d_real = hinge_d_loss(real_pred, True) if self.patch else quality_loss(real_pred, real=True)
            self.scaler.scale(d_real * (0.5 if self.patch else 1.0)).backward()
            with self.autocast():
                fake_pred = self.disc(fake)
            d_fake = hinge_d_loss(fake_pred, False) if self.patch else quality_loss(fake_pred, real=False)
            self.scaler.scale(d_fake * (0.5 if self.patch else 1.0)).backward()
            self.scaler.step(self.disc_optimizer)
            metrics.update(d_real=float(d_real.detach()), d_fake=float(d_fake.detach()))
        self.scaler.update()
        self.last_generated = generated.detach()
        return metrics


def load_expert(path, device: torch.device, train_mode: bool = False) -> torch.nn.Module:
    import models

    expert, info = models.load_checkpoint(path, device)
    if info.kind != "syncnet":
        raise UserError(f"{path}: --syncnet must be a SyncNet checkpoint, this is a {info.variant} ({info.kind})")
    expert.requires_grad_(False)
    expert.train(train_mode)
    return expert


class Wav2LipTrainer(Trainer):
    title = "train-wav2lip"

    def __init__(self, args: argparse.Namespace, ctx: DistContext | None = None):
        super().__init__(args, ctx)
        from models.variants import SPECS

        if args.variant not in GENERATOR_VARIANTS:
            raise UserError(f"--variant {args.variant}: not a generator; choose one of {', '.join(GENERATOR_VARIANTS)}")
        self.spec = SPECS[args.variant]
        self.image_size = int(args.image_size or self.spec.image_size)
        self.best_metric = "sync" if args.syncnet else "l1"
        self.sync_switched = False

    def build_data(self):
        args = self.args
        train, val = self.scan()
        common = dict(seed=args.seed, frame_cache_mb=args.frame_cache_mb, audio_offset=args.audio_offset)
        train_set = Wav2LipSamples(train.clips, self.image_size, split="train",
                                   samples_per_epoch=args.samples_per_epoch, **common)
        val_set = Wav2LipSamples(val.clips, self.image_size, split="val", **common) if val.clips else None
        return train_set, val_set

    def build_models(self) -> None:
        import models

        args, device = self.args, self.ctx.device
        gen = models.build(args.variant).to(device)
        self.gen = gen
        self.model = distributed.wrap(gen, self.ctx, find_unused_parameters=args.variant in _UNUSED_PARAMETERS)
        with_disc = args.disc != "none"
        betas = (0.5, 0.999) if with_disc else (0.9, 0.999)
        self.optimizer = make_adam([p for p in gen.parameters() if p.requires_grad], lr=args.lr, betas=betas)
        self.expert = load_expert(args.syncnet, device, args.expert_train_mode) if args.syncnet else None
        self.disc = self.disc_model = self.disc_optimizer = None
        if with_disc:
            disc = models.build(args.disc).to(device)
            self.disc = disc
            self.disc_model = distributed.wrap(disc, self.ctx)
            self.disc_optimizer = make_adam([p for p in disc.parameters() if p.requires_grad],
                                                   lr=args.disc_lr, betas=(0.5, 0.999))
        disc_wt = args.disc_wt if args.disc_wt is not None else (0.025 if args.disc == "nlayer_disc" else 0.07)
        self.stepper = Wav2LipStep(self.model, self.optimizer, self.scaler, device, self.autocast,
                                   expert=self.expert, disc=self.disc_model, disc_optimizer=self.disc_optimizer,
                                   disc_wt=disc_wt, disc_start_step=args.disc_start_step,
                                   output_activation=getattr(gen, "output_activation", "sigmoid"))
        if args.syncnet_wt is not None:  # fixed weight from step 0
            self.stepper.sync_wt = float(args.syncnet_wt)
            self.sync_switched = True

    def set_train(self, training: bool) -> None:
        self.model.train(training)
        if self.disc_model is not None:
            self.disc_model.train(training)

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        return self.stepper(batch, self.step)

    def eval_batch(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        batch = self.to_device(batch)
        with self.autocast():
            generated = to_unit_range(self.gen(batch["indiv_mels"], batch["x"]), self.stepper.output_activation)
        out = {"l1": float(torch.nn.functional.l1_loss(generated.float(), batch["gt"]))}
        if self.expert is not None:
            with self.autocast():
                out["sync"] = float(sync_loss(self.expert, batch["mel"], generated))
        return out

    def after_eval(self, metrics: dict[str, float]) -> None:
        """Reference schedule: the sync loss switches on (for good) once the generator is close enough."""
        if self.sync_switched or self.expert is None:
            return
        if metrics.get("sync", 1.0) < self.args.sync_threshold:
            self.stepper.sync_wt = self.args.sync_wt_after if self.args.sync_wt_after is not None else (
                0.03 if self.disc is not None else 0.01)
            self.sync_switched = True
            if self.ctx.is_main:
                print(f"step {self.step}: eval sync loss {metrics['sync']:.4f} < {self.args.sync_threshold}; "
                      f"sync loss weight now {self.stepper.sync_wt}", flush=True)

    def checkpoint_files(self):
        files = [("", self.gen, self.optimizer)]
        if self.disc is not None:
            files.append(("disc_", self.disc, self.disc_optimizer))
        return files

    def extra_state(self) -> dict[str, Any]:
        return {"sync_wt": self.stepper.sync_wt, "sync_switched": self.sync_switched}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        if "sync_wt" in state and self.args.syncnet_wt is None:
            self.stepper.sync_wt = float(state["sync_wt"])
            self.sync_switched = bool(state.get("sync_switched", False))

    def log_images(self, monitor: Monitor, batch: dict[str, torch.Tensor]) -> None:
        if monitor.enabled and self.stepper.last_generated is not None:
            monitor.image(self.step, "train/ref_masked_generated_real",
                          generator_grid(batch["x"], self.stepper.last_generated.cpu().float(), batch["gt"]))


def train(args: argparse.Namespace) -> dict[str, Any]:
    return Wav2LipTrainer.train(args)

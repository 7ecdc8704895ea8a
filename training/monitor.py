"""What a user sees of a running training: TensorBoard scalars and image grids, a tqdm bar, printed evals.

Why: the most common complaint about the reference trainers is "loss stuck at 0.69 and no way to see what
is going on". Only rank 0 writes; the other ranks get a no-op monitor.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch


class Monitor:
    def __init__(self, log_dir: Path | None, enabled: bool, total_steps: int, start_step: int, progress: bool = True):
        self.enabled = enabled
        self.writer = None
        self.bar = None
        if not enabled:
            return
        if log_dir is not None:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(log_dir))
        if progress:
            from tqdm import tqdm

            self.bar = tqdm(total=total_steps, initial=start_step, unit="step", dynamic_ncols=True,
                            file=sys.stderr, smoothing=0.1)

    def step(self, step: int, scalars: dict[str, float], write: bool = True) -> None:
        """Advance the bar (postfix = running means); write the scalars to TensorBoard when `write`."""
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix({k: f"{v:.4f}" for k, v in scalars.items() if k in ("loss", "l1", "sync", "acc")},
                                 refresh=False)
        if write:
            self.scalars(step, {f"train/{k}": v for k, v in scalars.items()})

    def scalars(self, step: int, scalars: dict[str, float]) -> None:
        if self.writer is not None:
            for key, value in scalars.items():
                self.writer.add_scalar(key, value, step)

    def image(self, step: int, tag: str, grid_bgr: np.ndarray) -> None:
        """An H x W x 3 BGR float image in [0, 1]."""
        if self.writer is not None:
            rgb = np.ascontiguousarray(grid_bgr[..., ::-1]).clip(0, 1)
            self.writer.add_image(tag, rgb, step, dataformats="HWC")

    def message(self, text: str) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.writer is not None:
            self.writer.close()


def _tile(frames: torch.Tensor, tile: int) -> np.ndarray:
    """3 x T x H x W tensor -> H' x (T*W') x 3 array, each frame resized to tile px high."""
    import torch.nn.functional as F

    c, t, h, w = frames.shape
    small = F.interpolate(frames.permute(1, 0, 2, 3).float(), size=(tile, max(1, round(w * tile / h))),
                          mode="bilinear", align_corners=False)
    return torch.cat(list(small), dim=2).permute(1, 2, 0).cpu().numpy()


def generator_grid(x: torch.Tensor, generated: torch.Tensor, gt: torch.Tensor, max_items: int = 4,
                   tile: int = 96) -> np.ndarray:
    """Rows per sample: reference | masked input | generated | ground truth, the 5 frames side by side."""
    rows = []
    for b in range(min(max_items, x.size(0))):
        rows += [_tile(x[b, 3:6], tile), _tile(x[b, 0:3], tile), _tile(generated[b].detach(), tile),
                 _tile(gt[b], tile)]
        rows.append(np.ones((4, rows[-1].shape[1], 3), np.float32))  # separator between samples
    return np.concatenate(rows[:-1], axis=0)


def syncnet_grid(face: torch.Tensor, labels: torch.Tensor, max_items: int = 8, tile: int = 48) -> np.ndarray:
    """The lower-half windows the SyncNet sees, one row per sample; a green/red strip marks in/out of sync."""
    rows = []
    for b in range(min(max_items, face.size(0))):
        c, h, w = face[b].shape
        frames = face[b].reshape(c // 3, 3, h, w).permute(1, 0, 2, 3)
        row = _tile(frames, tile)
        strip = np.zeros((tile, 6, 3), np.float32)
        strip[..., 1 if labels[b] > 0.5 else 2] = 1.0  # BGR: green = positive, red = negative
        rows.append(np.concatenate([strip, row], axis=1))
    return np.concatenate(rows, axis=0)

"""`sync-offset`: the sweep's bookkeeping and the command on a clip folder, a training set and a video."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import write_synthetic_clip


class _TimeExpert(torch.nn.Module):
    """A fake expert that 'knows' time: the face embedding points at the frame number (from the synthetic
    pixel code), the audio embedding at the frame whose window the mel slice is (from a ramp written into the
    WAV's loudness). Its sweep must peak where the true offset is."""

    image_size = 32

    def __init__(self, frames: int):
        super().__init__()
        self.frames = frames

    def _one_hot(self, idx: torch.Tensor) -> torch.Tensor:
        idx = idx.round().long().clamp(0, 4 * self.frames)
        return torch.nn.functional.one_hot(idx, 4 * self.frames + 1).float() + 1e-3

    def face_encoder(self, face: torch.Tensor) -> torch.Tensor:
        return self._one_hot(face[:, 1].mean(dim=(1, 2)) * 255 / 6)

    def audio_encoder(self, mel: torch.Tensor) -> torch.Tensor:
        return self._one_hot(self.decode(mel))

    decode = None  # set by the test: mel window -> frame number


def test_sweep_finds_a_known_offset(tmp_path: Path):
    from training.clips import scan_clip
    from training.sync_offset import sweep
    from training.windows import mel_start

    clip_dir = write_synthetic_clip(tmp_path / "clip", 40)
    clip = scan_clip(clip_dir, 16)
    expert = _TimeExpert(40)
    true_offset = 3
    starts = {mel_start(i): i for i in range(60)}
    from training.clips import ClipReader

    mel = ClipReader([clip], 32).mel(0)
    by_content = {mel[:, s:s + 16].tobytes(): i for s, i in starts.items() if s + 16 <= mel.shape[1]}
    # the audio that "belongs" to frame i is the window of frame i + true_offset
    expert.decode = lambda m: torch.tensor([by_content[x.numpy().astype(np.float32).tobytes()] - true_offset
                                            for x in m[:, 0]], dtype=torch.float32)
    curve = sweep(expert, [clip], max_shift=5)
    assert curve.best_shift == true_offset
    assert len(curve.scores) == 11 and curve.windows > 0
    assert "audio lags the video by 120 ms" in curve.format()


def _expert_checkpoint(tmp_path: Path) -> Path:
    from models.testing import deterministic_model, save_reference_checkpoint

    return save_reference_checkpoint(deterministic_model("syncnet96"), tmp_path / "expert.pth", with_optimizer=False)


@pytest.mark.slow
def test_sync_offset_command_on_clip_and_set(synthetic_set: Path, tmp_path: Path, capsys):
    from stream_wav2lip.cli import main

    ckpt = _expert_checkpoint(tmp_path)
    assert main(["sync-offset", "--checkpoint", str(ckpt), str(synthetic_set / "vid_a" / "00000"),
                 "--max-shift", "3"]) == 0
    out = capsys.readouterr().out
    assert "1 clip(s), expert syncnet96" in out and out.count("\n") >= 8 and "over" in out
    assert main(["sync-offset", "--checkpoint", str(ckpt), str(synthetic_set), "--max-shift", "2",
                 "--per-clip"]) == 0
    assert "clip(s)" in capsys.readouterr().out


def test_sync_offset_rejects_a_generator_checkpoint(tmp_path: Path, capsys):
    from models.testing import save_reference_checkpoint
    from stream_wav2lip.cli import main

    with torch.device("meta"):
        import models

        shapes = models.build("disc_qual96").state_dict()
    state = {k: torch.zeros(v.shape, dtype=v.dtype) for k, v in shapes.items()}
    ckpt = save_reference_checkpoint(state, tmp_path / "d.pth", with_optimizer=False)
    assert main(["sync-offset", "--checkpoint", str(ckpt), str(tmp_path)]) == 2
    assert "must be a SyncNet" in capsys.readouterr().err


@pytest.mark.slow
def test_sync_offset_on_a_video_file(media_dir: Path, tmp_path: Path, capsys):
    from stream_wav2lip.cli import main

    ckpt = _expert_checkpoint(tmp_path)
    video = media_dir / "video-retalking__examples_face_5.mp4"
    assert main(["sync-offset", "--checkpoint", str(ckpt), str(video), "--max-windows", "10"]) == 0
    out = capsys.readouterr().out
    assert "video-retalking__examples_face_5.mp4: 1 clip(s)" in out or "2 clip(s)" in out
    assert "best offset" in out or "in sync" in out

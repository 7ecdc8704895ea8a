"""Audio/video offset sweep with an expert SyncNet: score every 5-frame window against audio shifted by
-N..+N frames; the shift with the highest mean in-sync score is the A/V offset.

Uses: check that a data set is in sync before training on it (the maintainers' first advice for a SyncNet
stuck at 0.69), check a rendered video, and prove a trained expert learned *sync* rather than memorised clips
(trained on aligned data, its curve must peak at shift 0; a pipeline with misaligned windows peaks elsewhere).

Sign: shift k pairs video frames i..i+4 with the mel window of frame i+k. A peak at k > 0 means the sound
that belongs to a frame comes k frames (k x 40 ms) later in the audio track, i.e. the audio lags the video.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from training.clips import Clip, ClipReader
from training.windows import MEL_STEPS, lower_half, stack_window, sync_mel_start, sync_window_starts


@dataclass
class OffsetCurve:
    shifts: list[int]
    scores: list[float]  # mean cosine (in-sync score) per shift, over all windows of all clips
    windows: int
    per_clip_best: dict[str, int] = field(default_factory=dict)

    @property
    def best_shift(self) -> int:
        return self.shifts[int(np.argmax(self.scores))]

    @property
    def confidence(self) -> float:
        """Peak minus median score (syncnet_python's notion of confidence)."""
        return float(np.max(self.scores) - np.median(self.scores))

    def format(self, width: int = 40) -> str:
        lo, hi = min(self.scores), max(self.scores)
        lines = [f"{'shift':>6} {'ms':>6}  {'score':>7}"]
        for s, v in zip(self.shifts, self.scores):
            bar = "#" * int(round(width * (v - lo) / (hi - lo))) if hi > lo else ""
            mark = "  <- best" if s == self.best_shift else ""
            lines.append(f"{s:>+6d} {s * 40:>+6d}  {v:7.4f} {bar}{mark}")
        best = self.best_shift
        if best == 0:
            verdict = "in sync (best offset 0)"
        else:
            verdict = (f"best offset {best:+d} frames ({best * 40:+d} ms): the audio "
                       f"{'lags' if best > 0 else 'leads'} the video by {abs(best) * 40} ms")
        lines.append(f"{verdict}; confidence {self.confidence:.4f} over {self.windows} windows")
        return "\n".join(lines)


def sweep(expert: torch.nn.Module, clips: list[Clip], max_shift: int = 10, max_windows_per_clip: int = 200,
          batch_size: int = 32, device: torch.device | str = "cpu", progress: bool = False) -> OffsetCurve:
    """Mean cosine(audio window shifted by k, video window) for k in -max_shift..+max_shift.

    Only windows whose mel window exists for every shift are used, so every shift averages the same windows.
    """
    shifts = list(range(-max_shift, max_shift + 1))
    face_size = int(expert.image_size)
    reader = ClipReader(clips, face_size)
    totals = np.zeros(len(shifts))
    count = 0
    per_clip: dict[str, int] = {}
    expert = expert.to(device).eval()
    iterator = range(len(clips))
    if progress:
        from tqdm import tqdm

        iterator = tqdm(iterator, desc="sync-offset", unit="clip", leave=False)
    for ci in iterator:
        mel = reader.mel(ci)
        starts = sync_window_starts(clips[ci].frames, mel.shape[1], shifts)
        if starts.size > max_windows_per_clip:
            starts = starts[np.linspace(0, starts.size - 1, max_windows_per_clip).round().astype(int)]
        clip_totals = np.zeros(len(shifts))
        clip_count = 0
        for b in range(0, starts.size, batch_size):
            faces, firsts = [], []
            for first in starts[b:b + batch_size]:
                frames = reader.window(ci, int(first))
                if frames is not None:
                    faces.append(stack_window([lower_half(f) for f in frames]))
                    firsts.append(int(first))
            if not faces:
                continue
            with torch.no_grad():
                face_t = torch.from_numpy(np.stack(faces)).to(device)
                mels = np.stack([[mel[:, sync_mel_start(f, k):sync_mel_start(f, k) + MEL_STEPS] for k in shifts]
                                 for f in firsts])  # W x K x 80 x 16
                mel_t = torch.from_numpy(mels.reshape(-1, 1, *mels.shape[2:]).astype(np.float32)).to(device)
                audio_emb, face_emb = _embed(expert, mel_t, face_t, len(shifts))
                scores = torch.nn.functional.cosine_similarity(audio_emb, face_emb, dim=2)  # W x K
            clip_totals += scores.sum(0).cpu().numpy()
            clip_count += scores.shape[0]
        if clip_count:
            totals += clip_totals
            count += clip_count
            per_clip[str(clips[ci].path)] = shifts[int(np.argmax(clip_totals))]
    if count == 0:
        from stream_wav2lip.errors import UserError

        raise UserError(f"no 5-frame window has audio for every shift -{max_shift}..+{max_shift} "
                        f"(clips too short? need at least {2 * max_shift + 5} frames)")
    return OffsetCurve(shifts, (totals / count).tolist(), count, per_clip)


def _embed(expert: torch.nn.Module, mel: torch.Tensor, face: torch.Tensor, k: int):
    """Face embeddings once per window, audio embeddings per (window, shift); both W x K x D."""
    face_emb = expert.face_encoder(face)
    face_emb = torch.nn.functional.normalize(face_emb.reshape(face_emb.size(0), -1), dim=1)
    audio_emb = expert.audio_encoder(mel)
    audio_emb = torch.nn.functional.normalize(audio_emb.reshape(audio_emb.size(0), -1), dim=1)
    w = face.size(0)
    return audio_emb.reshape(w, k, -1), face_emb[:, None].expand(w, k, face_emb.size(1))

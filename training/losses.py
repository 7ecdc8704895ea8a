"""The training losses of the reference, computed in float32 even under mixed precision.

Why float32: BCE on a cosine close to 0 or 1 underflows in float16 (and autocast refuses `binary_cross_entropy`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def cosine(audio_embedding: torch.Tensor, face_embedding: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of the two (already L2-normalised) embeddings, one value per item."""
    return F.cosine_similarity(audio_embedding.float(), face_embedding.float(), dim=1)


def cosine_bce(audio_embedding: torch.Tensor, face_embedding: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Reference SyncNet loss: BCE(cos(a, v), y). Cosines are clamped to [0, 1] because BCE needs a
    probability: the ReLU/LeakyReLU SyncNets give non-negative embeddings anyway, only the 2021 PReLU one can
    go negative (the reference would raise there)."""
    with torch.autocast(audio_embedding.device.type, enabled=False):
        prob = cosine(audio_embedding, face_embedding).clamp(0.0, 1.0)
        return F.binary_cross_entropy(prob, target.float().reshape(prob.shape))


def lower_half_window(frames: torch.Tensor, face_size: int | None = None) -> torch.Tensor:
    """B x 3 x T x S x S generator output -> B x 3T x S/2 x S SyncNet input (frame-major channels),
    resized to the expert's face size when it differs from the generator's."""
    b, c, t, s, _ = frames.shape
    half = frames[:, :, :, s // 2:]  # B x 3 x T x S/2 x S
    window = half.permute(0, 2, 1, 3, 4).reshape(b, t * c, s - s // 2, s)
    if face_size is not None and face_size != s:
        window = F.interpolate(window, size=(face_size // 2, face_size), mode="bilinear", align_corners=False)
    return window


def sync_loss(expert: torch.nn.Module, mel: torch.Tensor, generated: torch.Tensor) -> torch.Tensor:
    """BCE(cos, 1) of the expert on the generated lower halves: low when the mouth matches the audio."""
    face = lower_half_window(generated, getattr(expert, "image_size", None))
    audio_embedding, face_embedding = expert(mel, face)
    return cosine_bce(audio_embedding, face_embedding, torch.ones(face.size(0), device=face.device))


def quality_loss(prediction: torch.Tensor, real: bool) -> torch.Tensor:
    """Wav2Lip_disc_qual (Sigmoid output): BCE against 1 (real) or 0 (fake)."""
    with torch.autocast(prediction.device.type, enabled=False):
        prediction = prediction.float()
        target = torch.ones_like(prediction) if real else torch.zeros_like(prediction)
        return F.binary_cross_entropy(prediction, target)


def hinge_d_loss(logits: torch.Tensor, real: bool) -> torch.Tensor:
    """PatchGAN (logits) discriminator hinge term: relu(1 - D(real)) or relu(1 + D(fake)), averaged."""
    logits = logits.float()
    return F.relu(1.0 - logits).mean() if real else F.relu(1.0 + logits).mean()


def hinge_g_loss(logits: torch.Tensor) -> torch.Tensor:
    """PatchGAN generator term: -mean(D(fake)) (primepake hq_wav2lip_sam_train)."""
    return -logits.float().mean()

"""Forward wiring of the reference networks; layer lists come from `models.tables`.

Five families: the Wav2Lip U-Net generator (96/288, skip = decoder output then encoder feature), the SAM
generators (spatial attention on every skip, detached + refined + L2-normalised audio), the dual-encoder
SyncNet, the lower-half visual-quality discriminator and the PatchGAN. Each module carries `variant`,
`kind`, `image_size` (and `output_activation` for generators) so callers never have to guess.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.blocks import stage_from_spec


def fold_time(face: torch.Tensor) -> torch.Tensor:
    """B x C x T x H x W -> (T*B) x C x H x W, time-major (all batch items of t=0 first), like the reference."""
    b, c, t, h, w = face.shape
    return face.permute(2, 0, 1, 3, 4).reshape(t * b, c, h, w)


def fold_audio_time(audio: torch.Tensor) -> torch.Tensor:
    """B x T x 1 x 80 x 16 -> (T*B) x 1 x 80 x 16, time-major."""
    b, t = audio.shape[:2]
    return audio.transpose(0, 1).reshape(t * b, *audio.shape[2:])


def unfold_time(x: torch.Tensor, batch: int) -> torch.Tensor:
    """(T*B) x C x H x W -> B x C x T x H x W (inverse of `fold_time`)."""
    tb, c, h, w = x.shape
    return x.reshape(tb // batch, batch, c, h, w).permute(1, 2, 0, 3, 4)


def _output_activation(name: str) -> nn.Module:
    if name == "sigmoid":
        return nn.Sigmoid()
    if name == "tanh":
        return nn.Tanh()
    raise ValueError(f"output_activation must be 'sigmoid' or 'tanh', got {name!r}")


class _Described(nn.Module):
    variant: str
    kind: str
    image_size: int

    def extra_repr(self) -> str:
        return f"variant={self.variant!r}, kind={self.kind!r}, image_size={self.image_size}"


class Wav2LipGenerator(_Described):
    """Wav2Lip U-Net: (audio B x 1 x 80 x 16, face B x 6 x S x S) -> B x 3 x S x S (BGR, [0, 1]).

    5-D mode: audio B x T x 1 x 80 x 16 and face B x 6 x T x S x S -> B x 3 x T x S x S, frames independent.
    """

    kind = "generator"

    def __init__(self, table: dict, act: str, variant: str, image_size: int, output_activation: str = "sigmoid"):
        super().__init__()
        self.variant, self.image_size, self.output_activation = variant, image_size, output_activation
        self.face_encoder_blocks = nn.ModuleList(stage_from_spec(s, act) for s in table["face_encoder_blocks"])
        self.audio_encoder = stage_from_spec(table["audio_encoder"], act)
        self.face_decoder_blocks = nn.ModuleList(stage_from_spec(s, act) for s in table["face_decoder_blocks"])
        self.output_block = stage_from_spec(table["output_block"], act)
        self.output_block.append(_output_activation(output_activation))

    def forward(self, audio_sequences: torch.Tensor, face_sequences: torch.Tensor) -> torch.Tensor:
        if face_sequences.dim() > 4:
            batch = audio_sequences.size(0)
            out = self.forward_frames(fold_audio_time(audio_sequences), fold_time(face_sequences))
            return unfold_time(out, batch)
        return self.forward_frames(audio_sequences, face_sequences)

    def decode_input(self, audio_sequences: torch.Tensor) -> torch.Tensor:
        """The audio embedding that starts the decoder (C x 1 x 1)."""
        return self.audio_encoder(audio_sequences)

    def merge_skip(self, x: torch.Tensor, feature: torch.Tensor) -> torch.Tensor:
        return torch.cat((x, feature), dim=1)

    def forward_frames(self, audio: torch.Tensor, face: torch.Tensor) -> torch.Tensor:
        x = self.decode_input(audio)
        features = []
        f = face
        for block in self.face_encoder_blocks:
            f = block(f)
            features.append(f)
        for block in self.face_decoder_blocks:
            x = block(x)
            x = self.merge_skip(x, features.pop())
        return self.output_block(x)


class SpatialAttention(nn.Module):
    """att = sigmoid(conv7x7([mean_c(x), max_c(x)])), 1 x H x W."""

    def __init__(self, kernel_size: int = 7):
        super().__init__()
        self.conv1 = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return self.sigmoid(self.conv1(pooled))


class SAM(nn.Module):
    """Spatial attention from the encoder feature applied to the decoder output: se * att(sp) + se."""

    def __init__(self):
        super().__init__()
        self.sa = SpatialAttention()

    def forward(self, sp: torch.Tensor, se: torch.Tensor) -> torch.Tensor:
        return se * self.sa(sp) + se


class SamGenerator(Wav2LipGenerator):
    """primepake Wav2Lip_SAM / Wav2Lip_384: detached audio -> audio_refine -> L2 norm -> clamp; SAM on skips.

    The decoder's first output is 1 x 1; at sizes above the native one the SAM product broadcasts it to the
    k x k bottleneck (that is how the reference runs at 384).
    """

    def __init__(self, table: dict, act: str, variant: str, image_size: int, output_activation: str):
        nn.Module.__init__(self)
        self.variant, self.image_size, self.output_activation = variant, image_size, output_activation
        self.sam = SAM()
        self.face_encoder_blocks = nn.ModuleList(stage_from_spec(s, act) for s in table["face_encoder_blocks"])
        self.audio_encoder = stage_from_spec(table["audio_encoder"], act)
        self.audio_refine = stage_from_spec(table["audio_refine"], act)
        self.face_decoder_blocks = nn.ModuleList(stage_from_spec(s, act) for s in table["face_decoder_blocks"])
        self.output_block = stage_from_spec(table["output_block"], act)
        self.output_block.append(_output_activation(output_activation))

    def decode_input(self, audio_sequences: torch.Tensor) -> torch.Tensor:
        embedding = self.audio_encoder(audio_sequences).detach()
        embedding = self.audio_refine(embedding)
        return F.normalize(embedding, p=2, dim=1).clamp(-1.0, 1.0)

    def merge_skip(self, x: torch.Tensor, feature: torch.Tensor) -> torch.Tensor:
        return torch.cat((self.sam(feature, x), feature), dim=1)


class SyncNet(_Described):
    """Expert lip-sync discriminator: (audio B x 1 x 80 x 16, face B x 15 x S/2 x S) -> two L2-normalised
    B x D embeddings (audio first). Face = 5 BGR frames stacked on channels, lower half only."""

    kind = "syncnet"

    def __init__(self, table: dict, act: str, variant: str, image_size: int):
        super().__init__()
        self.variant, self.image_size = variant, image_size
        self.face_encoder = stage_from_spec(table["face_encoder"], act)
        self.audio_encoder = stage_from_spec(table["audio_encoder"], act)

    def forward(self, audio_sequences: torch.Tensor, face_sequences: torch.Tensor):
        face_embedding = self.face_encoder(face_sequences)
        audio_embedding = self.audio_encoder(audio_sequences)
        audio_embedding = F.normalize(audio_embedding.reshape(audio_embedding.size(0), -1), p=2, dim=1)
        face_embedding = F.normalize(face_embedding.reshape(face_embedding.size(0), -1), p=2, dim=1)
        return audio_embedding, face_embedding

    def audio_forward(self, audio_sequences: torch.Tensor) -> torch.Tensor:
        """Unnormalised audio encoder output (SyncNet_color_384 has this method; harmless elsewhere)."""
        return self.audio_encoder(audio_sequences)


class QualityDiscriminator(_Described):
    """Wav2Lip_disc_qual: B x 3 x T x S x S (or already folded N x 3 x S x S) -> (T*B) x 1 in (0, 1),
    judging the lower half of each face."""

    kind = "discriminator"

    def __init__(self, table: dict, variant: str, image_size: int):
        super().__init__()
        self.variant, self.image_size = variant, image_size
        self.face_encoder_blocks = nn.ModuleList(stage_from_spec(s, "leaky0.01") for s in table["face_encoder_blocks"])
        self.binary_pred = stage_from_spec(table["binary_pred"], "leaky0.01")
        self.binary_pred.append(nn.Sigmoid())

    def forward(self, face_sequences: torch.Tensor) -> torch.Tensor:
        x = fold_time(face_sequences) if face_sequences.dim() == 5 else face_sequences
        x = x[:, :, x.size(2) // 2:]
        for block in self.face_encoder_blocks:
            x = block(x)
        return self.binary_pred(x).reshape(x.size(0), -1)

    def perceptual_forward(self, false_face_sequences: torch.Tensor) -> torch.Tensor:
        """BCE(D(fake), 1): the generator's adversarial loss (reference hard-coded CUDA; this follows the input)."""
        pred = self.forward(false_face_sequences)
        return F.binary_cross_entropy(pred, torch.ones_like(pred))


class PatchDiscriminator(_Described):
    """pix2pix PatchGAN (primepake NLayerDiscriminator): B x 3 x T x S x S -> (T*B) x 1 x h x w logits."""

    kind = "discriminator"

    def __init__(self, variant: str, image_size: int, input_nc: int = 3, ndf: int = 64, n_layers: int = 3,
                 lower_half: bool = False):
        super().__init__()
        self.variant, self.image_size, self.lower_half = variant, image_size, lower_half
        layers: list[nn.Module] = [nn.Conv2d(input_nc, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2 ** n, 8)
            stride = 2 if n < n_layers else 1
            layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride, 1, bias=False), nn.BatchNorm2d(ndf * mult),
                       nn.LeakyReLU(0.2, True)]
        layers.append(nn.Conv2d(ndf * mult, 1, 4, 1, 1))
        self.main = nn.Sequential(*layers)

    def forward(self, face_sequences: torch.Tensor) -> torch.Tensor:
        x = fold_time(face_sequences) if face_sequences.dim() == 5 else face_sequences
        if self.lower_half:
            x = x[:, :, x.size(2) // 2:]
        return self.main(x)

    def reset_parameters_like_reference(self) -> None:
        """primepake `weights_init`: conv ~ N(0, 0.02); BN weight ~ N(1, 0.02), bias 0."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, 0.0, 0.02)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.normal_(module.weight, 1.0, 0.02)
                nn.init.zeros_(module.bias)

"""The catalogue of supported variants and `build(variant)`.

Each entry records what a user (and `inspect`) needs to know: kind, canonical face size, origin, and how to
construct it from the tables. Names are those of docs/models.md §1, so checkpoints, tests and docs agree.
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from models import tables
from models.networks import PatchDiscriminator, QualityDiscriminator, SamGenerator, SyncNet, Wav2LipGenerator


@dataclass(frozen=True)
class VariantSpec:
    name: str
    kind: str  # "generator" | "syncnet" | "discriminator"
    image_size: int  # canonical square face size in pixels
    description: str
    output_activation: str | None = None  # generators only
    embedding_dim: int | None = None  # syncnets only


SPECS: dict[str, VariantSpec] = {
    spec.name: spec
    for spec in [
        VariantSpec("wav2lip96", "generator", 96, "Rudrabha Wav2Lip 96x96 generator (wav2lip.pth / wav2lip_gan.pth)",
                    output_activation="sigmoid"),
        VariantSpec("wav2lip288", "generator", 288, "primepake Wav2Lip 288x288 generator (ReLU, 2023-12 onwards)",
                    output_activation="sigmoid"),
        VariantSpec("wav2lip288_prelu2021", "generator", 288, "primepake Wav2Lip 288x288 generator, 2021 PReLU build",
                    output_activation="sigmoid"),
        VariantSpec("wav2lip_sam", "generator", 384, "primepake Wav2Lip_SAM (SAM-UNet, with audio_refine), 384x384",
                    output_activation="sigmoid"),
        VariantSpec("wav2lip384", "generator", 384, "primepake Wav2Lip_384 (with audio_refine), Tanh output",
                    output_activation="tanh"),
        VariantSpec("syncnet96", "syncnet", 96, "Rudrabha SyncNet_color expert (face 15x48x96), 512-d",
                    embedding_dim=512),
        VariantSpec("syncnet_v2_1024", "syncnet", 192, "primepake syncnetv2 SyncNet_color, 1024-d (face 15x96x192)",
                    embedding_dim=1024),
        VariantSpec("syncnet288_prelu2021", "syncnet", 288,
                    "primepake 2021 PReLU SyncNet_color for 288 (face 15x144x288), 512-d", embedding_dim=512),
        VariantSpec("syncnet384", "syncnet", 384, "primepake SyncNet_color_384 (face 15x192x384), 1024-d",
                    embedding_dim=1024),
        VariantSpec("disc_qual96", "discriminator", 96, "Rudrabha Wav2Lip_disc_qual visual-quality discriminator"),
        VariantSpec("disc_qual288", "discriminator", 288, "primepake Wav2Lip_disc_qual 288 visual-quality discriminator"),
        VariantSpec("nlayer_disc", "discriminator", 384, "primepake NLayerDiscriminator PatchGAN (any face size)"),
    ]
}

VARIANTS: tuple[str, ...] = tuple(SPECS)

# Recognised in checkpoints but not buildable: the reference itself cannot run them (docs/models.md §1).
UNSUPPORTED: dict[str, str] = {
    "wav2lip_sam_norefine": "Wav2Lip_SAM without audio_refine (primepake HEAD construction); its forward "
                            "raises in the reference code, so it cannot produce frames",
    "wav2lip384_norefine": "Wav2Lip_384 without audio_refine; its forward raises in the reference code",
    "wav2lip512": "primepake Wav2Lip_512_normal, which the reference code cannot even construct",
    "disc_qual512": "primepake Wav2Lip_disc_qual_512, which the reference code cannot construct",
}

_GENERATOR_TABLES = {
    "wav2lip96": (tables.WAV2LIP96, "relu"),
    "wav2lip288": (tables.WAV2LIP288, "relu"),
    "wav2lip288_prelu2021": (tables.WAV2LIP288, "prelu"),
}
_SAM_TABLES = {"wav2lip_sam": tables.WAV2LIP_SAM, "wav2lip384": tables.WAV2LIP384}
_SYNCNET_TABLES = {
    "syncnet96": (tables.SYNCNET96, "relu"),
    "syncnet_v2_1024": (tables.SYNCNET_V2_1024, "leaky"),
    "syncnet288_prelu2021": (tables.SYNCNET288_PRELU2021, "prelu"),
    "syncnet384": (tables.SYNCNET384, "leaky"),
}
_DISC_TABLES = {"disc_qual96": tables.DISC_QUAL96, "disc_qual288": tables.DISC_QUAL288}


def build(variant: str, *, output_activation: str | None = None) -> nn.Module:
    """A freshly initialised network of the given variant (PyTorch default init, train mode).

    `output_activation` overrides a generator's final activation ("sigmoid"/"tanh"), e.g. for a Wav2Lip_SAM
    checkpoint trained before primepake switched Tanh -> Sigmoid (the checkpoint does not record it).
    Build under `with torch.device("meta"):` to get shapes without allocating memory.
    """
    spec = SPECS.get(variant)
    if spec is None:
        known = ", ".join(VARIANTS)
        raise ValueError(f"unknown variant {variant!r}; known variants: {known}")
    if output_activation is not None and spec.kind != "generator":
        raise ValueError(f"output_activation only applies to generators, not {variant}")
    if variant in _GENERATOR_TABLES:
        table, act = _GENERATOR_TABLES[variant]
        return Wav2LipGenerator(table, act, variant, spec.image_size, output_activation or spec.output_activation)
    if variant in _SAM_TABLES:
        return SamGenerator(_SAM_TABLES[variant], "relu", variant, spec.image_size,
                            output_activation or spec.output_activation)
    if variant in _SYNCNET_TABLES:
        table, act = _SYNCNET_TABLES[variant]
        net = SyncNet(table, act, variant, spec.image_size)
        net.embedding_dim = spec.embedding_dim
        return net
    if variant in _DISC_TABLES:
        return QualityDiscriminator(_DISC_TABLES[variant], variant, spec.image_size)
    net = PatchDiscriminator(variant, spec.image_size)
    if not _on_meta(net):
        net.reset_parameters_like_reference()
    return net


def _on_meta(module: nn.Module) -> bool:
    return any(p.is_meta for p in module.parameters())

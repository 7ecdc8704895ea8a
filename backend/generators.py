"""Choosing the generator: the Wav2Lip network (needs a checkpoint) or the weightless `mouth` engine.

Why a factory: `render`, `serve` and `demo` all take the same --engine/--checkpoint/--device options and must
pick the same way; the mouth engine is imported lazily so a broken or absent one never blocks the network.
"""
from __future__ import annotations

from pathlib import Path

from backend.generator import Generator
from stream_wav2lip.errors import UserError

ENGINES = ("wav2lip", "mouth")


def default_engine(checkpoint: str | Path | None) -> str:
    """wav2lip when a checkpoint is given, else the weightless mouth engine."""
    return "wav2lip" if checkpoint else "mouth"


def make_generator(engine: str | None, checkpoint: str | Path | None, device: str, package, crop: str | None = None,
                   batch_size: int | None = None, streams: int | None = 1) -> Generator:
    """A ready `Generator` for `engine` ("wav2lip" | "mouth" | None = default_engine(checkpoint)).

    crop None = the engine's own default ("head" for the network, the mouth engine's choice for mouth);
    streams: the network's CPU streams (backend.wav2lip_generator.Wav2LipGenerator).
    """
    engine = engine or default_engine(checkpoint)
    if engine == "wav2lip":
        if not checkpoint:
            raise UserError("--engine wav2lip needs --checkpoint CKPT (or use --engine mouth, which needs no weights)")
        from backend.wav2lip_generator import Wav2LipGenerator

        return Wav2LipGenerator(checkpoint, device=device, crop=crop or "head", batch_size=batch_size,
                                streams=streams)
    if engine == "mouth":
        try:
            from backend.mouth import MouthGenerator
        except ImportError as exc:
            raise UserError(f"the mouth engine is not available ({exc})") from None
        return MouthGenerator(package, crop=crop) if crop else MouthGenerator(package)
    raise UserError(f"unknown engine {engine!r} (expected one of {', '.join(ENGINES)})")

"""The one registry of generators: it feeds the factory, every CLI's `--engine` choices and the OBS panel.

Stdlib only and nothing imported until a generator is built, so the OBS plugin (inside OBS's own Python) can
list the engines and a broken or absent generator never blocks another. An entry names the module and class
of its generator and a `build` function; adding a generator = one module + one `register(...)` line here (or
in a test, which is how tests/backend/test_generator_registry.py proves that a new generator runs through
`render` and `serve` unchanged).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable


# the network's numeric precision (backend/generators/precision.py decides and validates it); here so that every
# CLI and the OBS panel list the same choices without importing numpy or torch
PRECISIONS = ("auto", "fp32", "int8", "fp16")
PRECISION_HELP = ("network precision: auto (default: int8 on a CPU where fp32 is below 25 fps and int8 validates on "
                  "this avatar, else fp32), fp32, int8 (CPU: ONNX Runtime, calibrated on this avatar and used only "
                  "if its faces stay within 35 dB PSNR of fp32, else a warning and fp32), fp16 (CUDA, validated the "
                  "same way); the check runs once per checkpoint and avatar and is cached in <avatar>/.cache")


@dataclass(frozen=True)
class GeneratorOptions:
    """What the user chose on the command line (or in the OBS panel) that a generator may use."""

    checkpoint: str | Path | None = None
    device: str = "auto"
    crop: str | None = None  # None = the generator's own default
    batch_size: int | None = None
    cpu_streams: int | None = 1  # the network's single-threaded CPU streams (None = one per torch thread)
    precision: str = "auto"  # auto | fp32 | int8 | fp16, validated per avatar (backend/generators/precision.py)
    parallel_calls: bool = False  # serve: single-threaded calls side by side, one per core (backend/live/loop.py)


@dataclass(frozen=True)
class GeneratorEntry:
    """name: the `--engine` value; target: "module:Class"; build(options, package) -> Generator;
    listed: shown in `--engine` choices and the OBS panel (False for test/benchmark stand-ins)."""

    name: str
    summary: str
    target: str
    build: Callable
    needs_checkpoint: bool = False
    listed: bool = True

    def load_class(self):
        module, _, cls = self.target.partition(":")
        return getattr(importlib.import_module(module), cls)


_REGISTRY: dict[str, GeneratorEntry] = {}


def register(entry: GeneratorEntry) -> GeneratorEntry:
    _REGISTRY[entry.name] = entry
    return entry


def unregister(name: str) -> None:
    _REGISTRY.pop(name, None)


def entries(listed_only: bool = True) -> list[GeneratorEntry]:
    return [e for e in _REGISTRY.values() if e.listed or not listed_only]


def engine_names(listed_only: bool = True) -> tuple[str, ...]:
    """The `--engine` choices."""
    return tuple(e.name for e in entries(listed_only))


def engine_help(listed_only: bool = True) -> str:
    """The `--engine` help text: every engine with its summary."""
    names = "; ".join(f"{e.name}: {e.summary}" for e in entries(listed_only))
    return f"generator ({names}). Default: wav2lip when --checkpoint is given, else mouth"


def default_engine(checkpoint: str | Path | None) -> str:
    """The network when a checkpoint is given, else the weightless mouth engine."""
    return "wav2lip" if checkpoint else "mouth"


def get(name: str):
    """The entry for `name`, or a one-line UserError listing the choices."""
    from stream_wav2lip.errors import UserError

    entry = _REGISTRY.get(name)
    if entry is None:
        raise UserError(f"unknown engine {name!r} (expected one of {', '.join(engine_names(False))})")
    return entry


def make_generator(engine: str | None, package, options: GeneratorOptions | None = None):
    """A ready generator for `engine` (None = default_engine(options.checkpoint))."""
    from stream_wav2lip.errors import UserError

    options = options or GeneratorOptions()
    entry = get(engine or default_engine(options.checkpoint))
    if entry.needs_checkpoint and not options.checkpoint:
        raise UserError(f"--engine {entry.name} needs --checkpoint CKPT (or use --engine mouth, which needs no "
                        "weights)")
    return entry.build(options, package)


def prepare_avatar(root: Path, progress: bool = False) -> list[str]:
    """Every registered generator's per-avatar preparation (`Generator.prepare_avatar`), run by preprocess.

    A failure is a warning (returned, with the others): the package stays valid, the generator prepares
    itself lazily when it is first used."""
    warnings = []
    for entry in entries(listed_only=False):
        try:
            cls = entry.load_class()
        except ImportError:
            continue  # an optional generator that is not installed prepares nothing
        if not getattr(cls, "needs_calibration", False):
            continue
        try:
            warning = cls.prepare_avatar(Path(root), progress=progress)
        except Exception as exc:  # noqa: BLE001 - an optional step must not fail the package
            warning = f"{entry.name} preparation failed: {type(exc).__name__}: {exc}"
        if warning:
            warnings.append(str(warning))
    return warnings


# ---------------------------------------------------------------------------------------------- built-in entries
def _build_wav2lip(options: GeneratorOptions, package):
    from backend.generators.wav2lip import Wav2LipGenerator

    return Wav2LipGenerator(options.checkpoint, device=options.device, crop=options.crop or "head",
                            batch_size=options.batch_size, streams=options.cpu_streams,
                            precision=options.precision, package=package, parallel=options.parallel_calls)


def _build_mouth(options: GeneratorOptions, package):
    from stream_wav2lip.errors import UserError

    try:
        from backend.mouth import MouthGenerator
    except ImportError as exc:
        raise UserError(f"the mouth engine is not available ({exc})") from None
    return MouthGenerator(package, crop=options.crop) if options.crop else MouthGenerator(package)


def _build_null(options: GeneratorOptions, package):
    from backend.generators.base import NullGenerator

    crop = options.crop or "head"
    return NullGenerator(package.head_size if crop == "heads" else package.face_size, crop)


register(GeneratorEntry("wav2lip", "the Wav2Lip network (96/288/384; needs --checkpoint)",
                        "backend.generators.wav2lip:Wav2LipGenerator", _build_wav2lip, needs_checkpoint=True))
register(GeneratorEntry("mouth", "the weightless mouth engine: your own mouth images, chosen to match the speech",
                        "backend.mouth.generator:MouthGenerator", _build_mouth))
register(GeneratorEntry("null", "the footage unchanged (pipeline cost; tests and benchmarks)",
                        "backend.generators.base:NullGenerator", _build_null, listed=False))

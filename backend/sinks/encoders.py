"""Which H.264 encoder the mp4 sink uses, and how its quality/speed settings are spelled.

Why: on this kind of CPU, libx264 alone costs ~12 ms per 1080p frame even at `ultrafast` (bench/render.py),
more than everything else around the network together. A GPU host has an encoder on the card (NVENC) that
costs the CPU almost nothing, so `auto` uses it when CUDA is present and the encoder really opens (drivers,
licences and containers vary, so it is probed, not assumed); everywhere else libx264.

One quality knob for all: `crf` (x264 CRF, NVENC constant-quality `cq`, QSV `global_quality`), lower is
better. `preset`: the encoder's own speed preset names (x264 ultrafast…slow, NVENC p1…p7, QSV veryfast…).

Without a `crf`, x264 at `ultrafast` (render's default) encodes at a constant quantizer of 15 instead of CRF 18:
x264's CRF analyses a downscaled copy of every frame to judge its complexity, 20-35 % of the encoder's CPU at
this preset, while `ultrafast` has none of the tools (adaptive quantization, macroblock tree, B-frames) that
make CRF worth it. On seven talking-head clips from 256² to 1080×1920, QP 15 gave the same or better PSNR-Y
than CRF 18 (-0.13 to +4.0 dB) at 10-35 % less CPU (1080p: 8.6-9.0 vs 11.2-11.5 ms a frame) and -1 to +30 %
bitrate, +64 % on one grainy clip (docs/benchmarks.md). Slower presets and the GPU encoders keep CRF-like
modes at 18.
"""
from __future__ import annotations

from fractions import Fraction
from functools import lru_cache

from stream_wav2lip.errors import UserError

ENCODERS = ("auto", "libx264", "h264_nvenc", "h264_qsv")
DEFAULT_PRESET = {"libx264": "ultrafast", "h264_nvenc": "p4", "h264_qsv": "veryfast"}
DEFAULT_CRF = 18
ULTRAFAST_QP = 15  # x264 ultrafast without an explicit crf: see the module docstring
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow")


def encoder_options(codec: str, crf: int | None, preset: str | None) -> dict[str, str]:
    """PyAV codec options for `codec` at quality `crf` and `preset` (None = the codec's default; crf None =
    x264 ultrafast's constant quantizer or CRF 18, see the module docstring)."""
    preset = preset or DEFAULT_PRESET.get(codec, "")
    if codec == "libx264":
        if preset not in X264_PRESETS:
            raise UserError(f"--preset {preset}: not an x264 preset (one of {', '.join(X264_PRESETS)})")
        if crf is None and preset == "ultrafast":
            return {"qp": str(ULTRAFAST_QP), "preset": preset}
        return {"crf": str(DEFAULT_CRF if crf is None else crf), "preset": preset}
    crf = DEFAULT_CRF if crf is None else crf
    if codec == "h264_nvenc":
        return {"preset": preset, "rc": "vbr", "cq": str(crf), "b": "0"}
    if codec == "h264_qsv":
        return {"preset": preset, "global_quality": str(crf)}
    raise UserError(f"--encoder {codec}: unknown (one of {', '.join(ENCODERS)})")


@lru_cache(maxsize=None)
def probe(codec: str) -> str | None:
    """None if `codec` opens on this machine, else the reason (a one-line string)."""
    import av

    try:
        ctx = av.CodecContext.create(codec, "w")
        ctx.width, ctx.height, ctx.pix_fmt = 256, 256, "yuv420p"
        ctx.time_base = Fraction(1, 25)
        ctx.open()
    except Exception as exc:  # PyAV raises several error classes (PermissionError, ArgumentError, ...)
        return f"{type(exc).__name__}: {exc}".splitlines()[0]
    return None


def choose_encoder(requested: str = "auto") -> str:
    """The codec name to use: `auto` → h264_nvenc on a CUDA host where it opens, else libx264."""
    if requested not in ENCODERS:
        raise UserError(f"--encoder {requested}: unknown (one of {', '.join(ENCODERS)})")
    if requested == "auto":
        return "h264_nvenc" if _cuda() and probe("h264_nvenc") is None else "libx264"
    why = probe(requested)
    if why is not None:
        raise UserError(f"--encoder {requested}: the encoder does not open on this machine ({why}); "
                        f"use --encoder libx264")
    return requested


def _cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())

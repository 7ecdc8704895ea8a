"""Offline rendering: avatar package + speech file(s) → lip-synced mp4 (and optionally PNG frames).

The same Engine as `serve`, driven as fast as the machine goes: the audio files are decoded (any format),
joined into one utterance (they play one after another, as in the output's audio track), pushed in 1 s
chunks, and every finished pair goes straight to the sinks. The video lasts ceil(samples / 640) frames, so
its duration equals the audio's to within one frame. Every bad input is a one-line `UserError`, raised
before any output is created; the mp4 is written under a temporary name and renamed only when complete.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from backend.frames import AudioFrame, SpeechEndFrame, SpeechStartFrame
from stream_wav2lip.errors import UserError

CHUNK_SAMPLES = 16000  # 1 s per push: the engine works incrementally either way
PRELOAD_BYTES = 1 << 30  # avatars whose frames fit in 1 GB are decoded once, not on every ping-pong pass


@dataclass
class RenderResult:
    frames: int
    samples: int
    seconds: float
    output: Path | None
    frames_dir: Path | None
    generator: str
    stage_seconds: dict = field(default_factory=dict)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


def load_speech(paths: list[str | Path]) -> np.ndarray:
    """All files decoded to 16 kHz mono float32 and joined, in order."""
    from models.audio import load_audio

    if not paths:
        raise UserError("no --audio file given")
    parts = [load_audio(p) for p in paths]
    return np.concatenate(parts) if len(parts) > 1 else parts[0]


def check_output(path: str | Path | None, what: str = "output") -> Path | None:
    if path is None:
        return None
    p = Path(path)
    if not p.parent.is_dir():
        raise UserError(f"{p}: {what} folder {p.parent} does not exist")
    if p.is_dir() and what == "output":
        raise UserError(f"{p}: is a folder, expected an .mp4 file name")
    return p


def render(avatar: str | Path, audio: list[str | Path], output: str | Path | None = "out.mp4", *,
           checkpoint: str | Path | None = None, engine: str | None = None, device: str = "auto",
           batch_size: int | None = None, crop: str | None = None, frames_dir: str | Path | None = None,
           start_frame: int = 0, loop: str = "pingpong", silence_gate: bool = True, enhancer: str | None = None,
           progress: bool = True, generator=None, crf: int = 18, preset: str = "veryfast") -> RenderResult:
    """Render `audio` spoken by `avatar` into `output` (mp4) and/or `frames_dir` (PNGs). See module docstring.

    `generator` (a ready Generator) overrides engine/checkpoint/device (tests, benchmarks).
    """
    from preprocess.package import AvatarPackage
    from stream_wav2lip.atomic import atomic_dir, atomic_path

    from backend.engine import Engine
    from backend.enhancer import make_enhancer
    from backend.features import frames_for_samples
    from backend.generators import make_generator
    from backend.sinks.png import PngSink

    out_path = check_output(output)
    dir_path = check_output(frames_dir, "frames")
    if out_path is None and dir_path is None:
        raise UserError("nothing to write: give -o OUT.mp4 and/or --frames-dir DIR")
    package = AvatarPackage.open(avatar)
    speech = load_speech(list(audio))
    if generator is None:
        generator = make_generator(engine, checkpoint, device, package, crop=crop, batch_size=batch_size)
    if batch_size is None and getattr(generator, "device", None) is not None:  # offline: throughput first
        batch_size = 16 if generator.device.type == "cuda" else 8
    eng = Engine(package, generator, crop=crop, batch_size=batch_size, loop=loop, start_frame=start_frame,
                 silence_gate=silence_gate, enhancer=make_enhancer(enhancer, device))
    total = frames_for_samples(speech.size)
    if total > package.frame_count and package.frame_count * package.width * package.height * 3 <= PRELOAD_BYTES:
        package.preload(("bg", eng.crop))

    with _maybe(atomic_path, out_path) as tmp_mp4, _maybe(atomic_dir, dir_path) as tmp_dir:
        sinks = []
        mp4 = None
        if tmp_mp4 is not None:
            from backend.sinks.mp4 import Mp4Sink

            w, h = package.width, package.height
            mp4 = Mp4Sink(tmp_mp4, w, h, crf=crf, preset=preset)
            sinks.append(mp4)
        if tmp_dir is not None:
            sinks.append(PngSink(tmp_dir))
        bar = _progress(total, progress)
        t_start = time.perf_counter()
        written = 0
        try:
            eng.push(SpeechStartFrame(pts_ns=0))
            for k in range(0, speech.size, CHUNK_SAMPLES):
                eng.push(AudioFrame(pts_ns=0, pcm=speech[k:k + CHUNK_SAMPLES]))
                written += _write(eng.poll(), sinks, bar)
            eng.push(SpeechEndFrame(pts_ns=0))
            written += _write(eng.drain(), sinks, bar)
            for sink in sinks:
                sink.close()
        except BaseException:
            if mp4 is not None:
                mp4.abort()
            raise
        finally:
            if bar is not None:
                bar.close()
        seconds = time.perf_counter() - t_start
    if written != total:
        raise AssertionError(f"rendered {written} frames, expected {total}")
    stage_seconds = {name: st.busy_ns / 1e9 for name, st in eng.stats.items()}
    return RenderResult(written, int(speech.size), seconds, out_path, dir_path, generator.name, stage_seconds)


def _write(pairs, sinks, bar) -> int:
    for video, audio in pairs:
        for sink in sinks:
            sink.write(video, audio)
    if bar is not None and pairs:
        bar.update(len(pairs))
    return len(pairs)


def _progress(total: int, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="frame", desc="render", dynamic_ncols=True, smoothing=0.1)


class _maybe:
    """`with _maybe(ctx, value)`: ctx(value) when value is not None, else yields None."""

    def __init__(self, ctx, value):
        self.cm = ctx(value) if value is not None else None

    def __enter__(self):
        return self.cm.__enter__() if self.cm is not None else None

    def __exit__(self, *exc):
        return self.cm.__exit__(*exc) if self.cm is not None else False

"""Offline rendering: avatar package + speech file(s) → lip-synced mp4 (and optionally PNG frames).

One of the engine's two drivers (backend/engine.py; `serve` is the other): it drives the engine as fast as
the machine goes (features + network on the calling thread; compositing and encoding on worker threads, see
backend/post.py). Each audio file is decoded (any format) and is one utterance, as `say a.wav b.wav` queues
two on `serve`; they play back to back, each pushed in 1 s chunks, and every plan the engine releases goes
straight to the sinks. An utterance of n samples lasts ceil(n / 640) frames; the audio track holds every
frame's 40 ms (the last frame of each file but the final one padded with silence, as `serve` plays it), so
video and audio end together. Every bad input is a one-line `UserError`, raised before any output is
created; the mp4 is written under a temporary name and renamed only when complete.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from backend.frames import SAMPLES_PER_FRAME, AudioFrame, SpeechEndFrame, SpeechStartFrame
from stream_wav2lip.errors import UserError

CHUNK_SAMPLES = 16000  # 1 s per push: the engine works incrementally either way
KEEP_BYTES = 1 << 30  # avatars whose frames fit in 1 GB are decoded once, not on every ping-pong pass


@dataclass
class RenderResult:
    frames: int
    samples: int
    seconds: float
    output: Path | None
    frames_dir: Path | None
    generator: str
    stage_seconds: dict = field(default_factory=dict)
    encoder: str = ""  # the H.264 encoder used ("" when only PNG frames were written)
    precision: str = ""  # the network's precision (fp32, int8, fp16; "" for generators without one)
    detail: str = "off"  # the detail stage, as Engine.detail_status says it ("on, band cut at σ 0.60" or "off")

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


def load_speech(paths: list[str | Path]) -> list[np.ndarray]:
    """Every file decoded to 16 kHz mono float32, in order (one utterance each)."""
    from models.audio import load_audio

    if not paths:
        raise UserError("no --audio file given")
    return [load_audio(p) for p in paths]


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
           start_frame: int = 0, loop: str = "auto", silence_gate: bool = True, enhancer: str | None = None,
           progress: bool = True, generator=None, crf: int | None = None, preset: str | None = None,
           encoder: str = "auto", frame_cache: bool = True, precision: str = "auto",
           actions: list[tuple[str, float]] = (), background=None, detail: str = "auto") -> RenderResult:
    """Render `audio` spoken by `avatar` into `output` (mp4) and/or `frames_dir` (PNGs). See module docstring.

    `generator` (a ready Generator) overrides engine/checkpoint/device (tests, benchmarks).
    `frame_cache`: read (and on first use build) the package's decoded-frame cache (backend/frame_cache.py).
    `precision`: the network's (backend/generators/precision.py), auto | fp32 | int8 | fp16.
    `actions`: (name, seconds) cues: the avatar's action clips, each from its best entry at or after that time.
    `background`: a backend.background.Background; transparent needs an .webm or .mov output (or PNG frames).
    """
    from preprocess.package import AvatarPackage
    from stream_wav2lip.atomic import atomic_dir, atomic_path

    from backend.engine import Engine
    from backend.enhancer import make_enhancer
    from backend.features import frames_for_samples
    from backend.generators.registry import GeneratorOptions, make_generator
    from backend.post import PostWorker
    from backend.sinks.png import PngSink

    from backend.sinks.alpha_video import ALPHA_CONTAINERS, check_output_container

    out_path = check_output(output)
    dir_path = check_output(frames_dir, "frames")
    replaced = background is not None and background.needs_matte  # the footage's background is replaced
    if out_path is not None:
        check_output_container(out_path, background is not None and background.transparent)
    if out_path is None and dir_path is None:
        raise UserError("nothing to write: give -o OUT.mp4 and/or --frames-dir DIR")
    package = AvatarPackage.open(avatar)
    speeches = load_speech(list(audio))
    if generator is None:
        # on the CPU the network runs as one single-threaded stream per thread (backend.cpu_streams): compositing
        # and encoding then take only the CPU time they use from it
        generator = make_generator(engine, package, GeneratorOptions(checkpoint, device, crop, batch_size,
                                                                     cpu_streams=None, precision=precision))
    batch_size = batch_size or generator.throughput_batch  # offline: throughput first
    total = sum(frames_for_samples(s.size) for s in speeches)
    # mp4 only, even frame size: composite on I420 planes straight from the JPEGs or the frame cache
    alpha_file = out_path is not None and out_path.suffix.lower() in ALPHA_CONTAINERS
    i420 = dir_path is None and not replaced and not alpha_file and package.width % 2 == 0 and package.height % 2 == 0
    cache = None
    if i420 and frame_cache:
        from backend.frame_cache import FrameCache

        cache = FrameCache.open_or_build(package, frames_used=total, progress=progress,
                                         log=_note if progress else _quiet)
    eng = Engine(package, generator, crop=crop, batch_size=batch_size, loop=loop, start_frame=start_frame,
                 silence_gate=silence_gate, enhancer=make_enhancer(enhancer, device), frame_cache=cache,
                 background=background, detail=detail)
    for name, seconds in sorted(actions, key=lambda cue: cue[1]):
        eng.cue(name, at_k=int(round(seconds * 25)))
    comp = eng.compositor
    finish, load = (comp.finish_i420, comp.background_i420) if i420 else (comp.finish, package.frame)
    frame_bytes = package.width * package.height * (1.5 if i420 else 3)
    if cache is None and total > package.frame_count and package.frame_count * frame_bytes <= KEEP_BYTES:
        package.keep(("bg_i420" if i420 else "bg", eng.crop))  # later ping-pong passes reuse decoded frames

    with _maybe(atomic_path, out_path) as tmp_mp4, _maybe(atomic_dir, dir_path) as tmp_dir:
        sinks = []
        codec = ""
        # the network on the CPU: compositing/encoding take only the cycles it leaves (backend.post.lower_priority)
        on_cpu = generator.device_type == "cpu"
        try:
            if tmp_mp4 is not None and alpha_file:
                from backend.sinks.alpha_video import AlphaVideoSink

                sinks.append(AlphaVideoSink(tmp_mp4, package.width, package.height, atomic=False,
                                            alpha=background is not None and background.transparent))
                codec = sinks[-1].video.codec_context.name
            elif tmp_mp4 is not None:
                from backend.sinks.mp4 import Mp4Sink

                # one encoder thread when the network is on the CPU (x264's frame threads only add overhead
                # when every core is busy anyway); on a GPU host as many as x264 likes
                sinks.append(Mp4Sink(tmp_mp4, package.width, package.height, crf=crf, preset=preset, codec=encoder,
                                     threads=1 if on_cpu else 0, background_priority=on_cpu))
                codec = sinks[-1].codec
                if i420:  # composed frames are blended into the encoder's reusable frames
                    comp.frame_pool = sinks[-1].frame_pool
            if tmp_dir is not None:
                sinks.append(PngSink(tmp_dir))
        except BaseException:
            for sink in sinks:  # a later sink failed: stop the encoder thread of an earlier one
                if hasattr(sink, "abort"):
                    sink.abort()
            raise
        bar = _progress(total, progress)
        post = PostWorker(finish, load, sinks, idle_priority=on_cpu,
                          on_written=bar.update if bar is not None else None)
        t_start = time.perf_counter()
        try:
            for number, speech in enumerate(speeches, start=1):
                eng.push(SpeechStartFrame(pts_ns=0, speech_id=number))
                for k in range(0, speech.size, CHUNK_SAMPLES):
                    eng.push(AudioFrame(pts_ns=0, pcm=speech[k:k + CHUNK_SAMPLES], speech_id=number))
                    post.put(_take(eng, final=False))
                eng.push(SpeechEndFrame(pts_ns=0, speech_id=number))
                post.put(_take(eng, final=number == len(speeches)))
            post.close()
        except BaseException:
            post.abort()
            raise
        finally:
            if bar is not None:
                bar.close()
        seconds = time.perf_counter() - t_start
        written = post.written
    if written != total:
        raise AssertionError(f"rendered {written} frames, expected {total}")
    stage_seconds = {name: st.busy_ns / 1e9 for name, st in eng.stats.items() if name != "compositor"}
    stage_seconds["compositor"] = post.busy_ns / 1e9
    samples = (total - 1) * SAMPLES_PER_FRAME + (speeches[-1].size - 1) % SAMPLES_PER_FRAME + 1
    return RenderResult(written, samples, seconds, out_path, dir_path, generator.name, stage_seconds, codec,
                        generator.precision or "", eng.detail_status)


def _take(eng, final: bool) -> list:
    """Every plan the engine releases now, generated, as (video pending composition, audio) pairs. At the end
    of the last file the final frame's audio is cut to its real samples (the track ends with the speech)."""
    pairs = []
    while True:
        plans = eng.plan(force=final)
        if not plans:
            break
        eng.generate(plans)
        pairs += [eng.pair(p) for p in plans]
        last = plans[-1]
        if final and not eng.speech_pending and last.samples < SAMPLES_PER_FRAME:
            video, audio = pairs[-1]
            pairs[-1] = (video, replace(audio, pcm=audio.pcm[:last.samples]))
    return pairs


def _note(message: str) -> None:
    import sys

    print(message, file=sys.stderr)


def _quiet(message: str) -> None:
    pass


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

"""Video files that keep the avatar's transparency: `.webm` (VP9 with alpha + Opus) and `.mov` (ProRes 4444 with
alpha + 16-bit PCM), and the check that a transparent background goes to one of them.

Why these two: VP9 with alpha in WebM is what browsers and OBS's media source play with transparency, small
enough to share; ProRes 4444 in QuickTime is what video editors (Premiere, Resolve, Final Cut) import with alpha,
lossless-looking at ~10x the size. H.264/MP4 has no alpha channel at all, hence the one-line error for it.

How alpha travels: WebM stores VP9's alpha as a second VP9 stream in each block's BlockAdditional side data.
FFmpeg's own `vp9` decoder ignores it (frames come out yuv420p, opaque); the `libvpx-vp9` decoder reads it and
returns yuva420p. So anything that checks or plays our alpha from a .webm must decode with libvpx (OBS does: its
media source uses libvpx for VP9 when the file has alpha). ProRes 4444 carries alpha in the frame itself.

Frames in: `VideoFrame.image` BGRA (H, W, 4, straight alpha, from backend.background.composite) or BGR (opaque).
Odd frame sizes are padded by one edge pixel (4:2:0 needs even sizes). The file is written under a temporary
name beside the target and renamed by `close()` (stream_wav2lip.atomic), so a crash never leaves a half file
under the real name; `abort()` removes it.
"""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

from backend.frames import FPS, FRAME_NS, SAMPLE_RATE, AudioOutFrame, VideoFrame
from stream_wav2lip.errors import UserError

ALPHA_CONTAINERS = {".webm": "VP9 with alpha", ".mov": "ProRes 4444 with alpha"}
VP9_OPTIONS = {"deadline": "realtime", "cpu-used": "8", "row-mt": "1", "crf": "28", "b": "0", "auto-alt-ref": "0",
               "lag-in-frames": "0"}
PRORES_PROFILE_4444 = "4"


MP4_SUFFIXES = (".mp4", ".m4v")  # H.264 + AAC in an MP4 container


def check_output_container(path: str | Path, transparent: bool) -> None:
    """One-line UserError, before any work, for an output name whose kind render cannot write (a typo such as
    out.mp5 or out.mkv would otherwise get MP4 bytes under a name that says something else) or when a
    transparent background is asked of a container without an alpha channel."""
    suffix = Path(path).suffix.lower()
    kinds = ", ".join(f"{s} ({what})" for s, what in ALPHA_CONTAINERS.items())
    if suffix not in MP4_SUFFIXES and suffix not in ALPHA_CONTAINERS:
        what = f"{suffix} is not a video kind render writes" if suffix else "no file extension"
        raise UserError(f"{path}: {what}; name it .mp4 (H.264 + AAC), or {kinds}")
    if transparent and suffix not in ALPHA_CONTAINERS:
        raise UserError(f"{path}: {suffix} cannot carry transparency; with --background "
                        f"transparent write {kinds}, or pick a colour or image background")


class AlphaVideoSink:
    """`write(video, audio)` pairs in timeline order, then `close()` (or `abort()`). Container from the suffix.

    alpha: keep the alpha channel (yuva pixel formats); False writes an opaque file of the same kind (a colour
    or image background into .webm/.mov). audio: add the audio track (Opus in .webm, PCM in .mov).
    atomic: write to a temporary sibling and rename it into place on close() (False: write `path` directly,
    for a caller that does its own stream_wav2lip.atomic.atomic_path, as render does for the mp4 sink).
    """

    def __init__(self, path: str | Path, width: int, height: int, *, alpha: bool = True, audio: bool = True,
                 t0_ns: int = 0, atomic: bool = True, crf: int | None = None, threads: int = 0):
        import av

        self.path = Path(path)
        suffix = self.path.suffix.lower()
        if suffix not in ALPHA_CONTAINERS:
            raise UserError(f"{self.path}: not a container with alpha ({', '.join(ALPHA_CONTAINERS)})")
        self._atomic = None
        target = self.path
        if atomic:
            from stream_wav2lip.atomic import atomic_path

            self._atomic = atomic_path(self.path)
            target = self._atomic.__enter__()
        self.width, self.height = width + (width & 1), height + (height & 1)
        self.pad = (self.width - width, self.height - height)
        self.alpha = alpha
        self.t0_ns = t0_ns
        self.frames_written = 0
        self.samples_written = 0
        try:
            self.container = av.open(str(target), mode="w", format="webm" if suffix == ".webm" else "mov")
            if suffix == ".webm":
                self.video = self.container.add_stream("libvpx-vp9", rate=FPS)
                self.pix_fmt = "yuva420p" if alpha else "yuv420p"
                options = dict(VP9_OPTIONS)
                if crf is not None:
                    options["crf"] = str(int(crf))
            else:
                self.video = self.container.add_stream("prores_ks", rate=FPS)
                self.pix_fmt = "yuva444p10le" if alpha else "yuv422p10le"
                options = {"profile": PRORES_PROFILE_4444 if alpha else "2", "vendor": "apl0"}
                if alpha:
                    options["alpha_bits"] = "16"
            self.video.width, self.video.height = self.width, self.height
            self.video.pix_fmt = self.pix_fmt
            self.video.time_base = Fraction(1, FPS)
            self.video.codec_context.time_base = Fraction(1, FPS)
            self.video.options = options
            ctx = self.video.codec_context  # BT.601 limited range, like the mp4 sink (the conversion below uses it)
            ctx.color_range, ctx.colorspace, ctx.color_primaries, ctx.color_trc = 1, 6, 6, 6
            if threads:
                ctx.thread_count = int(threads)
            self.audio = None
            if audio:
                codec = "libopus" if suffix == ".webm" else "pcm_s16le"
                self.audio = self.container.add_stream(codec, rate=SAMPLE_RATE)
                self.audio.layout = "mono"
                self.audio.time_base = Fraction(1, SAMPLE_RATE)
                if codec == "libopus":
                    self.audio.bit_rate = 64_000
        except BaseException:
            self.abort()
            raise

    # ------------------------------------------------------------------ API
    def write(self, video: VideoFrame, audio: AudioOutFrame | None = None) -> None:
        frame = self._to_av(video.image)
        frame.pts = int(round((video.pts_ns - self.t0_ns) / FRAME_NS))
        for packet in self.video.encode(frame):
            self.container.mux(packet)
        self.frames_written += 1
        if self.audio is not None and audio is not None and audio.pcm.size:
            from backend.sinks.mp4 import write_audio_block

            self.samples_written = write_audio_block(self.container, self.audio, audio, self.t0_ns,
                                                     self.samples_written, "flt")

    def close(self) -> None:
        """Flush the encoders, finish the file and (atomic) rename it into place."""
        from backend.sinks.mp4 import finish_file

        try:
            finish_file(self.container, self.video, self.audio)
        except BaseException:
            self.abort()
            raise
        if self._atomic is not None:
            atomic, self._atomic = self._atomic, None
            atomic.__exit__(None, None, None)

    def abort(self) -> None:
        """Stop without finishing; the temporary file is removed (atomic)."""
        try:
            container = getattr(self, "container", None)
            if container is not None:
                container.close()
        except Exception:
            pass
        if self._atomic is not None:
            atomic, self._atomic = self._atomic, None
            try:
                raise RuntimeError("aborted")
            except RuntimeError as exc:
                try:
                    atomic.__exit__(RuntimeError, exc, exc.__traceback__)
                except RuntimeError:
                    pass

    # ------------------------------------------------------------------ internals
    def _to_av(self, image: np.ndarray):
        import av
        import cv2

        if image.ndim != 3 or image.shape[2] not in (3, 4):
            raise ValueError(f"expected a BGR or BGRA frame, got {image.shape}")
        alpha_out = self.pix_fmt.startswith("yuva")
        if image.shape[2] == 3 and alpha_out:
            image = cv2.cvtColor(image, cv2.COLOR_BGR2BGRA)  # opaque
        if self.pad != (0, 0):
            image = cv2.copyMakeBorder(image, 0, self.pad[1], 0, self.pad[0], cv2.BORDER_REPLICATE)
        fmt = "bgra" if image.shape[2] == 4 else "bgr24"
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format=fmt)
        frame = frame.reformat(format=self.pix_fmt, dst_colorspace="ITU601", dst_color_range="MPEG")
        if alpha_out:
            _write_alpha(frame, image[:, :, 3])
        return frame


def open_video_sink(path: str | Path, width: int, height: int, *, transparent: bool, audio: bool = True,
                    t0_ns: int = 0, **mp4_options):
    """The sink for an output file, chosen by its suffix: .webm/.mov -> AlphaVideoSink (alpha when
    `transparent`), anything else -> backend.sinks.mp4.Mp4Sink (which refuses nothing: call
    `check_output_container` first, before any work). The .webm/.mov sink writes atomically itself; the mp4
    sink writes `path` as given (wrap it in stream_wav2lip.atomic.atomic_path)."""
    check_output_container(path, transparent)
    if Path(path).suffix.lower() in ALPHA_CONTAINERS:
        return AlphaVideoSink(path, width, height, alpha=transparent, audio=audio, t0_ns=t0_ns)
    from backend.sinks.mp4 import Mp4Sink

    return Mp4Sink(path, width, height, audio=audio, t0_ns=t0_ns, **mp4_options)


def _write_alpha(frame, alpha: np.ndarray) -> None:
    """Put the exact alpha into the frame's alpha plane. libswscale's BGRA -> yuva444p10le now and then wrote
    a run of wrong alpha (512 of 1023: half transparent) into a row, a few frames in a hundred; the alpha
    needs no colour conversion, so it is written here directly (8 bits, or scaled to 10)."""
    plane = frame.planes[3]
    deep = frame.format.name.endswith("10le")
    dtype = np.uint16 if deep else np.uint8
    rows = np.frombuffer(plane, dtype).reshape(alpha.shape[0], -1)
    rows[:, :alpha.shape[1]] = _ALPHA_10BIT[alpha] if deep else alpha


_ALPHA_10BIT = ((np.arange(256, dtype=np.uint32) * 1023 + 127) // 255).astype(np.uint16)  # 8-bit alpha -> 10

"""`serve` wired together: avatar + generator loaded once, the live loop, its sinks, sources and control.

Outputs of session S (names stable, relied on by the OBS plugin and the tests; byte layouts in
docs/architecture.md, "Shared-memory protocol", and the shm_protocol package):
  /dev/shm/s2l_S_video       video ring, BGRA at the avatar's resolution, frame k published at pts_k
  /dev/shm/s2l_S_audio       audio ring, 16 kHz mono float32 blocks of 640 samples, pts = its frame's pts,
                             published `audio_lead_ms` (default 60) before that pts
  /dev/shm/sm_s2l_S_ctl      status (JSON), written by the control thread every 80 ms
  /dev/shm/sm_s2l_S_cmd      command mailbox (JSON), read by the same thread
  <runtime dir>/S.json       API port + token (0600)
"""
from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

from backend.live.commands import ServeCommands
from backend.live.loop import LiveLoop
from backend.sources.queue import SpeechQueue
from backend.yuv import frame_size
from stream_wav2lip.errors import UserError

log = logging.getLogger(__name__)
PRELOAD_LIMIT_BYTES = 768 << 20  # decode every frame up front when the whole avatar fits in this
STATUS_INTERVAL_S = 0.08  # status heartbeat (readers call a backend dead after 2 s) and mailbox polling


class ServeApp:
    """Owns every resource of one `serve` session; `close()` releases all of them (idempotent).

    `commands` (backend.live.commands.ServeCommands) is what the HTTP API and the mailbox call."""

    def __init__(self, session: str, avatar: str, *, engine: str | None = None, checkpoint: str | None = None,
                 device: str = "auto", crop: str | None = None, batch_size: int = 4, api_port: int | None = 0,
                 mic: str | None = None, mic_gate_db: float = -40.0, play_audio: str | None = None,
                 preview: bool = False, keep_latencies: bool = False, audio_lead_ms: float = 60.0,
                 idle: str = "auto", precision: str = "auto", background=None, detail: str = "auto"):
        from backend.cpu_streams import single_threaded_blas
        from backend.generators.registry import GeneratorOptions
        from backend.ipc.control import ControlChannel
        from shm_protocol.names import valid_session

        try:
            self.session = valid_session(session)
        except ValueError as exc:
            raise UserError(f"--session: {exc}") from None
        self.engine_name = engine
        single_threaded_blas()
        self.options = GeneratorOptions(checkpoint, device, crop, batch_size, precision=precision, parallel_calls=True)
        self.batch_size = batch_size
        self.idle = idle
        self.background = background
        self.detail = detail
        self.audio_lead_ms = audio_lead_ms
        self._closers: list = []
        self._closed = False
        self._control_stop = threading.Event()
        self.queue = SpeechQueue()
        self.commands = ServeCommands(self)
        try:
            self.control = ControlChannel(self.session)
        except FileExistsError as exc:
            raise UserError(str(exc)) from None
        self._closers.append(self.control.close)
        self._loading = self.control.keep_alive()  # heartbeat while loading; the control thread takes over
        self._closers.append(self._loading.set)
        try:
            self._open(avatar, api_port, mic, mic_gate_db, play_audio, preview, keep_latencies)
        except BaseException:
            self.close()
            raise

    def load_engine(self, avatar: str | Path, reuse=None):
        """Open the package, build the generator (or reuse the network: it does not depend on the avatar),
        preload frames when small, and warm everything up. The engine is the one `render` drives too."""
        from backend.engine import Engine
        from backend.generators.registry import make_generator
        from preprocess.package import AvatarPackage

        package = AvatarPackage.open(avatar, cache_frames=128)
        # a generator bound to the old avatar (calibration, an int8 network validated on it) is rebuilt
        generator = reuse if reuse is not None and not reuse.per_avatar else None
        if generator is None:
            generator = make_generator(self.engine_name, package, self.options)
        engine = Engine(package, generator, crop=self.options.crop, batch_size=self.batch_size, loop=self.idle,
                        background=self.background, detail=self.detail)
        self._prepare_frames(engine)
        engine.warm_up()
        return engine

    @staticmethod
    def _prepare_frames(engine) -> None:
        """Where the avatar's full frames come from while live, so none is decoded from a JPEG to BGR per frame.

        The decoded-frame cache (I420, memory-mapped; built by `preprocess`, else on the first start; shared
        with `render`): I420 frames composed and converted once into OBS's ring slot (backend/yuv.py); with a
        backdrop (BGR pixels laid over a colour, a picture or transparency) BGR frames converted from it. Without a cache (an odd size,
        no disk space), and past the first frames of footage too long for a whole one, JPEGs are decoded straight
        to I420, or to BGR with a backdrop. Frames are decoded up front when they all fit in
        PRELOAD_LIMIT_BYTES."""
        from backend.frame_cache import FrameCache

        package = engine.package
        cache = FrameCache.open_or_build(package, log=log.info, note=log.info)
        pixels = package.frame_count * package.width * package.height
        if engine.show_i420(cache):
            if cache is None and pixels * 1.5 <= PRELOAD_LIMIT_BYTES:
                package.keep(("bg_i420", engine.crop))
                for i in range(package.frame_count):
                    engine.compositor.background_i420(i)
            kinds = (engine.crop,)
        else:
            if cache is not None:
                package.decode_frames_with(cache.bgr)
            kinds = ("bg", engine.crop)
        if pixels * 3 <= PRELOAD_LIMIT_BYTES:
            package.preload(kinds)

    def _open(self, avatar, api_port, mic, mic_gate_db, play_audio, preview, keep_latencies) -> None:
        from backend.ipc.rings import AudioRingSink, VideoRingSink

        self.control.update(state="loading", avatar=Path(avatar).name, avatar_path=str(Path(avatar).resolve()))
        self.engine = self.load_engine(avatar)
        pkg = self.engine.package
        try:
            self.video = VideoRingSink(self.session, pkg.width, pkg.height)
            self._closers.append(lambda: self.video.close())
            self.audio = AudioRingSink(self.session)
            self._closers.append(self.audio.close)
        except FileExistsError as exc:
            raise UserError(str(exc)) from None
        self.video_generation = 1
        sinks = [self._ring_sink]
        if play_audio is not None:
            from backend.playback import PlaybackSink

            playback = PlaybackSink(play_audio or None)
            self._closers.append(playback.close)
            sinks.append(playback)
        if preview:
            from backend.preview import PreviewSink

            pv = PreviewSink(f"stream-wav2lip {self.session}")
            self._closers.append(pv.close)
            sinks.append(pv)
        self.loop = LiveLoop(self.queue, self.engine, sinks, audio_sinks=[self._audio_sink],
                             audio_lead_ms=self.audio_lead_ms)
        self.loop.stats.keep_all = keep_latencies
        self._closers.append(self.loop.stop)
        self.api = None
        if api_port is not None:
            from backend.api import ControlApi

            self.api = ControlApi(self.commands, self.session, api_port)
            self._closers.append(self.api.close)
        self.mic = None
        if mic is not None:
            from backend.sources.mic import MicrophoneSource

            self.mic = MicrophoneSource(self.queue, mic or None, open_db=mic_gate_db)
            self._closers.append(self.mic.close)
        self.control.update(state="idle", engine=self.engine.generator.name, width=pkg.width, height=pkg.height,
                            precision=self.engine.generator.precision,
                            video_segment=self.video.writer.name, audio_segment=self.audio.writer.name,
                            video_generation=self.video_generation,
                            api_port=self.api.port if self.api else None,
                            token_file=str(self.api.info_path) if self.api else None)

    # ------------------------------------------------------------------ running
    def start(self) -> None:
        if self.api is not None:
            self.api.start()
        self.loop.start()
        self._loading.set()
        control = threading.Thread(target=self._control_thread, name="s2l-control", daemon=True)
        control.start()
        self._closers.append(lambda: (self._control_stop.set(), control.join(2.0)))

    def wait(self, stop: threading.Event, duration: float | None = None, parent_pid: int | None = None) -> int:
        """Block until `stop` is set, the loop fails, a stop command arrives, `duration` passes or the process
        `parent_pid` (OBS, which started us) is gone: a backend orphaned by a crashed OBS exits by itself."""
        deadline = None if duration is None else time.monotonic() + duration
        parent = ParentWatch(parent_pid) if parent_pid else None
        while not stop.wait(0.1):
            if not self.loop.running:
                break
            if deadline is not None and time.monotonic() >= deadline:
                break
            if parent is not None and parent.gone():
                log.info("parent process %d is gone: stopping", parent.pid)
                break
        if self.loop.error is not None:
            self.control.update(state="error", error=f"{type(self.loop.error).__name__}: {self.loop.error}")
            return 1
        return 0

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if getattr(self, "_loading", None) is not None:
            self._loading.set()
        self._control_stop.set()
        try:
            self.control.update(state="stopping")
        except Exception:  # noqa: BLE001
            pass
        for closer in reversed(self._closers):
            try:
                closer()
            except Exception:  # noqa: BLE001 - release everything else anyway
                log.exception("while closing")

    # ------------------------------------------------------------------ sinks (publisher thread)
    def _ring_sink(self, plan, image) -> None:
        """Video frame k at pts_k (its audio block went out `audio_lead_ms` earlier, see `_audio_sink`)."""
        height, width = frame_size(image)
        if (height, width) != (self.video.height, self.video.width):
            self._resize_video_ring(width, height)
        self.video.publish(plan.pts_ns, plan.shown_index, image, plan.shown_generated, plan.repeated)

    def _audio_sink(self, plan) -> None:
        """Audio block k, `audio_lead_ms` before pts_k and stamped with pts_k: OBS must have audio before its
        timestamp, else it grows its audio buffering mid-stream and the offset drifts (docs/obs.md)."""
        self.audio.publish(plan.pts_ns, plan.audio, plan.speech)

    def _resize_video_ring(self, width: int, height: int) -> None:
        """A new avatar of another size: a new ring under the same name; readers re-open on video_generation."""
        from backend.ipc.rings import VideoRingSink

        self.video.close()
        self.video = VideoRingSink(self.session, width, height)
        self.video_generation += 1
        self.control.update(width=width, height=height, video_generation=self.video_generation)

    # ------------------------------------------------------------------ control thread
    def _control_thread(self) -> None:
        """Mailbox commands and the status heartbeat, every 80 ms, off the clock thread (a slow shared-memory
        write or a command's work can never delay a frame)."""
        while not self._control_stop.wait(STATUS_INTERVAL_S):
            try:
                for command in self.control.take_commands():
                    self.commands.run(command)
                self.control.update(**self.commands.status(control_only=True))
            except Exception:  # noqa: BLE001 - keep the heartbeat alive; the log says what broke
                log.exception("control thread")


class ParentWatch:
    """Is the process that started us still there? (`S2L_PARENT_PID`, set by the OBS plugin's supervisor.)

    `shm_protocol.liveness.pid_alive` works on Linux, macOS and Windows. On POSIX it also sees a parent that has died but
    is not reaped yet (a zombie still answers signal 0): if `pid` was our parent when we started, a changed
    getppid() means it has exited (orphans are re-parented at once)."""

    def __init__(self, pid: int):
        self.pid = int(pid)
        self._was_parent = os.name != "nt" and os.getppid() == self.pid

    def gone(self) -> bool:
        from shm_protocol.liveness import pid_alive

        if self._was_parent and os.getppid() != self.pid:
            return True
        return not pid_alive(self.pid)


def parent_pid_from_env(environ=os.environ) -> int | None:
    """The pid in `S2L_PARENT_PID`, or None when unset or not a positive integer (logged, then ignored)."""
    raw = environ.get("S2L_PARENT_PID", "").strip()
    if not raw:
        return None
    if not raw.isdigit() or int(raw) <= 0:
        log.warning("ignoring S2L_PARENT_PID=%r (not a process id)", raw)
        return None
    return int(raw)

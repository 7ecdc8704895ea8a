"""`serve` wired together: avatar + generator loaded once, the live loop, its sinks, sources and control.

Outputs of session S (names stable, relied on by the OBS plugin and the tests):
  /dev/shm/s2l_S_video       video ring (DESIGN §4), BGRA at the avatar's resolution, frame k published at pts_k
  /dev/shm/s2l_S_audio       audio ring, 16 kHz mono float32 blocks of 640 samples, pts = its frame's pts,
                             published `audio_lead_ms` (default 60) before that pts
  /dev/shm/sm_s2l_S_ctl      status dict  (shared-memory-dict, JSON)  -- see obs_plugin.control
  /dev/shm/sm_s2l_S_cmd      command mailbox (shared-memory-dict, JSON)
  <runtime dir>/S.json       API port + token (0600)
"""
from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

import numpy as np

from backend.generator import NullGenerator
from backend.live import AvatarView, LiveLoop, face_crop
from backend.sources.queue import SpeechQueue
from stream_wav2lip.errors import UserError

log = logging.getLogger(__name__)
PRELOAD_LIMIT_BYTES = 768 << 20  # decode every frame up front when the whole avatar fits in this


def load_view(avatar: str | Path, engine: str | None, checkpoint: str | None, device: str, crop: str | None,
              batch_size: int, generator=None) -> AvatarView:
    """Open the package, build (or reuse) the generator and the compositor, preload frames when small.

    crop None = the engine's own choice (the mouth engine's sharper whole-head crop, "head" otherwise)."""
    from backend.compositor import Compositor
    from preprocess.package import AvatarPackage

    package = AvatarPackage.open(avatar, cache_frames=128)
    if generator is None:
        generator = make_live_generator(engine, checkpoint, device, package, crop, batch_size)
    if package.frame_count * package.width * package.height * 3 <= PRELOAD_LIMIT_BYTES:
        package.preload(("bg", face_crop(generator)))
    view = AvatarView(package, generator, Compositor(package))
    from backend.live import Renderer

    Renderer(view).warm_up()
    return view


def make_live_generator(engine: str | None, checkpoint: str | None, device: str, package, crop: str | None,
                        batch_size: int):
    null_crop = crop or "head"  # crop None = the generator's own default (make_generator decides)
    null = NullGenerator(package.head_size if null_crop == "heads" else package.face_size, null_crop)
    if engine == "null":
        return null
    from backend.generators import default_engine, make_generator

    engine = engine or default_engine(checkpoint)
    try:
        return make_generator(engine, checkpoint, device, package, crop=crop, batch_size=batch_size)
    except UserError as exc:
        if engine == "mouth" and "not available" in str(exc):
            log.warning("%s; using the null generator (footage mouth only)", exc)
            return null
        raise


class ServeApp:
    """Owns every resource of one `serve` session; `close()` releases all of them (idempotent)."""

    def __init__(self, session: str, avatar: str, *, engine: str | None = None, checkpoint: str | None = None,
                 device: str = "auto", crop: str | None = None, batch_size: int = 4, api_port: int | None = 0,
                 mic: str | None = None, mic_gate_db: float = -40.0, play_audio: str | None = None,
                 preview: bool = False, keep_latencies: bool = False, audio_lead_ms: float = 60.0):
        from backend.ipc.control import ControlChannel
        from obs_plugin.control import valid_session

        try:
            self.session = valid_session(session)
        except ValueError as exc:
            raise UserError(f"--session: {exc}") from None
        self.engine, self.checkpoint, self.device, self.crop = engine, checkpoint, device, crop
        self.batch_size = batch_size
        self.audio_lead_ms = audio_lead_ms
        self._closers: list = []
        self._closed = False
        self._status_tick = 0
        self._switching = threading.Lock()
        self.queue = SpeechQueue()
        try:
            self.control = ControlChannel(self.session)
        except FileExistsError as exc:
            raise UserError(str(exc)) from None
        self._closers.append(self.control.close)
        self._loading = self.control.keep_alive()  # heartbeat while loading; the clock takes over in start()
        self._closers.append(self._loading.set)
        try:
            self._open(avatar, api_port, mic, mic_gate_db, play_audio, preview, keep_latencies)
        except BaseException:
            self.close()
            raise

    def _open(self, avatar, api_port, mic, mic_gate_db, play_audio, preview, keep_latencies) -> None:
        from backend.ipc.rings import AudioRingSink, VideoRingSink

        self.control.update(state="loading", avatar=Path(avatar).name, avatar_path=str(Path(avatar).resolve()))
        view = load_view(avatar, self.engine, self.checkpoint, self.device, self.crop, self.batch_size)
        self.view = view
        pkg = view.package
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
        self.loop = LiveLoop(self.queue, view, sinks, batch_size=self.batch_size, on_tick=self._tick,
                             audio_sinks=[self._audio_sink], audio_lead_ms=self.audio_lead_ms)
        self.loop.stats.keep_all = keep_latencies
        self._closers.append(self.loop.stop)
        self.api = None
        if api_port is not None:
            from backend.api import ControlApi

            self.api = ControlApi(self, self.session, api_port)
            self._closers.append(self.api.close)
        self.mic = None
        if mic is not None:
            from backend.sources.mic import MicrophoneSource

            self.mic = MicrophoneSource(self.queue, mic or None, open_db=mic_gate_db)
            self._closers.append(self.mic.close)
        self.control.update(state="idle", engine=view.generator.name, width=pkg.width, height=pkg.height,
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
        try:
            self.control.update(state="stopping")
        except Exception:  # noqa: BLE001
            pass
        for closer in reversed(self._closers):
            try:
                closer()
            except Exception:  # noqa: BLE001 - release everything else anyway
                log.exception("while closing")

    # ------------------------------------------------------------------ sinks and ticks (publisher thread)
    def _ring_sink(self, plan, image: np.ndarray) -> None:
        """Video frame k at pts_k (its audio block went out `audio_lead_ms` earlier, see `_audio_sink`)."""
        if image.shape[:2] != (self.video.height, self.video.width):
            self._resize_video_ring(image.shape[1], image.shape[0])
        self.video.publish(plan.pts_ns, plan.shown_index, image, plan.shown_generated, plan.repeated)

    def _audio_sink(self, plan) -> None:
        """Audio block k, `audio_lead_ms` before pts_k and stamped with pts_k: OBS must have audio before its
        timestamp (obs-notes §5), else it grows its audio buffering mid-stream and the offset drifts."""
        self.audio.publish(plan.pts_ns, plan.audio, plan.speech)

    def _resize_video_ring(self, width: int, height: int) -> None:
        """A new avatar of another size: a new ring under the same name; readers re-open on video_generation."""
        from backend.ipc.rings import VideoRingSink

        self.video.close()
        self.video = VideoRingSink(self.session, width, height)
        self.video_generation += 1
        self.control.update(width=width, height=height, video_generation=self.video_generation)

    def _tick(self, loop: LiveLoop) -> None:
        self._status_tick += 1
        if self._status_tick % 2:
            return  # every 80 ms: status heartbeat (<= 100 ms) and command mailbox
        for command in self.control.take_commands():
            self._command(command)
        self.control.update(**self.status(control_only=True))

    def _command(self, command: dict) -> None:
        name = command.get("cmd")
        try:
            if name == "flush":
                self.flush()
            elif name == "switch_avatar":
                self.switch_avatar(str(command.get("avatar", "")), wait=False)
            elif name == "stop":
                self.loop.stop(timeout=0)
            elif name == "pause":
                self.queue.paused = True
                self.flush()
            elif name == "start":
                self.queue.paused = False
            else:
                self.control.update(error=f"unknown command {name!r}")
        except UserError as exc:
            self.control.update(error=str(exc))

    # ------------------------------------------------------------------ API operations
    def status(self, control_only: bool = False) -> dict:
        stats = self.loop.stats
        now = time.monotonic_ns()
        p50, p95 = stats.percentile(50), stats.percentile(95)
        state = "paused" if self.queue.paused else ("speaking" if self.loop.speaking else "idle")
        if self.loop.error is not None:
            state = "error"
        values = {
            "state": state,
            "fps": stats.rate(stats.publish_times, now),
            "render_fps": stats.rate(stats.render_times, now),
            "latency_ms": None if p50 is None else round(p50, 1),
            "latency_p95_ms": None if p95 is None else round(p95, 1),
            "queue_ms": round(self.loop.queued_samples() / 16.0, 1),
            "frames_published": stats.published,
            "frames_repeated": stats.repeated,
        }
        if control_only:
            return values
        return {**self.control.values, **values}

    def say(self, paths: list[str]) -> list[dict]:
        from backend.sources.files import queue_files

        if self.queue.paused:
            raise UserError("the backend is paused (send the start command first)")
        utterances = queue_files(self.queue, paths)
        return [{"id": u.id, "seconds": round(u.n / 16000, 3), "file": u.label} for u in utterances]

    def stream_pcm(self, chunks, rate: int, channels: int, fmt: str) -> dict:
        from backend.sources.pcm import PcmDecoder

        decoder = PcmDecoder(rate, channels, fmt)
        utt = self.queue.open("pcm")
        received = 0
        try:
            for data in chunks:
                received += len(data)
                utt.append(decoder.feed(data))
            utt.append(decoder.finish())
        finally:
            utt.end()
        return {"id": utt.id, "seconds": round(utt.n / 16000, 3), "bytes": received,
                "flushed": bool(utt.cancelled)}

    def flush(self) -> int:
        return self.loop.flush()

    def switch_avatar(self, avatar: str, wait: bool = True) -> dict:
        """Load `avatar` with the current generator settings and switch to it (in the background if not `wait`)."""
        from preprocess.package import is_avatar_package

        if not is_avatar_package(avatar):
            raise UserError(f"{avatar}: not an avatar package")

        def load():
            with self._switching:
                try:
                    self.control.update(state="loading")
                    view = load_view(avatar, self.engine, self.checkpoint, self.device, self.crop, self.batch_size,
                                     generator=self._reusable_generator())
                    self.loop.switch_avatar(view)
                    self.view = view
                    self.control.update(avatar=Path(avatar).name, avatar_path=str(Path(avatar).resolve()),
                                        error="")
                except UserError as exc:
                    self.control.update(error=str(exc))
                    raise

        if wait:
            load()
        else:
            threading.Thread(target=load, name="s2l-switch", daemon=True).start()
        return {"avatar": str(Path(avatar).resolve()), "switching": not wait}

    def _reusable_generator(self):
        """The network does not depend on the avatar: keep it (loading weights again would stall)."""
        gen = self.view.generator
        return None if gen.name == "mouth" else gen


class ParentWatch:
    """Is the process that started us still there? (`S2L_PARENT_PID`, set by the OBS plugin's supervisor.)

    `shm_layout.pid_alive` works on Linux, macOS and Windows. On POSIX it also sees a parent that has died but
    is not reaped yet (a zombie still answers signal 0): if `pid` was our parent when we started, a changed
    getppid() means it has exited (orphans are re-parented at once)."""

    def __init__(self, pid: int):
        self.pid = int(pid)
        self._was_parent = os.name != "nt" and os.getppid() == self.pid

    def gone(self) -> bool:
        from obs_plugin.shm_layout import pid_alive

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


def default_session() -> str:
    return os.environ.get("S2L_SESSION", "default")

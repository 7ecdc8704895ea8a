"""Per-source pusher thread: shared-memory rings -> `obs_source_output_video/audio` with the backend's pts.

This is the only data path into OBS. It runs on its own thread, so OBS's graphics thread never executes
Python (a GIL stall there freezes all of OBS: docs/obs.md, "Facts about OBS this plugin relies on"). libobs
copies every frame and audio block it is handed, so pointers into our own numpy copies are valid for the duration of the call only.

The rings are opened with plain mmap (`RingReader`), never `multiprocessing.shared_memory`, which would
unlink the backend's segments when OBS exits (same section of docs/obs.md). When the backend restarts, its
new segment has the same name but a new inode: the reader notices and re-maps. While no backend writes, the source
simply keeps showing the last frame (OBS holds it), which is the "idle frame" the user sees.
"""
from __future__ import annotations

import ctypes
import os
import sys
import threading
import time
from typing import Callable

from obs_plugin import libobs
from shm_protocol.layout import AUDIO_MAGIC, SAMPLE_F32, VIDEO_MAGIC
from shm_protocol.liveness import monotonic_ns
from shm_protocol.names import audio_name, video_name
from shm_protocol.reader import RingReader

POLL_S = 0.004  # 250 Hz: a 25 fps frame is picked up within 4 ms of being published
RECHECK_S = 0.5  # how often to check that the mapped segment is still the live one
# Both streams are presented this long after their pts, so that frames that arrive a little late (a backend
# thread delayed by a busy CPU) still keep their slot. Audio needs no slack: `serve` publishes each block
# 60 ms before its pts (--audio-lead-ms), so it always reaches OBS before its timestamp (late audio makes
# libobs grow its audio buffering mid-stream, which shifted audio by a frame or more in recordings; the slack
# was 60 ms while the backend published audio just in time). Measured with 20 ms, real OBS recordings: median
# A/V offset -12.5 ms (footage mouth), +7.0 / -3.2 ms (Wav2Lip 96 on a busy 2-core CPU), +14.8 ms (stand-in backend).
SYNC_SLACK_NS = int(os.environ.get("S2L_OBS_SLACK_MS", "20")) * 1_000_000


class _Ring:
    """One mapped ring plus the inode it was opened from (to detect a restarted writer)."""

    def __init__(self, name: str, magic: bytes):
        self.name = name
        self.magic = magic
        self.reader: RingReader | None = None
        self.inode = None
        self.next_check = 0.0

    def ensure_open(self, now: float) -> RingReader | None:
        if now < self.next_check:
            return self.reader
        self.next_check = now + (RECHECK_S if self.reader is not None else 0.1)
        identity = _segment_identity(self.name, self.reader)
        if identity is None:
            self.close()
            return None
        if self.reader is not None and identity == self.inode:
            return self.reader
        self.close()
        try:
            reader = RingReader(self.name)
        except (OSError, ValueError):
            return None  # being created right now, or not ours: try again shortly
        if reader.header.magic != self.magic:
            reader.close()
            return None
        self.reader, self.inode = reader, _segment_identity(self.name, reader)
        return reader

    def close(self) -> None:
        if self.reader is not None:
            self.reader.close()
        self.reader = None
        self.inode = None


def _segment_identity(name: str, reader: RingReader | None):
    """What changes when a backend re-creates its segment under the same name (None: no segment).

    Linux: the inode of /dev/shm/<name>. Windows (named mappings have no inode): while our own mapping
    keeps the old one alive the name resolves to it, so the writer pid in its header is used instead.
    """
    if sys.platform != "win32":
        try:
            return os.stat(f"/dev/shm/{name}").st_ino
        except OSError:
            return None
    if reader is not None:  # pragma: no cover - Windows
        return reader.header.pid if reader.writer_alive() else None
    try:  # pragma: no cover - Windows
        probe = RingReader(name)
    except (OSError, ValueError):
        return None
    pid = probe.header.pid  # pragma: no cover
    probe.close()  # pragma: no cover
    return pid  # pragma: no cover


class Pusher:
    """Feeds one OBS source from the rings of one backend session.

    `audio_delay_ms()` is read for every block, so the panel's "audio delay" applies live.
    `stats` (read by the panel) holds fps, the newest pts and whether a writer is alive.
    """

    def __init__(self, lib: ctypes.CDLL, source, session: str, audio_delay_ms: Callable[[], int]):
        """`source` is the source's `persist.SourceRef`: every output call holds it, so the source cannot be
        freed under a call, and outputs stop by themselves once libobs destroys it."""
        self.lib = lib
        self.source = source
        self.session = session
        self.audio_delay_ms = audio_delay_ms
        self.stats = {"fps": 0.0, "frames": 0, "audio_blocks": 0, "writer_alive": False, "last_pts": 0,
                      "speech": False, "heartbeat_ns": 0}
        self._skipped = {"overwritten before shown": 0, "overwritten while OBS copied it": 0}  # logged at stop
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"s2l-pusher-{session}", daemon=True)
        self._frame = libobs.SourceFrame()
        self.audio_bias_ns = 16_666_666
        self._audio = libobs.SourceAudio()

    def start(self) -> None:
        with self.source.use() as ptr:
            if ptr:
                self.lib.obs_source_set_async_unbuffered(ptr, True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    # ------------------------------------------------------------------ loop
    def _run(self) -> None:
        session = None
        video = audio = None
        times: list[float] = []
        queue: list = []  # video slots published ahead of their pts, waiting for their turn
        try:
            self.audio_bias_ns = int(self.lib.obs_get_frame_interval_ns()) // 2
        except Exception:  # noqa: BLE001
            self.audio_bias_ns = 16_666_666
        while not self._stop.is_set():
            wait = POLL_S
            try:
                if session != self.session:
                    if video is not None:
                        video.close()
                        audio.close()
                    session = self.session
                    video = _Ring(video_name(session), VIDEO_MAGIC)
                    audio = _Ring(audio_name(session), AUDIO_MAGIC)
                    queue.clear()
                now = time.monotonic()
                vr = video.ensure_open(now)
                ar = audio.ensure_open(now)
                if ar is not None:
                    for slot in ar.poll_all():  # audio goes in as early as possible; its pts places it
                        self._push_audio(ar, slot)
                if vr is not None:
                    queue.extend(vr.poll_all(payload=False))  # pixels are read only for the slot shown
                    due, wait = _take_due(queue, monotonic_ns() - SYNC_SLACK_NS, wait)
                    if due is not None:
                        self._push_video(vr, due)
                        times.append(now)
                        if len(times) > 50:
                            del times[:-50]
                    alive = vr.writer_alive()
                    self.stats["writer_alive"] = alive
                    self.stats["heartbeat_ns"] = vr.heartbeat_ns if alive else 0
                else:
                    queue.clear()
                    self.stats["writer_alive"] = False
                    self.stats["heartbeat_ns"] = 0
                if len(times) >= 2 and now - times[-1] < 1.0:
                    self.stats["fps"] = (len(times) - 1) / max(times[-1] - times[0], 1e-6)
                else:
                    self.stats["fps"] = 0.0
            except Exception as exc:  # noqa: BLE001 - keep feeding; a bad slot must not kill the thread
                libobs.log(self.lib, libobs.LOG_WARNING, f"pusher {self.session}: {exc!r}")
                wait = 0.2
            self._stop.wait(wait)
        if video is not None:
            video.close()
            audio.close()
        if any(self._skipped.values()):
            libobs.log(self.lib, libobs.LOG_WARNING, f"pusher {self.session}: video slots "
                       + ", ".join(f"{what}: {n}" for what, n in self._skipped.items()))

    def _push_video(self, ring: RingReader, slot) -> None:
        """Hand one slot to OBS. libobs copies the pixels inside obs_source_output_video, so they are passed
        straight from the ring when the writer cannot reach the slot meanwhile (the usual case: frames are
        published at their pts), else from a consistent copy; a slot already overwritten is skipped."""
        borrowed = ring.borrow(slot.sequence)
        if borrowed is not None:
            payload, lock = borrowed
        else:
            copy = ring.read_slot(slot.sequence)
            if copy is None:
                self._skipped["overwritten before shown"] += 1
                return
            payload, lock = copy.payload, None
        h = ring.header
        f = self._frame
        f.data[0] = payload.ctypes.data
        f.linesize[0] = h.stride
        f.width = h.width
        f.height = h.height
        f.timestamp = max(0, slot.pts_ns + SYNC_SLACK_NS)
        f.format = libobs.VIDEO_FORMAT_BGRA
        f.full_range = True
        with self.source.use() as ptr:
            if not ptr:
                return
            self.lib.obs_source_output_video(ptr, ctypes.byref(f))
        if lock is not None and not ring.unchanged(slot.sequence, lock):
            self._skipped["overwritten while OBS copied it"] += 1  # the writer lapped the ring (a burst)
        self.stats["frames"] += 1
        self.stats["last_pts"] = slot.pts_ns
        self.stats["speech"] = bool(slot.flags & 1)

    def _push_audio(self, ring: RingReader, slot) -> None:
        h = ring.header
        frames = int(slot.index)
        if frames <= 0 or frames > h.frames_per_block:
            return
        a = self._audio
        a.data[0] = slot.payload.ctypes.data
        a.frames = frames
        a.speakers = libobs.SPEAKERS_STEREO if h.channels == 2 else libobs.SPEAKERS_MONO
        a.format = libobs.AUDIO_FORMAT_FLOAT if h.sample_format == SAMPLE_F32 else libobs.AUDIO_FORMAT_16BIT
        a.samples_per_sec = h.sample_rate
        try:
            delay_ns = int(self.audio_delay_ms()) * 1_000_000
        except Exception:  # noqa: BLE001
            delay_ns = 0
        # OBS shows a frame at the first render tick after it is handed over (unbuffered mode), on average
        # half a tick after its pts; the audio is placed exactly at its timestamp, so it gets the same
        # half tick. libobs keeps continuous audio continuous (it ignores timestamp jitter < 70 ms), so this
        # bias and the user's delay take effect from the first block after a (re)start or a gap.
        a.timestamp = max(0, slot.pts_ns + SYNC_SLACK_NS + self.audio_bias_ns + delay_ns)
        with self.source.use() as ptr:
            if not ptr:
                return
            self.lib.obs_source_output_audio(ptr, ctypes.byref(a))
        self.stats["audio_blocks"] += 1


def _take_due(queue: list, now_ns: int, wait: float):
    """Pop the newest slot whose pts has come (older due ones are dropped); also how long to sleep.

    A backend may publish frames ahead of their pts; in unbuffered mode OBS would show them at once,
    so they are held here until their pts. A pts more than 2 s ahead (a foreign clock) is shown at once.
    """
    due = None
    keep = []
    for slot in queue:
        early = slot.pts_ns - now_ns
        if early <= 0 or early > 2_000_000_000:
            due = slot
        else:
            keep.append(slot)
            wait = min(wait, early / 1e9)
    if due is not None:
        keep = [s for s in keep if s.sequence > due.sequence]
    queue[:] = keep
    return due, max(wait, 0.0005)

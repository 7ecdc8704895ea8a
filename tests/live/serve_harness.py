"""Start a real `stream-wav2lip serve` process and read its rings from the test process (e2e helpers)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import shm_protocol as C
import shm_protocol as S

REPO = Path(__file__).resolve().parents[2]


def segments(session: str) -> list[str]:
    names = [S.video_name(session), S.audio_name(session), C.status_segment(session), C.command_segment(session)]
    return [n for n in names if os.path.exists(f"/dev/shm/{n}")]


class ServeProcess:
    def __init__(self, session: str, avatar: Path, *extra: str, env: dict | None = None,
                 new_session: bool = True):
        self.session = session
        cmd = [sys.executable, "-m", "stream_wav2lip", "serve", "--avatar", str(avatar), "--session", session,
               "--quiet", *extra]
        self.proc = subprocess.Popen(cmd, cwd=REPO, env={**os.environ, **(env or {})},
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     start_new_session=new_session)
        self.control = C.ControlClient(session)

    def wait_ready(self, timeout: float = 60.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                out, err = self.proc.communicate()
                raise RuntimeError(f"serve exited with {self.proc.returncode}: {err[-2000:]}")
            status = self.control.status()
            if status and status.get("state") in ("idle", "speaking") and status.get("pid") == self.proc.pid:
                return status
            time.sleep(0.05)
        raise TimeoutError("serve did not become ready")

    def stop(self, sig=signal.SIGTERM, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.stderr = self.proc.stderr.read() if self.proc.stderr else ""
        return self.proc.returncode

    def kill_group(self) -> None:
        """kill -9 of the backend and everything it started (its resource tracker too), as a crash would."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


@dataclass
class Capture:
    """Every video and audio slot read while `collect` ran (copies)."""

    video: list = field(default_factory=list)
    audio: list = field(default_factory=list)


def open_readers(session: str, timeout: float = 10.0) -> tuple[S.RingReader, S.RingReader]:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return S.RingReader(S.video_name(session)), S.RingReader(S.audio_name(session))
        except FileNotFoundError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def collect(video: S.RingReader, audio: S.RingReader, seconds: float, cap: Capture | None = None,
            until=None) -> Capture:
    """Poll both rings every 5 ms for `seconds` (or until `until(cap)` is true)."""
    cap = cap or Capture()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        cap.video += video.poll_all()
        cap.audio += audio.poll_all()
        if until is not None and until(cap):
            break
        time.sleep(0.005)
    return cap


def shown_footage(package):
    """What `serve` shows of avatar frame i: the frame from the package's decoded-frame cache (I420, which serve
    builds on its first start), converted to BGR as serve converts it into the ring. That is the JPEG's picture
    up to chroma rounding and upsampling (checked here once per package: >= 40 dB; real footage 48-50 dB)."""
    from backend.frame_cache import FrameCache
    from models.onnx_int8 import psnr

    cache = FrameCache.open(package)
    assert cache is not None, f"{package.root}: serve did not build the decoded-frame cache"
    assert psnr(cache.frame(0).to_bgr(), package.frame(0), peak=255.0) >= 40.0
    return lambda i: cache.frame(i).to_bgr()

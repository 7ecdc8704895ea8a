"""A stand-in for `stream-wav2lip serve` used by the OBS tests: same rings, same control channel, no model.

Invoked like the real backend (the OBS plugin runs `<backend_python> -m stream_wav2lip serve --session S
--avatar DIR ...`; the tests point `backend_python` at a wrapper that runs this file instead).

Video (25 fps, 640x360 BGRA): a solid colour derived from the avatar folder name, and the frame counter as
16 black/white 8x8 blocks in the top-left row. Audio (16 kHz mono float32, 40 ms blocks): silence.
`--test-pattern av-sync`: once a second, two white frames and a 1 kHz beep that starts at the same pts.
Commands: `flush` (recorded in the status), `switch_avatar` (changes the colour). Exits cleanly on SIGTERM/SIGINT.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from backend.ipc.control import ControlChannel  # noqa: E402
from shm_protocol import (FLAG_SPEECH, RingWriter, audio_header, audio_name, pid_alive,  # noqa: E402
                         video_header, video_name)

FPS = 25
W, H = 640, 360
RATE = 16000
BLOCK = RATE // FPS  # 640 samples = one frame of audio
AUDIO_LEAD = 3  # audio blocks are published 120 ms before their pts
VIDEO_LEAD = 1  # frames 40 ms before their pts (the plugin holds them until their pts)


def avatar_colour(avatar: str) -> tuple[int, int, int]:
    """BGR colour of an avatar folder name (deterministic, bright enough to tell apart)."""
    d = hashlib.sha1(Path(avatar).name.encode()).digest()
    return 60 + d[0] % 160, 60 + d[1] % 160, 60 + d[2] % 160


def draw(frame: np.ndarray, colour, counter: int, white: bool) -> None:
    frame[:, :, :3] = 255 if white else colour
    frame[:, :, 3] = 255
    for bit in range(16):
        frame[0:8, bit * 8:(bit + 1) * 8, :3] = 255 if (counter >> bit) & 1 else 0


def decode_counter(rgb: np.ndarray, scale_x: float = 1.0, scale_y: float = 1.0) -> int:
    """Inverse of draw() on an RGB screenshot of the source (scaled by scale_x/scale_y)."""
    value = 0
    y = int(4 * scale_y)
    for bit in range(16):
        x = int((bit * 8 + 4) * scale_x)
        if rgb[y, x].mean() > 127:
            value |= 1 << bit
    return value


def main(argv: list[str]) -> int:
    if argv[:3] == ["-m", "stream_wav2lip", "serve"]:
        argv = argv[3:]
    p = argparse.ArgumentParser()
    p.add_argument("--session", required=True)
    p.add_argument("--avatar", required=True)
    p.add_argument("--checkpoint", default="")
    p.add_argument("--device", default="auto")
    p.add_argument("--mic", nargs="?", const="default")
    p.add_argument("--api-port", type=int, default=0)
    p.add_argument("--test-pattern", default="")
    args, _unknown = p.parse_known_args(argv)
    av_sync = args.test_pattern == "av-sync" or os.environ.get("FAKE_BACKEND_PATTERN") == "av-sync"
    stop = False

    def on_signal(_sig, _frm):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    ctl = ControlChannel(args.session)
    video = RingWriter(video_name(args.session), video_header(W, H, 4))
    audio = RingWriter(audio_name(args.session), audio_header(RATE, 1, BLOCK, 128))
    avatar = args.avatar
    colour = avatar_colour(avatar)
    flushes = 0
    ctl.update(state="running", avatar=Path(avatar).name, avatar_path=avatar, engine="fake", width=W, height=H,
               fps=float(FPS), latency_ms=0.0, flushes=0)
    beep = (0.5 * np.sin(2 * np.pi * 1000 * np.arange(BLOCK) / RATE)).astype(np.float32)
    silence = np.zeros(BLOCK, np.float32)
    parent = int(os.environ.get("S2L_PARENT_PID") or 0)
    t0 = time.monotonic_ns() + 50_000_000

    def publish_audio(j: int) -> None:
        """Audio block j (pts of frame j), published AUDIO_LEAD frames early like a backend that has it ready."""
        on = av_sync and j % FPS in (0, 1) and j >= FPS
        audio.publish(t0 + j * 1_000_000_000 // FPS, BLOCK, FLAG_SPEECH if on else 0, payload=beep if on else silence)

    for j in range(AUDIO_LEAD):
        publish_audio(j)
    k = 0
    try:
        while not stop:
            pts = t0 + k * 1_000_000_000 // FPS
            delay = (pts - VIDEO_LEAD * 1_000_000_000 // FPS - time.monotonic_ns()) / 1e9
            if delay > 0:
                time.sleep(delay)
            flash = av_sync and k % FPS in (0, 1) and k >= FPS
            video.publish(pts, k, FLAG_SPEECH if flash else 0,
                          fill=lambda flat, k=k, flash=flash: draw(video.video_view(video.published), colour, k, flash))
            publish_audio(k + AUDIO_LEAD)
            for cmd in ctl.take_commands():
                if cmd.get("cmd") == "switch_avatar":
                    avatar = str(cmd.get("avatar", avatar))
                    colour = avatar_colour(avatar)
                    ctl.update(avatar=Path(avatar).name, avatar_path=avatar)
                elif cmd.get("cmd") == "flush":
                    flushes += 1
                    ctl.update(flushes=flushes)
            if k % 5 == 0:
                ctl.heartbeat()
                if parent and not pid_alive(parent):
                    break  # OBS died without stopping us
            k += 1
    finally:
        video.close()
        audio.close()
        ctl.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""`stream-wav2lip serve` with one test-only change: a frame whose audio block starts with a loud onset, and the
frame after it, are painted white before they are published.

Everything else is the real backend (clock, planner, speech path, rings), so `say`ing a file of beeps that start on
40 ms frame boundaries makes the real backend emit a flash and a beep at the same pts. The A/V test then measures
what reaches OBS's recording. Used as `backend_python` through a small shell wrapper (see test_obs_serve.py).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

LOUD = 0.2


def install_flash() -> None:
    from backend import serve_app
    from backend.yuv import frame_size

    original = serve_app.ServeApp._ring_sink
    state = {"left": 0, "prev_loud": False}

    def ring_sink_with_flash(self, plan, image):
        block = np.asarray(plan.audio, dtype=np.float32).reshape(-1)
        loud = np.flatnonzero(np.abs(block) > LOUD)
        if loud.size and not state["prev_loud"]:
            state["left"] = 2  # two frames: a single 25 fps frame can fall between two 30 fps ticks
            # the beep may start inside this frame's 40 ms block: report where, so the test can subtract it
            print(f"serve_flash: onset {loud[0] / 16:.2f} ms into the frame at pts {plan.pts_ns}", flush=True)
        state["prev_loud"] = bool(loud.size)
        if state["left"] > 0:
            state["left"] -= 1
            image = np.full((*frame_size(image), 3), 255, np.uint8)  # BGR or I420 (serve's frame cache)
        return original(self, plan, image)

    serve_app.ServeApp._ring_sink = ring_sink_with_flash


def write_beeps(path: Path, seconds: float = 10.0, first: float = 0.4, every: float = 1.0,
                beep_s: float = 0.08) -> Path:
    """16 kHz mono wav: a 1 kHz beep of `beep_s` at first + k*every (multiples of 40 ms), silence between."""
    import wave

    rate = 16000
    pcm = np.zeros(int(seconds * rate), np.float32)
    t = np.arange(int(beep_s * rate)) / rate
    tone = 0.5 * np.sin(2 * np.pi * 1000 * t + np.pi / 2)  # starts at full amplitude (cosine)
    start = first
    while start + beep_s < seconds:
        i = int(round(start * rate))
        pcm[i:i + tone.size] = tone
        start += every
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((pcm * 32767).astype("<i2").tobytes())
    return path


if __name__ == "__main__":
    argv = sys.argv[1:]
    if argv[:2] == ["-m", "stream_wav2lip"]:
        argv = argv[2:]
    install_flash()
    from stream_wav2lip.cli import main

    sys.exit(main(argv))

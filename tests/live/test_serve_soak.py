"""Soak: `serve` for 10 minutes on the null generator with speech every few seconds (files and streamed PCM).

Checks: resident memory grows < 5 % after warm-up; every audio block has the pts of a video frame (A/V offset
constant to the sample); video pts stay on the 40 ms grid with no frame missing; the loop never stalls.
Run: .venv/bin/python -m pytest -m soak tests/live/test_serve_soak.py   (S2L_SOAK_SECONDS to shorten)
"""
from __future__ import annotations

import os
import threading
import time

import pytest

from backend.frames import FRAME_NS
import shm_protocol as S
from tests.live.serve_harness import ServeProcess, open_readers, segments

pytestmark = pytest.mark.soak


def test_ten_minutes_of_speech_memory_flat_and_av_locked(synthetic_avatar, media_dir, runtime_dir, session):
    import psutil

    from backend.api import ApiClient
    from backend.say_cli import stream_file

    seconds = float(os.environ.get("S2L_SOAK_SECONDS", 600))
    serve = ServeProcess(session, synthetic_avatar, "--engine", "null", env={"S2L_RUNTIME_DIR": str(runtime_dir)})
    stop = threading.Event()
    errors: list = []
    try:
        serve.wait_ready()
        client = ApiClient(session)
        clips = [media_dir / "tts_espeakng_en.wav", media_dir / "whisper__tests_jfk.flac"]

        def talk():
            i = 0
            while not stop.is_set():
                try:
                    if i % 3 == 2:
                        stream_file(client, str(clips[i % 2]), realtime=True)
                    else:
                        client.say([str(clips[i % 2])])
                    if i % 7 == 6:
                        time.sleep(1.0)
                        client.flush()
                except Exception as exc:  # noqa: BLE001
                    errors.append(exc)
                i += 1
                stop.wait(8.0)

        talker = threading.Thread(target=talk, daemon=True)
        talker.start()
        proc = psutil.Process(serve.proc.pid)
        video, audio = open_readers(session)
        t0 = time.monotonic()
        rss_warm = None
        grid = None  # (pts, sequence) of the first video frame: every later slot must sit on this grid
        vcount = acount = speech_blocks = missed = 0
        last_seq = None
        while time.monotonic() - t0 < seconds:
            for s in video.poll_all():
                if grid is None:
                    grid = (s.pts_ns, s.sequence)
                assert s.pts_ns - grid[0] == (s.sequence - grid[1]) * FRAME_NS, "video left the 40 ms grid"
                if last_seq is not None:
                    missed += s.sequence - last_seq - 1  # the reader was descheduled (ring lapped)
                last_seq = s.sequence
                vcount += 1
            for s in audio.poll_all():
                # audio block n carries video frame n's pts (published 60 ms ahead, --audio-lead-ms), always
                if grid is not None:
                    assert s.pts_ns - grid[0] == (s.sequence - grid[1]) * FRAME_NS, "A/V offset moved"
                acount += 1
                speech_blocks += bool(s.flags & S.FLAG_SPEECH)
            if rss_warm is None and time.monotonic() - t0 > min(60, seconds / 5):
                rss_warm = proc.memory_info().rss
            time.sleep(0.01)
        status = serve.control.status()
        elapsed = time.monotonic() - t0
        rss_end = proc.memory_info().rss
        video.close(), audio.close()
        stop.set()
        talker.join(30)
        assert not errors, errors[:3]
        assert vcount + missed >= 0.97 * 25 * elapsed and acount >= 0.97 * 25 * elapsed
        assert speech_blocks > 0.3 * acount
        assert status["frames_published"] >= 0.97 * 25 * elapsed
        growth = (rss_end - rss_warm) / rss_warm
        print(f"soak {elapsed:.0f}s: {vcount} frames read ({missed} missed by the reader), {speech_blocks} "
              f"speech blocks, latency p50/p95 {status['latency_ms']}/{status['latency_p95_ms']} ms, "
              f"rss {rss_warm / 2**20:.1f} -> {rss_end / 2**20:.1f} MiB ({100 * growth:+.2f} %)")
        assert growth < 0.05
    finally:
        stop.set()
        assert serve.stop() == 0, serve.stderr
    assert segments(session) == []

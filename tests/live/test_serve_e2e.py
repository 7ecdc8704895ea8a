"""End to end: a real `serve` process on the synthetic avatar (null generator), read through obs_plugin readers."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from backend.frames import FRAME_NS, SAMPLES_PER_FRAME
import shm_protocol as C
import shm_protocol as S
from tests.live.serve_harness import REPO, Capture, ServeProcess, collect, open_readers, segments, shown_footage

pytestmark = pytest.mark.e2e
CLIP = "tts_espeakng_en.wav"


@pytest.fixture(scope="module")
def package(synthetic_avatar):
    from preprocess.package import AvatarPackage

    pkg = AvatarPackage.open(synthetic_avatar)
    pkg.preload(("bg",))
    return pkg


@pytest.fixture(scope="module")
def module_runtime(tmp_path_factory):
    return tmp_path_factory.mktemp("run")


@pytest.fixture(autouse=True)
def runtime_dir(module_runtime, monkeypatch):
    """One runtime dir for the module, so `say` and ApiClient find the module's backend."""
    monkeypatch.setenv("S2L_RUNTIME_DIR", str(module_runtime))
    return module_runtime


@pytest.fixture(scope="module")
def serve(synthetic_avatar, module_runtime):
    runtime = module_runtime
    session = f"e2e{os.getpid()}"
    proc = ServeProcess(session, synthetic_avatar, "--engine", "null", env={"S2L_RUNTIME_DIR": str(runtime)})
    try:
        proc.wait_ready()
        yield proc
    finally:
        rc = proc.stop(signal.SIGTERM)
        assert rc == 0, proc.stderr
        assert segments(session) == [], "SIGTERM must unlink every segment"
        assert not (runtime / f"{session}.json").exists()


def _say(session: str, *args: str) -> None:
    subprocess.run([sys.executable, "-m", "stream_wav2lip", "say", "--session", session, *args], cwd=REPO,
                   check=True, capture_output=True, timeout=60)


def _speech_audio(cap: Capture, reader: S.RingReader) -> np.ndarray:
    blocks = [reader.audio_array(s)[:, 0] for s in cap.audio if s.flags & S.FLAG_SPEECH]
    return np.concatenate(blocks) if blocks else np.zeros(0, np.float32)


def _bgr(reader: S.RingReader, slot) -> np.ndarray:
    return reader.video_array(slot)[:, :, :3]


def test_idle_loop_at_25fps_equals_the_footage_and_a_reader_that_stalls_slows_nothing(serve, package):
    video, audio = open_readers(serve.session)
    cap = collect(video, audio, 1.2)
    time.sleep(1.5)  # a reader that stops reading
    t_gap = time.monotonic()
    cap2 = collect(video, audio, 1.0)
    video.close(), audio.close()
    pts = np.array([s.pts_ns for s in cap.video])
    assert 27 <= len(pts) <= 33 and (np.diff(pts) == FRAME_NS).all()
    assert [s.sequence for s in cap.video] == list(range(cap.video[0].sequence, cap.video[-1].sequence + 1))
    footage = shown_footage(package)
    for slot in cap.video:
        assert np.array_equal(_bgr(video, slot), footage(slot.index)), "idle frames are the footage"
        assert (video.video_array(slot)[:, :, 3] == 255).all()
    # while nobody read for 1.5 s the writer kept going at 25 fps, then we resume at the newest frames
    assert cap2.video[0].pts_ns - cap.video[-1].pts_ns >= 1.4e9
    assert abs(time.monotonic_ns() - cap2.video[-1].pts_ns) < 0.2e9 and time.monotonic() - t_gap < 2
    apts = {s.pts_ns for s in cap.audio}
    # audio goes out 60 ms (--audio-lead-ms) ahead of its frame, so the capture starts and ends a few blocks later
    edges = {pts[0] - FRAME_NS * i for i in range(1, 8)} | {pts[-1] + FRAME_NS * i for i in range(1, 8)}
    assert apts <= set(pts.tolist()) | edges
    assert not any(s.flags & S.FLAG_SPEECH for s in cap.audio)
    status = serve.control.status()
    assert status["state"] == "idle" and 24 <= status["fps"] <= 26 and C.status_is_alive(status)


def test_say_a_clip_changes_only_the_mouth_area_and_audio_is_the_clip(serve, package, media_dir):
    from backend.compositor import Compositor
    from models.audio import load_audio

    clip = load_audio(media_dir / CLIP)
    video, audio = open_readers(serve.session)
    _say(serve.session, str(media_dir / CLIP))
    n_frames = -(-clip.size // SAMPLES_PER_FRAME)
    cap = collect(video, audio, 15, until=lambda c: sum(1 for s in c.audio if s.flags & 1) >= n_frames
                  and not c.audio[-1].flags & 1)
    speech = _speech_audio(cap, audio)
    assert speech.size == n_frames * SAMPLES_PER_FRAME
    np.testing.assert_array_equal(speech[: clip.size], clip)
    # every audio block has the pts of a video frame (same clock, same frame), published ahead of it
    vpts = {s.pts_ns for s in cap.video}
    assert all(s.pts_ns in vpts for s in cap.audio if cap.video[0].pts_ns <= s.pts_ns <= cap.video[-1].pts_ns)
    comp, footage = Compositor(package), shown_footage(package)
    talking = [s for s in cap.video if s.flags & S.FLAG_SPEECH]
    span = [s for s in cap.video if s.pts_ns >= min(a.pts_ns for a in cap.audio if a.flags & 1)]
    assert len(talking) >= 0.3 * n_frames, (len(talking), len(span), sum(1 for s in span if s.flags & 2))
    for slot in talking:  # the null generator hands back the footage's own crop: the composite is lossless
        frame, ref = _bgr(video, slot), footage(slot.index)
        x, y, w, h = comp.placement(slot.index, "head", package.face_size).roi
        outside = np.ones(ref.shape[:2], bool)
        outside[y:y + h, x:x + w] = False
        assert np.array_equal(frame[outside], ref[outside]), "only the mouth area may change"
        assert np.abs(frame.astype(np.int16) - ref).max() <= 8, "a perfect generator leaves the face as it was"
    video.close(), audio.close()


def test_flush_stops_speech_within_one_batch(serve, media_dir):
    from backend.api import ApiClient

    video, audio = open_readers(serve.session)
    _say(serve.session, str(media_dir / "MuseTalk__data_audio_eng.wav"))
    cap = collect(video, audio, 10, until=lambda c: sum(1 for s in c.audio if s.flags & 1) >= 10)
    ApiClient(serve.session).flush()
    t_flush = time.monotonic_ns()
    cap = collect(video, audio, 1.0, cap)
    late = [s for s in cap.audio if s.flags & 1 and s.pts_ns > t_flush]
    assert len(late) <= 4, f"{len(late)} speech blocks after the flush"
    assert not cap.audio[-1].flags & 1
    assert serve.control.status()["queue_ms"] == 0
    video.close(), audio.close()


def test_pcm_streamed_in_small_chunks_plays_like_the_file(serve, media_dir):
    from backend.api import ApiClient
    from backend.say_cli import stream_file
    from models.audio import load_audio

    clip = load_audio(media_dir / CLIP)
    video, audio = open_readers(serve.session)
    stream_file(ApiClient(serve.session), str(media_dir / CLIP), chunk_ms=20, realtime=True)
    cap = collect(video, audio, 5, until=lambda c: c.audio and not c.audio[-1].flags & 1
                  and sum(1 for s in c.audio if s.flags & 1) * 640 >= clip.size)
    speech = _speech_audio(cap, audio)
    n = min(speech.size, clip.size)
    assert abs(speech.size - clip.size) < 2 * SAMPLES_PER_FRAME
    assert np.max(np.abs(speech[:n] - clip[:n])) < 2e-3, "streamed resampling matches the file path"
    status = serve.control.status()
    assert status["latency_p95_ms"] <= 450  # real-time source: 0.2 s look-ahead + render lead (+ CPU contention)
    video.close(), audio.close()


def test_commands_from_the_obs_side_are_executed(serve, tmp_path):
    client = C.ControlClient(serve.session)
    cid = client.post("pause")
    assert client.wait_ack(cid, 2)
    time.sleep(0.2)
    assert client.status()["state"] == "paused"
    cid = client.post("start")
    assert client.wait_ack(cid, 2)
    time.sleep(0.2)
    assert client.status()["state"] == "idle"


def test_switch_avatar_of_another_size_recreates_the_video_ring(serve, synthetic_avatar, tmp_path):
    from backend.api import ApiClient
    from preprocess.package import AvatarPackage
    from preprocess.synthetic import write_synthetic_package

    other = AvatarPackage.open(write_synthetic_package(tmp_path / "wide", frames=12, width=400, height=240))
    before = serve.control.status()
    ApiClient(serve.session).switch_avatar(str(other.root))
    deadline = time.monotonic() + 5
    while serve.control.status()["video_generation"] == before["video_generation"] and time.monotonic() < deadline:
        time.sleep(0.02)
    status = serve.control.status()
    assert status["avatar"] == "wide" and status["video_generation"] == before["video_generation"] + 1
    video, audio = open_readers(serve.session)  # readers re-open when video_generation changes
    assert (video.header.width, video.header.height) == (400, 240)
    cap = collect(video, audio, 0.6)
    assert len(cap.video) >= 10
    footage = shown_footage(other)
    for slot in cap.video:
        assert np.array_equal(_bgr(video, slot), footage(slot.index))
    video.close(), audio.close()
    C.ControlClient(serve.session).post("switch_avatar", avatar=str(synthetic_avatar))  # the OBS way, back
    deadline = time.monotonic() + 20
    while serve.control.status()["avatar"] != synthetic_avatar.name and time.monotonic() < deadline:
        time.sleep(0.05)
    assert serve.control.status()["avatar"] == synthetic_avatar.name


def test_real_avatar_idle_is_the_footage_and_speech_changes_only_the_mouth(small_avatar, media_dir, tmp_path,
                                                                          monkeypatch):
    from backend.api import ApiClient
    from backend.compositor import Compositor
    from preprocess.package import AvatarPackage

    pkg = AvatarPackage.open(small_avatar)
    session = f"real{os.getpid()}"
    env = {"S2L_RUNTIME_DIR": str(tmp_path)}
    proc = ServeProcess(session, small_avatar, "--engine", "null", env=env)
    try:
        proc.wait_ready()
        video, audio = open_readers(session)
        idle = collect(video, audio, 0.5)
        footage = shown_footage(pkg)
        assert all(np.array_equal(_bgr(video, s), footage(s.index)) for s in idle.video)
        monkeypatch.setenv("S2L_RUNTIME_DIR", str(tmp_path))
        ApiClient(session).say([str(media_dir / CLIP)])
        cap = collect(video, audio, 4.0)
        comp = Compositor(pkg)
        talking = [s for s in cap.video if s.flags & S.FLAG_SPEECH and not s.flags & S.FLAG_REPEAT]
        assert len(talking) > 30
        for slot in talking:
            frame, ref = _bgr(video, slot), footage(slot.index)
            x, y, w, h = comp.placement(slot.index, "head", pkg.face_size).roi
            outside = np.ones(ref.shape[:2], bool)
            outside[y:y + h, x:x + w] = False
            assert np.array_equal(frame[outside], ref[outside])
        video.close(), audio.close()
    finally:
        assert proc.stop() == 0, proc.stderr
    assert segments(session) == []


def test_kill9_then_restart_reclaims_and_two_sessions_run_side_by_side(synthetic_avatar, tmp_path):
    env = {"S2L_RUNTIME_DIR": str(tmp_path)}
    a, b = f"k{os.getpid()}a", f"k{os.getpid()}b"
    first = ServeProcess(a, synthetic_avatar, "--engine", "null", env=env)
    other = ServeProcess(b, synthetic_avatar, "--engine", "null", "--no-api", env=env)
    try:
        first.wait_ready()
        other.wait_ready()
        first.kill_group()  # the backend and its resource tracker: segments stay behind
        assert len(segments(a)) == 4
        dup = subprocess.run([sys.executable, "-m", "stream_wav2lip", "serve", "--avatar", str(synthetic_avatar),
                              "--session", b, "--engine", "null", "--quiet", "--duration", "1"],
                             cwd=REPO, env={**os.environ, **env}, capture_output=True, text=True, timeout=60)
        assert dup.returncode != 0 and "in use" in dup.stderr, "a live session is never taken over"
        second = ServeProcess(a, synthetic_avatar, "--engine", "null", env=env)
        try:
            status = second.wait_ready(timeout=60)
            assert status["pid"] == second.proc.pid
            video, audio = open_readers(a)
            cap = collect(video, audio, 0.5)
            assert len(cap.video) >= 10 and video.header.pid == second.proc.pid
            video.close(), audio.close()
            assert C.ControlClient(b).alive()
            C.ControlClient(a).post("stop")  # graceful stop through the mailbox (what OBS does first)
            assert second.proc.wait(15) == 0
        finally:
            assert second.stop() == 0
        assert segments(a) == []
    finally:
        for p in (first, other):
            p.stop()
    assert segments(b) == []

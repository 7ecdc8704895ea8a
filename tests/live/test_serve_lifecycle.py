"""`serve` lifecycle against the outside world: its parent (OBS) dying, and being killed -9 and restarted at once."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

import shm_protocol as S
from tests.live.serve_harness import ServeProcess, collect, open_readers, segments


def _session_entries(session: str) -> list[str]:
    prefixes = (f"s2l_{session}_", f"sm_s2l_{session}_")
    return sorted(n for n in os.listdir("/dev/shm") if n.startswith(prefixes))


@pytest.mark.e2e
def test_serve_exits_cleanly_within_a_second_when_its_parent_is_gone(synthetic_avatar, runtime_dir, session):
    parent = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])  # stands in for OBS
    serve = ServeProcess(session, synthetic_avatar, "--engine", "null",
                         env={"S2L_RUNTIME_DIR": str(runtime_dir), "S2L_PARENT_PID": str(parent.pid)})
    try:
        serve.wait_ready()
        time.sleep(0.3)
        assert serve.proc.poll() is None, "serve runs while its parent lives"
        parent.kill()
        parent.wait()  # reaped, as OBS's own parent would (a zombie still answers kill(pid, 0))
        t0 = time.monotonic()
        rc = serve.proc.wait(5)
        elapsed = time.monotonic() - t0
    finally:
        parent.kill()
        rc_stop = serve.stop()
    assert rc == 0 and rc_stop == 0, serve.stderr
    assert elapsed < 1.5, f"serve took {elapsed:.2f} s to notice its parent was gone"
    assert _session_entries(session) == [], "every s2l_<session>_* / sm_s2l_<session>_* segment is unlinked"
    assert not (runtime_dir / f"{session}.json").exists()


def test_parent_pid_from_env_ignores_garbage():
    from backend.serve_app import ParentWatch, parent_pid_from_env

    assert parent_pid_from_env({}) is None
    assert parent_pid_from_env({"S2L_PARENT_PID": "abc"}) is None
    assert parent_pid_from_env({"S2L_PARENT_PID": "0"}) is None
    assert parent_pid_from_env({"S2L_PARENT_PID": " 42 "}) == 42
    assert not ParentWatch(os.getpid()).gone()


@pytest.mark.e2e
def test_segments_of_a_restarted_backend_survive_the_killed_ones_resource_tracker(synthetic_avatar, runtime_dir,
                                                                                  session):
    """kill -9 of serve only (its resource tracker lives on and cleans up after it): a new serve of the same
    session, started at once, must keep its segments, because serve never registers them with the tracker."""
    env = {"S2L_RUNTIME_DIR": str(runtime_dir)}
    first = ServeProcess(session, synthetic_avatar, "--engine", "null", env=env)
    first.wait_ready()
    os.kill(first.proc.pid, signal.SIGKILL)
    first.proc.wait()
    assert len(segments(session)) == 4, "a crash leaves its segments (reclaimed by the next backend)"
    second = ServeProcess(session, synthetic_avatar, "--engine", "null", env=env)
    try:
        status = second.wait_ready()
        assert status["pid"] == second.proc.pid
        inodes = {n: os.stat(f"/dev/shm/{n}").st_ino for n in segments(session)}
        time.sleep(2.0)  # the dead backend's tracker has noticed by now
        assert len(segments(session)) == 4
        assert {n: os.stat(f"/dev/shm/{n}").st_ino for n in segments(session)} == inodes
        video, audio = open_readers(session)
        cap = collect(video, audio, 0.5)
        assert len(cap.video) >= 10 and len(cap.audio) >= 10 and video.header.pid == second.proc.pid
        video.close(), audio.close()
        assert second.control.alive()
    finally:
        assert second.stop() == 0, second.stderr
        first.stop()
        try:
            os.killpg(first.proc.pid, signal.SIGKILL)  # the first one's tracker, if still around
        except (ProcessLookupError, PermissionError):
            pass
    assert segments(session) == []
    assert "KeyError" not in second.stderr and "leaked" not in second.stderr, second.stderr


def test_ring_writer_and_control_segments_are_not_tracked(session):
    """What serve creates is never registered with multiprocessing's resource tracker (the race above), and is
    unlinked without messaging it (an unknown name would make the tracker print a KeyError traceback)."""
    from multiprocessing import resource_tracker

    from backend.ipc.control import ControlChannel

    calls = []
    original = resource_tracker._resource_tracker._send

    def spy(cmd, name, rtype):
        calls.append((cmd, name))
        return original(cmd, name, rtype)

    resource_tracker._resource_tracker._send = spy
    try:
        with S.RingWriter(S.video_name(session), S.video_header(4, 2)):
            pass
        ControlChannel(session).close()
    finally:
        resource_tracker._resource_tracker._send = original
    registered: dict[str, int] = {}
    for cmd, name in calls:
        registered[name] = registered.get(name, 0) + (1 if cmd == "REGISTER" else -1)
    assert all(v == 0 for v in registered.values()), calls  # every register is undone
    assert _session_entries(session) == []

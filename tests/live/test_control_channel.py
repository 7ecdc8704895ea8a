"""Control/status channel: backend side (shared-memory-dict, JSON) against the stdlib OBS side (plain mmap)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from backend.ipc.control import ControlChannel
from obs_plugin import control as C


def test_status_written_by_the_backend_is_read_by_the_obs_client(session):
    ch = ControlChannel(session)
    try:
        ch.update(state="idle", fps=25.0, latency_ms=12.5, avatar="anna")
        client = C.ControlClient(session)
        status = client.status()
        assert status["state"] == "idle" and status["fps"] == 25.0 and status["avatar"] == "anna"
        assert status["pid"] == os.getpid() and status["session"] == session
        assert client.alive()
        raw = open(f"/dev/shm/{C.status_segment(session)}", "rb").read()
        assert raw.startswith(b"{"), "JSON, never pickle"
    finally:
        ch.close()
    assert C.ControlClient(session).status() is None
    assert not os.path.exists(f"/dev/shm/{C.status_segment(session)}")
    assert not os.path.exists(f"/dev/shm/{C.command_segment(session)}")


def test_commands_posted_by_the_client_are_taken_once_and_acknowledged(session):
    ch = ControlChannel(session)
    try:
        client = C.ControlClient(session)
        a = client.post("flush")
        b = client.post("switch_avatar", avatar="/x/y")
        taken = ch.take_commands()
        assert [(c["id"], c["cmd"]) for c in taken] == [(a, "flush"), (b, "switch_avatar")]
        assert taken[1]["avatar"] == "/x/y"
        assert ch.take_commands() == []
        assert client.wait_ack(b, timeout=0.5)
        c = client.post("stop")
        assert c == b + 1 and [x["id"] for x in ch.take_commands()] == [c]
        with pytest.raises(ValueError):
            client.post("rm -rf")
    finally:
        ch.close()
    with pytest.raises(ConnectionError):
        C.ControlClient(session).post("flush")


def test_mailbox_keeps_a_bounded_history(session):
    ch = ControlChannel(session)
    try:
        client = C.ControlClient(session)
        for _ in range(C.MAILBOX_KEEP + 5):
            client.post("flush")
        mailbox = C.read_segment(C.command_segment(session))
        assert len(mailbox["commands"]) == C.MAILBOX_KEEP
        assert len(ch.take_commands()) == C.MAILBOX_KEEP
    finally:
        ch.close()


_SMD_PEER = r"""
import json, sys
from shared_memory_dict import SharedMemoryDict
from shared_memory_dict.serializers import JSONSerializer
from multiprocessing import resource_tracker
name, mode = sys.argv[1], sys.argv[2]
d = SharedMemoryDict(name, 4096, serializer=JSONSerializer())
resource_tracker.unregister(d.shm._name, "shared_memory")  # leave the segment to the test
if mode == "read":
    print(json.dumps(dict(d.items())))
else:
    d["written_by"] = "shared-memory-dict"; d["n"] = [1, 2, 3]
d.cleanup()
"""


def test_byte_format_is_exactly_shared_memory_dicts(session):
    """A dict written by the package is read by obs_plugin.control, and the other way round."""
    name = f"s2l_{session}_fmt"
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    subprocess.run([sys.executable, "-c", _SMD_PEER, name, "write"], check=True, env=env, timeout=60)
    try:
        assert C.read_segment(f"sm_{name}") == {"written_by": "shared-memory-dict", "n": [1, 2, 3]}
        assert C.write_segment(f"sm_{name}", {"written_by": "obs", "x": 1.5})
        out = subprocess.run([sys.executable, "-c", _SMD_PEER, name, "read"], check=True, env=env,
                             capture_output=True, text=True, timeout=60).stdout
        assert json.loads(out) == {"written_by": "obs", "x": 1.5}
    finally:
        os.unlink(f"/dev/shm/sm_{name}")


def test_a_crashed_backends_control_segments_are_reclaimed_and_a_live_one_refused(session):
    from backend.ipc.control import reclaim_or_raise

    # a live backend (here: our parent's pid with a fresh heartbeat) is refused
    ch = ControlChannel(session)
    try:
        C.write_segment(C.status_segment(session), {**ch.values, "pid": os.getppid(),
                                                    "heartbeat": time.monotonic_ns()})
        with pytest.raises(FileExistsError):
            reclaim_or_raise(session)
    finally:
        ch.close()
    # a stale one (heartbeat 10 s old) is replaced
    ch = ControlChannel(session)
    stale = {**ch.values, "pid": os.getppid(), "heartbeat": time.monotonic_ns() - 10_000_000_000}
    C.write_segment(C.status_segment(session), stale)
    assert not C.status_is_alive(C.read_segment(C.status_segment(session)))
    for smd in (ch._status, ch._commands):  # simulate the crash: leave the segments behind (they are untracked)
        smd.cleanup()
    ch2 = ControlChannel(session)
    try:
        assert C.ControlClient(session).status()["pid"] == os.getpid()
    finally:
        ch2.close()


def test_session_names_are_validated():
    assert C.valid_session("obs_Avatar-1") == "obs_Avatar-1"
    for bad in ("", "a b", "x" * 33, "../etc"):
        with pytest.raises(ValueError):
            C.valid_session(bad)
    assert C.session_from_label("My Avatar!") == "My_Avatar_"


def test_heartbeat_keeps_going_while_the_backend_loads(session):
    ch = ControlChannel(session)
    try:
        done = ch.keep_alive(interval=0.02)
        first = C.ControlClient(session).status()["heartbeat"]
        time.sleep(0.15)
        assert C.ControlClient(session).status()["heartbeat"] > first
        done.set()
    finally:
        ch.close()

"""Control/status channel: the backend (`ControlChannel`, the owner) against the clients (plain mmap), both
writing through the one implementation of the bytes in `shm_protocol.control`."""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

import shm_protocol as C
from backend.ipc.control import ControlChannel


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


def test_byte_format_is_json_then_nul_with_leftovers_ignored(session):
    """The exact bytes readers of any age expect (the format shared-memory-dict 0.7 wrote with its JSON
    serializer): JSON, one NUL, and whatever an earlier, longer value left after it."""
    ch = ControlChannel(session)
    try:
        name = C.command_segment(session)
        raw = Path(f"/dev/shm/{name}").read_bytes()
        assert len(raw) == C.COMMAND_SIZE and raw.startswith(b'{"commands": []}\x00')
        assert C.write_segment(name, {"commands": [{"id": 1, "cmd": "flush", "pad": "x" * 40}]})
        assert C.write_segment(name, {"written_by": "obs", "x": 1.5})
        raw = Path(f"/dev/shm/{name}").read_bytes()
        assert raw.startswith(b'{"written_by": "obs", "x": 1.5}\x00') and b"xxxx" in raw  # leftovers stay
        assert C.read_segment(name) == {"written_by": "obs", "x": 1.5}
        with pytest.raises(ValueError, match="do not fit"):
            C.write_segment(name, {"big": "x" * C.COMMAND_SIZE})
    finally:
        ch.close()
    assert C.encode({"a": 1}) == b'{"a": 1}\x00' and C.decode(b'{"a": 1}\x00junk') == {"a": 1}
    for bad in (b"", b"\x00", b"[1]\x00", b'{"a": '):
        with pytest.raises(ValueError):
            C.decode(bad)


def test_a_crashed_backends_control_segments_are_reclaimed_and_a_live_one_refused(session):
    # a live backend (here: our parent's pid with a fresh heartbeat) is refused
    ch = ControlChannel(session)
    try:
        C.write_segment(C.status_segment(session), {**ch.values, "pid": os.getppid(),
                                                    "heartbeat": time.monotonic_ns()})
        with pytest.raises(FileExistsError):
            C.reclaim_control_or_raise(session)
    finally:
        ch.close()
    # a stale one (heartbeat 10 s old) is replaced
    ch = ControlChannel(session)
    stale = {**ch.values, "pid": os.getppid(), "heartbeat": time.monotonic_ns() - 10_000_000_000}
    C.write_segment(C.status_segment(session), stale)
    assert not C.status_is_alive(C.read_segment(C.status_segment(session)))
    for segment in (ch._status, ch._commands):  # simulate the crash: leave the segments behind (they are untracked)
        segment.close(unlink=False)
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

"""Fast tests of the OBS plugin's parts that do not need OBS (the real-OBS tests are in tests/e2e/test_obs_*)."""
from __future__ import annotations

import os
import signal
import time
from types import SimpleNamespace

import pytest

from obs_plugin import libobs, panel
from obs_plugin.source import _take_due
from obs_plugin.supervisor import BackendConfig, Supervisor, find_backend_python, session_from_name


# ------------------------------------------------------------------------------------------ libobs ABI
class _FakeLib:
    def __init__(self, version: bytes):
        self.obs_get_version_string = lambda: version


def test_struct_layouts_match_obs_29_abi():
    assert libobs.check_abi(_FakeLib(b"29.0.2")) == "29.0.2"


@pytest.mark.parametrize("version", [b"27.2.4", b"28.1.2", b"33.0.0"])
def test_other_obs_versions_are_refused_with_a_clear_message(version):
    with pytest.raises(libobs.AbiError, match="not supported"):
        libobs.check_abi(_FakeLib(version))


def test_version_parsing():
    assert libobs.version_tuple("29.0.2.1-1+b1") == (29, 0, 2)
    assert libobs.version_tuple("30.0.0-rc1") == (30, 0, 0)
    assert libobs.version_tuple("31") == (31, 0, 0)


# ------------------------------------------------------------------------------------------ panel
def test_avatar_dropdown_lists_only_packages(tmp_path):
    for name in ("zoe", "Alice"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "manifest.json").write_text("{}")
        (tmp_path / name / "face_det.npz").write_bytes(b"")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "manifest.json").write_text("{}")
    (tmp_path / "file.txt").write_text("x")
    assert panel.list_avatars(str(tmp_path)) == ["Alice", "zoe"]
    assert panel.list_avatars(str(tmp_path / "missing")) == []


# ------------------------------------------------------------------------------------------ source
def test_frames_published_ahead_are_held_until_their_pts():
    slot = lambda seq, pts: SimpleNamespace(sequence=seq, pts_ns=pts)  # noqa: E731
    queue = [slot(1, 100), slot(2, 140), slot(3, 180)]
    due, wait = _take_due(queue, now_ns=150, wait=0.004)
    assert due.sequence == 2 and [s.sequence for s in queue] == [3]  # 1 is dropped (older than 2)
    assert wait == pytest.approx(0.0005)  # 30 ns to go, clamped to the minimum sleep
    due, _ = _take_due(queue, now_ns=160, wait=0.004)
    assert due is None and len(queue) == 1
    far = [slot(9, 10 * 1_000_000_000)]  # a foreign clock: shown at once
    assert _take_due(far, now_ns=0, wait=0.004)[0].sequence == 9


# ------------------------------------------------------------------------------------------ supervisor
def test_session_name_from_source_name():
    assert session_from_name("My Avatar!") == "My_Avatar_"
    assert session_from_name("") == "default"


def test_backend_python_found_from_setting_venv_dir_or_project(tmp_path):
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    py = venv / "bin" / "python"
    py.write_text("#!/bin/sh\n")
    py.chmod(0o755)
    assert find_backend_python(str(venv)) == py
    assert find_backend_python(str(py)) == py
    project = find_backend_python("")
    assert project is None or project.parent.parent.name == ".venv"


def test_serve_command_line(tmp_path):
    cfg = BackendConfig(session="S", avatar_dir=str(tmp_path), checkpoint="/w.pth", device="cpu", mic=True,
                        mic_device="USB", api_port=8123, backend_python="/bin/sh")
    cmd = cfg.command()
    assert cmd[:4] == ["/bin/sh", "-m", "stream_wav2lip", "serve"]
    assert cmd[4:] == ["--session", "S", "--avatar", str(tmp_path), "--device", "cpu", "--checkpoint", "/w.pth",
                       "--mic", "USB", "--api-port", "8123"]
    with pytest.raises(RuntimeError, match="avatar"):
        BackendConfig(session="S", avatar_dir="", backend_python="/bin/sh").command()
    mouth = BackendConfig(session="S", avatar_dir=str(tmp_path), engine="mouth", backend_python="/bin/sh")
    assert mouth.command()[-2:] == ["--engine", "mouth"]
    for detail, args in (("auto", []), ("on", ["--detail", "on"]), ("off", ["--detail", "off"])):
        cfg = BackendConfig(session="S", avatar_dir=str(tmp_path), detail=detail, backend_python="/bin/sh")
        assert cfg.command()[10:] == args  # auto is serve's default and is not passed


def test_the_panel_lists_the_engines_of_the_one_registry():
    from backend.generators import registry
    from obs_plugin import panel

    values = [value for value, _label in panel.engines()]
    assert values == ["", *registry.engine_names()] and "mouth" in values and "null" not in values


def test_supervisor_restarts_a_killed_backend_and_stops_it(tmp_path):
    """A stand-in 'python' that just sleeps: killed -> restarted within a second; stop -> gone."""
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\nexec sleep 30\n")
    fake.chmod(0o755)
    sup = Supervisor(BackendConfig(session="unit_sup", avatar_dir=str(tmp_path), backend_python=str(fake)),
                     heartbeat_ns=lambda: time.monotonic_ns(), log_dir=str(tmp_path / "logs"))
    try:
        sup.start()
        deadline = time.monotonic() + 3
        while sup.pid is None and time.monotonic() < deadline:
            time.sleep(0.02)
        first = sup.pid
        assert first
        os.kill(first, signal.SIGKILL)
        deadline = time.monotonic() + 3
        while (sup.pid in (None, first)) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert sup.pid not in (None, first)
        assert "SIGKILL" in sup.last_error
        second = sup.pid
        sup.stop()
        deadline = time.monotonic() + 5
        while sup.pid is not None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert sup.pid is None
        with pytest.raises(ProcessLookupError):
            os.kill(second, 0)
    finally:
        sup.shutdown()


# ------------------------------------------------------------------------------------------ source pointer
def test_source_ref_destroy_waits_for_a_call_in_flight_and_blocks_later_calls():
    """libobs frees a source as soon as our destroy returns: invalidate() must wait for a call that holds the
    pointer, and every later use must see None (the exit-time crash: a status write after the destroy)."""
    import threading

    from obs_plugin.persist import SourceRef

    ref = SourceRef(0x1234)
    inside, release, order = threading.Event(), threading.Event(), []

    def caller():
        with ref.use() as ptr:
            order.append(("call", ptr))
            inside.set()
            release.wait(5)
            order.append(("call done", ptr))

    t = threading.Thread(target=caller)
    t.start()
    assert inside.wait(5)
    destroyer = threading.Thread(target=lambda: (ref.invalidate(), order.append(("destroyed", None))))
    destroyer.start()
    time.sleep(0.1)
    assert destroyer.is_alive(), "invalidate() returned while a call still held the pointer"
    release.set()
    t.join(5)
    destroyer.join(5)
    assert order == [("call", 0x1234), ("call done", 0x1234), ("destroyed", None)]
    with ref.use() as ptr:
        assert ptr is None
    assert not ref.alive
    with ref.use() as outer, ref.use() as inner:  # re-entrant: a libobs call may call back into us
        assert outer is inner is None

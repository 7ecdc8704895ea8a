"""The OBS plugin in real OBS 29 under Xvfb, driven over obs-websocket, with the fake backend.

One OBS instance serves the whole module (OBS starts in ~1-2.5 s here); the tests run in file order and
each leaves the backend running for the next. The fake backend writes the real rings and control channel
(tests/e2e/fake_backend.py), so what is tested is the plugin: source registration, panel, buttons,
hotkeys, supervision, avatar switch, reloads and clean exit. test_obs_serve.py repeats the core with the
real `stream-wav2lip serve`.
"""
from __future__ import annotations

import json
import os
import signal
import time

import pytest

from obs_harness import ObsSession, fake_python, make_avatars, obs_available, unique_name
from fake_backend import avatar_colour, decode_counter
from shm_protocol import ControlClient, session_from_label

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(bool(obs_available()), reason=obs_available() or "ok")]


@pytest.fixture(scope="module")
def obs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("obs_plugin")
    root = make_avatars(tmp / "avatars")
    name = unique_name()
    settings = {"avatars_root": str(root), "avatar": "alice", "backend_python": str(fake_python(tmp))}
    script_settings = {"stream_wav2lip.start": [{"key": "OBS_KEY_F9"}],
                       "stream_wav2lip.stop": [{"key": "OBS_KEY_F10"}]}
    sess = ObsSession([{"name": name, "settings": settings}], script_settings, workdir=tmp / "obs")
    sess.name = name
    sess.session = session_from_label(name)
    try:
        sess.start()
        yield sess
    finally:
        sess.close()


def _centre_rgb(img):
    h, w = img.shape[:2]
    return tuple(int(v) for v in img[h // 2, w // 2])


def _bgr_to_rgb(c):
    return c[2], c[1], c[0]


def test_avatar_dropdown_lists_packages(obs):
    items = obs.client.get_input_properties_list_property_items(obs.name, "avatar").property_items
    assert [i["itemValue"] for i in items] == ["alice", "bob"]
    obs.wait_status(obs.name, "stopped", timeout=5)
    assert obs.backend_pids(obs.session) == []


def test_start_button_frames_advance(obs):
    obs.client.press_input_properties_button(obs.name, "start")
    obs.wait_status(obs.name, "running", timeout=20)
    counters = []
    deadline = time.monotonic() + 15
    while len(counters) < 3 and time.monotonic() < deadline:
        img = obs.screenshot(obs.name)
        if _centre_rgb(img) == _bgr_to_rgb(avatar_colour("alice")):
            c = decode_counter(img)
            if not counters or c > counters[-1]:
                counters.append(c)
        time.sleep(0.25)
    assert len(counters) == 3, f"frames did not advance: {counters}"
    assert img.shape[:2] == (360, 640)
    assert "fps" in obs.status(obs.name)


def test_stop_button_stops_backend_and_frees_segments(obs):
    assert obs.backend_pid()
    obs.client.press_input_properties_button(obs.name, "stop")
    obs.wait_status(obs.name, "stopped", timeout=10)
    obs.wait_for(lambda: not obs.backend_pids(obs.session) and not obs.segments(obs.session), 5,
                 what="backend gone and segments unlinked")
    frozen = decode_counter(obs.screenshot(obs.name))  # the last frame stays on screen
    time.sleep(0.3)
    assert decode_counter(obs.screenshot(obs.name)) == frozen


def test_hotkeys_start_and_stop(obs):
    obs.client.trigger_hotkey_by_name("stream_wav2lip.start")
    obs.wait_status(obs.name, "running", timeout=20)
    assert obs.backend_pid()
    obs.client.trigger_hotkey_by_name("stream_wav2lip.stop")
    obs.wait_status(obs.name, "stopped", timeout=10)
    obs.wait_for(lambda: not obs.backend_pids(obs.session), 5, what="backend gone")
    obs.client.trigger_hotkey_by_name("stream_wav2lip.start")
    obs.wait_status(obs.name, "running", timeout=20)
    names = obs.client.get_hotkey_list().hotkeys
    assert {"stream_wav2lip.start", "stream_wav2lip.stop", "stream_wav2lip.flush"} <= set(names)


def test_bound_keys_from_the_scene_collection_work(obs):
    """F10/F9 as bound in the scene collection, pressed on the X server (OBS's window need not be focused)."""
    import shutil
    import subprocess

    if not shutil.which("xdotool"):
        pytest.skip("xdotool is not installed")

    def press(key):
        subprocess.run(["xdotool", "keydown", key], env=obs.env, check=True)
        time.sleep(0.15)
        subprocess.run(["xdotool", "keyup", key], env=obs.env, check=True)

    press("F10")
    obs.wait_status(obs.name, "stopped", timeout=10)
    press("F9")
    obs.wait_status(obs.name, "running", timeout=20)


def test_flush_hotkey_reaches_backend(obs):
    ctl = ControlClient(obs.session)
    obs.wait_for(lambda: ctl.alive(), 10, what="backend alive")
    before = (ctl.status() or {}).get("flushes", 0)
    obs.client.trigger_hotkey_by_name("stream_wav2lip.flush")
    obs.wait_for(lambda: (ctl.status() or {}).get("flushes", 0) == before + 1, 5, what="flush acknowledged")


def test_avatar_switch_while_running(obs):
    pid = obs.backend_pid()
    assert pid
    obs.client.set_input_settings(obs.name, {"avatar": "bob"}, True)
    obs.wait_for(lambda: _centre_rgb(obs.screenshot(obs.name)) == _bgr_to_rgb(avatar_colour("bob")), 10,
                 what="bob's colour on screen")
    assert obs.backend_pid() == pid, "a live backend switches avatars without a restart"
    assert "bob" in obs.wait_status(obs.name, "running: bob", timeout=5)


def test_kill9_backend_is_restarted_while_obs_keeps_rendering(obs):
    pid = obs.backend_pid()
    assert pid
    stats0 = obs.client.get_stats()
    t0 = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    obs.wait_for(lambda: "killed by SIGKILL" in obs.status(obs.name), 3, interval=0.1,
                 what="the panel to report the crash")
    new = obs.wait_for(lambda: (p := obs.backend_pid()) and p != pid and p, 5, interval=0.05,
                       what="a new backend")
    restart_s = time.monotonic() - t0
    obs.wait_status(obs.name, "running", timeout=10)
    # the first screenshot may still show the killed backend's last frame (the new one counts from 0 again)
    first = decode_counter(obs.screenshot(obs.name))
    c1 = obs.wait_for(lambda: (c := decode_counter(obs.screenshot(obs.name))) != first and c, 3, interval=0.05,
                      what="a frame from the new backend")
    time.sleep(0.5)
    c2 = decode_counter(obs.screenshot(obs.name))
    assert c2 > c1, "frames from the new backend"
    stats1 = obs.client.get_stats()
    skipped = stats1.render_skipped_frames - stats0.render_skipped_frames
    rendered = stats1.render_total_frames - stats0.render_total_frames
    print(f"restart after kill -9: new pid {new} in {restart_s:.2f} s; render skipped {skipped}/{rendered}")
    assert restart_s < 5
    assert skipped <= max(5, rendered // 20)


def test_script_reload_three_times(obs):
    """Tools -> Scripts -> Reload Scripts, three times (real UI, xdotool); OBS survives, the source works."""
    pytest.importorskip("PIL")
    from obs_harness import reload_scripts_via_ui

    for i in range(3):
        reload_scripts_via_ui(obs)
        assert obs.obs.poll() is None, "OBS crashed on script reload"
    assert obs.log_text().count("Loaded python script: stream_wav2lip_obs.py") >= 4
    # after a reload the source is adopted by the new script version; start it again and see frames
    obs.client.press_input_properties_button(obs.name, "start")
    obs.wait_status(obs.name, "running", timeout=20)
    c1 = decode_counter(obs.screenshot(obs.name))
    time.sleep(0.5)
    assert decode_counter(obs.screenshot(obs.name)) > c1
    assert len(obs.backend_pids(obs.session)) == 1


def test_removing_a_running_source_stops_its_backend(obs):
    """Delete a second, running source (libobs destroys it on its destruction thread while its pusher and
    status threads are busy): its backend and segments go, OBS keeps running, the first source is untouched."""
    name = obs.name + "_2"
    session = session_from_label(name)
    settings = dict(obs.settings(obs.name))
    settings.pop("status", None)
    for attempt in range(3):  # create -> run -> remove, three times: the destroy races the busy threads
        obs.client.create_input("Scene", name, "stream_wav2lip_avatar", settings, True)
        obs.client.press_input_properties_button(name, "start")
        obs.wait_for(lambda: len(obs.backend_pids(session)) == 1 and obs.segments(session), 20,
                     what=f"second backend running (round {attempt})")
        time.sleep(0.3 * attempt)
        obs.client.remove_input(name)
        obs.wait_for(lambda: not obs.backend_pids(session) and not obs.segments(session), 10,
                     what=f"second backend and segments gone (round {attempt})")
        assert obs.obs.poll() is None, "OBS crashed when a running source was removed"
    assert obs.backend_pid(), "the first source's backend is untouched"


def test_obs_exit_leaves_no_backend_and_no_segment(obs):
    assert obs.backend_pid()
    code = obs.stop_obs()
    assert obs.exited_cleanly(code), f"OBS exited with {code}"
    time.sleep(0.2)
    assert obs.backend_pids(obs.session) == []
    assert obs.segments(obs.session) == []
    print("timings:", obs.timings)
    # the hotkey bindings were written back with the scene collection (script settings)
    collection = json.loads((obs.cfg / "obs-studio" / "basic" / "scenes" / "Test.json").read_text())
    script = next(m for m in collection["modules"]["scripts-tool"] if m["path"].endswith("stream_wav2lip_obs.py"))
    assert script["settings"]["stream_wav2lip.start"] == [{"key": "OBS_KEY_F9"}]
    assert script["settings"]["stream_wav2lip.stop"] == [{"key": "OBS_KEY_F10"}]

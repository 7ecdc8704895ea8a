"""Actions in real OBS: the plugin gives each action of the running backend a hotkey
(`stream_wav2lip.action.<name>`) and the panel a list with a Play button; both reach `serve`'s engine."""
from __future__ import annotations

import pytest

from obs_harness import ObsSession, obs_available, unique_name
from shm_protocol import ControlClient, session_from_label

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(bool(obs_available()), reason=obs_available() or "ok")]


@pytest.fixture(scope="module")
def obs(tmp_path_factory):
    from preprocess.actions import write_transitions
    from preprocess.synthetic import write_synthetic_package

    tmp = tmp_path_factory.mktemp("obs_actions")
    root = tmp / "avatars"
    avatar = write_synthetic_package(root / "waver", frames=60)
    write_synthetic_package(avatar / "actions" / "wave", frames=40)
    write_transitions(avatar, "wave")
    name = unique_name("Actions")
    settings = {"avatars_root": str(root), "avatar": "waver", "serve_args": "--engine null", "action": "wave"}
    sess = ObsSession([{"name": name, "settings": settings}], workdir=tmp / "obs")
    sess.name, sess.session = name, session_from_label(name)
    try:
        sess.start()
        sess.client.press_input_properties_button(name, "start")
        sess.wait_status(name, "running", timeout=90)
        yield sess
    finally:
        sess.close()


def _acks(obs) -> int:
    return int((ControlClient(obs.session).status() or {}).get("cmd_ack") or 0)


def test_the_panel_lists_the_avatars_actions_and_plays_one(obs):
    items = obs.client.get_input_properties_list_property_items(obs.name, "action").property_items
    assert [i["itemValue"] for i in items] == ["wave"]
    before = _acks(obs)
    obs.client.press_input_properties_button(obs.name, "play_action")
    obs.wait_for(lambda: _acks(obs) > before, 5, what="the action command taken")
    assert ControlClient(obs.session).status()["last_action"] == "wave"


def test_a_hotkey_per_action_plays_it(obs):
    obs.wait_for(lambda: "stream_wav2lip.action.wave" in obs.client.get_hotkey_list().hotkeys, 10,
                 what="the action's hotkey registered")
    before = _acks(obs)
    obs.client.trigger_hotkey_by_name("stream_wav2lip.action.wave")
    obs.wait_for(lambda: _acks(obs) > before, 5, what="the hotkey's action command taken")
    status = ControlClient(obs.session).status()
    assert status["last_action"] == "wave" and status["actions"] == ["wave"] and not status.get("error")

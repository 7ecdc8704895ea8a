"""The OBS plugin with the real backend: `stream-wav2lip serve` started by the plugin from the project's venv.

One OBS instance for the module; the avatars root holds the real small avatar (preprocessed from a clip in
../shared/media) and the synthetic one; the checkpoint is the deterministic-weight Wav2Lip 96 (docs/models.md §10).
"""
from __future__ import annotations

import json
import os
import re
import statistics
import tempfile
import signal
import subprocess
import time

import numpy as np
import pytest
from pathlib import Path

from obs_harness import VENV_PY, ObsSession, obs_available, unique_name
from shm_protocol import ControlClient, session_from_label

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(bool(obs_available()), reason=obs_available() or "ok")]

START_TIMEOUT_S = 120  # torch import + model + avatar load on a busy 2-core machine
SPEECH = "tts_espeakng_en.wav"


@pytest.fixture(scope="module")
def obs(tmp_path_factory, small_avatar, synthetic_avatar):
    from models.testing import deterministic_state_dict, save_reference_checkpoint

    tmp = tmp_path_factory.mktemp("obs_serve")
    root = tmp / "avatars"
    root.mkdir()
    (root / "face").symlink_to(small_avatar, target_is_directory=True)
    (root / "synthetic").symlink_to(synthetic_avatar, target_is_directory=True)
    ckpt = save_reference_checkpoint(deterministic_state_dict("wav2lip96"), tmp / "wav2lip96.pth",
                                     with_optimizer=False)
    name = unique_name("Serve")
    settings = {"avatars_root": str(root), "avatar": "face", "checkpoint": str(ckpt), "device": "cpu",
                "precision": "fp32"}  # int8 is proved elsewhere (tests/backend/test_precision.py); A/V timing here
    sess = ObsSession([{"name": name, "settings": settings}], workdir=tmp / "obs")
    sess.name = name
    sess.session = session_from_label(name)
    sess.face = json.loads((small_avatar / "manifest.json").read_text())
    sess.face_path = small_avatar
    try:
        sess.start()
        yield sess
    finally:
        sess.close()


def test_dropdown_lists_real_packages(obs):
    items = obs.client.get_input_properties_list_property_items(obs.name, "avatar").property_items
    assert [i["itemValue"] for i in items] == ["face", "synthetic"]


def test_start_real_backend_frames_advance(obs):
    t0 = time.monotonic()
    obs.client.press_input_properties_button(obs.name, "start")
    obs.wait_status(obs.name, "running", timeout=START_TIMEOUT_S)
    print(f"serve running {time.monotonic() - t0:.1f} s after Start")
    a = obs.screenshot(obs.name)
    print(f"first frame {time.monotonic() - t0:.1f} s after Start; status {obs.status(obs.name)!r}")
    assert a.shape[:2] == (obs.face["height"], obs.face["width"])
    obs.wait_for(lambda: "fps" in (s := obs.status(obs.name)) and float(s.split(" fps")[0].split()[-1]) > 15, 10,
                 what="more than 15 fps")
    changed = obs.wait_for(lambda: np.abs(obs.screenshot(obs.name).astype(int) - a).mean() > 0.5, 10,
                           interval=0.3, what="the idle loop to move")
    assert changed
    # what OBS shows is the footage in its own colours (a range or channel-order mix-up on the way through the ring
    # would shift every level by 10-20 or swap the hues)
    from preprocess.package import AvatarPackage

    shown = obs.screenshot(obs.name).astype(np.float32)
    pkg = AvatarPackage.open(obs.face_path)
    nearest = min(np.abs(shown - pkg.frame(i)[..., ::-1]).mean() for i in range(pkg.frame_count))
    print(f"OBS's picture vs the nearest footage frame: {nearest:.2f} levels")
    assert nearest < 4.0


def test_say_real_clip_shows_speech_frames(obs, media_dir):
    idle = obs.screenshot(obs.name)
    out = subprocess.run([str(VENV_PY), "-m", "stream_wav2lip", "say", "--session", obs.session,
                          str(media_dir / SPEECH)], capture_output=True, text=True, timeout=60,
                         env=obs.env)  # the backend lives in OBS's (private, in tests) XDG_CONFIG_HOME
    assert out.returncode == 0, out.stderr
    obs.wait_for(lambda: "speaking" in obs.status(obs.name), 15, interval=0.1, what="speech frames in OBS")
    # polled: an utterance's first frames blend in from the footage, and OBS under load may show one frame twice
    assert obs.wait_for(lambda: np.abs(obs.screenshot(obs.name).astype(int) - idle).mean() > 0.1, 5,
                        interval=0.2, what="the speaking avatar on screen")


def test_kill9_real_backend_restarts(obs):
    pid = obs.backend_pid()
    assert pid
    stats0 = obs.client.get_stats()
    t0 = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    obs.wait_for(lambda: "killed by SIGKILL" in obs.status(obs.name), 3, interval=0.1,
                 what="the panel to report the crash")
    obs.wait_for(lambda: (p := obs.backend_pid()) and p != pid, 5, interval=0.05, what="a new backend process")
    print(f"new backend {time.monotonic() - t0:.2f} s after kill -9")
    obs.wait_status(obs.name, "running", timeout=START_TIMEOUT_S)
    stats1 = obs.client.get_stats()
    skipped = stats1.render_skipped_frames - stats0.render_skipped_frames
    rendered = stats1.render_total_frames - stats0.render_total_frames
    elapsed = time.monotonic() - t0
    print(f"render skipped {skipped}/{rendered} in {elapsed:.1f} s while the backend restarted")
    # OBS kept rendering. The plugin runs nothing on OBS's render thread (the fake-backend test holds skipped
    # frames to <= 5 %); here a real backend imports torch and loads a model on the same 2 cores that
    # llvmpipe renders on, so CPU starvation (not the plugin) can cost frames on a busy CI machine.
    assert rendered >= 0.5 * 30 * elapsed
    assert skipped <= max(5, rendered // 2)


def test_switch_avatar_without_restart(obs):
    pid = obs.backend_pid()
    obs.client.set_input_settings(obs.name, {"avatar": "synthetic"}, True)
    obs.wait_for(lambda: obs.screenshot(obs.name).shape[:2] == (240, 320), 60, interval=0.5,
                 what="the synthetic avatar (320x240) on screen")
    assert obs.backend_pid() == pid
    assert (ControlClient(obs.session).status() or {}).get("avatar") == "synthetic"


def test_av_sync_real_backend_pipeline(obs, tmp_path):
    """The real backend's clock and speech path, with frames painted white where a beep starts
    (tests/e2e/serve_flash.py): `say` a file of beeps, record 10 s in OBS, measure the offset."""
    from serve_flash import write_beeps
    from test_obs_av_sync import RECORD_S
    from av_analysis import measure

    wrapper = tmp_path / "flash-python"
    wrapper.write_text(f"#!/bin/sh\nexec {VENV_PY} {Path(__file__).parent / 'serve_flash.py'} \"$@\"\n")
    wrapper.chmod(0o755)
    beeps = write_beeps(tmp_path / "beeps.wav", seconds=RECORD_S)
    # the Wav2Lip 96 network (the checkpoint set in the fixture) on CPU: slower than real time on a busy 2-core
    # machine, so frames repeat, but audio still goes out 60 ms (--audio-lead-ms) ahead of its pts and the offset holds.
    # S2L_TEST_AV_SERVE_ARGS="--engine null" measures the clock and audio path without the network's CPU load.
    serve_args = os.environ.get("S2L_TEST_AV_SERVE_ARGS", "")
    obs.client.set_input_settings(obs.name, {"backend_python": str(wrapper), "avatar": "face",
                                             "serve_args": serve_args}, True)
    # only the flash backend left, and it answers: the source's status can still read "running" from the old
    # backend for a moment, while the new one has not published its session file yet (a full run saw `say` fail)
    obs.wait_for(lambda: (pids := obs.backend_pids(obs.session)) and all("serve_flash" in " ".join(_cmdline(p))
                                                                          for p in pids), 20,
                 what="the backend restarted with the flash wrapper")
    obs.wait_status(obs.name, "running", timeout=START_TIMEOUT_S)
    say = [str(VENV_PY), "-m", "stream_wav2lip", "say", "--session", obs.session]
    obs.wait_for(lambda: subprocess.run([*say, "--status"], capture_output=True, timeout=30, env=obs.env).returncode == 0,
                 START_TIMEOUT_S, interval=0.5, what="the flash backend answering `say --status`")
    h, w = obs.screenshot(obs.name).shape[:2]
    obs.client.start_record()
    time.sleep(0.5)
    out = subprocess.run([*say, str(beeps)], capture_output=True, text=True, timeout=60, env=obs.env)
    assert out.returncode == 0, out.stderr
    time.sleep(RECORD_S)
    path = obs.client.stop_record().output_path
    obs.wait_for(lambda: not obs.client.get_record_status().output_active, 10, what="recording to stop")
    time.sleep(1.0)
    result = measure(path, roi=(20, min(h, 720) - 20, 20, min(w, 1280) - 20))
    # where the beeps started inside their frames' audio blocks (the same for every beep of one utterance)
    log = Path(tempfile.gettempdir(), "stream-wav2lip-obs", f"{obs.session}.log").read_text(errors="replace")
    within = [float(m) for m in re.findall(r"serve_flash: onset ([0-9.]+) ms into the frame", log)]
    start_ms = statistics.median(within) if within else 0.0
    offset = result.median_ms - start_ms
    print(f"real backend A/V offsets (ms, + = audio late): {result.offsets_ms}; median {result.median_ms:.1f}; "
          f"beep starts {start_ms:.1f} ms into its frame -> offset {offset:.1f} ms; "
          f"flashes {result.flashes}, beeps {result.beeps}")
    obs.client.set_input_settings(obs.name, {"backend_python": "", "serve_args": ""}, True)
    assert len(result.offsets_ms) >= 5, result
    assert abs(offset) <= 40, result


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def test_obs_exit_stops_real_backend(obs):
    assert obs.backend_pid()
    code = obs.stop_obs()
    assert obs.exited_cleanly(code), f"OBS exited with {code}"
    assert obs.backend_pids(obs.session) == []
    assert obs.segments(obs.session) == []

"""What one loaded version of the script does behind the persistent thunks (see persist.py).

`Plugin` is installed as `persist.state().impl` by `script_load` and removed by `script_unload`. It owns
one `AvatarSource` per OBS source of our type: the settings snapshot, the pusher thread (rings -> OBS),
the backend supervisor and the status line. A status thread (never OBS's graphics thread) refreshes the
status once per 0.5 s and hands it to OBS's UI thread with `obs_queue_task`, which writes it into the
source's settings (key `status`): the panel shows it and obs-websocket clients can read it.
"""
from __future__ import annotations

import ctypes
import os
import threading
import time

from obs_plugin import libobs, panel, persist
from obs_plugin.libobs import b, cstr
from obs_plugin.source import Pusher
from obs_plugin.supervisor import BackendConfig, Supervisor, session_from_name
from shm_protocol.client import ControlClient
from shm_protocol.segments import unlink_session_segments

STATUS_PERIOD_S = 0.5


def read_settings(lib: ctypes.CDLL, settings: int) -> dict:
    """Snapshot of an obs_data_t* as a dict of our known keys (defaults applied by libobs)."""
    d = {}
    for k in panel.DEFAULTS_STR:
        d[k] = cstr(lib.obs_data_get_string(settings, b(k)))
    for k in panel.DEFAULTS_INT:
        d[k] = int(lib.obs_data_get_int(settings, b(k)))
    for k in panel.DEFAULTS_BOOL:
        d[k] = bool(lib.obs_data_get_bool(settings, b(k)))
    return d


class AvatarSource:
    """One `stream_wav2lip_avatar` source: pusher + supervisor + status."""

    def __init__(self, lib: ctypes.CDLL, handle: int, source: persist.SourceRef, settings: int):
        self.lib = lib
        self.handle = handle
        self.source = source
        with source.use() as ptr:
            self.name = (cstr(lib.obs_source_get_name(ptr)) if ptr else "") or f"avatar{handle}"
        self.session = session_from_name(self.name)
        self.settings = read_settings(lib, settings)
        self.control = ControlClient(self.session)
        self.pusher = Pusher(lib, source, self.session, lambda: self.settings.get("audio_delay_ms", 0))
        self.supervisor = Supervisor(self.backend_config(), self._heartbeat_ns, switcher=self._switch)
        self.status_text = ""
        self.status_level = libobs.OBS_TEXT_INFO_NORMAL
        self.actions: list[str] = []  # the running backend's action clips (its status)
        self._posted = None
        self.pusher.start()
        self.status_text, self.status_level = self.compute_status()
        self.write_status()  # attach runs on OBS's UI thread: replace a stale line from an earlier load
        if self.settings.get("autostart") and self.settings.get("avatar"):
            self.supervisor.start()

    # ------------------------------------------------------------------ settings
    def avatar_dir(self) -> str:
        name = self.settings.get("avatar", "")
        return os.path.join(os.path.expanduser(self.settings.get("avatars_root", "")), name) if name else ""

    def backend_config(self) -> BackendConfig:
        s = self.settings
        return BackendConfig(session=self.session, avatar_dir=self.avatar_dir(), checkpoint=s.get("checkpoint", ""),
                             engine=s.get("engine", ""),
                             device=s.get("device") or "auto", precision=s.get("precision") or "auto",
                             background=panel.background_arg(s), detail=s.get("detail") or "auto",
                             mic=bool(s.get("mic")),
                             mic_device=s.get("mic_device", ""), api_port=int(s.get("api_port") or 0),
                             backend_python=s.get("backend_python", ""), extra_args=_split_args(s.get("serve_args", "")))

    def update(self, settings: int) -> None:
        """Runs on OBS's graphics thread for video sources (deferred update): snapshot only, no waiting.
        The supervisor's thread then switches the avatar in the live backend or restarts it."""
        self.settings = read_settings(self.lib, settings)
        self.supervisor.reconfigure(self.backend_config())

    def _switch(self, new: BackendConfig) -> bool:
        """(Supervisor thread) Ask a live backend to switch avatars through its command mailbox (False: restart instead)."""
        try:
            if not self.control.alive():
                return False
            self.control.post("switch_avatar", avatar=new.avatar_dir)
            return True
        except (ConnectionError, ValueError, OSError):
            return False

    def _heartbeat_ns(self) -> int:
        """The video ring's writer heartbeat (0 while no live writer): proof that frames can flow.
        (The control dict's heartbeat is not used: it may pause while the backend loads a model.)"""
        return int(self.pusher.stats.get("heartbeat_ns") or 0)

    # ------------------------------------------------------------------ actions
    def start(self) -> None:
        self.supervisor.start()

    def stop(self) -> None:
        self.supervisor.stop()

    def flush(self) -> None:
        try:
            self.control.post("flush")
        except (ConnectionError, ValueError, OSError) as exc:
            libobs.log(self.lib, libobs.LOG_INFO, f"{self.name}: flush ignored ({exc})")

    def play_action(self, name: str) -> None:
        """Cue the backend's action clip `name` (hotkey, panel button); an avatar without it says so in its
        status line."""
        if not name or (self.actions and name not in self.actions):
            return
        try:
            self.control.post("action", name=name)
        except (ConnectionError, ValueError, OSError) as exc:
            libobs.log(self.lib, libobs.LOG_INFO, f"{self.name}: action {name} ignored ({exc})")

    def shutdown(self) -> None:
        """Stop everything this source started and free the session's segments (synchronous)."""
        self.pusher.stop()
        self.supervisor.shutdown()
        unlink_session_segments(self.session)

    # ------------------------------------------------------------------ status
    def compute_status(self) -> tuple[str, int]:
        state, detail = self.supervisor.status()
        st = self.pusher.stats
        level = libobs.OBS_TEXT_INFO_NORMAL
        if state == "running" and st["fps"] <= 0:
            state, detail = "starting", f"{detail}, waiting for frames"
        if state == "running":
            status = {}
            try:
                status = self.control.status() or {}
            except (OSError, ValueError):
                pass
            if isinstance(status.get("actions"), list):
                self.actions = [str(a) for a in status["actions"]]
            parts = [f"running: {self.settings.get('avatar') or '?'}", f"{st['fps']:.1f} fps"]
            if isinstance(status.get("latency_ms"), (int, float)):
                parts.append(f"latency {status['latency_ms']:.0f} ms")
            if status.get("state") and status.get("state") != "running":
                parts.append(str(status["state"]))
            if st["speech"]:
                parts.append("speaking")
            speech_fps = status.get("speech_fps")
            if isinstance(speech_fps, (int, float)) and speech_fps < 24.5:  # the CPU draws fewer mouths than 25
                parts.append(f"mouth {speech_fps:.0f} fps")
            if str(status.get("detail", "")).startswith("off:"):  # --detail auto gave the stage up (serve's log)
                parts.append("mouth detail off (CPU)")
            if status.get("error"):
                parts.append(f"error: {status['error']}")
                level = libobs.OBS_TEXT_INFO_WARNING
            if self.supervisor.recent_error():
                parts.append(f"recovered from: {self.supervisor.recent_error()}")
            text = " · ".join(parts)
        elif state in ("restarting", "error"):
            text = f"{state}: {detail}"
            level = libobs.OBS_TEXT_INFO_ERROR
        elif state == "starting":
            text = f"starting ({detail})"
            if self.supervisor.recent_error():
                text += f" · after: {self.supervisor.recent_error()}"
        elif st["writer_alive"] and st["fps"] > 0:  # e.g. `stream-wav2lip serve --session <this name>` by hand
            text = f"showing a backend started outside OBS · {st['fps']:.1f} fps (Start would conflict with it)"
        else:
            text = "stopped"
            if self.supervisor.last_error:
                text += f" · last error: {self.supervisor.last_error}"
        return f"{text} · session {self.session}", level

    def refresh_status(self, st) -> None:
        text, level = self.compute_status()
        self.status_text, self.status_level = text, level
        if text != self._posted:
            self._posted = text
            self.lib.obs_queue_task(libobs.OBS_TASK_UI, ctypes.cast(st.task_thunk, ctypes.c_void_p), self.handle,
                                    False)

    def write_status(self) -> None:
        """On OBS's UI thread: store the status line in the source's settings (shown by the panel), and give
        every action of the running backend its hotkey (`stream_wav2lip.action.<name>`, registered once).
        Nothing happens once libobs has destroyed the source (e.g. during OBS's exit)."""
        for name in self.actions:
            persist.action_hotkey(self.lib, name)
        with self.source.use() as ptr:
            data = self.lib.obs_source_get_settings(ptr) if ptr else None
            if data:
                try:
                    self.lib.obs_data_set_string(data, b"status", b(self.status_text))
                finally:
                    self.lib.obs_data_release(data)


def _split_args(text: str) -> tuple[str, ...]:
    import shlex

    try:
        return tuple(shlex.split(text or ""))
    except ValueError:  # unbalanced quotes while typing: ignore until fixed
        return ()


class Plugin:
    """The implementation behind the persistent thunks for one loaded version of the script."""

    def __init__(self, lib: ctypes.CDLL, abi_error: str = ""):
        self.lib = lib
        self.abi_error = abi_error
        self.st = persist.state()
        self.sources: dict[int, AvatarSource] = {}
        self._quit = threading.Event()
        self._status_thread = threading.Thread(target=self._status_loop, name="s2l-status", daemon=True)

    def install(self) -> None:
        """Become the active implementation and adopt sources created by an earlier script version."""
        self.st.impl = self
        for handle, ref in list(self.st.sources.items()):
            try:
                with ref.use() as ptr:
                    if not ptr:
                        continue  # destroyed meanwhile
                    settings = self.lib.obs_source_get_settings(ptr)
                try:
                    self.attach(handle, ref, settings)
                finally:
                    self.lib.obs_data_release(settings)
            except Exception as exc:  # noqa: BLE001
                libobs.log(self.lib, libobs.LOG_WARNING, f"could not adopt source {handle}: {exc!r}")
        self._status_thread.start()

    def uninstall(self) -> None:
        """script_unload: stop every backend and thread, free every segment, leave the thunks dormant."""
        if self.st.impl is self:
            self.st.impl = None
        self._quit.set()
        for src in list(self.sources.values()):
            try:
                src.shutdown()
                src.status_text = f"stopped (script not loaded) · session {src.session}"
                src.write_status()  # script_unload runs on OBS's UI thread
            except Exception as exc:  # noqa: BLE001
                libobs.log(self.lib, libobs.LOG_WARNING, f"shutdown of {src.name}: {exc!r}")
        self.sources.clear()
        if self._status_thread.is_alive():
            self._status_thread.join(2.0)

    # ------------------------------------------------------------------ thunk targets
    def attach(self, handle: int, source: persist.SourceRef, settings: int) -> None:
        if self.abi_error:
            return
        self.sources[handle] = AvatarSource(self.lib, handle, source, settings)

    def detach(self, handle: int) -> None:
        src = self.sources.pop(handle, None)
        if src is not None:
            src.shutdown()

    def defaults(self, settings: int) -> None:
        panel.set_defaults(self.lib, settings)

    def properties(self, handle: int) -> int:
        src = self.sources.get(handle)
        if src is None:
            snapshot, text, level = {}, "stopped", libobs.OBS_TEXT_INFO_NORMAL
        else:
            snapshot, text, level = src.settings, src.status_text, src.status_level
        return panel.build(self.lib, handle, snapshot, text, level, self.abi_error)

    def update(self, handle: int, settings: int) -> None:
        src = self.sources.get(handle)
        if src is not None:
            src.update(settings)

    def button(self, handle: int, name: str, props: int) -> bool:
        src = self.sources.get(handle)
        if src is None:
            return False
        if name == "start":
            src.start()
        elif name == "stop":
            src.stop()
        elif name == "play_action":
            src.play_action(src.settings.get("action", ""))
        elif name == "refresh":
            prop = self.lib.obs_properties_get(props, b"avatar")
            if prop:
                panel.fill_avatar_list(self.lib, prop, src.settings.get("avatars_root", ""),
                                       src.settings.get("avatar", ""))
        return True  # refresh the panel (status line, lists)

    def modified(self, handle: int, props: int, prop: int, settings: int) -> bool:
        """avatars_root edited in the panel: refill the avatar dropdown from the new folder."""
        lst = self.lib.obs_properties_get(props, b"avatar")
        if not lst:
            return False
        root = cstr(self.lib.obs_data_get_string(settings, b"avatars_root"))
        current = cstr(self.lib.obs_data_get_string(settings, b"avatar"))
        panel.fill_avatar_list(self.lib, lst, root, current)
        return True

    def ui_task(self, handle: int) -> None:
        src = self.sources.get(handle)
        if src is not None:
            src.write_status()

    # ------------------------------------------------------------------ hotkeys (all sources)
    def hotkey(self, action: str) -> None:
        for src in list(self.sources.values()):
            getattr(src, action)()

    def action_hotkey(self, name: str) -> None:
        """`stream_wav2lip.action.<name>` pressed: every source whose avatar has that action plays it."""
        for src in list(self.sources.values()):
            src.play_action(name)

    # ------------------------------------------------------------------ status thread
    def _status_loop(self) -> None:
        while not self._quit.wait(STATUS_PERIOD_S):
            for src in list(self.sources.values()):
                try:
                    src.refresh_status(self.st)
                except Exception as exc:  # noqa: BLE001
                    libobs.log(self.lib, libobs.LOG_WARNING, f"status of {src.name}: {exc!r}")
            time.sleep(0)

"""stream-wav2lip for OBS Studio: add this file under Tools -> Scripts.

It registers the source "Lip-sync avatar (stream-wav2lip)" (id `stream_wav2lip_avatar`): pick an avatar in
its properties, press Start, and the avatar idles, then talks when speech arrives (`stream-wav2lip say`,
the local API or the microphone), with its audio in OBS's mixer, in sync with the picture.

Hotkeys (Settings -> Hotkeys): "Lip sync: start", "Lip sync: stop", "Lip sync: flush speech".

Everything heavy runs in the backend process (`stream-wav2lip serve`, the project's own venv); inside OBS
only the standard library and numpy are used. See docs/obs.md.
"""
from __future__ import annotations

import glob
import os
import site
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
_ROOT = os.path.dirname(_HERE)


def _add_paths() -> None:
    """Make `obs_plugin` and `shm_protocol` importable (both live in the repository root) and numpy available
    (from the project's venv if OBS lacks it)."""
    if _ROOT not in sys.path:
        sys.path.insert(0, _ROOT)
    try:
        import numpy  # noqa: F401
        return
    except ImportError:
        pass
    tag = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    patterns = [os.path.join(_ROOT, ".venv", "lib", tag, "site-packages"),
                os.path.join(_ROOT, ".venv", "Lib", "site-packages")]
    extra = os.environ.get("STREAM_WAV2LIP_SITE")
    if extra:
        patterns.insert(0, extra)
    for pattern in patterns:
        for path in glob.glob(pattern):
            site.addsitedir(path)


_add_paths()

import obspython as obs  # noqa: E402  (provided by OBS)

from obs_plugin import libobs, persist  # noqa: E402

HOTKEYS = (
    ("stream_wav2lip.start", "Lip sync: start", "start"),
    ("stream_wav2lip.stop", "Lip sync: stop", "stop"),
    ("stream_wav2lip.flush", "Lip sync: flush speech", "flush"),
)

_plugin = None
_hotkey_ids: dict[str, int] = {}
_load_error = ""


def script_description() -> str:
    text = ("<b>stream-wav2lip</b>: a lip-synced avatar source.<br>"
            "Add a source <i>Lip-sync avatar (stream-wav2lip)</i> to a scene, pick the avatar in its properties "
            "and press <b>Start</b>. Hotkeys: Settings → Hotkeys → <i>Lip sync: …</i>.")
    if _load_error:
        text += f"<br><span style='color:#e55'><b>Not loaded:</b> {_load_error}</span>"
    return text


def _reload_submodules() -> None:
    """Tools -> Scripts -> Reload re-runs only this file; re-import our helpers so edits take effect.
    persist.py is deliberately not reloaded (its thunks must stay the ones libobs holds)."""
    import importlib

    protocol = sys.modules.get("shm_protocol")
    for name in (*(protocol.MODULES if protocol else ()), "obs_plugin.libobs", "obs_plugin.source",
                 "obs_plugin.supervisor", "obs_plugin.panel", "obs_plugin.plugin"):
        mod = sys.modules.get(name)
        if mod is not None:
            importlib.reload(mod)


def _make_hotkey_cb(action: str):
    def on_hotkey(pressed):
        if not pressed or _plugin is None:
            return
        try:
            _plugin.hotkey(action)
        except Exception as exc:  # noqa: BLE001 - never raise into OBS
            libobs.log(_plugin.lib, libobs.LOG_WARNING, f"hotkey {action}: {exc!r}")
    return on_hotkey


def script_load(settings) -> None:
    global _plugin, _load_error
    try:
        _reload_submodules()
        from obs_plugin import plugin as plugin_mod
    except ImportError as exc:  # numpy missing for OBS's Python: say what to do instead of a traceback
        _load_error = (f"{exc}. OBS's Python needs numpy: run ./install.sh (it makes {_ROOT}/.venv with "
                       f"Python {sys.version_info[0]}.{sys.version_info[1]}) or install python3-numpy")
        try:
            lib = libobs.load()
        except libobs.AbiError:
            lib = None
        libobs.log(lib, libobs.LOG_ERROR, _load_error)
        return

    lib = None
    abi_error = ""
    try:
        lib = libobs.load()
        version = libobs.check_abi(lib)
        libobs.log(lib, libobs.LOG_INFO, f"loading on OBS {version} (Python {sys.version.split()[0]})")
    except libobs.AbiError as exc:
        abi_error = str(exc)
        libobs.log(lib, libobs.LOG_ERROR, f"not supported here: {abi_error}")
    _load_error = abi_error
    if lib is None:
        return
    if not abi_error:
        persist.register(lib)
    _plugin = plugin_mod.Plugin(lib, abi_error)
    if not abi_error:
        _plugin.install()
    for name, label, action in HOTKEYS:
        hk = obs.obs_hotkey_register_frontend(name, label, _make_hotkey_cb(action))
        _hotkey_ids[name] = hk
        _load_binding(settings, name, hk)
    # action hotkeys are registered when a backend reports its actions (plugin.AvatarSource.write_status)
    persist.state().binding_loader = lambda name, hk: _load_binding(settings, name, hk)


def _load_binding(settings, name: str, hk: int) -> None:
    arr = obs.obs_data_get_array(settings, name)
    obs.obs_hotkey_load(hk, arr)
    obs.obs_data_array_release(arr)


def script_save(settings) -> None:
    registered = persist.state().__dict__.get("action_ids", {})
    actions = {f"stream_wav2lip.action.{name}": hk for name, hk in registered.items()}
    for name, hk in {**_hotkey_ids, **actions}.items():
        arr = obs.obs_hotkey_save(hk)
        obs.obs_data_set_array(settings, name, arr)
        obs.obs_data_array_release(arr)


def script_unload() -> None:
    global _plugin
    persist.state().binding_loader = None
    if _plugin is not None:
        try:
            _plugin.uninstall()
            libobs.log(_plugin.lib, libobs.LOG_INFO, "unloaded: backends stopped, segments freed")
        except Exception as exc:  # noqa: BLE001
            libobs.log(_plugin.lib, libobs.LOG_ERROR, f"unload: {exc!r}")
    _plugin = None
    _hotkey_ids.clear()

"""The source's settings panel (OBS properties), built with ctypes calls into libobs.

Property names are a stable contract (docs/architecture.md, "OBS names"): scene collections and the tests use them.
Buttons use `obs_properties_add_button2` with persistent thunks because obspython's button helper is
bound to a script context that does not exist inside a ctypes callback (docs/obs.md, "Facts about OBS
this plugin relies on").
Stdlib only; runs on OBS's UI thread, so it must stay quick (a directory listing at most).
"""
from __future__ import annotations

import ctypes
import json
import os
from pathlib import Path

from obs_plugin import libobs, persist
from obs_plugin.libobs import b

DEVICES = (("auto", "Auto (CUDA if available)"), ("cuda", "CUDA (NVIDIA GPU)"), ("cpu", "CPU"))


def engines() -> list[tuple[str, str]]:
    """(value, label) of the engine list: "auto" and every listed generator of the one registry
    (backend/generators/registry.py is stdlib-only, so OBS's Python can import it)."""
    from backend.generators.registry import entries

    return [("", "Auto (the network with a checkpoint, else the mouth engine)")] + \
        [(e.name, f"{e.name}: {e.summary}") for e in entries()]


BACKGROUNDS = (("original", "The footage's own"), ("transparent", "Transparent (over the scene)"),
               ("color", "A colour"), ("image", "An image"))


def background_arg(settings: dict) -> str:
    """`serve --background` for the panel's choice ("original" when a colour or image is missing)."""
    kind = settings.get("background") or "original"
    if kind == "color":
        return settings.get("background_color") or "original"
    if kind == "image":
        return settings.get("background_image") or "original"
    return kind if kind in ("original", "transparent") else "original"


def precisions() -> list[tuple[str, str]]:
    """(value, label) of the precision list: the same choices as `serve --precision` (the registry's)."""
    from backend.generators.registry import PRECISIONS

    labels = {"auto": "Auto (int8 on a slow CPU when it validates on the avatar, else fp32)",
              "fp32": "fp32 (exact)", "int8": "int8 (CPU, validated on the avatar, else fp32)",
              "fp16": "fp16 (CUDA, validated on the avatar, else fp32)"}
    return [(value, labels.get(value, value)) for value in PRECISIONS]


DEFAULT_AVATARS_ROOT = str(Path(__file__).resolve().parents[1] / "avatars")

DEFAULTS_STR = {
    "avatars_root": DEFAULT_AVATARS_ROOT,
    "avatar": "",
    "engine": "",
    "action": "",
    "checkpoint": "",
    "device": "auto",
    "precision": "auto",
    "background": "original",
    "detail": "auto",
    "background_color": "#00b140",
    "background_image": "",
    "mic_device": "",
    "backend_python": "",
    "serve_args": "",
    "status": "stopped",
}
DEFAULTS_INT = {"audio_delay_ms": 0, "api_port": 0}
DEFAULTS_BOOL = {"mic": False, "autostart": False}


def list_avatars(root: str) -> list[str]:
    """Sub-folders of `root` that are avatar packages (manifest.json + face_det.npz), sorted."""
    try:
        entries = sorted(os.scandir(os.path.expanduser(root)), key=lambda e: e.name.lower())
    except OSError:
        return []
    out = []
    for e in entries:
        try:
            if e.is_dir() and os.path.isfile(os.path.join(e.path, "manifest.json")) and \
                    os.path.isfile(os.path.join(e.path, "face_det.npz")):
                out.append(e.name)
        except OSError:
            continue
    return out


def set_defaults(lib: ctypes.CDLL, settings: int) -> None:
    for k, v in DEFAULTS_STR.items():
        lib.obs_data_set_default_string(settings, b(k), b(v))
    for k, v in DEFAULTS_INT.items():
        lib.obs_data_set_default_int(settings, b(k), v)
    for k, v in DEFAULTS_BOOL.items():
        lib.obs_data_set_default_bool(settings, b(k), v)


def list_actions(root: str, avatar: str) -> list[str]:
    """The action clips of an avatar package, from its manifest (preprocess --action NAME=CLIP)."""
    if not avatar:
        return []
    try:
        manifest = json.loads((Path(os.path.expanduser(root)) / avatar / "manifest.json").read_text("utf-8"))
    except (OSError, ValueError):
        return []
    actions = manifest.get("actions") if isinstance(manifest, dict) else None
    return sorted(str(name) for name in actions) if isinstance(actions, dict) else []


def fill_avatar_list(lib: ctypes.CDLL, prop: int, root: str, current: str) -> None:
    lib.obs_property_list_clear(prop)
    names = list_avatars(root)
    if current and current not in names:
        names.insert(0, current)  # keep the saved choice visible even if the folder vanished
    if not names:
        lib.obs_property_list_add_string(prop, b"(no avatar packages in this folder)", b"")
    for n in names:
        lib.obs_property_list_add_string(prop, b(n), b(n))


def build(lib: ctypes.CDLL, handle: int, settings: dict, status_text: str, status_level: int,
          abi_error: str = "") -> int:
    """Create the panel for the source `handle`; `settings` is a dict snapshot of its current settings."""
    props = lib.obs_properties_create()
    st = lib.obs_properties_add_text(props, b"status", b"Status", libobs.OBS_TEXT_INFO)
    lib.obs_property_text_set_info_type(st, status_level)
    if abi_error:
        err = lib.obs_properties_add_text(props, b"abi_error", b(abi_error), libobs.OBS_TEXT_INFO)
        lib.obs_property_text_set_info_type(err, libobs.OBS_TEXT_INFO_ERROR)
        return props
    lib.obs_properties_add_button2(props, b"start", b"Start", ctypes.cast(persist.button_thunk("start"),
                                                                            ctypes.c_void_p), handle)
    lib.obs_properties_add_button2(props, b"stop", b"Stop", ctypes.cast(persist.button_thunk("stop"),
                                                                          ctypes.c_void_p), handle)
    root = lib.obs_properties_add_path(props, b"avatars_root", b"Avatars folder", libobs.OBS_PATH_DIRECTORY,
                                       None, b(DEFAULT_AVATARS_ROOT))
    lib.obs_property_set_long_description(
        root, b"Folder whose sub-folders are avatar packages made by 'stream-wav2lip preprocess'.")
    lib.obs_property_set_modified_callback2(root, ctypes.cast(persist.state().modified_thunk, ctypes.c_void_p),
                                            handle)
    avatar = lib.obs_properties_add_list(props, b"avatar", b"Avatar", libobs.OBS_COMBO_TYPE_LIST,
                                         libobs.OBS_COMBO_FORMAT_STRING)
    fill_avatar_list(lib, avatar, settings.get("avatars_root", ""), settings.get("avatar", ""))
    lib.obs_property_set_long_description(avatar, b"Switching while running restarts the backend with it.")
    lib.obs_properties_add_button2(props, b"refresh", b"Refresh avatar list",
                                   ctypes.cast(persist.button_thunk("refresh"), ctypes.c_void_p), handle)
    actions = list_actions(settings.get("avatars_root", ""), settings.get("avatar", ""))
    act = lib.obs_properties_add_list(props, b"action", b"Action", libobs.OBS_COMBO_TYPE_LIST,
                                      libobs.OBS_COMBO_FORMAT_STRING)
    for name in actions or [""]:
        lib.obs_property_list_add_string(act, b(name or "(this avatar has no actions)"), b(name))
    lib.obs_property_set_long_description(act, b"Clips added with 'preprocess --action NAME=CLIP'. Each also has "
                                               b"a hotkey: Settings -> Hotkeys -> 'Lip sync: play action NAME'.")
    lib.obs_properties_add_button2(props, b"play_action", b"Play action",
                                   ctypes.cast(persist.button_thunk("play_action"), ctypes.c_void_p), handle)
    eng = lib.obs_properties_add_list(props, b"engine", b"Engine", libobs.OBS_COMBO_TYPE_LIST,
                                      libobs.OBS_COMBO_FORMAT_STRING)
    for value, label in engines():
        lib.obs_property_list_add_string(eng, b(label), b(value))
    ck = lib.obs_properties_add_path(props, b"checkpoint", b"Checkpoint (.pth, empty = no weights)",
                                     libobs.OBS_PATH_FILE, b"Checkpoints (*.pth *.pt *.ckpt);;All files (*.*)", None)
    lib.obs_property_set_long_description(ck, b"Wav2Lip 96/288/384 checkpoint. Empty: the weightless mouth engine.")
    dev = lib.obs_properties_add_list(props, b"device", b"Device", libobs.OBS_COMBO_TYPE_LIST,
                                      libobs.OBS_COMBO_FORMAT_STRING)
    for value, label in DEVICES:
        lib.obs_property_list_add_string(dev, b(label), b(value))
    det = lib.obs_properties_add_list(props, b"detail", b"Mouth detail", libobs.OBS_COMBO_TYPE_LIST,
                                      libobs.OBS_COMBO_FORMAT_STRING)
    for value, label in (("auto", "Auto (restore teeth and lips after a 96 px network; off if the CPU lags)"),
                         ("on", "On"), ("off", "Off")):
        lib.obs_property_list_add_string(det, b(label), b(value))
    bg = lib.obs_properties_add_list(props, b"background", b"Background", libobs.OBS_COMBO_TYPE_LIST,
                                     libobs.OBS_COMBO_FORMAT_STRING)
    for value, label in BACKGROUNDS:
        lib.obs_property_list_add_string(bg, b(label), b(value))
    lib.obs_property_set_long_description(bg, b"Transparent: the avatar over whatever is below this source in the "
                                              b"scene (the avatar's matte, made by preprocess). Restarts the backend.")
    lib.obs_properties_add_text(props, b"background_color", b"Background colour (#RRGGBB)", libobs.OBS_TEXT_DEFAULT)
    lib.obs_properties_add_path(props, b"background_image", b"Background image", libobs.OBS_PATH_FILE,
                                b"Images (*.png *.jpg *.jpeg *.bmp *.webp);;All files (*.*)", None)
    prec = lib.obs_properties_add_list(props, b"precision", b"Precision", libobs.OBS_COMBO_TYPE_LIST,
                                       libobs.OBS_COMBO_FORMAT_STRING)
    for value, label in precisions():
        lib.obs_property_list_add_string(prec, b(label), b(value))
    lib.obs_property_set_long_description(prec, b"The network's arithmetic. int8 and fp16 are checked against fp32 "
                                                b"on the avatar when the backend starts (once, then cached) and "
                                                b"refused, with a warning in the log, when the faces differ.")
    lib.obs_properties_add_bool(props, b"mic", b"Microphone drives the lips")
    mic = lib.obs_properties_add_text(props, b"mic_device", b"Microphone device (empty = default)",
                                      libobs.OBS_TEXT_DEFAULT)
    lib.obs_property_set_long_description(mic, b"PortAudio device name or index; see 'stream-wav2lip doctor'.")
    delay = lib.obs_properties_add_int(props, b"audio_delay_ms", b"Audio delay", -1000, 2000, 5)
    lib.obs_property_int_set_suffix(delay, b" ms")
    lib.obs_property_set_long_description(delay, b"Added to the avatar's audio timestamps (positive = later).")
    lib.obs_properties_add_int(props, b"api_port", b"Local API port (0 = backend default)", 0, 65535, 1)
    py = lib.obs_properties_add_path(props, b"backend_python", b"Backend Python (empty = auto)",
                                     libobs.OBS_PATH_FILE, None, None)
    lib.obs_property_set_long_description(py, b"The interpreter of the stream-wav2lip venv (.venv/bin/python). "
                                              b"Empty: the .venv next to this plugin.")
    extra = lib.obs_properties_add_text(props, b"serve_args", b"Extra backend arguments", libobs.OBS_TEXT_DEFAULT)
    lib.obs_property_set_long_description(extra, b"Appended to 'stream-wav2lip serve', e.g. --crop body "
                                                 b"--batch-size 2 --play-audio")
    lib.obs_properties_add_bool(props, b"autostart", b"Start the backend when OBS starts")
    return props

"""ctypes view of the parts of libobs (OBS 29.x ABI) that the OBS script needs and SWIG cannot reach.

OBS's Python bindings cannot register a source type nor pass pixel/audio pointers (docs/obs.md, "Facts about
OBS this plugin relies on"), so the source is registered by calling libobs directly. Struct layouts
and enum values are copied by hand; `check_abi()` asserts them at load time so that an OBS with another
ABI is refused with a clear message instead of crashing.

Only the *prefix* of `struct obs_source_info` up to `video_render` is declared: `obs_register_source_s`
copies `size` bytes into a zeroed struct, so a prefix is legal, and an async source needs nothing beyond it.
Stdlib only (runs inside OBS's embedded Python).
"""
from __future__ import annotations

import ctypes
import sys
from ctypes import (CFUNCTYPE, POINTER, Structure, c_bool, c_char_p, c_float, c_int, c_int64, c_long, c_size_t,
                    c_uint8, c_uint16, c_uint32, c_uint64, c_void_p)

SUPPORTED_MAJOR = (29, 30, 31, 32)  # obs_source_frame/obs_source_audio/obs_source_info prefix unchanged 29..32
MAX_AV_PLANES = 8

# enum obs_source_type / output flags (obs-source.h)
OBS_SOURCE_TYPE_INPUT = 0
OBS_SOURCE_VIDEO = 1 << 0
OBS_SOURCE_AUDIO = 1 << 1
OBS_SOURCE_ASYNC = 1 << 2
OBS_SOURCE_ASYNC_VIDEO = OBS_SOURCE_ASYNC | OBS_SOURCE_VIDEO
OBS_SOURCE_DO_NOT_DUPLICATE = 1 << 7
# enum obs_icon_type is set through a later field; not needed.

# enum video_format (media-io/video-io.h)
VIDEO_FORMAT_BGRA = 7
# enum audio_format / speaker_layout (media-io/audio-io.h)
AUDIO_FORMAT_16BIT = 2
AUDIO_FORMAT_FLOAT = 4
SPEAKERS_MONO = 1
SPEAKERS_STEREO = 2

# properties (obs-properties.h)
OBS_PATH_FILE = 0
OBS_PATH_DIRECTORY = 2
OBS_COMBO_TYPE_EDITABLE = 1
OBS_COMBO_TYPE_LIST = 2
OBS_COMBO_FORMAT_STRING = 3
OBS_TEXT_DEFAULT = 0
OBS_TEXT_INFO = 3
OBS_TEXT_INFO_NORMAL = 0
OBS_TEXT_INFO_WARNING = 1
OBS_TEXT_INFO_ERROR = 2

# enum obs_task_type (obs.h)
OBS_TASK_UI = 0

# log levels (util/base.h)
LOG_ERROR = 100
LOG_WARNING = 200
LOG_INFO = 300


class SourceInfoPrefix(Structure):
    """`struct obs_source_info` up to and including `video_render` (offset 120 in 29.x)."""

    _fields_ = [
        ("id", c_char_p),
        ("type", c_int),
        ("output_flags", c_uint32),
        ("get_name", c_void_p),
        ("create", c_void_p),
        ("destroy", c_void_p),
        ("get_width", c_void_p),
        ("get_height", c_void_p),
        ("get_defaults", c_void_p),
        ("get_properties", c_void_p),
        ("update", c_void_p),
        ("activate", c_void_p),
        ("deactivate", c_void_p),
        ("show", c_void_p),
        ("hide", c_void_p),
        ("video_tick", c_void_p),
        ("video_render", c_void_p),
    ]


class SourceFrame(Structure):
    """`struct obs_source_frame` (232 bytes in 29.0.2 .. 32.x)."""

    _fields_ = [
        ("data", c_void_p * MAX_AV_PLANES),
        ("linesize", c_uint32 * MAX_AV_PLANES),
        ("width", c_uint32),
        ("height", c_uint32),
        ("timestamp", c_uint64),
        ("format", c_int),
        ("color_matrix", c_float * 16),
        ("full_range", c_bool),
        ("max_luminance", c_uint16),
        ("color_range_min", c_float * 3),
        ("color_range_max", c_float * 3),
        ("flip", c_bool),
        ("flags", c_uint8),
        ("trc", c_uint8),
        ("refs", c_long),
        ("prev_frame", c_bool),
    ]


class SourceAudio(Structure):
    """`struct obs_source_audio` (88 bytes)."""

    _fields_ = [
        ("data", c_void_p * MAX_AV_PLANES),
        ("frames", c_uint32),
        ("speakers", c_int),
        ("format", c_int),
        ("samples_per_sec", c_uint32),
        ("timestamp", c_uint64),
    ]


# Callback signatures (the thunks are created once per process, see persist.py).
GET_NAME = CFUNCTYPE(c_void_p, c_void_p)
CREATE = CFUNCTYPE(c_void_p, c_void_p, c_void_p)
DESTROY = CFUNCTYPE(None, c_void_p)
GET_DEFAULTS = CFUNCTYPE(None, c_void_p)
GET_PROPERTIES = CFUNCTYPE(c_void_p, c_void_p)
UPDATE = CFUNCTYPE(None, c_void_p, c_void_p)
ACTIVATE = CFUNCTYPE(None, c_void_p)
BUTTON_CLICKED = CFUNCTYPE(c_bool, c_void_p, c_void_p, c_void_p)  # (props, property, priv)
MODIFIED2 = CFUNCTYPE(c_bool, c_void_p, c_void_p, c_void_p, c_void_p)  # (priv, props, property, settings)
TASK = CFUNCTYPE(None, c_void_p)
HOTKEY = CFUNCTYPE(None, c_void_p, c_size_t, c_void_p, c_bool)  # (data, id, hotkey, pressed)

# (name, restype, argtypes): every libobs function the plugin calls through ctypes.
_FUNCTIONS = [
    ("obs_get_version_string", c_char_p, []),
    ("obs_register_source_s", None, [c_void_p, c_size_t]),
    ("obs_source_output_video", None, [c_void_p, POINTER(SourceFrame)]),
    ("obs_source_output_audio", None, [c_void_p, POINTER(SourceAudio)]),
    ("obs_source_set_async_unbuffered", None, [c_void_p, c_bool]),
    ("obs_source_get_name", c_char_p, [c_void_p]),
    ("obs_source_get_settings", c_void_p, [c_void_p]),
    ("obs_source_get_id", c_char_p, [c_void_p]),
    ("obs_data_release", None, [c_void_p]),
    ("obs_data_get_string", c_char_p, [c_void_p, c_char_p]),
    ("obs_data_get_int", c_int64, [c_void_p, c_char_p]),
    ("obs_data_get_bool", c_bool, [c_void_p, c_char_p]),
    ("obs_data_set_string", None, [c_void_p, c_char_p, c_char_p]),
    ("obs_data_set_default_string", None, [c_void_p, c_char_p, c_char_p]),
    ("obs_data_set_default_int", None, [c_void_p, c_char_p, c_int64]),
    ("obs_data_set_default_bool", None, [c_void_p, c_char_p, c_bool]),
    ("obs_properties_create", c_void_p, []),
    ("obs_properties_get", c_void_p, [c_void_p, c_char_p]),
    ("obs_properties_add_path", c_void_p, [c_void_p, c_char_p, c_char_p, c_int, c_char_p, c_char_p]),
    ("obs_properties_add_list", c_void_p, [c_void_p, c_char_p, c_char_p, c_int, c_int]),
    ("obs_properties_add_bool", c_void_p, [c_void_p, c_char_p, c_char_p]),
    ("obs_properties_add_int", c_void_p, [c_void_p, c_char_p, c_char_p, c_int, c_int, c_int]),
    ("obs_properties_add_text", c_void_p, [c_void_p, c_char_p, c_char_p, c_int]),
    ("obs_properties_add_button2", c_void_p, [c_void_p, c_char_p, c_char_p, c_void_p, c_void_p]),
    ("obs_property_list_add_string", c_size_t, [c_void_p, c_char_p, c_char_p]),
    ("obs_property_list_clear", None, [c_void_p]),
    ("obs_property_set_long_description", None, [c_void_p, c_char_p]),
    ("obs_property_set_modified_callback2", None, [c_void_p, c_void_p, c_void_p]),
    ("obs_property_text_set_info_type", None, [c_void_p, c_int]),
    ("obs_property_int_set_suffix", None, [c_void_p, c_char_p]),
    ("obs_get_frame_interval_ns", c_uint64, []),
    ("obs_queue_task", None, [c_int, c_void_p, c_void_p, c_bool]),
    ("obs_hotkey_register_frontend", c_size_t, [c_char_p, c_char_p, c_void_p, c_void_p]),
    ("blog", None, [c_int, c_char_p, c_char_p]),  # variadic; always called as blog(level, "%s", msg)
]


class AbiError(RuntimeError):
    """This OBS has a libobs the plugin was not written for."""


def load() -> ctypes.CDLL:
    """The already-loaded libobs with argument/return types declared for every function we call."""
    names = {"win32": ["obs.dll"], "darwin": ["libobs.framework/libobs", "libobs.dylib"]}.get(
        sys.platform, ["libobs.so.0", "libobs.so"])
    last = None
    for name in names:
        try:
            lib = ctypes.CDLL(name)
            break
        except OSError as exc:
            last = exc
    else:
        raise AbiError(f"libobs not found ({last})")
    missing = []
    for fname, restype, argtypes in _FUNCTIONS:
        try:
            fn = getattr(lib, fname)
        except AttributeError:
            missing.append(fname)
            continue
        fn.restype = restype
        fn.argtypes = argtypes
    if missing:
        raise AbiError("libobs lacks " + ", ".join(missing))
    return lib


def version_tuple(text: str) -> tuple[int, int, int]:
    """'29.0.2' / '29.0.2-1' / '30.0.0-rc1' -> (29, 0, 2)."""
    parts = []
    for piece in text.split(".")[:3]:
        digits = ""
        for ch in piece:
            if not ch.isdigit():
                break
            digits += ch
        parts.append(int(digits or 0))
    while len(parts) < 3:
        parts.append(0)
    return parts[0], parts[1], parts[2]


def check_abi(lib: ctypes.CDLL) -> str:
    """Assert struct sizes/offsets and the OBS major version; returns the version string.

    Raises AbiError with a message meant for the OBS log and the source's panel.
    """
    expected = {
        "sizeof(obs_source_frame)": (ctypes.sizeof(SourceFrame), 232),
        "offsetof(obs_source_frame.timestamp)": (SourceFrame.timestamp.offset, 104),
        "offsetof(obs_source_frame.format)": (SourceFrame.format.offset, 112),
        "offsetof(obs_source_frame.refs)": (SourceFrame.refs.offset, 216),
        "sizeof(obs_source_audio)": (ctypes.sizeof(SourceAudio), 88),
        "offsetof(obs_source_audio.frames)": (SourceAudio.frames.offset, 64),
        "offsetof(obs_source_audio.timestamp)": (SourceAudio.timestamp.offset, 80),
        "offsetof(obs_source_info.video_render)": (SourceInfoPrefix.video_render.offset, 120),
    }
    bad = [f"{k}={got} (want {want})" for k, (got, want) in expected.items() if got != want]
    if bad:
        raise AbiError("struct layout mismatch on this platform: " + "; ".join(bad))
    version = (lib.obs_get_version_string() or b"0").decode("utf-8", "replace")
    major = version_tuple(version)[0]
    if major not in SUPPORTED_MAJOR:
        raise AbiError(f"OBS {version} is not supported by this plugin (supported: OBS "
                       f"{SUPPORTED_MAJOR[0]}..{SUPPORTED_MAJOR[-1]}); its source structs may differ")
    return version


def log(lib: ctypes.CDLL | None, level: int, message: str) -> None:
    """Write one line to the OBS log (falls back to stderr before libobs is loaded)."""
    line = f"[stream-wav2lip] {message}"
    if lib is None:
        print(line, file=sys.stderr)
        return
    try:
        # blog is variadic; pass the message through "%s" so that '%' in it is harmless.
        lib.blog(level, b"%s", line.encode("utf-8", "replace"))
    except Exception:  # noqa: BLE001 - logging must never raise into OBS
        print(line, file=sys.stderr)


def cstr(value: bytes | None) -> str:
    return value.decode("utf-8", "replace") if value else ""


def b(text: str) -> bytes:
    return text.encode("utf-8")

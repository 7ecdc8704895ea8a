"""The part of the plugin that must outlive script reloads: the registered source type and its C thunks.

libobs can never unregister a source type, so the `obs_source_info` struct and every ctypes callback it
points to must stay alive for the life of the OBS process. Callbacks kept in module globals segfaulted OBS
after Tools -> Scripts -> Reload (docs/obs.md, "Facts about OBS this plugin relies on"). Everything here
therefore lives in one module object in `sys.modules` that the reload never replaces; the thunks only dispatch to `state.impl`, the object that the
*current* script version installs in `script_load` (or None while no script is loaded).

Every thunk is guarded: an exception escaping into C would only print a traceback and return 0/NULL,
which libobs may treat as failure (e.g. a NULL `create`).

The `obs_source_t*` of each source is handed to the implementation wrapped in a `SourceRef`, never bare:
libobs frees a source right after our `destroy` returns, on its own destruction thread, while other threads
of ours (the pusher, OBS's UI thread running a status task or `script_unload`) may be about to use it.
"""
from __future__ import annotations

import contextlib
import ctypes
import sys
import threading
import traceback
import types
from typing import Iterator

from obs_plugin import libobs

SOURCE_ID = b"stream_wav2lip_avatar"
DISPLAY_NAME = b"Lip-sync avatar (stream-wav2lip)"
_KEY = "_stream_wav2lip_obs_persist"


def state() -> types.ModuleType:
    """The persistent state object (created on first use in this process)."""
    st = sys.modules.get(_KEY)
    if st is None:
        st = types.ModuleType(_KEY)
        st.lib = None
        st.registered = False
        st.impl = None
        st.sources = {}  # handle -> SourceRef
        st.next_handle = 1
        st.keep = []  # thunks, buffers and structs referenced by libobs: never freed
        st.buttons = {}
        sys.modules[_KEY] = st
    return st


class SourceRef:
    """One source's `obs_source_t*`, usable until libobs destroys the source.

    Every call into libobs with the pointer goes through `use()`; the destroy thunk calls `invalidate()`
    first, under the same lock, so a call in flight finishes before libobs frees the source and none
    starts afterwards (`use()` then yields None). On OBS exit the scene is cleared, which destroys the
    source on libobs's destruction thread while `script_unload` runs on the UI thread: without this, the
    unload's last status write could touch a freed source (a crash at exit, seen once in CI).
    """

    def __init__(self, ptr: int):
        self._ptr: int | None = ptr
        self._lock = threading.RLock()  # re-entrant: a libobs call made under it may call back into us

    @contextlib.contextmanager
    def use(self) -> Iterator[int | None]:
        with self._lock:
            yield self._ptr

    def invalidate(self) -> None:
        with self._lock:
            self._ptr = None

    @property
    def alive(self) -> bool:
        return self._ptr is not None


def _report(where: str) -> None:
    st = state()
    try:
        libobs.log(st.lib, libobs.LOG_ERROR, f"callback {where} failed:\n{traceback.format_exc()}")
    except Exception:  # noqa: BLE001
        traceback.print_exc()


def _impl_call(name: str, *args, default=None):
    st = state()
    impl = st.impl
    if impl is None:
        return default
    try:
        return getattr(impl, name)(*args)
    except Exception:  # noqa: BLE001 - never let an exception reach libobs
        _report(name)
        return default


def register(lib: ctypes.CDLL) -> types.ModuleType:
    """Register the source type once per process; later calls (script reloads) only return the state."""
    st = state()
    st.lib = lib
    if st.registered:
        return st

    def _get_name(_type_data):
        return ctypes.addressof(st.name_buf)

    def _create(settings, source):
        handle = 0
        try:
            handle = st.next_handle
            st.next_handle += 1
            ref = st.sources[handle] = SourceRef(source)
        except Exception:  # noqa: BLE001
            _report("create")
            return handle or 1
        _impl_call("attach", handle, ref, settings)
        return handle

    def _destroy(data):
        ref = st.sources.pop(data or 0, None)
        if ref is not None:
            ref.invalidate()  # waits for a call in flight; libobs frees the source once we return
        _impl_call("detach", data or 0)

    def _get_defaults(settings):
        _impl_call("defaults", settings)

    def _get_properties(data):
        props = _impl_call("properties", data or 0)
        if props:
            return props
        try:
            return st.lib.obs_properties_create()
        except Exception:  # noqa: BLE001
            _report("get_properties")
            return None

    def _update(data, settings):
        _impl_call("update", data or 0, settings)

    def _task(param):
        _impl_call("ui_task", param or 0)

    def _modified(priv, props, prop, settings):
        return bool(_impl_call("modified", priv or 0, props, prop, settings, default=False))

    st.name_buf = ctypes.create_string_buffer(DISPLAY_NAME)
    st.id_buf = ctypes.create_string_buffer(SOURCE_ID)
    thunks = dict(
        get_name=libobs.GET_NAME(_get_name),
        create=libobs.CREATE(_create),
        destroy=libobs.DESTROY(_destroy),
        get_defaults=libobs.GET_DEFAULTS(_get_defaults),
        get_properties=libobs.GET_PROPERTIES(_get_properties),
        update=libobs.UPDATE(_update),
    )
    st.task_thunk = libobs.TASK(_task)
    st.modified_thunk = libobs.MODIFIED2(_modified)
    # No activate/deactivate/show/hide/video_tick/video_render: those run on OBS's graphics thread, where a
    # GIL wait would freeze all of OBS (docs/obs.md, "Facts about OBS this plugin relies on"). `update` of a
    # video source is deferred to the graphics thread too, so the implementation's update() only snapshots the settings.
    st.keep.extend(thunks.values())
    info = libobs.SourceInfoPrefix()
    info.id = SOURCE_ID  # the Structure keeps a reference to the bytes, and st.info lives forever
    info.type = libobs.OBS_SOURCE_TYPE_INPUT
    info.output_flags = libobs.OBS_SOURCE_ASYNC_VIDEO | libobs.OBS_SOURCE_AUDIO | libobs.OBS_SOURCE_DO_NOT_DUPLICATE
    for field, thunk in thunks.items():
        setattr(info, field, ctypes.cast(thunk, ctypes.c_void_p).value)
    st.info = info
    lib.obs_register_source_s(ctypes.byref(info), ctypes.sizeof(info))
    st.registered = True
    return st


def action_hotkey(lib, name: str) -> int | None:
    """Register the frontend hotkey `stream_wav2lip.action.<name>` once per OBS process (it outlives script
    reloads, like the source type); returns its id, None when it was registered before."""
    st = state()
    names = st.__dict__.setdefault("action_names", [])
    if name in names:
        return None
    thunk = st.__dict__.get("hotkey_thunk")
    if thunk is None:
        def _pressed(data, _id, _hotkey, pressed):
            if pressed:
                _impl_call("action_hotkey", st.action_names[(data or 1) - 1])

        thunk = st.hotkey_thunk = libobs.HOTKEY(_pressed)
        st.keep.append(thunk)
    names.append(name)
    label = f"Lip sync: play action {name}".encode()
    hotkey_id = lib.obs_hotkey_register_frontend(f"stream_wav2lip.action.{name}".encode(), label,
                                                 ctypes.cast(thunk, ctypes.c_void_p), len(names))
    st.__dict__.setdefault("action_ids", {})[name] = hotkey_id
    loader = st.__dict__.get("binding_loader")  # the script's saved key bindings (stream_wav2lip_obs.py)
    if loader is not None:
        try:
            loader(f"stream_wav2lip.action.{name}", hotkey_id)
        except Exception:  # noqa: BLE001 - a binding that cannot be restored is not worth a failure
            _report("action hotkey binding")
    return hotkey_id


def button_thunk(name: str):
    """A persistent `obs_property_clicked_t` for the button `name` (priv = source handle)."""
    st = state()
    thunk = st.buttons.get(name)
    if thunk is None:
        def _clicked(props, prop, priv, _name=name):
            return bool(_impl_call("button", priv or 0, _name, props, default=False))

        thunk = libobs.BUTTON_CLICKED(_clicked)
        st.buttons[name] = thunk
    return thunk

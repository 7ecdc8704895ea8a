"""Real OBS Studio under Xvfb for the end-to-end tests (docs/obs.md, "Facts about OBS this plugin relies on").

`ObsSession` writes a private config tree (XDG_CONFIG_HOME: no wizard, websocket on a free loopback port,
1280x720@30, preview off, a scene collection whose `modules.scripts-tool` loads our script and whose
scene holds our source), starts Xvfb and OBS in their own process sessions, gives an obs-websocket client,
and on `close()` stops OBS with SIGINT (the only signal it handles), then kills whatever is left that it
started (by pid), and reports leftover backend processes and /dev/shm segments of its sessions.
"""
from __future__ import annotations

import base64
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "obs_plugin" / "stream_wav2lip_obs.py"
VENV_PY = REPO / ".venv" / "bin" / "python"
FAKE_BACKEND = Path(__file__).resolve().parent / "fake_backend.py"
OBS_BIN = shutil.which("obs") or "/usr/bin/obs"
SOURCE_ID = "stream_wav2lip_avatar"


def obs_available() -> str:
    """'' when OBS + Xvfb + obsws-python are usable here, else the reason to skip."""
    if not shutil.which("obs"):
        return "obs-studio is not installed (./install.sh --test)"
    if not shutil.which("Xvfb"):
        return "Xvfb is not installed (./install.sh --test)"
    try:
        import obsws_python  # noqa: F401
    except ImportError:
        return "obsws-python is not installed"
    return ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _free_display() -> int:
    for n in range(120, 400):
        if not os.path.exists(f"/tmp/.X11-unix/X{n}") and not os.path.exists(f"/tmp/.X{n}-lock"):
            return n
    raise RuntimeError("no free X display number")


def make_avatars(root: Path, names=("alice", "bob")) -> Path:
    """Avatar-package-looking folders for the dropdown (plus one folder that is not a package)."""
    root.mkdir(parents=True, exist_ok=True)
    for n in names:
        (root / n).mkdir(exist_ok=True)
        (root / n / "manifest.json").write_text(json.dumps({"format_version": 1, "fps": 25}))
        (root / n / "face_det.npz").write_bytes(b"")
    (root / "not_a_package").mkdir(exist_ok=True)
    return root


def fake_python(folder: Path, pattern: str = "") -> Path:
    """An executable that behaves like `<venv python> -m stream_wav2lip serve ...` but runs the fake backend."""
    path = folder / "fake-python"
    env = f"FAKE_BACKEND_PATTERN={pattern} " if pattern else ""
    path.write_text(f"#!/bin/sh\n{env}exec {VENV_PY} {FAKE_BACKEND} \"$@\"\n")
    path.chmod(0o755)
    return path


def write_config(cfg: Path, ws_port: int, sources: list[dict], script_settings: dict | None = None,
                 rec_dir: Path | None = None, script_path: Path = SCRIPT) -> None:
    """The private OBS config tree (docs/obs.md, "Facts about OBS this plugin relies on")."""
    base = cfg / "obs-studio"
    (base / "basic" / "profiles" / "Test").mkdir(parents=True, exist_ok=True)
    (base / "basic" / "scenes").mkdir(parents=True, exist_ok=True)
    (base / "global.ini").write_text(
        "[General]\nFirstRun=true\nLastVersion=486539266\nConfirmOnExit=false\nEnableAutoUpdates=false\n"
        "[Basic]\nProfile=Test\nProfileDir=Test\nSceneCollection=Test\nSceneCollectionFile=Test\n"
        "[BasicWindow]\nSysTrayEnabled=false\nPreviewEnabled=false\nShowTransitions=false\n"
        "[OBSWebSocket]\nFirstLoad=false\nServerEnabled=true\n"
        f"ServerPort={ws_port}\nAlertsEnabled=false\nAuthRequired=false\nServerPassword=\n")
    rec = rec_dir or (cfg / "rec")
    rec.mkdir(parents=True, exist_ok=True)
    (base / "basic" / "profiles" / "Test" / "basic.ini").write_text(
        "[General]\nName=Test\n"
        "[Video]\nBaseCX=1280\nBaseCY=720\nOutputCX=1280\nOutputCY=720\nFPSType=0\nFPSCommon=30\n"
        "[Audio]\nSampleRate=48000\nChannelSetup=Stereo\nMonitoringDeviceId=default\n"
        "[Output]\nMode=Simple\n"
        f"[SimpleOutput]\nFilePath={rec}\nRecFormat=mkv\nRecQuality=Stream\nRecEncoder=x264\nPreset=ultrafast\n"
        "VBitrate=2500\nABitrate=160\n")
    items, srcs = [], []
    for i, s in enumerate(sources, start=1):
        items.append({"name": s["name"], "id": i, "visible": True, "pos": s.get("pos", {"x": 0, "y": 0}),
                      "scale": {"x": 1, "y": 1}, "rot": 0, "align": 5, "bounds_type": 0,
                      "crop_left": 0, "crop_top": 0, "crop_right": 0, "crop_bottom": 0})
        kind = s.get("id", SOURCE_ID)  # another source type (e.g. OBS's media source) when a test asks for one
        srcs.append({"name": s["name"], "id": kind, "versioned_id": kind, "settings": s["settings"],
                     "monitoring_type": 0, "volume": 1.0, "mixers": 255})
    scene = {"name": "Scene", "id": "scene", "versioned_id": "scene",
             "settings": {"id_counter": len(items), "items": items}}
    collection = {"name": "Test", "current_scene": "Scene", "current_program_scene": "Scene",
                  "scene_order": [{"name": "Scene"}], "sources": [scene] + srcs,
                  "modules": {"scripts-tool": [{"path": str(script_path), "settings": script_settings or {}}]}}
    (base / "basic" / "scenes" / "Test.json").write_text(json.dumps(collection, indent=1))


class ObsSession:
    """Xvfb + OBS with a private config; use as a context manager or call close()."""

    def __init__(self, sources: list[dict], script_settings: dict | None = None, workdir: Path | None = None,
                 screen: str = "1280x800x24"):
        self.tmp = Path(workdir or tempfile.mkdtemp(prefix="s2l-obs-"))
        self.cfg = self.tmp / "cfg"
        self.rec_dir = self.tmp / "rec"
        self.port = free_port()
        self.sources = sources
        write_config(self.cfg, self.port, sources, script_settings, self.rec_dir)
        self.display = _free_display()
        self.xvfb = subprocess.Popen(["Xvfb", f":{self.display}", "-screen", "0", screen, "-nolisten", "tcp"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        self.obs: subprocess.Popen | None = None
        self.client = None
        self.timings: dict[str, float] = {}
        self.crash_reported = False
        deadline = time.monotonic() + 10
        while not os.path.exists(f"/tmp/.X11-unix/X{self.display}"):
            if time.monotonic() > deadline or self.xvfb.poll() is not None:
                raise RuntimeError("Xvfb did not start")
            time.sleep(0.05)

    @property
    def env(self) -> dict:
        env = dict(os.environ)
        env.update(DISPLAY=f":{self.display}", XDG_CONFIG_HOME=str(self.cfg), LIBGL_ALWAYS_SOFTWARE="1")
        env.pop("PYTHONPATH", None)
        for key in [k for k in env if k.startswith("QT_")]:  # opencv (imported by fixtures) points Qt at its own plugins
            env.pop(key)
        return env

    def start(self, timeout: float = 60.0):
        """Launch OBS and connect a websocket client (returned)."""
        import obsws_python as obsws

        self.obs_log = open(self.tmp / "obs-stdout.txt", "ab")
        t0 = time.monotonic()
        self.obs = subprocess.Popen([OBS_BIN, "--multi", "--disable-missing-files-check"], env=self.env,
                                    cwd=str(self.tmp), stdout=self.obs_log, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        _allow_core_dump(self.obs.pid)
        deadline = t0 + timeout
        while True:
            if self.obs.poll() is not None:
                raise RuntimeError(f"OBS exited with {self.obs.returncode}:\n{self.log_text()[-3000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("OBS websocket did not open")
                time.sleep(0.05)
        self.timings["ws_open_s"] = time.monotonic() - t0
        for _ in range(50):
            try:
                self.client = obsws.ReqClient(host="127.0.0.1", port=self.port, password="", timeout=10)
                break
            except Exception:  # noqa: BLE001 - server not identified yet
                time.sleep(0.1)
        self.timings["ws_ready_s"] = time.monotonic() - t0
        return self.client

    # ------------------------------------------------------------------ helpers
    def screenshot(self, source: str, width: int | None = None):
        """RGB numpy array of a source screenshot."""
        import numpy as np
        from PIL import Image

        r = self.client.get_source_screenshot(source, "png", width, None, -1)
        img = Image.open(io.BytesIO(base64.b64decode(r.image_data.split(",", 1)[1]))).convert("RGB")
        return np.asarray(img)

    def settings(self, source: str) -> dict:
        return self.client.get_input_settings(source).input_settings

    def status(self, source: str) -> str:
        return self.settings(source).get("status", "")

    def wait_for(self, predicate, timeout: float, interval: float = 0.2, what: str = "condition"):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = predicate()
            if last:
                return last
            time.sleep(interval)
        raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")

    def wait_status(self, source: str, prefix: str, timeout: float = 20.0) -> str:
        return self.wait_for(lambda: (s := self.status(source)).startswith(prefix) and s, timeout,
                             what=f"status '{prefix}…' (now {self.status(source)!r})")

    def log_text(self) -> str:
        logs = sorted((self.cfg / "obs-studio" / "logs").glob("*.txt"))
        return logs[-1].read_text(errors="replace") if logs else ""

    def backend_pid(self) -> int:
        """The one backend of this session's source, or 0 if there is none (or, wrongly, several)."""
        pids = self.backend_pids(self.session)
        return pids[0] if len(pids) == 1 else 0

    def backend_pids(self, session: str) -> list[int]:
        """Processes whose command line runs a backend for `session` (found through /proc)."""
        pids = []
        for d in Path("/proc").iterdir():
            if not d.name.isdigit():
                continue
            try:
                argv = (d / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"--session" in argv and session.encode() in argv and (b"serve" in argv or
                                                                    any(b"fake_backend" in a for a in argv)):
                pids.append(int(d.name))
        return pids

    @staticmethod
    def segments(session: str) -> list[str]:
        try:
            return sorted(n for n in os.listdir("/dev/shm") if n.startswith((f"s2l_{session}_", f"sm_s2l_{session}_")))
        except OSError:
            return []

    def stop_obs(self, timeout: float = 20.0) -> int | None:
        """Disconnect the client, quit OBS as a user does (Ctrl+Q in its main window; SIGINT where that cannot
        be sent or does not end it within half the timeout), wait. Returns OBS's exit code.

        Why not SIGINT first: OBS 29 closes its main window from inside the signal handler, and a signal that
        lands while the UI thread is inside libxcb deadlocks it on xcb's own lock (seen once in a full run:
        QWidget::setCursor -> xcb_take_socket under a signal frame on top of xcb's writev; docs/obs.md)."""
        if self.client is not None:
            try:
                self.client.disconnect()
            except Exception:  # noqa: BLE001
                pass
            self.client = None
        if self.obs is None:
            return None
        t0 = time.monotonic()
        if self.obs.poll() is None:
            sent = self._quit_from_the_window()
            how = "Ctrl+Q"
            if sent:
                try:
                    self.obs.wait(timeout / 2)
                except subprocess.TimeoutExpired:
                    pass
            if self.obs.poll() is None:
                how = "Ctrl+Q, then SIGINT" if sent else "SIGINT"
                os.kill(self.obs.pid, signal.SIGINT)
            try:
                self.obs.wait(max(1.0, timeout - (time.monotonic() - t0)))
            except subprocess.TimeoutExpired:
                print(f"OBS did not exit within {timeout} s ({how})")
                print(_gdb(["-p", str(self.obs.pid)]))
                os.killpg(self.obs.pid, signal.SIGKILL)
                self.obs.wait(5)
        self.timings["shutdown_s"] = time.monotonic() - t0
        if self.obs.returncode and self.obs.returncode < 0 and not self.crash_reported:
            self.crash_reported = True
            print(self.crash_report())
        return self.obs.returncode

    def _quit_from_the_window(self) -> bool:
        """Press Ctrl+Q in OBS's main window (xdotool on Xvfb); False when that could not be sent."""
        if not shutil.which("xdotool"):
            return False
        try:
            windows = _xdotool(self, "search", "--name", "^OBS ").split()
            return bool(windows) and subprocess.run(
                ["xdotool", "windowfocus", "--sync", windows[0], "key", "--clearmodifiers", "ctrl+q"], env=self.env,
                capture_output=True, timeout=10).returncode == 0
        except (OSError, subprocess.SubprocessError):
            return False

    def exited_cleanly(self, code: int | None) -> bool:
        """Whether OBS's exit (code from `stop_obs`) shows our plugin shutting down completely.

        0 is clean. One crash is tolerated, loudly: a SIGSEGV in OBS's UI thread while Qt delivers a posted
        event, or in obs-websocket's accept, *after* our script had unloaded (its last log line) and OBS had
        cleared its scene data: about 1 exit in 10 with our source in the scene, none of our code on the stack
        (docs/obs.md, "Known problem"). Our part (no backend and no segment left) is still asserted by the
        callers."""
        if code == 0:
            return True
        log = self.log_text()
        unloaded = log.rfind("[stream-wav2lip] unloaded: backends stopped, segments freed")
        if code == -signal.SIGSEGV and unloaded >= 0 and log.find("All scene data cleared", unloaded) > 0:
            import warnings

            warnings.warn("OBS crashed at exit after our plugin had unloaded and its scene data was cleared "
                          "(the crash report is printed above)")
            return True
        return False

    def crash_report(self) -> str:
        """What is known about a crashed OBS: the ends of its log and stdout, and a backtrace of every
        thread from its core file when gdb is present (so that a crash seen once in CI can be diagnosed)."""
        parts = [f"OBS exited with {self.obs.returncode if self.obs else None}",
                 "--- OBS log (end) ---", self.log_text()[-2500:]]
        out = self.tmp / "obs-stdout.txt"
        if out.exists():  # what OBS printed outside its log (e.g. ffmpeg, Qt warnings)
            lines = [ln for ln in out.read_text(errors="replace").splitlines()
                     if not ln.startswith(("info:", "warning:", "debug:", "\t"))]
            parts += ["--- OBS stdout, lines not in its log (end) ---", "\n".join(lines[-15:])]
        cores = sorted(self.tmp.glob("core*"), key=lambda p: p.stat().st_mtime)
        if cores:
            # last, so that a CI log that keeps only its tail still shows the crashing thread
            parts += ["--- backtrace (core): the crashing thread, then one line per thread ---",
                      _gdb([OBS_BIN, str(cores[-1])], crashed=True)]
            for core in cores:
                core.unlink(missing_ok=True)
        else:
            parts.append(f"(no core file in {self.tmp})")
        return "\n".join(parts)

    def close(self, keep_files: bool = False) -> None:
        """Stop OBS and Xvfb; kill leftover backends of our sessions (by pid) and unlink their segments."""
        try:
            self.stop_obs()
        finally:
            for src in self.sources:
                from shm_protocol.names import session_from_label

                session = session_from_label(src["name"])
                for pid in self.backend_pids(session):
                    try:
                        os.killpg(pid, signal.SIGKILL)
                    except (ProcessLookupError, PermissionError):
                        pass
                for name in self.segments(session):
                    try:
                        os.unlink(f"/dev/shm/{name}")
                    except OSError:
                        pass
            if self.xvfb.poll() is None:
                self.xvfb.terminate()
                try:
                    self.xvfb.wait(5)
                except subprocess.TimeoutExpired:
                    self.xvfb.kill()
            if getattr(self, "obs_log", None):
                self.obs_log.close()
            if not keep_files and not os.environ.get("S2L_KEEP_OBS"):
                shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> "ObsSession":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _gdb(target: list[str], crashed: bool = False) -> str:
    """Every thread's backtrace of a live OBS (["-p", pid]); for a core file ([binary, core],
    `crashed`), the backtrace of the thread that received the signal (gdb's current thread in a core)
    and then one line per thread, short enough to survive a CI log's truncation."""
    if not shutil.which("gdb"):
        return "(gdb is not installed: no backtrace)"
    commands = ["-ex", "bt 40", "-ex", "info threads"] if crashed else ["-ex", "thread apply all bt 30"]
    try:
        out = subprocess.run(["gdb", "-batch", "-nx", *commands, *target],
                             capture_output=True, text=True, timeout=120).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"(gdb failed: {exc})"
    return out[-20000:]


def _allow_core_dump(pid: int) -> None:
    """Let process `pid` (OBS) write a core file if it crashes, for `crash_report` (Linux prlimit)."""
    import resource

    try:
        hard = resource.getrlimit(resource.RLIMIT_CORE)[1]
        resource.prlimit(pid, resource.RLIMIT_CORE, (hard, hard))
    except (AttributeError, ValueError, OSError):
        pass


def _xdotool(sess: ObsSession, *args: str) -> str:
    return subprocess.run(["xdotool", *args], env=sess.env, capture_output=True, text=True, timeout=10).stdout


def reload_scripts_via_ui(sess: ObsSession, timeout: float = 15.0) -> None:
    """Press Tools -> Scripts -> "Reload Scripts" in the real OBS window (xdotool on Xvfb), and wait until
    OBS logged the script loaded again. This is the path that re-executes the script module in place
    (`PyImport_ReloadModule`), the one that crashed naive ctypes plugins (docs/obs.md, "Facts about OBS
    this plugin relies on").
    Coordinates are those of OBS 29's default theme at this Xvfb size; a failure says so."""
    if not shutil.which("xdotool"):
        import pytest

        pytest.skip("xdotool is not installed")
    before = sess.log_text().count("Loaded python script: stream_wav2lip_obs.py")
    win = _xdotool(sess, "search", "--name", "^Scripts$").split()
    if not win:
        _xdotool(sess, "mousemove", "378", "13", "click", "1")  # menu bar: Tools
        time.sleep(0.5)
        _xdotool(sess, "mousemove", "389", "147", "click", "1")  # Tools -> Scripts
        deadline = time.monotonic() + 5
        while not win and time.monotonic() < deadline:
            time.sleep(0.2)
            win = _xdotool(sess, "search", "--name", "^Scripts$").split()
        if not win:
            raise AssertionError("could not open Tools -> Scripts with xdotool")
    _xdotool(sess, "mousemove", "--window", win[0], "122", "409", "click", "1")  # the reload button
    sess.wait_for(lambda: sess.log_text().count("Loaded python script: stream_wav2lip_obs.py") > before,
                  timeout, what="the script to be reloaded (Reload Scripts button)")


def unique_name(prefix: str = "Avatar") -> str:
    """A source name (hence backend session) no other concurrent test run uses."""
    return f"{prefix}_{os.getpid() % 100000}_{int(time.time() * 1000) % 10000}"


if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

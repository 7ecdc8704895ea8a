"""Starts, watches and stops one `stream-wav2lip serve` backend for one OBS source.

The backend runs with the project's own venv interpreter (found relative to this file), never
`sys.executable`: inside OBS that resolves to whatever `python3` is on PATH, not OBS's Python nor ours
(docs/obs.md, "Facts about OBS this plugin relies on"). It runs in its own process session (so a Ctrl+C
in a terminal that started OBS, or OBS's own death, does not hit it by accident, and we can signal its whole group), and its output goes to
a log file whose last line becomes the panel's error when it dies.

One watcher thread per backend: it restarts a dead or silent backend with back-off, and on stop
terminates the process group and unlinks every shared-memory segment of the session, so that nothing is
left in /dev/shm after OBS exits. Requests from OBS callbacks (`start`, `stop`) only set the wanted
state; the slow work happens on the watcher thread, never on OBS's UI or hotkey thread.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from shm_protocol.names import session_from_label
from shm_protocol.segments import unlink_session_segments

PROJECT_ROOT = Path(__file__).resolve().parents[1]
BACKOFF_S = (0.5, 1.0, 2.0, 4.0, 8.0, 15.0)
STABLE_AFTER_S = 30.0  # a backend that ran this long resets the back-off
STARTUP_GRACE_S = 120.0  # model loading may take a while before the first heartbeat
HEARTBEAT_TIMEOUT_S = 6.0  # rings silent this long (while the process lives) -> restart
TERM_WAIT_S = 4.0


def session_from_name(source_name: str) -> str:
    """OBS source name -> backend session name ('My Avatar' -> 'My_Avatar'), the same rule as
    `shm_protocol.names.session_from_label`, so `stream-wav2lip say --session <source name>` reaches it."""
    return session_from_label(source_name)


def find_backend_python(setting: str = "") -> Path | None:
    """The interpreter that runs the backend: the panel's `backend_python` (a python or a venv folder),
    else `$STREAM_WAV2LIP_PYTHON`, else the project's `.venv` next to this plugin."""
    candidates = []
    for raw in (setting, os.environ.get("STREAM_WAV2LIP_PYTHON", "")):
        if raw:
            p = Path(os.path.expanduser(raw))
            candidates += [p / "bin" / "python", p / "Scripts" / "python.exe"] if p.is_dir() else [p]
    candidates += [PROJECT_ROOT / ".venv" / "bin" / "python", PROJECT_ROOT / ".venv" / "Scripts" / "python.exe"]
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return c
    return None


@dataclass
class BackendConfig:
    """What `serve` is started with; a change of any field restarts a running backend."""

    session: str
    avatar_dir: str
    checkpoint: str = ""
    engine: str = ""  # "" = serve's default (the network with a checkpoint, else the mouth engine)
    device: str = "auto"
    precision: str = "auto"  # serve --precision (auto is serve's default and is not passed)
    background: str = "original"  # serve --background (original is serve's default and is not passed)
    detail: str = "auto"  # serve --detail (auto is serve's default and is not passed)
    mic: bool = False
    mic_device: str = ""
    api_port: int = 0
    backend_python: str = ""
    extra_args: tuple[str, ...] = ()

    def command(self) -> list[str]:
        py = find_backend_python(self.backend_python)
        if py is None:
            raise RuntimeError("no backend Python found: set 'Backend Python' to the venv made by install.sh")
        if not self.avatar_dir:
            raise RuntimeError("choose an avatar first")
        if not Path(self.avatar_dir).is_dir():
            raise RuntimeError(f"avatar folder not found: {self.avatar_dir}")
        cmd = [str(py), "-m", "stream_wav2lip", "serve", "--session", self.session, "--avatar", self.avatar_dir,
               "--device", self.device or "auto"]
        if self.engine:
            cmd += ["--engine", self.engine]
        if self.checkpoint:
            cmd += ["--checkpoint", self.checkpoint]
        if self.precision and self.precision != "auto":
            cmd += ["--precision", self.precision]
        if self.background and self.background != "original":
            cmd += ["--background", self.background]
        if self.detail and self.detail != "auto":
            cmd += ["--detail", self.detail]
        if self.mic:
            cmd += ["--mic"] + ([self.mic_device] if self.mic_device else [])
        if self.api_port:
            cmd += ["--api-port", str(self.api_port)]
        return cmd + list(self.extra_args)


class Supervisor:
    """Keeps one backend in the wanted state (running with `config`, or stopped).

    `status()` returns (state, detail) for the panel: state is one of
    stopped / starting / running / restarting / error.
    """

    def __init__(self, config: BackendConfig, heartbeat_ns, log_dir: str | None = None, switcher=None):
        self.config = config
        self._running_config: BackendConfig | None = None  # what the live process was started with
        self._switcher = switcher  # callable(config) -> bool: switch avatars in the live backend, no restart
        self._heartbeat_ns = heartbeat_ns  # callable -> newest ring heartbeat (CLOCK_MONOTONIC ns) or 0
        self.log_dir = Path(log_dir or os.path.join(tempfile.gettempdir(), "stream-wav2lip-obs"))
        self._want_running = False
        self._restart_requested = False
        self._proc: subprocess.Popen | None = None
        self._state = "stopped"
        self._detail = ""
        self._last_error = ""
        self._last_error_at = 0.0
        self._failures = 0
        self._started_at = 0.0
        self._last_hb = 0
        self._next_start = 0.0
        self.restarts = 0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._quit = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"s2l-supervisor-{config.session}", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ requests (any thread, never block)
    def start(self) -> None:
        with self._lock:
            self._want_running = True
            self._failures = 0
            self._next_start = 0.0
        self._wake.set()

    def stop(self) -> None:
        with self._lock:
            self._want_running = False
        self._wake.set()

    def reconfigure(self, config: BackendConfig) -> None:
        """New settings: a running backend is restarted with them (e.g. another avatar)."""
        with self._lock:
            changed = config != self.config
            self.config = config
            if changed and self._want_running:
                self._restart_requested = True
                self._failures = 0
                self._next_start = 0.0
        self._wake.set()

    @property
    def pid(self) -> int | None:
        p = self._proc
        return p.pid if p is not None and p.poll() is None else None

    def status(self) -> tuple[str, str]:
        return self._state, self._detail

    @property
    def last_error(self) -> str:
        return self._last_error

    def recent_error(self, within_s: float = 60.0) -> str:
        """The last error if it happened within `within_s` (shown next to 'running' after a recovery)."""
        return self._last_error if self._last_error and time.monotonic() - self._last_error_at < within_s else ""

    def shutdown(self, timeout: float = TERM_WAIT_S + 2) -> None:
        """Stop the backend and the watcher, synchronously (script unload, source destroy, OBS exit)."""
        with self._lock:
            self._want_running = False
        self._quit.set()
        self._wake.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        self._terminate()  # in case the thread did not get there
        unlink_session_segments(self.config.session)

    # ------------------------------------------------------------------ watcher thread
    def _run(self) -> None:
        while True:
            try:
                self._step()
            except Exception as exc:  # noqa: BLE001 - the watcher must survive anything
                self._set("error", f"supervisor: {exc!r}")
            if self._quit.is_set():
                break
            self._wake.wait(0.1)
            self._wake.clear()
        self._terminate()
        unlink_session_segments(self.config.session)
        self._set("stopped", "")

    def _step(self) -> None:
        proc = self._proc
        alive = proc is not None and proc.poll() is None
        if self._quit.is_set() or not self._want_running:
            if proc is not None:
                self._terminate()
                unlink_session_segments(self.config.session)
            if self._state != "stopped" or self._detail:
                self._set("stopped", "")
            return
        if self._restart_requested:
            self._restart_requested = False
            running = self._running_config
            if alive and running is not None and self._switcher is not None and \
                    only_avatar_changed(running, self.config) and self._switcher(self.config):
                self._running_config = self.config
                return
            if proc is not None:
                self._set("restarting", "applying new settings")
                self._terminate()
                unlink_session_segments(self.config.session)
            self._next_start = 0.0
            alive = False
            proc = None
        now = time.monotonic()
        if proc is not None and not alive:  # died on its own
            code = proc.returncode
            self._kill_group(proc.pid)  # helpers it left (e.g. its resource tracker) would unlink by name later
            reason = self._tail_error() or f"exit code {code}"
            self._note_error(f"backend died ({_describe_exit(code)}): {reason}")
            self._proc = None
            self._failures = 0 if now - self._started_at > STABLE_AFTER_S else self._failures + 1
            delay = BACKOFF_S[min(self._failures, len(BACKOFF_S) - 1)]
            self._next_start = now + delay
            unlink_session_segments(self.config.session)
            self._set("restarting", f"{self._last_error}; restarting in {delay:.1f} s")
            return
        if alive:
            hb = self._heartbeat_ns() or 0
            if hb > self._last_hb:
                self._last_hb = hb
            since_start = now - self._started_at
            if self._last_hb:  # frames have flowed since this start: the heartbeat must stay fresh
                age = (time.monotonic_ns() - self._last_hb) / 1e9
                hung = age > HEARTBEAT_TIMEOUT_S
            else:  # still loading (torch, model, avatar): only the startup grace applies
                hung = since_start > STARTUP_GRACE_S
            if hung:
                self._note_error("backend stopped responding (no heartbeat)")
                self._set("restarting", self._last_error)
                self._terminate(kill_first=True)
                unlink_session_segments(self.config.session)
                self._failures += 1
                self._next_start = now + BACKOFF_S[min(self._failures, len(BACKOFF_S) - 1)]
                return
            if hb:
                self._set("running", f"pid {proc.pid}")
            else:
                self._set("starting", f"pid {proc.pid}, loading")
            return
        if now >= self._next_start:
            self._spawn()

    def _spawn(self) -> None:
        try:
            cmd = self.config.command()
        except RuntimeError as exc:
            self._note_error(str(exc))
            self._set("error", str(exc))
            self._next_start = time.monotonic() + 2.0
            return
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._log_path = self.log_dir / f"{self.config.session}.log"
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
        env["PYTHONUNBUFFERED"] = "1"
        env["S2L_PARENT_PID"] = str(os.getpid())  # serve exits if OBS dies without stopping it
        with open(self._log_path, "ab") as log:
            log.write(f"\n==== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(cmd)}\n".encode())
            log.flush()
            kwargs = dict(stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                          cwd=str(PROJECT_ROOT), close_fds=True)
            if sys.platform == "win32":  # pragma: no cover
                kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP | 0x08000000  # no console window
            else:
                kwargs["start_new_session"] = True
            self._proc = subprocess.Popen(cmd, **kwargs)
        self._running_config = self.config
        self._started_at = time.monotonic()
        self._last_hb = 0
        self.restarts += 1
        self._set("starting", f"pid {self._proc.pid}")

    @staticmethod
    def _kill_group(pid: int) -> None:
        if sys.platform == "win32":  # pragma: no cover
            return
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def _terminate(self, kill_first: bool = False) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            try:
                if sys.platform == "win32":  # pragma: no cover
                    proc.terminate()
                else:
                    os.killpg(proc.pid, signal.SIGKILL if kill_first else signal.SIGTERM)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                proc.wait(TERM_WAIT_S)
            except subprocess.TimeoutExpired:
                try:
                    if sys.platform == "win32":  # pragma: no cover
                        proc.kill()
                    else:
                        os.killpg(proc.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
                try:
                    proc.wait(2.0)
                except subprocess.TimeoutExpired:
                    pass
        self._kill_group(proc.pid)  # anything the backend left in its session
        self._proc = None

    def _tail_error(self) -> str:
        """Last meaningful line of the backend's log (its one-line UserError, or a traceback's last line)."""
        try:
            with open(self._log_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - 4096))
                lines = f.read().decode("utf-8", "replace").splitlines()
        except (OSError, AttributeError):
            return ""
        for line in reversed(lines):
            line = line.strip()
            if line and not line.startswith("===="):
                return line[:200]
        return ""

    def _set(self, state: str, detail: str) -> None:
        self._state, self._detail = state, detail

    def _note_error(self, message: str) -> None:
        self._last_error = message
        self._last_error_at = time.monotonic()


def only_avatar_changed(old: BackendConfig, new: BackendConfig) -> bool:
    """True when `new` differs from `old` in the avatar only (a live backend can switch without a restart)."""
    return old.avatar_dir != new.avatar_dir and \
        BackendConfig(**{**old.__dict__, "avatar_dir": new.avatar_dir}) == new


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "unknown"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"

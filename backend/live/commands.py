"""The one command surface of a running `serve`: what the HTTP API and the shared-memory mailbox both call.

Why one object: the API (backend/api.py) and the OBS plugin's mailbox (commands posted into shared memory,
taken by `ServeApp`'s control thread) must do exactly the same thing for the same command, answer with the
same errors, and never touch the live loop's internals directly. Every method is safe from any thread: the
live loop takes its own lock, and loading another avatar happens on the caller's (or a background) thread.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path

from stream_wav2lip.errors import UserError

MAILBOX_COMMANDS = ("flush", "switch_avatar", "pause", "start", "stop", "action")


class ServeCommands:
    """flush, switch_avatar, action, pause, start, stop, status, say, stream_pcm. `app` is the ServeApp it
    serves."""

    def __init__(self, app):
        self.app = app
        self._switching = threading.Lock()
        self.last_action = ""

    # ------------------------------------------------------------------ the mailbox
    def run(self, command: dict) -> None:
        """One mailbox command ({"cmd": name, ...}); a failure is reported in the status's `error`."""
        name = command.get("cmd")
        try:
            if name == "flush":
                self.flush()
            elif name == "switch_avatar":
                self.switch_avatar(str(command.get("avatar", "")), wait=False)
            elif name in ("pause", "start", "stop"):
                getattr(self, name)()
            elif name == "action":
                self.action(str(command.get("name", "")))
            else:
                self.app.control.update(error=f"unknown command {name!r} (expected one of "
                                              f"{', '.join(MAILBOX_COMMANDS)})")
        except UserError as exc:
            self.app.control.update(error=str(exc))

    # ------------------------------------------------------------------ commands
    def flush(self) -> int:
        """Barge-in: drop queued speech; returns how many utterances were dropped."""
        return self.app.loop.flush()

    def action(self, name: str) -> dict:
        """Play the avatar's action clip `name` (from its best entry within a second); speech goes on over it."""
        k = self.app.loop.cue(name)
        self.last_action = name
        return {"action": name, "starts_in_ms": max(0, round((self.app.loop.clock.pts(k) -
                                                              self.app.loop.clock.now()) / 1e6))}

    def actions(self) -> list[str]:
        return self.app.loop.engine.actions

    def pause(self) -> dict:
        """Stop taking speech (what is queued is dropped) until `start`."""
        self.app.queue.paused = True
        return {"paused": True, "dropped": self.flush()}

    def start(self) -> dict:
        self.app.queue.paused = False
        return {"paused": False}

    def stop(self) -> dict:
        """End the backend (the process exits once its loop has stopped)."""
        self.app.loop.stop(timeout=0)
        return {"stopping": True}

    def status(self, control_only: bool = False) -> dict:
        app = self.app
        loop = app.loop
        stats = loop.stats
        now = time.monotonic_ns()
        p50, p95 = stats.percentile(50), stats.percentile(95)
        choice = loop.batch()
        state = "paused" if app.queue.paused else ("speaking" if loop.speaking else "idle")
        if loop.error is not None:
            state = "error"
        values = {
            "state": state,
            "fps": stats.rate(stats.publish_times, now),
            "render_fps": stats.rate(stats.render_times, now),
            "latency_ms": None if p50 is None else round(p50, 1),
            "latency_p95_ms": None if p95 is None else round(p95, 1),
            "queue_ms": round(loop.queued_samples() / 16.0, 1),
            "frames_published": stats.published,
            "frames_repeated": stats.repeated,
            "frames_late": stats.late,
            # below 25, speech shows this many distinct frames a second, evenly, and repeats the others
            "speech_fps": round(25.0 * choice.rate, 1),
            "batch": choice.rendered,  # frames per network call (within the latency budget)
            "detail": loop.engine.detail_status,
            "actions": loop.engine.actions,
            "last_action": self.last_action,
        }
        if control_only:
            return values
        return {**app.control.values, **values}

    def say(self, paths: list[str]) -> list[dict]:
        from backend.sources.files import queue_files

        if self.app.queue.paused:
            raise UserError("the backend is paused (send the start command first)")
        utterances = queue_files(self.app.queue, paths)
        return [{"id": u.id, "seconds": round(u.n / 16000, 3), "file": u.label} for u in utterances]

    def stream_pcm(self, chunks, rate: int, channels: int, fmt: str) -> dict:
        from backend.sources.pcm import PcmDecoder

        decoder = PcmDecoder(rate, channels, fmt)
        utt = self.app.queue.open("pcm")
        received = 0
        try:
            for data in chunks:
                received += len(data)
                utt.append(decoder.feed(data))
            utt.append(decoder.finish())
        finally:
            utt.end()
        return {"id": utt.id, "seconds": round(utt.n / 16000, 3), "bytes": received,
                "flushed": bool(utt.cancelled)}

    def switch_avatar(self, avatar: str, wait: bool = True) -> dict:
        """Load `avatar` with the current generator settings and switch to it (in the background if not `wait`)."""
        from preprocess.package import is_avatar_package

        if not is_avatar_package(avatar):
            raise UserError(f"{avatar}: not an avatar package")
        app = self.app

        def load():
            with self._switching:
                try:
                    app.control.update(state="loading")
                    engine = app.load_engine(avatar, reuse=app.engine.generator)
                    app.loop.switch_avatar(engine)
                    app.engine = engine
                    app.control.update(avatar=Path(avatar).name, avatar_path=str(Path(avatar).resolve()), error="")
                except UserError as exc:
                    app.control.update(error=str(exc))
                    raise

        if wait:
            load()
        else:
            threading.Thread(target=load, name="s2l-switch", daemon=True).start()
        return {"avatar": str(Path(avatar).resolve()), "switching": not wait}

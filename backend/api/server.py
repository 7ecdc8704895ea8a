"""`ControlApi`: the listening socket on 127.0.0.1, its thread, its token and its session file.

Why apart from the handler: this is the lifetime (start with `serve`, close with it, remove the session file
only if it is still ours) and the one piece `serve` touches; the handler classes are built per instance so
each API knows its own app and token.
"""
from __future__ import annotations

import json
import logging
import os
import secrets
import sys
import threading
from http.server import ThreadingHTTPServer

from backend.api.handler import Handler
from backend.api.session import write_session_file
from stream_wav2lip.errors import UserError

log = logging.getLogger(__package__)


class ControlApi:
    """Serves the endpoints (see `backend.api`) for `app` (the serve command object,
    `backend.live.commands.ServeCommands`) in a background thread."""

    def __init__(self, app, session: str, port: int = 0):
        self.app = app
        self.session = session
        self.token = secrets.token_urlsafe(32)
        handler = type("Handler", (Handler,), {"api": self})
        try:
            self.server = _Server(("127.0.0.1", int(port)), handler)
        except OSError as exc:
            raise UserError(f"--api-port {port}: cannot listen on 127.0.0.1 ({exc.strerror or exc})") from None
        self.port = self.server.server_address[1]
        self.info_path = write_session_file(session, {"session": session, "port": self.port, "token": self.token,
                                                      "pid": os.getpid(), "url": f"http://127.0.0.1:{self.port}"})
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="s2l-api", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        if self._thread.is_alive():  # shutdown() waits for serve_forever, which must be running
            self.server.shutdown()
        self.server.server_close()
        try:
            info = json.loads(self.info_path.read_text(encoding="utf-8"))
            if info.get("pid") == os.getpid():
                self.info_path.unlink()
        except (OSError, ValueError):
            pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        """socketserver prints a traceback to stderr for whatever a handler lets through; a client that vanished
        (reset, broken pipe) is not worth one, and nothing else gets past `Handler`: one line at most."""
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):
            log.debug("api: connection from %s ended: %s", client_address, exc)
        else:
            log.error("api: request from %s failed: %s: %s", client_address, type(exc).__name__, exc)

"""The HTTP plumbing of one connection: the token check, JSON replies, and turning every failure into one.

Why apart from the routes: whatever a route raises — a refusal (`ApiError`), a client that vanished
(`ClientGone`), a bad file (`UserError`, `OSError`) or a bug — must end the same way: a JSON error reply if
anyone still listens, a debug line (a traceback only for a bug), and a connection that closes without a TCP
reset. http.server's own refusals (bad request line, oversized headers, unknown methods) are routed through
the same reply, so a client never sees an HTML error page or a silent hang-up.
"""
from __future__ import annotations

import hmac
import json
import logging
import socket
import time
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlparse

from backend.api.body import ApiError, BodyReader, ClientGone
from backend.api.limits import DRAIN_BYTES, DRAIN_S, READ_TIMEOUT_S
from backend.api.routes import Routes
from backend.api.websocket import WebSocketPcm
from stream_wav2lip.errors import UserError

if TYPE_CHECKING:
    from backend.api.server import ControlApi

log = logging.getLogger(__package__)


class Handler(Routes, WebSocketPcm, BodyReader, BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = READ_TIMEOUT_S  # StreamRequestHandler puts it on the socket: a silent client frees its thread
    api: ControlApi  # set by ControlApi

    def setup(self) -> None:
        super().setup()
        self._body_left = 0  # request body bytes not read yet; -1: a chunked body not read to its end
        self._chunked = False
        self._upgraded = False  # a WebSocket now owns the connection: no HTTP replies any more
        self._drain = False  # the client may still be sending: read it away before closing (see finish)

    def log_message(self, fmt, *args):  # quiet: the backend's log is for the streamer
        log.debug("api: " + fmt, *args)

    def __getattr__(self, name: str):
        """http.server looks up ``do_<METHOD>``: every method is routed, so an unknown one gets a JSON 405."""
        if name.startswith("do_"):
            return lambda: self._dispatch(name[3:])
        raise AttributeError(name)

    def parse_request(self) -> bool:
        """Skip one empty line before the request line (RFC 9112 2.2: some clients send a CRLF after a body),
        and answer a line of nothing but control bytes with a 400 where http.server would hang up silently."""
        if self.raw_requestline in (b"\r\n", b"\n"):
            self.raw_requestline = self.rfile.readline(65537)
        if not self.raw_requestline.strip(b" \t\r\n"):
            self.close_connection = True  # nothing was asked: nothing to answer
            return False
        if not str(self.raw_requestline, "iso-8859-1").split():  # e.g. b"\x1c\x85": not blank, not HTTP
            self.command, self.request_version = None, "HTTP/1.0"
            self.requestline = repr(self.raw_requestline[:40])
            self.send_error(400, "unreadable request line")
            return False
        return super().parse_request()

    def send_error(self, code, message=None, explain=None) -> None:
        """http.server's own refusals (bad request line, header too long, bad HTTP version) as JSON too."""
        self.close_connection = True
        self._drain = True
        self._reply(int(code), {"error": message or self.responses.get(code, ("error",))[0]})

    def finish(self) -> None:
        super().finish()
        if self._drain and not self._upgraded:
            self._linger()

    # ------------------------------------------------------------------ plumbing
    def _authorised(self) -> bool:
        given = self.headers.get("X-S2L-Token") or ""
        auth = self.headers.get("Authorization") or ""
        if auth.lower().startswith("bearer "):
            given = auth[7:].strip()
        url = urlparse(self.path)
        if not given and url.path.startswith("/ws/"):
            given = (parse_qs(url.query).get("token") or [""])[-1]
        return bool(given) and hmac.compare_digest(given.encode(), self.api.token.encode())

    def _reply(self, code: int, body: dict, headers: tuple = ()) -> None:
        """Send one JSON response. A client that is already gone makes this a no-op, not an exception."""
        data = json.dumps(body).encode()
        if self.request_version == "HTTP/0.9":
            self.request_version = "HTTP/1.0"  # always answer with a status line and headers
        if self._body_left:
            self.close_connection = True  # the unread rest of the body would be taken for the next request
            self._drain = True
        try:
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in headers:
                self.send_header(name, value)
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(data)
        except OSError as exc:
            self.close_connection = True
            log.debug("api: reply %d not delivered (%s)", code, exc)

    def _linger(self) -> None:
        """Read away what the client is still sending before closing: closing a socket with unread input sends
        a TCP reset, and a reset can destroy our error reply before the client has read it."""
        sock = self.connection
        try:
            sock.shutdown(socket.SHUT_WR)  # the reply is complete; the client sees EOF after it
            deadline, got = time.monotonic() + DRAIN_S, 0
            while got < DRAIN_BYTES and (left := deadline - time.monotonic()) > 0:
                sock.settimeout(left)
                data = sock.recv(65536)
                if not data:
                    break
                got += len(data)
        except OSError:
            pass

    # ------------------------------------------------------------------ requests
    def _dispatch(self, method: str) -> None:
        url = urlparse(self.path)
        try:
            self._begin_body()
            if not self._authorised():
                raise ApiError(401, "missing or wrong token (see the session file)")
            self._route(method, url)
        except ApiError as exc:
            self._fail(method, url.path, exc.status, str(exc), exc.headers)
        except ClientGone as exc:
            log.info("api: %s %s: client went away (%s)", method[:20], url.path[:100], exc)
            self._fail(method, url.path, exc.status, f"client went away: {exc}")
        except UserError as exc:
            self._fail(method, url.path, 400, str(exc))
        except ValueError as exc:
            self._fail(method, url.path, 400, str(exc))
        except OSError as exc:  # the OS refused a file or folder named in the request (permission, name too long)
            self._fail(method, url.path, 400, f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": "))
        except Exception as exc:  # noqa: BLE001 - a bug must not kill the server thread
            log.exception("api: %s %s failed", method, url.path)
            self._fail(method, url.path, 500, f"{type(exc).__name__}: {exc}")

    def _fail(self, method: str, path: str, status: int, reason: str, headers: tuple = ()) -> None:
        """The reason as JSON to the client (if it still listens); the connection then closes. Logged at debug
        level only: the client has the reason, and a local process knocking must not flood the streamer's log."""
        log.debug("api: %s %s -> %d %s", method[:20], path[:100], status, reason)
        self.close_connection = True
        self._drain = True  # whatever the client still sends must not turn our reply into a reset
        if not self._upgraded:
            self._reply(status, {"error": reason}, headers)

"""The local control API of `serve`: HTTP on 127.0.0.1 only, every request authenticated by a token.

Why a token even on loopback: any local process (a browser tab doing a fetch to localhost included) could
otherwise make the avatar say things. The token is random per start and written, with the port, to a session
file only the user can read (0600, in a 0700 folder under the user's runtime/config dir); `say` reads it.

Endpoints (JSON responses; header ``Authorization: Bearer <token>`` or ``X-S2L-Token: <token>``):

- ``GET  /status``                      the status dict (same keys as the shared-memory status)
- ``POST /say``      ``{"path": F}`` or ``{"paths": [F, ...]}``   queue audio files (decoded + resampled here)
- ``POST /pcm?rate=R&channels=C&format=s16|f32``   stream raw interleaved PCM in the body (chunked transfer
  or Content-Length); the avatar starts speaking while the body is still arriving, so a TTS can send
  audio as it synthesises. One request = one utterance; the response comes when the body ends.
- ``GET  /ws/pcm?rate=R&channels=C&format=s16|f32[&token=T]``   the same over a WebSocket: binary messages
  are PCM chunks, a text message ``end`` (or closing) ends the utterance; the server answers with one text
  message (the JSON result) and closes. The token may be given as a query parameter here, because browsers
  cannot set headers on WebSockets.
- ``POST /flush``                       barge-in: drop queued and playing speech now
- ``POST /switch-avatar`` ``{"avatar": DIR}``   load another avatar package and switch to it

Errors (docs/api.md, "Errors"): every refusal is an HTTP status with ``{"error": "<one line>"}``, including
http.server's own (bad request line, oversized headers) and unknown methods (405). Clients are untrusted: a
body is read in bounded pieces with a per-read timeout, one that vanishes mid-request costs a log line (never
a traceback), and after an error reply the unread rest of a body is read away before closing, because closing
with unread input sends a TCP reset that can destroy the reply before the client reads it.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import logging
import os
import re
import secrets
import socket
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from stream_wav2lip.errors import UserError

log = logging.getLogger(__name__)
MAX_JSON = 1 << 20
MAX_WS_MESSAGE = 1 << 22
MAX_SAY_FILES = 256  # files in one /say
MAX_NAME = 4096  # characters in a file or folder name
MAX_CHUNK_LINE = 1024  # bytes in a chunk-size line or a trailer field
MAX_TRAILERS = 64
PIECE = 64 << 10  # a streamed body is handed on in pieces of at most this
READ_TIMEOUT_S = 60.0  # a client silent this long mid-request (or between requests) is dropped
DRAIN_S, DRAIN_BYTES = 1.0, 16 << 20  # reading away an unread body after an error reply (see _Handler._linger)
ROUTES = {"/status": "GET", "/say": "POST", "/pcm": "POST", "/ws/pcm": "GET", "/flush": "POST",
          "/switch-avatar": "POST"}
_WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def runtime_dir() -> Path:
    """Per-user folder for session files: $S2L_RUNTIME_DIR, $XDG_RUNTIME_DIR/stream-wav2lip, or the config dir."""
    if os.environ.get("S2L_RUNTIME_DIR"):
        return Path(os.environ["S2L_RUNTIME_DIR"])
    if sys.platform == "win32":  # pragma: no cover
        return Path(os.environ.get("LOCALAPPDATA", Path.home())) / "stream-wav2lip" / "run"
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and Path(xdg).is_dir():
        return Path(xdg) / "stream-wav2lip"
    return Path(os.environ.get("XDG_CONFIG_HOME", Path.home() / ".config")) / "stream-wav2lip" / "run"


def session_file(session: str) -> Path:
    return runtime_dir() / f"{session}.json"


def write_session_file(session: str, info: dict) -> Path:
    """Write the session's port+token file readable by the user only (created 0600, then renamed)."""
    folder = runtime_dir()
    folder.mkdir(parents=True, exist_ok=True)
    try:
        os.chmod(folder, 0o700)
    except OSError:
        pass
    path = session_file(session)
    tmp = folder / f".{session}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(info, f)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return path


def read_session_file(session: str) -> dict:
    path = session_file(session)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: no running backend for session {session!r} (start `stream-wav2lip serve "
                        f"--session {session}` first)") from None
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: unreadable session file ({exc})") from None


class ControlApi:
    """Serves the endpoints above for `app` (a `backend.serve_app.ServeApp`) in a background thread."""

    def __init__(self, app, session: str, port: int = 0):
        self.app = app
        self.session = session
        self.token = secrets.token_urlsafe(32)
        handler = type("Handler", (_Handler,), {"api": self})
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


class ApiError(Exception):
    """A request the API refuses: an HTTP status and a one-line reason (sent as ``{"error": reason}``)."""

    def __init__(self, status: int, reason: str, headers: tuple = ()):
        super().__init__(reason)
        self.status, self.headers = status, headers


class ClientGone(ConnectionError):
    """The client closed, reset or fell silent mid-request: the body is incomplete and maybe nobody listens."""

    def __init__(self, reason: str, status: int = 400):
        super().__init__(reason)
        self.status = status


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        """socketserver prints a traceback to stderr for whatever a handler lets through; a client that vanished
        (reset, broken pipe) is not worth one, and nothing else gets past `_Handler`: one line at most."""
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):
            log.debug("api: connection from %s ended: %s", client_address, exc)
        else:
            log.error("api: request from %s failed: %s: %s", client_address, type(exc).__name__, exc)


class _Handler(BaseHTTPRequestHandler):
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

    def _begin_body(self) -> None:
        """How the request body is framed (Content-Length or chunked); refuse framings we cannot read safely."""
        self._chunked, self._body_left = False, 0  # per request: a kept-alive connection carries several
        te = (self.headers.get("Transfer-Encoding") or "").strip().lower()
        lengths = {v.strip() for v in self.headers.get_all("Content-Length") or []}
        if te:
            if te != "chunked":
                raise ApiError(400, f"Transfer-Encoding {te[:40]!r} is not supported (send chunked or Content-Length)")
            self._chunked, self._body_left = True, -1
            return
        if len(lengths) > 1:
            raise ApiError(400, "conflicting Content-Length headers")
        if lengths:
            (raw,) = lengths
            if not re.fullmatch(r"[0-9]{1,18}", raw):
                raise ApiError(400, f"bad Content-Length {raw[:40]!r}")
            self._body_left = int(raw)

    def _read(self, n: int, what: str = "the request body") -> bytes:
        """Up to `n` bytes, whatever has arrived (at least one); ClientGone when the connection ends or stalls."""
        try:
            data = self.rfile.read1(n)
        except TimeoutError:
            raise ClientGone(f"nothing received for {READ_TIMEOUT_S:.0f} s in {what}", 408) from None
        except OSError as exc:
            raise ClientGone(f"connection lost in {what} ({exc.strerror or exc})") from None
        if not data:
            raise ClientGone(f"{what} ended early (connection closed)")
        return data

    def _readline(self, limit: int) -> bytes:
        try:
            return self.rfile.readline(limit)
        except TimeoutError:
            raise ClientGone(f"nothing received for {READ_TIMEOUT_S:.0f} s in the chunked body", 408) from None
        except OSError as exc:
            raise ClientGone(f"connection lost in the chunked body ({exc.strerror or exc})") from None

    def _chunks(self, limit: int | None = None):
        """The request body piece by piece as it arrives (chunked transfer encoding or Content-Length);
        `limit`: refuse (413) a chunk announced larger than this before reading it."""
        if not self._chunked:
            total = self._body_left
            while self._body_left > 0:
                data = self._read(min(self._body_left, PIECE), f"the request body ({total - self._body_left} of "
                                                               f"{total} bytes received)")
                self._body_left -= len(data)
                yield data
            return
        while True:
            line = self._readline(MAX_CHUNK_LINE)
            if not line:
                raise ClientGone("the chunked body ended before its last (empty) chunk")
            size = re.fullmatch(rb"\s*([0-9A-Fa-f]{1,15})\s*(;.*)?\s*", line, re.S)
            if not line.endswith(b"\n") or size is None:
                raise ApiError(400, f"malformed chunked body (bad chunk-size line {line[:40]!r})")
            left = int(size.group(1), 16)
            if limit is not None and left > limit:
                raise ApiError(413, f"request body too large (a chunk of {left} bytes; at most {limit})")
            if left == 0:
                for _ in range(MAX_TRAILERS):  # optional trailer fields, then an empty line
                    if self._readline(MAX_CHUNK_LINE) in (b"\r\n", b"\n", b""):
                        break
                self._body_left = 0
                return
            while left > 0:
                data = self._read(min(left, PIECE), "a chunk of the request body")
                left -= len(data)
                yield data
            if self._readline(3) not in (b"\r\n", b"\n"):
                raise ApiError(400, "malformed chunked body (no CRLF after a chunk's data)")

    def _json_body(self) -> dict:
        """The body as a JSON object ({} when there is none), at most MAX_JSON bytes."""
        if self._body_left > MAX_JSON:
            raise ApiError(413, f"request body too large ({self._body_left} bytes; a JSON body is at most {MAX_JSON})")
        raw = bytearray()
        for piece in self._chunks(limit=MAX_JSON):
            raw += piece
            if len(raw) > MAX_JSON:
                raise ApiError(413, f"request body too large (a JSON body is at most {MAX_JSON} bytes)")
        if not raw.strip():
            return {}
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError):  # RecursionError: [[[[... nested deeper than the parser goes
            raise ApiError(400, "request body is not JSON") from None
        if not isinstance(body, dict):
            raise ApiError(400, f"request body must be a JSON object, not {type(body).__name__}")
        return body

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

    def _route(self, method: str, url) -> None:
        path = url.path.rstrip("/") or "/"
        allowed = ROUTES.get(path)
        if allowed is None:
            raise ApiError(404, f"no endpoint {path[:100]} (see docs/api.md)")
        if method != allowed:
            raise ApiError(405, f"{path} takes {allowed}, not {method[:20]}", (("Allow", allowed),))
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        app = self.api.app
        if path == "/status":
            return self._reply(200, app.status())
        if path == "/ws/pcm":
            return self._websocket_pcm(query)
        if path == "/pcm":
            rate, channels, fmt = _pcm_format(query)
            return self._reply(200, app.stream_pcm(self._chunks(), rate=rate, channels=channels, fmt=fmt))
        body = self._json_body()
        if path == "/say":
            return self._reply(200, {"queued": app.say(_say_paths(body))})
        if path == "/flush":
            return self._reply(200, {"dropped": app.flush()})
        if path == "/switch-avatar":
            avatar = body.get("avatar")
            if not isinstance(avatar, str) or not _is_name(avatar):
                raise ApiError(400, '/switch-avatar needs {"avatar": DIR} with the folder as a string')
            return self._reply(200, app.switch_avatar(avatar))
        raise AssertionError(path)  # pragma: no cover - ROUTES and the branches above list the same paths

    # ------------------------------------------------------------------ WebSocket (RFC 6455, server side)
    def _websocket_pcm(self, q: dict) -> None:
        key = self.headers.get("Sec-WebSocket-Key")
        if "websocket" not in (self.headers.get("Upgrade") or "").lower() or not key:
            raise ApiError(400, "/ws/pcm needs a WebSocket upgrade request")
        if self._body_left:
            raise ApiError(400, "a WebSocket upgrade request has no body")
        rate, channels, fmt = _pcm_format(q)  # refuse a bad format while an HTTP answer is still possible
        accept = base64.b64encode(hashlib.sha1((key + _WS_GUID).encode()).digest()).decode()
        self.close_connection = True
        try:
            self.send_response(101)
            self.send_header("Upgrade", "websocket")
            self.send_header("Connection", "Upgrade")
            self.send_header("Sec-WebSocket-Accept", accept)
            self.end_headers()
        except OSError as exc:
            raise ClientGone(f"connection lost before the upgrade ({exc})") from None
        self._upgraded = True
        try:
            result = self.api.app.stream_pcm(self._ws_messages(), rate=rate, channels=channels, fmt=fmt)
        except ClientGone as exc:
            log.info("api: /ws/pcm: client went away (%s)", exc)
            return
        except ApiError as exc:
            return self._ws_fail(1009 if exc.status == 413 else 1002, str(exc))
        except (UserError, ValueError) as exc:
            return self._ws_fail(1008, str(exc))
        except Exception as exc:  # noqa: BLE001 - a bug must not kill the server thread
            log.exception("api: /ws/pcm failed")
            return self._ws_fail(1011, f"{type(exc).__name__}: {exc}")
        self._ws_send(0x1, json.dumps(result).encode())
        self._ws_send(0x8, struct.pack("!H", 1000))

    def _ws_fail(self, code: int, reason: str) -> None:
        """After the upgrade an error is a text message ``{"error": ...}`` and a close frame with `code`."""
        log.info("api: /ws/pcm -> close %d %s", code, reason)
        self._ws_send(0x1, json.dumps({"error": reason}).encode())
        self._ws_send(0x8, struct.pack("!H", code))

    def _ws_exact(self, n: int) -> bytes:
        parts, left = [], n
        while left > 0:
            data = self._read(left, "a WebSocket frame")
            parts.append(data)
            left -= len(data)
        return b"".join(parts)

    def _ws_messages(self):
        """Binary payloads until the client sends `end` or a close frame; ClientGone when the connection drops."""
        while True:
            head = self._ws_exact(2)
            opcode, masked, n = head[0] & 0x0F, head[1] & 0x80, head[1] & 0x7F
            if n == 126:
                n = struct.unpack("!H", self._ws_exact(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", self._ws_exact(8))[0]
            if n > MAX_WS_MESSAGE:
                raise ApiError(413, f"WebSocket message of {n} bytes is over the {MAX_WS_MESSAGE} byte limit")
            if opcode not in (0x0, 0x1, 0x2, 0x8, 0x9, 0xA):
                raise ApiError(400, f"unknown WebSocket opcode {opcode:#x}")
            mask = self._ws_exact(4) if masked else b""
            data = self._ws_exact(n)
            if mask:
                data = _unmask(data, mask)
            if opcode == 0x8:
                return
            if opcode == 0x9:
                self._ws_send(0xA, data[:125])
            elif opcode == 0x1 and data.strip() == b"end":
                return
            elif opcode in (0x0, 0x2):
                yield data

    def _ws_send(self, opcode: int, data: bytes) -> None:
        n = len(data)
        head = bytes([0x80 | opcode]) + (bytes([n]) if n < 126 else
                                         bytes([126]) + struct.pack("!H", n) if n < 65536 else
                                         bytes([127]) + struct.pack("!Q", n))
        try:
            self.wfile.write(head + data)
        except OSError:
            pass


def _is_name(text: str) -> bool:
    """A file or folder name we are willing to hand to the OS."""
    return bool(text.strip()) and len(text) <= MAX_NAME and "\0" not in text


def _say_paths(body: dict) -> list[str]:
    usage = '/say needs {"path": FILE} or {"paths": [FILE, ...]} with file names as strings'
    if "paths" in body:
        paths = body["paths"]
        if not isinstance(paths, list) or not paths:
            raise ApiError(400, usage)
    elif "path" in body:
        paths = [body["path"]]
    else:
        raise ApiError(400, usage)
    if len(paths) > MAX_SAY_FILES:
        raise ApiError(400, f"/say takes at most {MAX_SAY_FILES} files at once (got {len(paths)})")
    for p in paths:
        if not isinstance(p, str):
            raise ApiError(400, f"{usage} (got a {type(p).__name__})")
        if not _is_name(p):
            raise ApiError(400, f"{p[:80]!r}: not a usable file name")
    return paths


def _pcm_format(q: dict) -> tuple[int, int, str]:
    """rate, channels, format from the query string, checked (a UserError/ApiError names the bad one)."""
    from backend.sources.pcm import PcmDecoder

    def whole(name: str, default: int) -> int:
        raw = q.get(name)
        if raw is None:
            return default
        if not re.fullmatch(r"\s*[0-9]{1,9}\s*", raw):
            raise ApiError(400, f"pcm: {name}={raw[:20]!r} is not a whole number")
        return int(raw)

    rate, channels, fmt = whole("rate", 16000), whole("channels", 1), q.get("format", "s16")
    PcmDecoder(rate, channels, fmt)  # raises UserError for anything it cannot decode
    return rate, channels, fmt


def _unmask(data: bytes, mask: bytes) -> bytes:
    import numpy as np

    arr = np.frombuffer(data, np.uint8)
    key = np.resize(np.frombuffer(mask, np.uint8), arr.size)
    return (arr ^ key).tobytes()


# ---------------------------------------------------------------------------------------------- client
class ApiClient:
    """Minimal client used by `say`, the tests and the benchmark (stdlib http.client)."""

    def __init__(self, session: str | None = None, port: int | None = None, token: str | None = None,
                 timeout: float = 30.0):
        if port is None or token is None:
            info = read_session_file(session or "default")
            port, token = int(info["port"]), str(info["token"])
        self.port, self.token, self.timeout = port, token, timeout

    def _conn(self):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)

    def request(self, method: str, path: str, body=None, headers: dict | None = None) -> dict:
        conn = self._conn()
        try:
            hdrs = {"Authorization": f"Bearer {self.token}", **(headers or {})}
            if isinstance(body, dict):
                body = json.dumps(body).encode()
                hdrs["Content-Type"] = "application/json"
            chunked = body is not None and not isinstance(body, (bytes, bytearray))
            if chunked:
                hdrs["Transfer-Encoding"] = "chunked"
            try:
                try:
                    conn.request(method, path, body=body, headers=hdrs, encode_chunked=chunked)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the backend refused the request before its body ended and closed: read why
                resp = conn.getresponse()
                data = resp.read()
            except ConnectionRefusedError:
                raise UserError(f"no backend listening on 127.0.0.1:{self.port} (is `serve` running?)") from None
            except (OSError, http.client.HTTPException) as exc:
                raise UserError(f"{method} {path}: connection to the backend lost ({exc or type(exc).__name__})"
                                ) from None
            try:
                payload = json.loads(data or b"{}")
            except ValueError:
                payload = {"error": data[:200].decode(errors="replace")}
            if resp.status != 200:
                raise UserError(f"{method} {path}: {resp.status} {payload.get('error', '')}")
            return payload
        finally:
            conn.close()

    def status(self) -> dict:
        return self.request("GET", "/status")

    def say(self, paths: list[str]) -> dict:
        return self.request("POST", "/say", {"paths": [str(Path(p).resolve()) for p in paths]})

    def flush(self) -> dict:
        return self.request("POST", "/flush", {})

    def switch_avatar(self, avatar: str) -> dict:
        return self.request("POST", "/switch-avatar", {"avatar": str(Path(avatar).resolve())})

    def pcm(self, chunks, rate: int, channels: int = 1, fmt: str = "s16") -> dict:
        """Stream an iterable of raw PCM byte chunks as one utterance."""
        return self.request("POST", f"/pcm?rate={rate}&channels={channels}&format={fmt}", body=iter(chunks))

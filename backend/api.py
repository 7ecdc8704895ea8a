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
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import struct
import logging
import os
import secrets
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from stream_wav2lip.errors import UserError

log = logging.getLogger(__name__)
MAX_JSON = 1 << 20
MAX_WS_MESSAGE = 1 << 22
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
            self.server = ThreadingHTTPServer(("127.0.0.1", int(port)), handler)
        except OSError as exc:
            raise UserError(f"--api-port {port}: cannot listen on 127.0.0.1 ({exc.strerror or exc})") from None
        self.server.daemon_threads = True
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


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    api: ControlApi  # set by ControlApi

    def log_message(self, fmt, *args):  # quiet: the backend's log is for the streamer
        log.debug("api: " + fmt, *args)

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

    def _reply(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _json_body(self) -> dict:
        length = int(self.headers.get("Content-Length") or 0)
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            raw = b"".join(self._chunks())
        else:
            if length > MAX_JSON:
                raise UserError("request body too large")
            raw = self.rfile.read(length) if length else b""
        if not raw:
            return {}
        try:
            body = json.loads(raw)
        except ValueError:
            raise UserError("request body is not JSON") from None
        if not isinstance(body, dict):
            raise UserError("request body must be a JSON object")
        return body

    def _chunks(self):
        """The request body piece by piece (chunked transfer encoding or Content-Length)."""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:
                line = self.rfile.readline(1024)
                if not line:
                    return
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    return
                data = self.rfile.read(size)
                self.rfile.readline(8)  # CRLF after the chunk
                yield data
        else:
            left = int(self.headers.get("Content-Length") or 0)
            while left > 0:
                data = self.rfile.read(min(left, 8192))
                if not data:
                    return
                left -= len(data)
                yield data

    def _dispatch(self, method: str) -> None:
        url = urlparse(self.path)
        if not self._authorised():
            # drain a small body so the connection stays usable, then refuse
            self.close_connection = True
            return self._reply(401, {"error": "missing or wrong token (see the session file)"})
        route = (method, url.path.rstrip("/") or "/")
        try:
            if route == ("GET", "/ws/pcm"):
                return self._websocket_pcm({k: v[-1] for k, v in parse_qs(url.query).items()})
            if route == ("GET", "/status"):
                return self._reply(200, self.api.app.status())
            if route == ("POST", "/say"):
                body = self._json_body()
                paths = body.get("paths") or ([body["path"]] if body.get("path") else [])
                if not paths or not all(isinstance(p, str) for p in paths):
                    raise UserError('/say needs {"path": FILE} or {"paths": [FILE, ...]}')
                return self._reply(200, {"queued": self.api.app.say(paths)})
            if route == ("POST", "/pcm"):
                q = {k: v[-1] for k, v in parse_qs(url.query).items()}
                return self._reply(200, self.api.app.stream_pcm(
                    self._chunks(), rate=int(q.get("rate", 16000)), channels=int(q.get("channels", 1)),
                    fmt=q.get("format", "s16")))
            if route == ("POST", "/flush"):
                self._json_body()
                return self._reply(200, {"dropped": self.api.app.flush()})
            if route == ("POST", "/switch-avatar"):
                body = self._json_body()
                if not isinstance(body.get("avatar"), str):
                    raise UserError('/switch-avatar needs {"avatar": DIR}')
                return self._reply(200, self.api.app.switch_avatar(body["avatar"]))
        except UserError as exc:
            self.close_connection = True
            return self._reply(400, {"error": str(exc)})
        except ValueError as exc:
            self.close_connection = True
            return self._reply(400, {"error": str(exc)})
        except Exception as exc:  # noqa: BLE001 - a bug must not kill the server thread
            log.exception("api: %s %s failed", method, url.path)
            self.close_connection = True
            return self._reply(500, {"error": f"{type(exc).__name__}: {exc}"})
        self.close_connection = True
        return self._reply(404, {"error": f"no endpoint {method} {url.path}"})

    # ------------------------------------------------------------------ WebSocket (RFC 6455, server side)
    def _websocket_pcm(self, q: dict) -> None:
        from backend.sources.pcm import PcmDecoder

        key = self.headers.get("Sec-WebSocket-Key")
        if "websocket" not in (self.headers.get("Upgrade") or "").lower() or not key:
            raise UserError("/ws/pcm needs a WebSocket upgrade request")
        PcmDecoder(int(q.get("rate", 16000)), int(q.get("channels", 1)), q.get("format", "s16"))  # validate first
        accept = base64.b64encode(hashlib.sha1((key + _WS_GUID).encode()).digest()).decode()
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.end_headers()
        self.close_connection = True
        result = self.api.app.stream_pcm(self._ws_messages(), rate=int(q.get("rate", 16000)),
                                         channels=int(q.get("channels", 1)), fmt=q.get("format", "s16"))
        self._ws_send(0x1, json.dumps(result).encode())
        self._ws_send(0x8, struct.pack("!H", 1000))

    def _ws_messages(self):
        """Binary payloads until the client sends `end`, closes, or the connection drops."""
        while True:
            head = self.rfile.read(2)
            if len(head) < 2:
                return
            opcode, masked, n = head[0] & 0x0F, head[1] & 0x80, head[1] & 0x7F
            if n == 126:
                n = struct.unpack("!H", self.rfile.read(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", self.rfile.read(8))[0]
            if n > MAX_WS_MESSAGE:
                return
            mask = self.rfile.read(4) if masked else b""
            data = self.rfile.read(n)
            if mask:
                data = _unmask(data, mask)
            if opcode == 0x8:
                return
            if opcode == 0x9:
                self._ws_send(0xA, data)
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

    def do_GET(self):  # noqa: N802 - http.server naming
        self._dispatch("GET")

    def do_POST(self):  # noqa: N802
        self._dispatch("POST")


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
        import http.client

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
                conn.request(method, path, body=body, headers=hdrs, encode_chunked=chunked)
                resp = conn.getresponse()
                data = resp.read()
            except ConnectionRefusedError:
                raise UserError(f"no backend listening on 127.0.0.1:{self.port} (is `serve` running?)") from None
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

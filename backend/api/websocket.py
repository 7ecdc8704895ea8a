"""The server side of RFC 6455 for ``GET /ws/pcm``: the upgrade, reading masked frames, answering, closing.

Why a hand-written one: the standard library has no WebSocket server, the backend needs only this one
endpoint (binary PCM in, one JSON text message out), and a dependency for it would be larger than the code.
Why apart from the HTTP plumbing: after the 101 answer the connection is no longer HTTP, so errors change
shape (a text message ``{"error": ...}`` and a close frame with a code instead of a status line).
`WebSocketPcm` is mixed into the request handler, which supplies `api`, `headers`, `wfile` and `_read`.
"""
from __future__ import annotations

import base64
import hashlib
import json
import logging
import struct

from backend.api.body import ApiError, ClientGone
from backend.api.limits import MAX_WS_MESSAGE
from backend.api.routes import pcm_format
from stream_wav2lip.errors import UserError

log = logging.getLogger(__package__)
_WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class WebSocketPcm:
    """One PCM utterance over a WebSocket (see the module docstring)."""

    def _websocket_pcm(self, q: dict) -> None:
        key = self.headers.get("Sec-WebSocket-Key")
        if "websocket" not in (self.headers.get("Upgrade") or "").lower() or not key:
            raise ApiError(400, "/ws/pcm needs a WebSocket upgrade request")
        if self._body_left:
            raise ApiError(400, "a WebSocket upgrade request has no body")
        rate, channels, fmt = pcm_format(q)  # refuse a bad format while an HTTP answer is still possible
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


def _unmask(data: bytes, mask: bytes) -> bytes:
    import numpy as np

    arr = np.frombuffer(data, np.uint8)
    key = np.resize(np.frombuffer(mask, np.uint8), arr.size)
    return (arr ^ key).tobytes()

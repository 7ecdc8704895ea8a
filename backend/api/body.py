"""Reading a request body from an untrusted client: its framing, its pieces as they arrive, and JSON bodies.

Why apart from the routes: `/pcm` hands the body on piece by piece while it is still arriving (a TTS streams
for seconds), so reading must be incremental, bounded (no chunk announced as huge is read into memory) and
time-limited, and a client that vanishes halfway must surface as one `ClientGone`, not a traceback.
`BodyReader` is mixed into the request handler; it reads `self.rfile` and `self.headers` and keeps
`self._chunked` / `self._body_left` (bytes not read yet; -1: a chunked body not read to its end).
"""
from __future__ import annotations

import json
import re

from backend.api.limits import MAX_CHUNK_LINE, MAX_JSON, MAX_TRAILERS, PIECE, READ_TIMEOUT_S


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


class BodyReader:
    """The request body of the current request (mixed into the handler; see the module docstring)."""

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

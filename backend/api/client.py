"""`ApiClient`: the one client of the local API in this project (`say`, the tests, the benchmark).

Why the standard library's http.client: `say` must start fast and depend on nothing, and a TTS streaming
PCM needs chunked uploads, which http.client does. Every failure becomes a one-line `UserError`, including a
refusal the backend sent while the client was still sending its body.
"""
from __future__ import annotations

import http.client
import json
from pathlib import Path

from backend.api.session import read_session_file
from stream_wav2lip.errors import UserError


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

    def action(self, name: str) -> dict:
        return self.request("POST", "/action", {"name": name})

    def pause(self) -> dict:
        """Stop taking speech (what is queued is dropped) until `start`."""
        return self.request("POST", "/pause", {})

    def start(self) -> dict:
        """Take speech again after `pause`."""
        return self.request("POST", "/start", {})

    def stop(self) -> dict:
        """End the backend."""
        return self.request("POST", "/stop", {})

    def pcm(self, chunks, rate: int, channels: int = 1, fmt: str = "s16") -> dict:
        """Stream an iterable of raw PCM byte chunks as one utterance."""
        return self.request("POST", f"/pcm?rate={rate}&channels={channels}&format={fmt}", body=iter(chunks))

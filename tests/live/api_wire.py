"""Raw-socket helpers for the hostile-client API tests (tests/live/test_api_hostile*.py), and their fake app.

Why raw sockets: http.client refuses to send most of what a broken or hostile client sends (bad request lines,
conflicting framings, truncated chunks), and the tests need to read the server's exact answer, headers included.
The fake `ServeApp` has only what the real command surface (`backend.live.commands.ServeCommands`) touches.
"""
from __future__ import annotations

import json
import socket
import struct
import threading
import time
from types import SimpleNamespace

from backend.sources.queue import SpeechQueue


class FakeLoop:
    """The live loop as the commands see it: flush goes to the queue; stop is recorded."""

    def __init__(self, queue):
        self.queue = queue
        self.stops = []

    def flush(self):
        return self.queue.flush()

    def stop(self, timeout=None):
        self.stops.append(timeout)


def fake_serve_app():
    queue = SpeechQueue()
    return SimpleNamespace(queue=queue, loop=FakeLoop(queue), control=SimpleNamespace(update=lambda **kw: None))


def wait_for_request_threads(timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not [t for t in threading.enumerate() if "process_request" in t.name]:
            return
        time.sleep(0.02)


def request(method: str, path: str, token: str | None, body: bytes = b"", headers: dict | None = None,
            length: int | None = None) -> bytes:
    head = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    if token:
        head.append(f"Authorization: Bearer {token}")
    for k, v in (headers or {}).items():
        head.append(f"{k}: {v}")
    if length is None and body and not {"Transfer-Encoding", "Content-Length"} & set(headers or {}):
        length = len(body)
    if length is not None:
        head.append(f"Content-Length: {length}")
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


def exchange(port: int, data: bytes, half_close: bool = True, timeout: float = 5.0):
    """Send `data`, read the whole answer: (status, headers, JSON body). The server closes after an error;
    half-closing our side makes it close after a success too."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        raw = b""
        while True:
            got = sock.recv(65536)
            if not got:
                break
            raw += got
            if complete(raw):
                break
    return parse(raw)


def complete(raw: bytes) -> bool:
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value)
    return False


def parse(raw: bytes):
    head, sep, body = raw.partition(b"\r\n\r\n")
    assert sep, f"no complete HTTP answer: {raw[:200]!r}"
    lines = head.decode("latin-1").split("\r\n")
    version, status, _ = (lines[0].split(" ", 2) + [""])[:3]
    assert version.startswith("HTTP/1."), lines[0]
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    assert headers.get("content-type") == "application/json", headers
    n = int(headers["content-length"])
    return int(status), headers, json.loads(body[:n])


def assert_error(answer, status: int, *words: str) -> None:
    got, _, body = answer
    assert got == status, body
    assert isinstance(body.get("error"), str) and body["error"], body
    for w in words:
        assert w in body["error"], body


def abort(sock, *files):
    """Close with a TCP reset, like a crashed client (the socket's file objects hold it open until closed)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    for f in files:
        f.close()
    sock.close()


def wait(condition, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not condition():
        time.sleep(0.01)
    return condition()

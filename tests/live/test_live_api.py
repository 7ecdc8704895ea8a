"""Local control API: loopback only, token required, session file 0600, chunked PCM streaming."""
from __future__ import annotations

import http.client
import json
import os
import stat
import threading
import time

import numpy as np
import pytest

from backend.api import ApiClient, ControlApi, read_session_file
from backend.sources.queue import SpeechQueue
from stream_wav2lip.errors import UserError


class FakeApp:
    """Records calls; `stream_pcm` is serve's own (backend.live.commands: decoder + utterance)."""

    def __init__(self):
        self.queue = SpeechQueue()
        self.calls = []
        self.chunk_sizes = []

    def status(self):
        return {"state": "idle"}

    def say(self, paths):
        self.calls.append(("say", paths))
        if any("missing" in p for p in paths):
            raise UserError(f"{paths[0]}: file not found")
        return [{"id": 1}]

    def stream_pcm(self, chunks, rate, channels, fmt):
        from backend.live.commands import ServeCommands

        def counting():
            for c in chunks:
                self.chunk_sizes.append(len(c))
                yield c

        return ServeCommands(self).stream_pcm(counting(), rate, channels, fmt)

    def flush(self):
        return self.queue.flush()

    def switch_avatar(self, avatar):
        return {"avatar": avatar}

    def action(self, name):
        self.calls.append(("action", name))
        if name != "wave":
            raise UserError(f"avatar: unknown action {name!r} (this avatar has: wave)")
        return {"action": name, "starts_in_ms": 120}


@pytest.fixture
def api(session):
    app = FakeApp()
    server = ControlApi(app, session, 0)
    server.start()
    yield server, app
    server.close()


def test_session_file_is_private_and_removed_on_close(session, runtime_dir):
    app = FakeApp()
    server = ControlApi(app, session, 0)
    path = runtime_dir / f"{session}.json"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(runtime_dir).st_mode) == 0o700
    info = read_session_file(session)
    assert info["port"] == server.port and len(info["token"]) >= 32 and info["pid"] == os.getpid()
    assert server.server.server_address[0] == "127.0.0.1"
    server.close()
    assert not path.exists()
    with pytest.raises(UserError, match="no running backend"):
        read_session_file(session)


def test_requests_without_the_token_are_refused(api):
    server, app = api
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"X-S2L-Token": server.token[:-1]}):
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        conn.request("POST", "/flush", body=b"{}", headers=headers)
        assert conn.getresponse().status == 401
        conn.close()
    assert app.calls == []
    ok = ApiClient(port=server.port, token=server.token)
    assert ok.status() == {"state": "idle"}


def test_say_errors_come_back_as_one_line(api):
    server, app = api
    client = ApiClient(port=server.port, token=server.token)
    assert client.say(["/tmp/a.wav"]) == {"queued": [{"id": 1}]}
    with pytest.raises(UserError, match="file not found"):
        client.say(["/tmp/missing.wav"])
    with pytest.raises(UserError, match="404"):
        client.request("GET", "/nothing")


def test_action_cues_go_to_the_command_surface(api):
    server, app = api
    client = ApiClient(port=server.port, token=server.token)
    assert client.action("wave") == {"action": "wave", "starts_in_ms": 120}
    with pytest.raises(UserError, match="unknown action 'jump'"):
        client.action("jump")
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    conn.request("POST", "/action", json.dumps({"name": 5}), {"Authorization": f"Bearer {server.token}"})
    reply = conn.getresponse()
    assert reply.status == 400 and "name" in json.loads(reply.read())["error"]
    assert app.calls == [("action", "wave"), ("action", "jump")]


def test_chunked_pcm_stream_becomes_one_utterance_while_it_arrives(api):
    server, app = api
    client = ApiClient(port=server.port, token=server.token)
    x = (np.arange(4800) % 100 - 50).astype("<i2")  # 0.3 s at 16 kHz
    seen_while_streaming = []
    gate = threading.Event()

    def chunks():
        for i in range(0, x.size, 77):  # odd sizes: samples split across chunks
            yield x[i:i + 77].tobytes()
            if i == 77 * 10:  # the server has the first chunks before the body ends
                deadline = time.monotonic() + 5
                while time.monotonic() < deadline and not (app.queue.head() and app.queue.head().n):
                    time.sleep(0.01)
                head = app.queue.head()
                seen_while_streaming.append(head.n if head else 0)
        gate.set()

    result = client.pcm(chunks(), rate=16000, channels=1, fmt="s16")
    assert gate.is_set() and seen_while_streaming and seen_while_streaming[0] > 0, "audio usable before the end"
    assert result["seconds"] == pytest.approx(0.3) and not result["flushed"]
    u = app.queue.head()
    assert u.ended
    pcm, _ = u.take_new()
    np.testing.assert_allclose(pcm, x / 32768.0, atol=1e-7)
    assert len(app.chunk_sizes) > 10


def test_bad_pcm_query_is_a_400(api):
    server, _app = api
    client = ApiClient(port=server.port, token=server.token)
    with pytest.raises(UserError, match="400"):
        client.request("POST", "/pcm?rate=16000&format=mp3", body=b"\x00\x00")
    with pytest.raises(UserError, match="400"):
        client.request("POST", "/say", body={"nothing": 1})


def _ws_frame(opcode: int, data: bytes) -> bytes:
    mask = os.urandom(4)
    n = len(data)
    head = bytes([0x80 | opcode]) + (bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + n.to_bytes(2, "big"))
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data))


def test_websocket_pcm_stream_with_token_in_the_query(api):
    import base64
    import socket

    server, app = api
    x = (np.arange(3200) % 200 - 100).astype("<i2")
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        key = base64.b64encode(os.urandom(16)).decode()
        sock.sendall((f"GET /ws/pcm?rate=16000&channels=1&format=s16&token={server.token} HTTP/1.1\r\n"
                      f"Host: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        f = sock.makefile("rb")
        assert b"101" in f.readline()
        while f.readline() not in (b"\r\n", b""):
            pass
        data = x.tobytes()
        for i in range(0, len(data), 101):
            sock.sendall(_ws_frame(0x2, data[i:i + 101]))
        sock.sendall(_ws_frame(0x1, b"end"))
        head = f.read(2)
        reply = json.loads(f.read(head[1] & 0x7F))
    assert reply["seconds"] == pytest.approx(0.2)
    pcm, _ = app.queue.head().take_new()
    np.testing.assert_allclose(pcm, x / 32768.0, atol=1e-7)


def test_websocket_without_token_is_refused(api):
    import socket

    server, _app = api
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"GET /ws/pcm?rate=16000 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     b"Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\n\r\n")
        assert b"401" in sock.makefile("rb").readline()

"""The local API against hostile or broken clients: every bad request gets a JSON error with a 4xx status, a
client that vanishes mid-request costs one log line (never a traceback), and the server keeps serving.

The API is driven over raw sockets (http.client refuses to send most of this). The app behind it is the real
command surface (`backend.live.commands.ServeCommands`: files decoded by `queue_files`, PCM by `PcmDecoder`,
into a real `SpeechQueue`) on a fake `ServeApp` that has only what those commands touch.
"""
from __future__ import annotations

import base64
import json
import logging
import os
import socket
import struct
import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest

from backend.api import ControlApi
from backend.sources.queue import SpeechQueue


class _Loop:
    def __init__(self, queue):
        self.queue = queue

    def flush(self):
        return self.queue.flush()


def _fake_serve_app():
    queue = SpeechQueue()
    return SimpleNamespace(queue=queue, loop=_Loop(queue), control=SimpleNamespace(update=lambda **kw: None))


@pytest.fixture
def hostile(session, caplog, capfd):
    """(server, queue, check): `check()` asserts that nothing printed or logged a traceback."""
    from backend.live.commands import ServeCommands

    class Commands(ServeCommands):
        def status(self, control_only=False):  # the live loop's figures: no hostile input reaches them
            return {"state": "idle"}

    app = _fake_serve_app()
    server = ControlApi(Commands(app), session, 0)
    server.start()
    caplog.set_level(logging.DEBUG, logger="backend.api")

    def check():
        _wait_for_request_threads()
        err = capfd.readouterr().err
        assert "Traceback" not in err, err
        assert "Traceback" not in caplog.text, caplog.text
        assert not [r for r in caplog.records if r.exc_info], caplog.text
        status, _, body = exchange(server.port, request("GET", "/status", server.token))
        assert status == 200 and "error" not in body, "the server still answers"

    yield server, app.queue, check
    server.close()


def _wait_for_request_threads(timeout: float = 5.0) -> None:
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
            if _complete(raw):
                break
    return _parse(raw)


def _complete(raw: bytes) -> bool:
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value)
    return False


def _parse(raw: bytes):
    head, sep, body = raw.partition(b"\r\n\r\n")
    assert sep, f"no complete HTTP answer: {raw[:200]!r}"
    lines = head.decode("latin-1").split("\r\n")
    version, status, _ = (lines[0].split(" ", 2) + [""])[:3]
    assert version.startswith("HTTP/1."), lines[0]
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    assert headers.get("content-type") == "application/json", headers
    n = int(headers["content-length"])
    return int(status), headers, json.loads(body[:n])


def _assert_error(answer, status: int, *words: str) -> None:
    got, _, body = answer
    assert got == status, body
    assert isinstance(body.get("error"), str) and body["error"], body
    for w in words:
        assert w in body["error"], body


# ---------------------------------------------------------------------------------------------- requests
@pytest.mark.parametrize("data,status", [
    (b"GARBAGE\r\n\r\n", 400),
    (b"GET\r\n\r\n", 400),
    (b"GET /status HTTP/1.1 extra words\r\n\r\n", 400),
    (b"GET /status HTTP/9.9\r\n\r\n", 505),
    (b"GET /status HTTQ/1.1\r\n\r\n", 400),
    (b"\x00\xff\xfe\x80 \x01 \x02\r\n\r\n", 400),
    (b"POST /say\r\n\r\n", 400),  # HTTP/0.9 allows only GET
    (b"GET /status\r\n\r\n", 401),  # HTTP/0.9 GET: still a status line and a JSON reason
    (b"\x1c\x1d\x85\r\n\r\n", 400),  # only bytes that Python counts as white space
    (b"\r\nGET /status HTTP/1.1\r\n\r\n", 401),  # one empty line before the request is allowed
    (b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n", 414),
    (b"GET /status HTTP/1.1\r\nX-Long: " + b"a" * 70000 + b"\r\n\r\n", 431),
    (b"GET /status HTTP/1.1\r\n" + b"X-A: b\r\n" * 120 + b"\r\n", 431),
])
def test_malformed_requests_get_a_json_error(hostile, data, status):
    server, _, check = hostile
    _assert_error(exchange(server.port, data), status)
    check()


def test_bad_or_missing_token(hostile):
    server, queue, check = hostile
    for token in (None, "wrong", server.token[:-1], server.token + "x", "é" * 10):
        _assert_error(exchange(server.port, request("POST", "/say", token, b'{"path": "/x.wav"}')), 401, "token")
    # a query-string token counts on /ws/ only
    _assert_error(exchange(server.port, request("GET", f"/status?token={server.token}", None)), 401)
    assert len(queue) == 0
    check()


@pytest.mark.parametrize("method,path,status", [
    ("GET", "/nothing", 404),
    ("POST", "/", 404),
    ("GET", "/status/../say", 404),
    ("GET", "/say", 405),
    ("POST", "/status", 405),
    ("DELETE", "/say", 405),
    ("PUT", "/flush", 405),
    ("BREW", "/pcm", 405),
    ("OPTIONS", "/status", 405),
])
def test_unknown_routes_and_methods(hostile, method, path, status):
    server, _, check = hostile
    answer = exchange(server.port, request(method, path, server.token))
    _assert_error(answer, status)
    if status == 405:
        assert answer[1]["allow"] in ("GET", "POST")
    check()


@pytest.mark.parametrize("body", [
    b"{", b"not json", b"\xff\xfe\x00", b"[1, 2]", b'"x.wav"', b"null", b"42",
    b"[" * 100000 + b"]" * 100000,  # deeper than the JSON parser recurses
])
def test_bad_json_is_a_400(hostile, body):
    server, _, check = hostile
    for path in ("/say", "/flush", "/switch-avatar"):
        _assert_error(exchange(server.port, request("POST", path, server.token, body)), 400, "JSON")
    check()


@pytest.mark.parametrize("payload", [
    {}, {"nothing": 1}, {"path": 5}, {"path": None}, {"path": [1, 2]}, {"path": {"a": 1}}, {"path": True},
    {"path": ""}, {"path": "   "}, {"path": "a\u0000b.wav"}, {"path": "x" * 5000},
    {"paths": 5}, {"paths": "a.wav"}, {"paths": None}, {"paths": []}, {"paths": [1, 2, 3]}, {"paths": [None]},
    {"paths": [["a.wav"]]}, {"paths": ["/a.wav"] * 1000},
])
def test_say_with_wrong_types_is_a_400(hostile, payload):
    server, queue, check = hostile
    answer = exchange(server.port, request("POST", "/say", server.token, json.dumps(payload).encode()))
    _assert_error(answer, 400)
    assert len(queue) == 0
    check()


def test_say_with_missing_or_unreadable_files(hostile, tmp_path, media_dir):
    server, queue, check = hostile
    text = tmp_path / "notes.wav"
    text.write_text("not audio at all")
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    cases = {
        str(tmp_path / "missing.wav"): "file not found",
        str(tmp_path): "not a file",
        str(tmp_path / ("x" * 300 + ".wav")): "File name too long",  # the OS refuses the name itself
        str(text): str(text),
        str(empty): str(empty),
    }
    for path, words in cases.items():
        _assert_error(exchange(server.port, request("POST", "/say", server.token,
                                                    json.dumps({"path": path}).encode())), 400, words)
    # one bad file among good ones: nothing is queued
    good = str(media_dir / "tts_espeakng_en.wav")
    _assert_error(exchange(server.port, request("POST", "/say", server.token, json.dumps(
        {"paths": [good, str(tmp_path / "missing.wav")]}).encode())), 400, "missing.wav")
    assert len(queue) == 0
    status, _, body = exchange(server.port, request("POST", "/say", server.token, json.dumps({"path": good}).encode()))
    assert status == 200 and body["queued"][0]["seconds"] > 1 and len(queue) == 1
    check()


@pytest.mark.parametrize("payload,words", [
    ({}, "avatar"), ({"avatar": 5}, "avatar"), ({"avatar": None}, "avatar"), ({"avatar": ["a"]}, "avatar"),
    ({"avatar": "a\u0000b"}, "avatar"), ({"avatar": "/nonexistent/avatar"}, "not an avatar package"),
    ({"avatar": "y" * 300}, ""),
])
def test_switch_avatar_with_bad_input_is_a_400(hostile, payload, words):
    server, _, check = hostile
    body = json.dumps(payload).encode()
    _assert_error(exchange(server.port, request("POST", "/switch-avatar", server.token, body)), 400, words)
    check()


# ---------------------------------------------------------------------------------------------- bodies
@pytest.mark.parametrize("headers,body,status", [
    ({"Content-Length": "1000000000000"}, b"{}", 413),
    ({"Content-Length": "-1"}, b"", 400),
    ({"Content-Length": "abc"}, b"", 400),
    ({"Content-Length": "1e3"}, b"", 400),
    ({"Content-Length": "99999999999999999999999"}, b"", 400),
    ({"Transfer-Encoding": "gzip"}, b"", 400),
    ({"Transfer-Encoding": "chunked"}, b"zz\r\n{}\r\n0\r\n\r\n", 400),
    ({"Transfer-Encoding": "chunked"}, b"-2\r\n{}\r\n0\r\n\r\n", 400),
    ({"Transfer-Encoding": "chunked"}, b"2\r\n{}XX0\r\n\r\n", 400),
    ({"Transfer-Encoding": "chunked"}, b"2\r\n{}\r\n", 400),  # truncated: no last chunk
    ({"Transfer-Encoding": "chunked"}, b"100\r\n{}", 400),  # truncated inside a chunk
    ({"Transfer-Encoding": "chunked"}, b"FFFFFFFFFFFF\r\n{}", 413),  # a huge chunk is not read into memory
    ({"Content-Length": "100"}, b'{"path": "/x.wav"', 400),  # truncated, then the client half-closes
])
def test_broken_bodies(hostile, headers, body, status):
    server, queue, check = hostile
    answer = exchange(server.port, request("POST", "/say", server.token, body, headers=headers))
    _assert_error(answer, status)
    assert len(queue) == 0
    check()


def test_an_unread_body_does_not_reset_the_error_reply(hostile):
    """A client still sending a body we refuse (wrong token, too large) must read our reply, not a TCP reset."""
    server, _, check = hostile
    big = b"x" * (4 << 20)
    for token, length in ((None, len(big)), (server.token, (1 << 20) + len(big))):
        data = request("POST", "/say", token, big, length=length)
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sender = threading.Thread(target=lambda: _send_quietly(sock, data))
            sender.start()
            raw = b""
            while not _complete(raw):
                got = sock.recv(65536)
                if not got:
                    break
                raw += got
            sender.join(5)
        _assert_error(_parse(raw), 401 if token is None else 413)
    check()


def _send_quietly(sock, data):
    try:
        sock.sendall(data)
    except OSError:
        pass


def test_keep_alive_survives_a_refused_request_body(hostile):
    """GET with a body we never read: answered, then the connection closes (the body is not a next request)."""
    server, _, check = hostile
    answer = exchange(server.port, request("GET", "/status", server.token, b"GET /nothing HTTP/1.1\r\n\r\n"))
    assert answer[0] == 200 and answer[1].get("connection") == "close"
    check()


def test_requests_after_a_chunked_one_on_a_kept_alive_connection(hostile):
    server, queue, check = hostile
    pcm = np.zeros(800, "<i2").tobytes()
    chunked = request("POST", "/pcm?rate=16000", server.token, f"{len(pcm):x}\r\n".encode() + pcm + b"\r\n0\r\n\r\n",
                      headers={"Transfer-Encoding": "chunked"})
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        f = sock.makefile("rb")
        for data in (chunked, request("GET", "/status", server.token), request("POST", "/flush", server.token)):
            sock.sendall(data)
            assert b" 200 " in f.readline()
            n = 0
            while (line := f.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    n = int(line.split(b":")[1])
            assert "error" not in json.loads(f.read(n))
        f.close()
    assert queue.generation == 1
    check()


# ---------------------------------------------------------------------------------------------- PCM
@pytest.mark.parametrize("query,words", [
    ("rate=abc", "rate"), ("rate=-16000", "rate"), ("rate=1e9", "rate"), ("rate=99999999999", "rate"),
    ("rate=10", "sample rate"), ("channels=0", "channel"), ("channels=x", "channels"),
    ("format=mp3", "format"), ("format=", "format"), ("rate=", "rate"),
])
def test_bad_pcm_queries(hostile, query, words):
    server, queue, check = hostile
    answer = exchange(server.port, request("POST", f"/pcm?{query}", server.token, b"\x00" * 3200))
    _assert_error(answer, 400, words)
    assert len(queue) == 0
    check()


def _abort(sock, *files):
    """Close with a TCP reset, like a crashed client (the socket's file objects hold it open until closed)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    for f in files:
        f.close()
    sock.close()


def _wait(condition, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not condition():
        time.sleep(0.01)
    return condition()


def test_api_client_reads_the_refusal_of_a_stream_it_is_still_sending(hostile):
    """A TTS that streams for seconds to a bad query gets the 400 reason, not a broken pipe."""
    from backend.api import ApiClient
    from stream_wav2lip.errors import UserError

    server, queue, check = hostile
    chunk = b"\x00" * 65536

    def forever():
        for _ in range(2000):  # 128 MiB: far more than the server reads away after refusing
            yield chunk

    with pytest.raises(UserError, match="400 pcm: unknown format"):
        ApiClient(port=server.port, token=server.token).pcm(forever(), rate=16000, fmt="mp3")
    assert len(queue) == 0
    check()


@pytest.mark.parametrize("chunked", [False, True])
@pytest.mark.parametrize("how", ["reset", "close"])
def test_pcm_client_disconnecting_mid_stream(hostile, chunked, how):
    """The audio that arrived is queued as one ended utterance; one log line; the server goes on."""
    server, queue, check = hostile
    pcm = (np.arange(3200) % 64 - 32).astype("<i2").tobytes()  # 0.2 s
    headers = {"Transfer-Encoding": "chunked"} if chunked else {}
    head = request("POST", "/pcm?rate=16000&format=s16", server.token, headers=headers,
                   length=None if chunked else 10 * len(pcm))
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    sock.sendall(head + (f"{len(pcm):x}\r\n".encode() + pcm + b"\r\n" if chunked else pcm))
    assert _wait(lambda: queue.head() is not None and queue.head().n == 3200)
    if how == "reset":
        _abort(sock)
    else:
        sock.close()
    u = queue.head()
    assert _wait(lambda: u.ended), "the utterance ends when its client goes"
    assert u.n == 3200
    check()


def test_pcm_truncated_body_answers_400_to_a_half_closed_client(hostile):
    server, queue, check = hostile
    pcm = np.zeros(1600, "<i2").tobytes()
    data = request("POST", "/pcm?rate=16000", server.token, pcm, length=4 * len(pcm))
    _assert_error(exchange(server.port, data), 400, "ended early")
    assert queue.head().ended and queue.head().n == 1600
    check()


def test_pcm_f32_with_nan_and_inf_reaches_the_queue_finite(hostile):
    server, queue, check = hostile
    x = np.sin(np.arange(4800) / 7.0).astype("<f4")
    x[::50] = np.nan
    x[10::97] = np.inf
    x[20::89] = -np.inf
    x[30] = 3e38
    for rate in (16000, 24000):
        status, _, body = exchange(server.port, request("POST", f"/pcm?rate={rate}&format=f32&channels=2",
                                                        server.token, x.tobytes()))
        assert status == 200, body
    for _ in range(2):
        u = queue.head()
        pcm, ended = u.take_new()
        assert ended and pcm.size > 0 and np.isfinite(pcm).all() and np.abs(pcm).max() <= 8.0
        queue.pop_head(u)
    check()


# ---------------------------------------------------------------------------------------------- WebSocket
def _ws_connect(port: int, token: str):
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET /ws/pcm?rate=16000&channels=1&format=s16&token={token} HTTP/1.1\r\nHost: x\r\n"
                  f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n\r\n").encode())
    f = sock.makefile("rb")
    assert b" 101 " in f.readline()
    while f.readline() not in (b"\r\n", b""):
        pass
    return sock, f


def _ws_frame(opcode: int, data: bytes, n: int | None = None) -> bytes:
    mask = os.urandom(4)
    n = len(data) if n is None else n
    if n < 126:
        head = bytes([0x80 | opcode, 0x80 | n])
    elif n < 65536:
        head = bytes([0x80 | opcode, 0x80 | 126]) + struct.pack("!H", n)
    else:
        head = bytes([0x80 | opcode, 0x80 | 127]) + struct.pack("!Q", n)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data))


def _ws_read(f):
    head = f.read(2)
    n = head[1] & 0x7F
    if n == 126:
        n = struct.unpack("!H", f.read(2))[0]
    return head[0] & 0x0F, f.read(n)


@pytest.mark.parametrize("frame,code", [
    (_ws_frame(0x2, b"", n=(1 << 22) + 1), 1009),  # over the message limit: refused before reading it
    (_ws_frame(0x3, b"??"), 1002),  # a reserved opcode
])
def test_websocket_protocol_errors_close_with_a_reason(hostile, frame, code):
    server, queue, check = hostile
    sock, f = _ws_connect(server.port, server.token)
    with sock:
        sock.sendall(_ws_frame(0x2, b"\x00\x01" * 100) + frame)
        opcode, data = _ws_read(f)
        assert opcode == 0x1 and "error" in json.loads(data)
        opcode, data = _ws_read(f)
        assert opcode == 0x8 and struct.unpack("!H", data[:2])[0] == code
    assert queue.head().ended
    check()


@pytest.mark.parametrize("cut", ["mid-frame", "after-frame"])
def test_websocket_client_vanishing(hostile, cut):
    server, queue, check = hostile
    sock, f = _ws_connect(server.port, server.token)
    frame = _ws_frame(0x2, b"\x00\x01" * 800)
    sock.sendall(frame if cut == "after-frame" else frame + frame[:40])
    assert _wait(lambda: queue.head() is not None and queue.head().n == 800)
    _abort(sock, f)
    assert _wait(lambda: queue.head().ended)
    check()


def test_websocket_upgrade_without_the_headers_is_a_400(hostile):
    server, _, check = hostile
    _assert_error(exchange(server.port, request("GET", f"/ws/pcm?token={server.token}", None)), 400, "WebSocket")
    check()

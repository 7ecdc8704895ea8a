"""The local API against hostile or broken clients, over HTTP: every bad request line, header, token, route,
JSON body or body framing gets a JSON error with a 4xx status, and the server keeps serving.

The API is driven over raw sockets (tests/live/api_wire.py; http.client refuses to send most of this). The app
behind it (the `hostile` fixture, tests/live/conftest.py) is the real command surface
(`backend.live.commands.ServeCommands`: files decoded by `queue_files`, into a real `SpeechQueue`) on a fake
`ServeApp` that has only what those commands touch. PCM streaming and the WebSocket: test_api_hostile_pcm.py.
"""
from __future__ import annotations

import json
import socket
import threading

import numpy as np
import pytest

from tests.live.api_wire import assert_error, complete, exchange, parse, request


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
    assert_error(exchange(server.port, data), status)
    check()


def test_bad_or_missing_token(hostile):
    server, queue, check = hostile
    for token in (None, "wrong", server.token[:-1], server.token + "x", "é" * 10):
        assert_error(exchange(server.port, request("POST", "/say", token, b'{"path": "/x.wav"}')), 401, "token")
    # a query-string token counts on /ws/ only
    assert_error(exchange(server.port, request("GET", f"/status?token={server.token}", None)), 401)
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
    ("DELETE", "/stop", 405),
    ("BREW", "/pcm", 405),
    ("OPTIONS", "/status", 405),
])
def test_unknown_routes_and_methods(hostile, method, path, status):
    server, _, check = hostile
    answer = exchange(server.port, request(method, path, server.token))
    assert_error(answer, status)
    if status == 405:
        assert answer[1]["allow"] in ("GET", "POST")
    check()


@pytest.mark.parametrize("body", [
    b"{", b"not json", b"\xff\xfe\x00", b"[1, 2]", b'"x.wav"', b"null", b"42",
    b"[" * 100000 + b"]" * 100000,  # deeper than the JSON parser recurses
])
def test_bad_json_is_a_400(hostile, body):
    server, _, check = hostile
    for path in ("/say", "/flush", "/switch-avatar", "/pause", "/start", "/stop"):
        assert_error(exchange(server.port, request("POST", path, server.token, body)), 400, "JSON")
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
    assert_error(answer, 400)
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
        assert_error(exchange(server.port, request("POST", "/say", server.token,
                                                   json.dumps({"path": path}).encode())), 400, words)
    # one bad file among good ones: nothing is queued
    good = str(media_dir / "tts_espeakng_en.wav")
    assert_error(exchange(server.port, request("POST", "/say", server.token, json.dumps(
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
    assert_error(exchange(server.port, request("POST", "/switch-avatar", server.token, body)), 400, words)
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
    assert_error(answer, status)
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
            while not complete(raw):
                got = sock.recv(65536)
                if not got:
                    break
                raw += got
            sender.join(5)
        assert_error(parse(raw), 401 if token is None else 413)
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


# ---------------------------------------------------------------------------------------------- commands
def test_pause_start_and_stop_reach_the_serve_commands(hostile):
    """POST /pause, /start, /stop answer with what `ServeCommands` returns; paused, speech is refused."""
    server, queue, check = hostile
    loop = server.app.app.loop
    pcm = np.zeros(1600, "<i2").tobytes()
    assert exchange(server.port, request("POST", "/pcm?rate=16000", server.token, pcm))[0] == 200
    assert len(queue) == 1

    assert exchange(server.port, request("POST", "/pause", server.token))[2] == {"paused": True, "dropped": 1}
    assert queue.paused and len(queue) == 0
    assert_error(exchange(server.port, request("POST", "/say", server.token, b'{"path": "/x.wav"}')), 400, "paused")
    status, _, body = exchange(server.port, request("POST", "/pcm?rate=16000", server.token, pcm))
    assert status == 200 and body["flushed"] and len(queue) == 0

    assert exchange(server.port, request("POST", "/start", server.token, b"{}"))[2] == {"paused": False}
    assert not queue.paused
    assert exchange(server.port, request("POST", "/pcm?rate=16000", server.token, pcm))[0] == 200
    assert len(queue) == 1

    assert loop.stops == []
    assert exchange(server.port, request("POST", "/stop", server.token))[2] == {"stopping": True}
    assert loop.stops == [0], "the loop is told to stop without the API thread waiting for it"
    check()


def test_api_client_pause_start_stop(hostile):
    from backend.api import ApiClient

    server, queue, check = hostile
    client = ApiClient(port=server.port, token=server.token)
    assert client.pause() == {"paused": True, "dropped": 0} and queue.paused
    assert client.start() == {"paused": False} and not queue.paused
    assert client.stop() == {"stopping": True} and server.app.app.loop.stops == [0]
    check()


@pytest.mark.parametrize("path", ["/pause", "/start", "/stop"])
def test_commands_refuse_a_wrong_method_or_token(hostile, path):
    server, queue, check = hostile
    answer = exchange(server.port, request("GET", path, server.token))
    assert_error(answer, 405, "POST")
    assert answer[1]["allow"] == "POST"
    assert_error(exchange(server.port, request("POST", path, "wrong")), 401, "token")
    assert not queue.paused and server.app.app.loop.stops == []
    check()

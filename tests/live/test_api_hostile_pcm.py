"""The local API against hostile or broken PCM streamers (``POST /pcm`` and ``GET /ws/pcm``): bad formats get
a JSON error, a client that vanishes mid-stream costs one log line (never a traceback) and leaves what it sent
as one ended utterance, float PCM reaches the queue finite, and WebSocket protocol errors close with a reason.

Same set-up as test_api_hostile.py: raw sockets (tests/live/api_wire.py) against the `hostile` fixture (the
real `ServeCommands`, PCM decoded by `PcmDecoder` into a real `SpeechQueue`, on a fake `ServeApp`).
"""
from __future__ import annotations

import base64
import json
import os
import socket
import struct

import numpy as np
import pytest

from tests.live.api_wire import abort, assert_error, exchange, request, wait


# ---------------------------------------------------------------------------------------------- PCM
@pytest.mark.parametrize("query,words", [
    ("rate=abc", "rate"), ("rate=-16000", "rate"), ("rate=1e9", "rate"), ("rate=99999999999", "rate"),
    ("rate=10", "sample rate"), ("channels=0", "channel"), ("channels=x", "channels"),
    ("format=mp3", "format"), ("format=", "format"), ("rate=", "rate"),
])
def test_bad_pcm_queries(hostile, query, words):
    server, queue, check = hostile
    answer = exchange(server.port, request("POST", f"/pcm?{query}", server.token, b"\x00" * 3200))
    assert_error(answer, 400, words)
    assert len(queue) == 0
    check()


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
    assert wait(lambda: queue.head() is not None and queue.head().n == 3200)
    if how == "reset":
        abort(sock)
    else:
        sock.close()
    u = queue.head()
    assert wait(lambda: u.ended), "the utterance ends when its client goes"
    assert u.n == 3200
    check()


def test_pcm_truncated_body_answers_400_to_a_half_closed_client(hostile):
    server, queue, check = hostile
    pcm = np.zeros(1600, "<i2").tobytes()
    data = request("POST", "/pcm?rate=16000", server.token, pcm, length=4 * len(pcm))
    assert_error(exchange(server.port, data), 400, "ended early")
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
    assert wait(lambda: queue.head() is not None and queue.head().n == 800)
    abort(sock, f)
    assert wait(lambda: queue.head().ended)
    check()


def test_websocket_upgrade_without_the_headers_is_a_400(hostile):
    server, _, check = hostile
    assert_error(exchange(server.port, request("GET", f"/ws/pcm?token={server.token}", None)), 400, "WebSocket")
    check()

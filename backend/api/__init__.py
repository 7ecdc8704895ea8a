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
- ``POST /pause``, ``POST /start``      stop taking speech (queued speech is dropped) / take it again
- ``POST /stop``                        end the backend

Errors (docs/api.md, "Errors"): every refusal is an HTTP status with ``{"error": "<one line>"}``, including
http.server's own (bad request line, oversized headers) and unknown methods (405). Clients are untrusted: a
body is read in bounded pieces with a per-read timeout, one that vanishes mid-request costs a log line (never
a traceback), and after an error reply the unread rest of a body is read away before closing, because closing
with unread input sends a TCP reset that can destroy the reply before the client reads it.

The parts, one job each: `session` (the port + token file), `limits` (every bound on what a client may send),
`body` (reading a request body: framing, pieces, JSON), `handler` (HTTP plumbing: token, replies, errors),
`routes` (which path does what, and checking its arguments), `websocket` (the RFC 6455 side of /ws/pcm),
`server` (`ControlApi`: the listening thread) and `client` (`ApiClient`, for `say`, tests and benchmarks).
All of them log to the ``backend.api`` logger.
"""
from __future__ import annotations

from backend.api.body import ApiError, ClientGone
from backend.api.client import ApiClient
from backend.api.limits import (DRAIN_BYTES, DRAIN_S, MAX_CHUNK_LINE, MAX_JSON, MAX_NAME, MAX_SAY_FILES,
                                MAX_TRAILERS, MAX_WS_MESSAGE, PIECE, READ_TIMEOUT_S)
from backend.api.routes import ROUTES
from backend.api.server import ControlApi
from backend.api.session import read_session_file, runtime_dir, session_file, write_session_file

__all__ = ["ApiClient", "ApiError", "ClientGone", "ControlApi", "ROUTES", "read_session_file", "runtime_dir",
           "session_file", "write_session_file", "MAX_JSON", "MAX_WS_MESSAGE", "MAX_SAY_FILES", "MAX_NAME",
           "MAX_CHUNK_LINE", "MAX_TRAILERS", "PIECE", "READ_TIMEOUT_S", "DRAIN_S", "DRAIN_BYTES"]

"""Every bound the API puts on what a client may send, in one place (docs/api.md, "Errors", names them too).

Why bounds at all on loopback: any local process can connect, and a broken or hostile one must cost a 4xx and
a log line, never the backend's memory or one of its threads for ever.
"""
from __future__ import annotations

MAX_JSON = 1 << 20
MAX_WS_MESSAGE = 1 << 22
MAX_SAY_FILES = 256  # files in one /say
MAX_NAME = 4096  # characters in a file or folder name
MAX_CHUNK_LINE = 1024  # bytes in a chunk-size line or a trailer field
MAX_TRAILERS = 64
PIECE = 64 << 10  # a streamed body is handed on in pieces of at most this
READ_TIMEOUT_S = 60.0  # a client silent this long mid-request (or between requests) is dropped
DRAIN_S, DRAIN_BYTES = 1.0, 16 << 20  # reading away an unread body after an error reply (see Handler._linger)

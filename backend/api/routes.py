"""Which path does what: the endpoint table, and checking each endpoint's arguments before the app sees them.

Why apart from the HTTP plumbing: this is the one place that maps the API onto the serve command object
(`backend.live.commands.ServeCommands`: status, say, stream_pcm, flush, switch_avatar, action, pause, start,
stop), so
adding an endpoint touches `ROUTES` and `Routes._route` only. Arguments are checked here (types, lengths, NUL
bytes) so that a wrong one is a 400 naming it, never a 500 from deep inside the app.
"""
from __future__ import annotations

import re
from urllib.parse import parse_qs

from backend.api.body import ApiError
from backend.api.limits import MAX_NAME, MAX_SAY_FILES

ROUTES = {"/status": "GET", "/say": "POST", "/pcm": "POST", "/ws/pcm": "GET", "/flush": "POST",
          "/switch-avatar": "POST", "/pause": "POST", "/start": "POST", "/stop": "POST", "/action": "POST"}
COMMANDS = ("pause", "start", "stop")  # POST /<name>: app.<name>() and its dict as the reply


class Routes:
    """The endpoints (mixed into the handler, which supplies `api`, `_reply`, the body and WebSocket readers)."""

    def _route(self, method: str, url) -> None:
        path = url.path.rstrip("/") or "/"
        allowed = ROUTES.get(path)
        if allowed is None:
            raise ApiError(404, f"no endpoint {path[:100]} (see docs/api.md)")
        if method != allowed:
            raise ApiError(405, f"{path} takes {allowed}, not {method[:20]}", (("Allow", allowed),))
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        app = self.api.app
        if path == "/status":
            return self._reply(200, app.status())
        if path == "/ws/pcm":
            return self._websocket_pcm(query)
        if path == "/pcm":
            rate, channels, fmt = pcm_format(query)
            return self._reply(200, app.stream_pcm(self._chunks(), rate=rate, channels=channels, fmt=fmt))
        body = self._json_body()
        if path == "/say":
            return self._reply(200, {"queued": app.say(say_paths(body))})
        if path == "/flush":
            return self._reply(200, {"dropped": app.flush()})
        if path == "/switch-avatar":
            avatar = body.get("avatar")
            if not isinstance(avatar, str) or not is_name(avatar):
                raise ApiError(400, '/switch-avatar needs {"avatar": DIR} with the folder as a string')
            return self._reply(200, app.switch_avatar(avatar))
        if path == "/action":
            name = body.get("name")
            if not isinstance(name, str) or not is_name(name):
                raise ApiError(400, '/action needs {"name": ACTION} with the action\'s name as a string')
            return self._reply(200, app.action(name))
        if path[1:] in COMMANDS:
            return self._reply(200, getattr(app, path[1:])())
        raise AssertionError(path)  # pragma: no cover - ROUTES and the branches above list the same paths


def is_name(text: str) -> bool:
    """A file or folder name we are willing to hand to the OS."""
    return bool(text.strip()) and len(text) <= MAX_NAME and "\0" not in text


def say_paths(body: dict) -> list[str]:
    usage = '/say needs {"path": FILE} or {"paths": [FILE, ...]} with file names as strings'
    if "paths" in body:
        paths = body["paths"]
        if not isinstance(paths, list) or not paths:
            raise ApiError(400, usage)
    elif "path" in body:
        paths = [body["path"]]
    else:
        raise ApiError(400, usage)
    if len(paths) > MAX_SAY_FILES:
        raise ApiError(400, f"/say takes at most {MAX_SAY_FILES} files at once (got {len(paths)})")
    for p in paths:
        if not isinstance(p, str):
            raise ApiError(400, f"{usage} (got a {type(p).__name__})")
        if not is_name(p):
            raise ApiError(400, f"{p[:80]!r}: not a usable file name")
    return paths


def pcm_format(q: dict) -> tuple[int, int, str]:
    """rate, channels, format from the query string, checked (a UserError/ApiError names the bad one)."""
    from backend.sources.pcm import PcmDecoder

    def whole(name: str, default: int) -> int:
        raw = q.get(name)
        if raw is None:
            return default
        if not re.fullmatch(r"\s*[0-9]{1,9}\s*", raw):
            raise ApiError(400, f"pcm: {name}={raw[:20]!r} is not a whole number")
        return int(raw)

    rate, channels, fmt = whole("rate", 16000), whole("channels", 1), q.get("format", "s16")
    PcmDecoder(rate, channels, fmt)  # raises UserError for anything it cannot decode
    return rate, channels, fmt

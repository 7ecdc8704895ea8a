"""Fixtures for the live backend tests: a private runtime dir, unique session names, an API for hostile clients."""
from __future__ import annotations

import itertools
import logging
import os

import pytest

_counter = itertools.count()


@pytest.fixture(autouse=True)
def runtime_dir(tmp_path, monkeypatch):
    """Session files (API port + token) go to a private folder, never the user's real one."""
    path = tmp_path / "run"
    monkeypatch.setenv("S2L_RUNTIME_DIR", str(path))
    return path


@pytest.fixture
def session() -> str:
    """A session name no other test (or parallel run) uses."""
    return f"t{os.getpid()}x{next(_counter)}"


@pytest.fixture
def hostile(session, caplog, capfd):
    """(server, queue, check) for tests/live/test_api_hostile*.py: a `ControlApi` over the real command surface
    (`ServeCommands`) on a fake ServeApp (tests/live/api_wire.py); `check()` asserts that nothing printed or
    logged a traceback and that the server still answers."""
    from backend.api import ControlApi
    from backend.live.commands import ServeCommands
    from tests.live.api_wire import exchange, fake_serve_app, request, wait_for_request_threads

    class Commands(ServeCommands):
        def status(self, control_only=False):  # the live loop's figures: no hostile input reaches them
            return {"state": "idle"}

    app = fake_serve_app()
    server = ControlApi(Commands(app), session, 0)
    server.start()
    caplog.set_level(logging.DEBUG, logger="backend.api")

    def check():
        wait_for_request_threads()
        err = capfd.readouterr().err
        assert "Traceback" not in err, err
        assert "Traceback" not in caplog.text, caplog.text
        assert not [r for r in caplog.records if r.exc_info], caplog.text
        status, _, body = exchange(server.port, request("GET", "/status", server.token))
        assert status == 200 and "error" not in body, "the server still answers"

    yield server, app.queue, check
    server.close()

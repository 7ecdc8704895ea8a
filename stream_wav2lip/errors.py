"""The one exception type that reaches the user as a one-line message.

Raise `UserError("<file>: <problem>")` for every bad input (missing file, wrong checkpoint kind,
unreadable audio...). The CLI prints it on one line and exits non-zero, without a traceback.
Everything else is a bug and keeps its traceback.
"""
from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input or environment, reported as a single line."""

    def __init__(self, message: str, exit_code: int = 2):
        super().__init__(message)
        self.exit_code = exit_code

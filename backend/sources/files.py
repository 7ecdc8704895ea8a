"""Queued audio files (`say FILE...`, POST /say): decoded and resampled at the edge, then queued whole.

The names come from API clients, so each is checked before anything opens it: a wrong type, an empty name, a
NUL byte or a name the OS refuses (too long, no permission) is a UserError naming the file, never a traceback.
The decoded samples are cleaned like every source's (`Utterance.append`: no NaN/Inf reaches the features).
"""
from __future__ import annotations

import os
from pathlib import Path

from backend.sources.queue import SpeechQueue, Utterance
from stream_wav2lip.errors import UserError


def queue_files(queue: SpeechQueue, paths: list[str | Path]) -> list[Utterance]:
    """Decode every file first (a bad one raises UserError and nothing is queued), then queue them in order."""
    decoded = [(path, _decode(path)) for path in (checked_path(p) for p in paths)]
    return [queue.add(pcm, origin="file", label=str(path)) for path, pcm in decoded]


def checked_path(path: object) -> Path:
    """`path` as a Path, or a UserError saying why it cannot name a file."""
    if not isinstance(path, (str, os.PathLike)):
        raise UserError(f"{str(path)[:80]!r}: a file name must be a string, not {type(path).__name__}")
    text = os.fspath(path)
    if not isinstance(text, str) or not text.strip():
        raise UserError(f"{text[:80]!r}: not a file name")
    if "\0" in text:
        raise UserError(f"{text[:80]!r}: a file name cannot contain a NUL byte")
    return Path(text)


def _decode(path: Path):
    from models.audio import load_audio

    try:
        return load_audio(path)
    except OSError as exc:  # the OS refused the name (too long, permission, ...): one line, not a traceback
        raise UserError(f"{str(path)[:200]}: cannot read ({exc.strerror or exc})") from None

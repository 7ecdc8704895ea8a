"""Queued audio files (`say FILE...`, POST /say): decoded and resampled at the edge, then queued whole."""
from __future__ import annotations

from pathlib import Path

from backend.sources.queue import SpeechQueue, Utterance


def queue_files(queue: SpeechQueue, paths: list[str | Path]) -> list[Utterance]:
    """Decode every file first (a bad one raises UserError and nothing is queued), then queue them in order."""
    from models.audio import load_audio

    decoded = [(Path(p), load_audio(p)) for p in paths]
    return [queue.add(pcm, origin="file", label=str(path)) for path, pcm in decoded]

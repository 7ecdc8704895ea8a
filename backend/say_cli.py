"""`stream-wav2lip say`: make a running `serve` session speak audio files (or flush / show its status)."""
from __future__ import annotations

import argparse

HELP = "queue audio files on a running `serve` session (or --action, --flush, --status, --stream)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", nargs="*", metavar="FILE", help="audio or video files to speak, in order")
    p.add_argument("--session", default="default", help="session name given to `serve` (default: default)")
    p.add_argument("--flush", action="store_true", help="stop speaking now and drop queued speech (barge-in)")
    p.add_argument("--status", action="store_true", help="print the session's status as JSON")
    p.add_argument("--action", metavar="NAME", help="play the avatar's action clip NAME (wave, nod ...) now")
    p.add_argument("--stream", action="store_true",
                   help="send the files as PCM streamed in real time (like a TTS engine does) instead of by path")


def stream_file(client, path: str, chunk_ms: int = 20, realtime: bool = True) -> dict:
    """Send `path` as s16 PCM at its native rate in `chunk_ms` pieces, paced in real time."""
    import time

    import numpy as np

    from models.audio import read_audio

    samples, rate = read_audio(path)  # the file's own rate and channels, as a TTS would send them
    pcm = (np.clip(samples, -1.0, 32767 / 32768) * 32768).astype("<i2")
    step = max(1, rate * chunk_ms // 1000)

    def chunks():
        t0 = time.monotonic()
        for i, start in enumerate(range(0, len(pcm), step)):
            if realtime:
                delay = t0 + i * chunk_ms / 1000 - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            yield pcm[start:start + step].tobytes()

    return client.pcm(chunks(), rate=rate, channels=pcm.shape[1], fmt="s16")


def run(args: argparse.Namespace) -> int:
    import json

    from backend.api import ApiClient
    from stream_wav2lip.errors import UserError

    client = ApiClient(args.session)
    if args.flush:
        print(json.dumps(client.flush()))
    if args.action:
        print(json.dumps(client.action(args.action)))
    if args.files:
        if args.stream:
            for f in args.files:
                print(json.dumps(stream_file(client, f)))
        else:
            print(json.dumps(client.say(args.files)))
    if args.status:
        print(json.dumps(client.status(), indent=1))
    if not (args.flush or args.files or args.status or args.action):
        raise UserError("nothing to do: give audio FILEs, --action, --flush or --status")
    return 0

"""The package's audio.wav: the video's sound as 16 kHz mono, aligned to frame 0 and exactly as long as the video.

Decoding/resampling is `models.audio.load_audio` (the same front-end inference uses, soxr HQ). What this module
adds is alignment: audio that starts later than the video timeline origin is padded with silence, and the
result is cut/padded to frame_count / 25 seconds so that mel window i always belongs to frame i.
"""
from __future__ import annotations

import numpy as np

from preprocess.video import FPS, VideoInfo
from stream_wav2lip.errors import UserError

SAMPLE_RATE = 16000


def extract_audio(info: VideoInfo, frame_count: int) -> np.ndarray | None:
    """float32 mono 16 kHz samples covering exactly `frame_count` frames, or None without an audio track."""
    if not info.has_audio:
        return None
    from models.audio import load_audio

    try:
        wav = load_audio(info.path)
    except UserError:
        return None  # an audio stream that decodes to nothing: treat as "no audio" rather than failing the video
    offset = int(round(((info.audio_start_s or info.origin_s) - info.origin_s) * SAMPLE_RATE))
    if offset > 0:
        wav = np.concatenate([np.zeros(offset, np.float32), wav])
    elif offset < 0:
        wav = wav[-offset:]
    n = int(round(frame_count / FPS * SAMPLE_RATE))
    if len(wav) < n:
        wav = np.concatenate([wav, np.zeros(n - len(wav), np.float32)])
    return np.ascontiguousarray(wav[:n], dtype=np.float32)


def speech_seconds(wav: np.ndarray, sample_rate: int = SAMPLE_RATE) -> float:
    """Rough seconds of voice: 20 ms windows whose level is well above the clip's quiet floor.

    Good enough to warn about a recording with little speech (the mouth engine calibrates on talking frames);
    not a real VAD.
    """
    hop = sample_rate // 50
    n = len(wav) // hop
    if n == 0:
        return 0.0
    rms = np.sqrt(np.mean(np.square(wav[: n * hop].reshape(n, hop).astype(np.float64)), axis=1) + 1e-12)
    db = 20 * np.log10(rms)
    floor = np.percentile(db, 10)
    loud = (db > max(floor + 12.0, -45.0)) & (db > np.percentile(db, 99) - 35.0)
    return float(loud.sum() / 50.0)

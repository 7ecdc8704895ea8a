"""The audio front-end every Wav2Lip checkpoint was trained with: waveform -> 80-band mel -> 16-step windows.

Why a re-implementation instead of calling librosa: the reference pinned librosa 0.7.0, whose STFT pads with
*reflect*; librosa >= 0.9 pads with zeros and changes the first/last two mel frames, and its positional
`filters.mel` call no longer works. This NumPy/SciPy version follows docs/models.md §3 step by step (reflect padding,
Slaney filterbank 55-7600 Hz, pre-emphasis 0.97, dB floor -100, range [-4, 4]) and is fast enough to run live
(one FFT per 12.5 ms hop, computed in blocks; 10 min of audio in about a second).

Loading: WAV/FLAC/OGG go through libsndfile (soundfile) when it can read them; everything else (mp3, m4a,
aac/opus inside mp4/mov/mkv...) is decoded by PyAV (FFmpeg). Either way the samples are converted to float32,
averaged over channels (librosa's mono downmix) and, if needed, resampled to 16 kHz with soxr "HQ" -- the
resampler modern librosa uses by default, so our features match what `librosa.load(path, sr=16000)` gives.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from stream_wav2lip.errors import UserError

SAMPLE_RATE = 16000  # Hz, the rate the mel basis and every checkpoint assume
N_FFT = 800  # 50 ms Hann window, no zero padding
HOP = 200  # 12.5 ms -> 80 mel frames per second
WIN = 800
NUM_MELS = 80
FMIN, FMAX = 55.0, 7600.0
PREEMPHASIS = 0.97
MIN_LEVEL_DB = -100.0
REF_LEVEL_DB = 20.0
MAX_ABS_VALUE = 4.0
MEL_STEPS_PER_SECOND = SAMPLE_RATE // HOP  # 80
WINDOW_STEPS = 16  # one generator input = 16 mel frames = 200 ms

_SOUNDFILE_SUFFIXES = {".wav", ".flac", ".ogg", ".oga", ".aiff", ".aif", ".au", ".w64", ".caf"}
_BLOCK_FRAMES = 4096  # STFT frames processed at once (bounds memory for hour-long files)


# --------------------------------------------------------------------------------------------- loading
def load_audio(path: str | Path) -> np.ndarray:
    """Read any audio/video file as float32 mono at 16 kHz (values in [-1, 1)).

    Raises UserError for a missing/unreadable file, a file without an audio stream, or zero samples.
    """
    path = Path(path)
    samples, rate = read_audio(path)
    mono = samples.mean(axis=1, dtype=np.float64).astype(np.float32) if samples.shape[1] > 1 else samples[:, 0]
    if rate != SAMPLE_RATE:
        mono = resample(mono, rate, SAMPLE_RATE)
    if mono.size == 0:
        raise UserError(f"{path}: audio stream has zero samples")
    return np.ascontiguousarray(mono, dtype=np.float32)


def read_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """The file's own samples, before any mixing or resampling: ((frames, channels) float32, native rate).

    For callers that must reproduce what a producer at the native rate sends (e.g. `say --stream` acting like
    a TTS engine); everything else wants `load_audio`. Raises UserError like `load_audio`.
    """
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: file not found")
    if not path.is_file():
        raise UserError(f"{path}: not a file")
    samples, rate = None, None
    if path.suffix.lower() in _SOUNDFILE_SUFFIXES:
        samples, rate = _read_with_soundfile(path)
    if samples is None:
        samples, rate = _read_with_pyav(path)
    if samples.size == 0 or samples.shape[0] == 0:
        raise UserError(f"{path}: audio stream has zero samples")
    return samples, int(rate)


def resample(wav: np.ndarray, rate_in: int, rate_out: int = SAMPLE_RATE) -> np.ndarray:
    """Band-limited resampling with soxr HQ (librosa's default resampler since 0.10)."""
    import soxr

    if rate_in == rate_out:
        return np.asarray(wav, dtype=np.float32)
    return soxr.resample(np.asarray(wav, dtype=np.float32), rate_in, rate_out, quality="HQ").astype(np.float32)


def _read_with_soundfile(path: Path) -> tuple[np.ndarray | None, int | None]:
    """(frames x channels float32, rate), or (None, None) when libsndfile cannot read the file."""
    import soundfile

    try:
        data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except Exception:  # libsndfile says no: let FFmpeg try (e.g. WAV with an exotic codec)
        return None, None
    return data, int(rate)


def _read_with_pyav(path: Path) -> tuple[np.ndarray, int]:
    """Decode the first audio stream with FFmpeg; convert to planar float at the native rate and layout."""
    import av

    try:
        container = av.open(str(path))
    except Exception as exc:
        raise UserError(f"{path}: cannot read as audio/video ({_short(exc)})") from None
    try:
        streams = [s for s in container.streams if s.type == "audio"]
        if not streams:
            raise UserError(f"{path}: no audio stream")
        stream = streams[0]
        chunks: list[np.ndarray] = []
        rate = None
        resampler = None
        try:
            for frame in container.decode(stream):
                if resampler is None:
                    rate = frame.sample_rate
                    resampler = av.AudioResampler(format="fltp", layout=frame.layout.name, rate=rate)
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray())
            if resampler is not None:
                for out in resampler.resample(None):
                    chunks.append(out.to_ndarray())
        except UserError:
            raise
        except Exception as exc:
            raise UserError(f"{path}: audio stream cannot be decoded ({_short(exc)})") from None
    finally:
        container.close()
    if not chunks or rate is None:
        raise UserError(f"{path}: audio stream has zero samples")
    planar = np.concatenate(chunks, axis=1)  # channels x frames
    return np.ascontiguousarray(planar.T, dtype=np.float32), int(rate)


def _short(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


# ------------------------------------------------------------------------------------------ mel basis
def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney mel scale: linear 200/3 Hz per mel below 1 kHz, logarithmic (step ln(6.4)/27) above."""
    hz = np.asarray(hz, dtype=np.float64)
    f_sp = 200.0 / 3
    mels = hz / f_sp
    min_log_hz, min_log_mel, logstep = 1000.0, 1000.0 / f_sp, np.log(6.4) / 27.0
    above = hz >= min_log_hz
    mels = np.where(above, min_log_mel + np.log(np.maximum(hz, 1e-10) / min_log_hz) / logstep, mels)
    return mels


def _mel_to_hz(mels: np.ndarray) -> np.ndarray:
    mels = np.asarray(mels, dtype=np.float64)
    f_sp = 200.0 / 3
    freqs = f_sp * mels
    min_log_hz, min_log_mel, logstep = 1000.0, 1000.0 / f_sp, np.log(6.4) / 27.0
    above = mels >= min_log_mel
    return np.where(above, min_log_hz * np.exp(logstep * (mels - min_log_mel)), freqs)


@lru_cache(maxsize=1)
def mel_basis() -> np.ndarray:
    """The 80 x 401 Slaney-normalised triangular filterbank (55-7600 Hz), float32, as librosa builds it."""
    mel_points = _mel_to_hz(np.linspace(_hz_to_mel(FMIN), _hz_to_mel(FMAX), NUM_MELS + 2))
    fft_freqs = np.linspace(0.0, SAMPLE_RATE / 2, 1 + N_FFT // 2)
    widths = np.diff(mel_points)
    ramps = mel_points[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_points[2:] - mel_points[:-2]))[:, None]
    basis = weights.astype(np.float32)
    basis.setflags(write=False)
    return basis


@lru_cache(maxsize=1)
def _hann() -> np.ndarray:
    n = np.arange(WIN, dtype=np.float64)
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * n / WIN)  # periodic Hann, float64
    window.setflags(write=False)
    return window


# ------------------------------------------------------------------------------------------ mel
def num_mel_frames(num_samples: int) -> int:
    """T = 1 + N // 200: the centred STFT gives one frame per hop plus one."""
    return 1 + int(num_samples) // HOP


def preemphasis(wav: np.ndarray) -> np.ndarray:
    """y'[n] = y[n] - 0.97 y[n-1] with y[-1] = 0 (the reference's causal lfilter)."""
    y = np.asarray(wav, dtype=np.float64)
    out = y.copy()
    out[1:] -= PREEMPHASIS * y[:-1]
    return out


def frames_to_mel(frames: np.ndarray) -> np.ndarray:
    """(F, 800) float64 frames (not yet windowed) -> (80, F) normalised mel in [-4, 4].

    The last step of `melspectrogram`, public for incremental front-ends (backend.features) that frame and
    pre-emphasise a live stream themselves: each row is one STFT frame of pre-emphasised samples centred on
    its hop (Hann window, FFT, Slaney mel, dB, normalisation are applied here).

    Precision mirrors the reference: FFT in float64, magnitudes and the mel projection in float32,
    dB conversion in float64 (what NumPy 2 does with the reference code).
    """
    import scipy.fft

    spectrum = scipy.fft.rfft(frames * _hann(), axis=1)  # (F, 401) complex128
    magnitude = np.abs(spectrum.astype(np.complex64))  # float32, like librosa 0.7's complex64 STFT
    mel = (mel_basis() @ magnitude.T).astype(np.float64)  # (80, F)
    db = 20.0 * np.log10(np.maximum(1e-5, mel)) - REF_LEVEL_DB
    return np.clip((2 * MAX_ABS_VALUE) * (db - MIN_LEVEL_DB) / (-MIN_LEVEL_DB) - MAX_ABS_VALUE,
                   -MAX_ABS_VALUE, MAX_ABS_VALUE).astype(np.float32)


def melspectrogram(wav: np.ndarray) -> np.ndarray:
    """Reference mel spectrogram (80, T) float32 of a 16 kHz mono waveform; T = 1 + len(wav)//200.

    Equals the reference `audio.melspectrogram` with the pinned librosa 0.7.0 (reflect STFT padding).
    """
    wav = np.asarray(wav)
    if wav.ndim != 1:
        raise ValueError(f"melspectrogram expects a 1-D mono waveform, got shape {wav.shape}")
    if wav.size == 0:
        raise ValueError("melspectrogram: empty waveform")
    emphasised = preemphasis(wav)
    padded = np.pad(emphasised, N_FFT // 2, mode="reflect")
    total = num_mel_frames(wav.size)
    all_frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP][:total]
    out = np.empty((NUM_MELS, total), dtype=np.float32)
    for start in range(0, total, _BLOCK_FRAMES):
        stop = min(total, start + _BLOCK_FRAMES)
        out[:, start:stop] = frames_to_mel(all_frames[start:stop])
    return out


def mel_for_range(wav: np.ndarray, start: int, stop: int) -> np.ndarray:
    """Mel frames [start, stop) of `melspectrogram(wav)` without computing the rest (for live use).

    Only the samples those frames touch are pre-emphasised and framed, with the same reflect rule at the
    signal edges, so the result equals `melspectrogram(wav)[:, start:stop]`.
    """
    wav = np.asarray(wav)
    total = num_mel_frames(wav.size)
    if not 0 <= start <= stop <= total:
        raise ValueError(f"mel_for_range: [{start}, {stop}) outside 0..{total}")
    if start == stop:
        return np.zeros((NUM_MELS, 0), dtype=np.float32)
    n = wav.size
    centres = np.arange(start, stop) * HOP
    index = centres[:, None] - N_FFT // 2 + np.arange(N_FFT)[None, :]
    index = np.abs(index)  # reflect at the left edge
    index = np.where(index >= n, 2 * (n - 1) - index, index)  # reflect at the right edge
    lo, hi = int(index.min()), int(index.max()) + 1
    segment = np.asarray(wav[max(0, lo - 1):hi], dtype=np.float64)
    emphasised = segment.copy()
    emphasised[1:] -= PREEMPHASIS * segment[:-1]
    if lo > 0:
        emphasised = emphasised[1:]  # first sample was only the y[n-1] history
    frames = emphasised[index - lo]
    return frames_to_mel(frames)


# ------------------------------------------------------------------------------------------ windows
def mel_window_start(i: int, fps: float = 25.0) -> int:
    """First mel frame of the 16-step window for video frame i: int(i * 80/fps) (reference inference rule).

    At 25 fps this is exactly 16*i//5 (integer arithmetic, no float truncation surprises).
    """
    if fps == 25.0:
        return 16 * int(i) // 5
    return int(int(i) * (float(MEL_STEPS_PER_SECOND) / float(fps)))


def num_mel_windows(num_mel_frames_: int, fps: float = 25.0) -> int:
    """How many windows (= output video frames) `mel_windows` yields for T mel frames."""
    if num_mel_frames_ < WINDOW_STEPS:
        raise ValueError(f"need at least {WINDOW_STEPS} mel frames (200 ms of audio), got {num_mel_frames_}")
    i = 0
    while mel_window_start(i, fps) + WINDOW_STEPS <= num_mel_frames_:
        i += 1
    return i + 1


def mel_windows(mel: np.ndarray, fps: float = 25.0) -> np.ndarray:
    """(N, 80, 16) windows, one per output video frame, following the reference inference chunking.

    For i = 0, 1, ...: while start_i + 16 <= T take mel[:, start_i:start_i+16]; at the first i that would
    run past the end append the last 16 frames mel[:, T-16:T] and stop.
    """
    mel = np.asarray(mel)
    if mel.ndim != 2 or mel.shape[0] != NUM_MELS:
        raise ValueError(f"mel_windows expects an (80, T) array, got shape {mel.shape}")
    total = mel.shape[1]
    count = num_mel_windows(total, fps)
    starts = [mel_window_start(i, fps) for i in range(count - 1)] + [total - WINDOW_STEPS]
    return np.stack([mel[:, s:s + WINDOW_STEPS] for s in starts]).astype(np.float32, copy=False)

"""One PortAudio (pyaudio) device, opened the same way for the microphone source and the playback sink.

Why shared: both need the same three things done right -- a helpful error when pyaudio is missing, a device
chosen by index or by part of its name, and PortAudio torn down again when opening the stream fails (a
leaked `PyAudio()` keeps the sound server connection open) -- and only differ in the stream direction.
"""
from __future__ import annotations

from typing import Callable

from stream_wav2lip.errors import UserError


def find_device(pa, wanted: str | None, output: bool, option: str) -> int | None:
    """Device index for `wanted` (an index or part of a name); None = PortAudio's default device."""
    if wanted in (None, "", "default"):
        return None
    if str(wanted).isdigit():
        return int(wanted)
    key = "maxOutputChannels" if output else "maxInputChannels"
    names = []
    for i in range(pa.get_device_count()):
        info = pa.get_device_info_by_index(i)
        if info.get(key, 0) > 0:
            if str(wanted).lower() in str(info.get("name", "")).lower():
                return i
            names.append(str(info.get("name", "")))
    kind = "output" if output else "input"
    raise UserError(f"{option} {wanted}: no such {kind} device (available: {', '.join(names) or 'none'})")


class PortAudioDevice:
    """A mono float32 stream on one device: `open(callback)`, then `close()` (idempotent).

    `callback(data: bytes | None, frames: int) -> bytes | None` runs on PortAudio's thread: input streams
    get the recorded bytes, output streams return the bytes to play.
    """

    def __init__(self, option: str, device: str | None, output: bool):
        try:
            import pyaudio
        except ImportError:
            raise UserError(f"{option} needs pyaudio (pip install 'stream-wav2lip[audio]')") from None
        self._pyaudio = pyaudio
        self.option, self.device, self.output = option, device, output
        self._stream = None
        self._pa = pyaudio.PyAudio()
        try:
            self.index = find_device(self._pa, device, output, option)
            if self.index is not None:
                info = self._pa.get_device_info_by_index(self.index)
            elif output:
                info = self._pa.get_default_output_device_info()
            else:
                info = self._pa.get_default_input_device_info()
        except BaseException as exc:
            self._pa.terminate()
            if isinstance(exc, OSError):
                raise UserError(f"{option} {device or 'default'}: no usable device ({exc})") from None
            raise
        self.name = str(info.get("name"))
        self.default_rate = int(info.get("defaultSampleRate") or 16000)

    def open(self, callback: Callable[[bytes | None, int], bytes | None], rate: int, frames_per_buffer: int) -> None:
        pyaudio = self._pyaudio

        def on_block(data, frames, _time, _status):
            return (callback(data, frames), pyaudio.paContinue)

        direction = ({"output": True, "output_device_index": self.index} if self.output
                     else {"input": True, "input_device_index": self.index})
        try:
            self._stream = self._pa.open(format=pyaudio.paFloat32, channels=1, rate=rate,
                                         frames_per_buffer=frames_per_buffer, stream_callback=on_block, **direction)
        except OSError as exc:
            self._pa.terminate()
            self._pa = None
            kind = "output" if self.output else "input"
            raise UserError(f"{self.option} {self.device or 'default'}: cannot open {kind} device ({exc})") from None

    def close(self) -> None:
        if self._pa is None:
            return
        try:
            if self._stream is not None:
                self._stream.stop_stream()
                self._stream.close()
        finally:
            self._pa.terminate()
            self._pa = None

"""Files that keep transparency: VP9+alpha .webm, ProRes 4444 .mov, RGBA PNGs; written, then decoded back."""
from __future__ import annotations

import shutil
import subprocess

import cv2
import numpy as np
import pytest

from backend.frames import AudioOutFrame, VideoFrame
from backend.sinks.alpha_video import AlphaVideoSink, check_output_container, open_video_sink
from stream_wav2lip.errors import UserError

H, W, N = 64, 97, 6  # odd width on purpose (padded to even)


def _bgra(k: int) -> np.ndarray:
    """Transparent background, an opaque red box in the middle that moves a little."""
    img = np.zeros((H, W, 4), np.uint8)
    img[:, :, 1] = 180  # green under alpha 0 (must not show)
    img[16:48, 30 + k:70 + k, :3] = (40, 40, 220)
    img[16:48, 30 + k:70 + k, 3] = 255
    return img


def _write(path, frames=N, audio=True, **kw):
    sink = AlphaVideoSink(path, W, H, audio=audio, **kw)
    for k in range(frames):
        pts = k * 40_000_000
        pcm = (0.3 * np.sin(np.arange(640) * 0.2)).astype(np.float32)
        sink.write(VideoFrame(pts_ns=pts, index=k, avatar_index=k, image=_bgra(k)), AudioOutFrame(pts_ns=pts, pcm=pcm))
    sink.close()
    return path


def _decode_rgba(path) -> tuple[list[np.ndarray], dict]:
    """Decode every video frame to RGBA. WebM keeps VP9's alpha in BlockAdditional side data, which only the
    libvpx decoder reads (FFmpeg's native vp9 decoder returns opaque yuv420p), so .webm goes through libvpx."""
    import av

    info = {}
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        info["codec"] = stream.codec_context.name
        info["audio"] = [a.codec_context.name for a in container.streams.audio]
        if str(path).endswith(".webm"):
            decoder = av.CodecContext.create("libvpx-vp9", "r")
            frames = []
            for packet in container.demux(stream):
                if packet.size:
                    frames += decoder.decode(packet)
            frames += decoder.decode(None)
        else:
            frames = list(container.decode(stream))
    info["pix_fmt"] = frames[0].format.name
    return [f.to_ndarray(format="rgba") for f in frames], info


@pytest.mark.parametrize("suffix, codec, audio", [(".webm", "vp9", "opus"), (".mov", "prores", "pcm_s16le")])
def test_alpha_survives_the_round_trip(tmp_path, suffix, codec, audio):
    path = _write(tmp_path / f"out{suffix}")
    frames, info = _decode_rgba(path)
    assert info["codec"] == codec and info["audio"] == [audio]
    assert info["pix_fmt"].startswith("yuva")
    assert len(frames) == N
    for k, rgba in enumerate(frames):
        assert rgba.shape[:2] == (H, W + 1)  # padded to an even width
        assert rgba[2, 2, 3] <= 10 and rgba[2, W - 3, 3] <= 10  # transparent corners
        assert rgba[32, 50 + k, 3] >= 245  # opaque box
        assert abs(int(rgba[32, 50 + k, 0]) - 220) < 20  # ... and red (RGBA order)
    assert not list(tmp_path.glob(".tmp-*"))  # written atomically: nothing left beside it


def test_opaque_webm_when_not_transparent(tmp_path):
    path = _write(tmp_path / "opaque.webm", alpha=False, audio=False)
    frames, info = _decode_rgba(path)
    assert info["pix_fmt"] == "yuv420p" and info["audio"] == []  # no alpha plane at all
    assert abs(int(frames[0][2, 2, 1]) - 180) < 12  # what was under alpha 0 shows: an opaque file


def test_abort_leaves_nothing(tmp_path):
    sink = AlphaVideoSink(tmp_path / "gone.mov", W, H)
    sink.write(VideoFrame(pts_ns=0, index=0, avatar_index=0, image=_bgra(0)))
    sink.abort()
    assert list(tmp_path.iterdir()) == []


def test_bgr_frames_are_opaque(tmp_path):
    sink = AlphaVideoSink(tmp_path / "bgr.mov", W, H, audio=False)
    sink.write(VideoFrame(pts_ns=0, index=0, avatar_index=0, image=np.full((H, W, 3), 90, np.uint8)))
    sink.close()
    frames, _ = _decode_rgba(tmp_path / "bgr.mov")
    assert (frames[0][:, :, 3] >= 250).all()


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="no ffmpeg command")
def test_ffmpeg_reads_the_webm_alpha(tmp_path):
    path = _write(tmp_path / "out.webm", frames=2, audio=False)
    raw = subprocess.run(["ffmpeg", "-v", "error", "-c:v", "libvpx-vp9", "-i", str(path), "-frames:v", "1",
                          "-f", "rawvideo", "-pix_fmt", "rgba", "-"], capture_output=True, check=True).stdout
    rgba = np.frombuffer(raw, np.uint8).reshape(H, W + 1, 4)
    assert rgba[2, 2, 3] <= 10 and rgba[32, 50, 3] >= 245


def test_transparent_mp4_is_a_one_line_error_naming_the_alpha_containers(tmp_path):
    with pytest.raises(UserError) as info:
        check_output_container(tmp_path / "out.mp4", transparent=True)
    message = str(info.value)
    assert "out.mp4" in message and ".webm" in message and ".mov" in message and "\n" not in message
    check_output_container(tmp_path / "out.mp4", transparent=False)
    check_output_container(tmp_path / "out.webm", transparent=True)
    with pytest.raises(UserError):
        open_video_sink(tmp_path / "out.mp4", W, H, transparent=True)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("name", ["out.mkv", "out.mp5", "out"])
def test_an_output_of_another_kind_is_a_one_line_error_before_any_work(tmp_path, name):
    with pytest.raises(UserError) as info:
        open_video_sink(tmp_path / name, W, H, transparent=False)
    message = str(info.value)
    assert name in message and ".mp4" in message and ".webm" in message and "\n" not in message
    assert not list(tmp_path.iterdir())
    for fine in ("a.mp4", "b.M4V", "c.webm", "d.MOV"):
        check_output_container(tmp_path / fine, transparent=False)


def test_open_video_sink_picks_by_suffix(tmp_path):
    sink = open_video_sink(tmp_path / "x.webm", W, H, transparent=True, audio=False)
    assert isinstance(sink, AlphaVideoSink) and sink.pix_fmt == "yuva420p"
    sink.abort()


def test_png_sink_writes_rgba_when_given_bgra(tmp_path):
    from backend.sinks.png import PngSink

    sink = PngSink(tmp_path / "frames")
    sink.write(VideoFrame(pts_ns=0, index=0, avatar_index=0, image=_bgra(0)))
    sink.close()
    back = cv2.imread(str(tmp_path / "frames" / "000000.png"), cv2.IMREAD_UNCHANGED)
    assert back.shape == (H, W, 4) and np.array_equal(back, _bgra(0))

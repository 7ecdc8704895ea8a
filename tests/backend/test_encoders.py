"""Encoder choice of the mp4 sink: auto falls back to libx264 without a GPU, unusable encoders are one-line
errors before any output exists, and the stream says what its pixels are (BT.601, limited range)."""
import av
import numpy as np
import pytest
import soundfile

from backend.generators.base import NullGenerator
from backend.render import render
from backend.sinks.encoders import choose_encoder, encoder_options, probe
from stream_wav2lip.cli import main
from stream_wav2lip.errors import UserError
from tests.backend.helpers import speech_like


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.mark.skipif(_cuda(), reason="a CUDA host may pick NVENC")
def test_auto_is_libx264_without_a_gpu():
    assert choose_encoder("auto") == "libx264"


@pytest.mark.skipif(probe("h264_nvenc") is None, reason="NVENC works here")
def test_an_encoder_that_does_not_open_is_a_one_line_error():
    with pytest.raises(UserError) as e:
        choose_encoder("h264_nvenc")
    assert "h264_nvenc" in str(e.value) and "libx264" in str(e.value) and "\n" not in str(e.value)


def test_options_per_encoder():
    assert encoder_options("libx264", 18, None) == {"crf": "18", "preset": "ultrafast"}
    assert encoder_options("libx264", None, None) == {"qp": "15", "preset": "ultrafast"}  # see encoders.py
    assert encoder_options("libx264", None, "veryfast") == {"crf": "18", "preset": "veryfast"}
    assert encoder_options("h264_nvenc", 20, None)["cq"] == "20"
    assert encoder_options("h264_nvenc", None, None)["cq"] == "18"
    with pytest.raises(UserError, match="not an x264 preset"):
        encoder_options("libx264", 18, "p4")
    with pytest.raises(UserError, match="unknown"):
        choose_encoder("h265")


@pytest.fixture()
def speech_wav(tmp_path):
    p = tmp_path / "speech.wav"
    soundfile.write(p, speech_like(0.5), 16000)
    return p


def _decode(path):
    with av.open(str(path)) as c:
        ctx = c.streams.video[0].codec_context
        tags = (ctx.color_range, ctx.colorspace)
        return tags, [f.to_ndarray(format="bgr24") for f in c.decode(video=0)]


def test_the_i420_fast_path_and_the_bgr_path_give_the_same_video(synthetic_avatar, speech_wav, tmp_path):
    fast = render(synthetic_avatar, [speech_wav], tmp_path / "fast.mp4", generator=NullGenerator(96), progress=False)
    both = render(synthetic_avatar, [speech_wav], tmp_path / "bgr.mp4", frames_dir=tmp_path / "png",
                  generator=NullGenerator(96), progress=False)  # PNG frames need BGR: the BGR path
    assert fast.encoder == both.encoder == "libx264"
    (tags_a, a), (tags_b, b) = _decode(tmp_path / "fast.mp4"), _decode(tmp_path / "bgr.mp4")
    assert tags_a == tags_b == (1, 6)  # limited range, BT.601 (smpte170m)
    assert len(a) == len(b) == 13
    for x, y in zip(a, b):
        mse = np.mean((x.astype(float) - y) ** 2)
        assert 10 * np.log10(255 ** 2 / max(mse, 1e-9)) > 38


def test_cli_bad_encoder_leaves_nothing(synthetic_avatar, speech_wav, tmp_path, capsys):
    out = tmp_path / "o.mp4"
    code = main(["render", "--avatar", str(synthetic_avatar), "--audio", str(speech_wav), "-o", str(out),
                 "--engine", "mouth", "--preset", "p9", "--no-progress"])
    assert code != 0 and not out.exists() and not list(tmp_path.glob(".tmp-*"))
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "p9" in err[0]


def test_doctor_says_which_encoder_render_uses():
    from stream_wav2lip.doctor import checks

    rows = {name: detail for name, ok, detail in checks()}
    assert rows["render encoder"].startswith(choose_encoder("auto"))


def test_the_audio_track_is_the_speech_within_aac_noise(tmp_path):
    """The sink's AAC settings (the "fast" coder, see backend/sinks/mp4.py) keep speech at high fidelity."""
    from backend.frames import AudioOutFrame, VideoFrame
    from backend.sinks.mp4 import Mp4Sink

    pcm = speech_like(2.0)
    sink = Mp4Sink(tmp_path / "a.mp4", 64, 64, background=False)
    black = np.zeros((64, 64, 3), np.uint8)
    for k in range(pcm.size // 640):
        sink.write(VideoFrame(k * 40_000_000, k, 0, black), AudioOutFrame(k * 40_000_000, pcm[k * 640:(k + 1) * 640]))
    sink.close()
    with av.open(str(tmp_path / "a.mp4")) as c:
        decoded = np.concatenate([f.to_ndarray()[0] for f in c.decode(audio=0)])
    n = min(decoded.size, pcm.size)
    assert n > pcm.size - 640  # the decoder may pad the last AAC frame (1024 samples); the stream's length is tested elsewhere
    snr = 10 * np.log10(np.mean(pcm[:n] ** 2) / np.mean((pcm[:n] - decoded[:n]) ** 2))
    assert snr > 25, snr  # aligned (no priming delay left) and clean: 29.5 dB here, the default coder 22.9

"""`render` end to end (fast: synthetic avatar + NullGenerator / tiny inputs) and its one-line errors."""
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile

from backend.generators.base import NullGenerator
from backend.render import render
from stream_wav2lip.cli import main
from tests.backend.helpers import speech_like


def probe(path: Path) -> dict:
    import av

    with av.open(str(path)) as c:
        v = c.streams.video[0]
        fps, size = float(v.average_rate), (v.codec_context.width, v.codec_context.height)
        frames = sum(1 for _ in c.decode(video=0))
    with av.open(str(path)) as c:
        a = c.streams.audio[0]
        rate = a.rate
        # the stream's declared duration (AAC priming/padding trimmed by the mp4 edit list), in samples
        samples = int(round(float(a.duration * a.time_base) * rate))
        decoded = sum(f.samples for f in c.decode(audio=0))
    return {"fps": fps, "frames": frames, "samples": samples, "decoded": decoded, "rate": rate, "size": size}


@pytest.fixture()
def speech_wav(tmp_path) -> Path:
    p = tmp_path / "speech.wav"
    soundfile.write(p, speech_like(0.83), 16000)
    return p


def test_render_mp4_and_frames(synthetic_avatar, speech_wav, tmp_path):
    out = tmp_path / "out.mp4"
    r = render(synthetic_avatar, [speech_wav], out, frames_dir=tmp_path / "frames", generator=NullGenerator(96),
               progress=False)
    n = int(np.ceil(0.83 * 16000 / 640))
    assert r.frames == n == 21
    info = probe(out)
    assert info["fps"] == 25 and info["frames"] == n and info["size"] == (320, 240)
    assert info["rate"] == 16000 and info["samples"] == 0.83 * 16000  # exactly the input's length
    assert 0 <= info["decoded"] - info["samples"] < 1024 + 1024  # + at most AAC priming and last-frame padding
    assert len(list((tmp_path / "frames").glob("*.png"))) == n
    assert not list(tmp_path.glob(".tmp-*"))


def test_several_files_play_one_after_another(synthetic_avatar, tmp_path):
    a, b = tmp_path / "a.wav", tmp_path / "b.flac"
    soundfile.write(a, speech_like(0.4), 16000)
    soundfile.write(b, np.stack([speech_like(22050 / 16000, seed=2)[:22050]] * 2, 1), 44100)  # 0.5 s stereo 44.1k
    r = render(synthetic_avatar, [a, b], tmp_path / "o.mp4", generator=NullGenerator(96), progress=False)
    assert r.samples == 6400 + 8000 and r.frames == 23


def test_silent_audio_gives_the_footage(synthetic_avatar, tmp_path):
    import cv2

    from preprocess.package import AvatarPackage

    wav = tmp_path / "silence.wav"
    soundfile.write(wav, np.zeros(8000, np.float32), 16000)
    render(synthetic_avatar, [wav], None, frames_dir=tmp_path / "f", generator=NullGenerator(96), progress=False,
           start_frame=4, loop="forward")
    pkg = AvatarPackage.open(synthetic_avatar)
    for k, png in enumerate(sorted((tmp_path / "f").glob("*.png"))):
        assert np.array_equal(cv2.imread(str(png)), pkg.frame((4 + k) % pkg.frame_count))


def _cli_error(capsys, argv) -> str:
    code = main(["render", "--no-progress"] + [str(a) for a in argv])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    return err


def test_bad_inputs_are_one_line_errors(synthetic_avatar, speech_wav, tmp_path, capsys):
    out = tmp_path / "out.mp4"
    common = ["--engine", "mouth", "-o", out]
    assert "not found" in _cli_error(capsys, ["--avatar", tmp_path / "nope", "--audio", speech_wav] + common)
    partial = tmp_path / "partial"
    shutil.copytree(synthetic_avatar, partial)
    (partial / "bg" / "000019.jpg").unlink()
    assert "incomplete" in _cli_error(capsys, ["--avatar", partial, "--audio", speech_wav] + common)
    assert "run `stream-wav2lip preprocess` first" in _cli_error(capsys, ["--avatar", tmp_path / "partial" / "bg",
                                                                          "--audio", speech_wav] + common)
    parent = tmp_path / "preprocess_out"  # `preprocess --out DIR` writes DIR/<video name>: point at it
    shutil.copytree(synthetic_avatar, parent / "clip")
    assert f"holds clip: use {parent / 'clip'}" in _cli_error(capsys, ["--avatar", parent, "--audio", speech_wav]
                                                              + common)
    empty = tmp_path / "empty.wav"
    soundfile.write(empty, np.zeros(0, np.float32), 16000)
    assert "zero samples" in _cli_error(capsys, ["--avatar", synthetic_avatar, "--audio", empty] + common)
    garbage = tmp_path / "noise.mp3"
    garbage.write_bytes(b"this is not audio" * 50)
    assert "noise.mp3" in _cli_error(capsys, ["--avatar", synthetic_avatar, "--audio", garbage] + common)
    missing_dir = tmp_path / "no" / "such" / "out.mp4"
    assert "does not exist" in _cli_error(capsys, ["--avatar", synthetic_avatar, "--audio", speech_wav,
                                                   "-o", missing_dir])
    assert "checkpoint" in _cli_error(capsys, ["--avatar", synthetic_avatar, "--audio", speech_wav, "--engine",
                                               "wav2lip", "-o", out])
    assert not out.exists() and not list(tmp_path.glob(".tmp-*"))


def test_wrong_kind_of_checkpoint(synthetic_avatar, speech_wav, tmp_path, capsys):
    from models.testing import deterministic_state_dict, save_reference_checkpoint

    ckpt = save_reference_checkpoint(deterministic_state_dict("disc_qual96"), tmp_path / "disc.pth",
                                     with_optimizer=False)
    err = _cli_error(capsys, ["--avatar", synthetic_avatar, "--audio", speech_wav, "--checkpoint", ckpt,
                              "-o", tmp_path / "out.mp4", "--device", "cpu"])
    assert "discriminator" in err and "not a Wav2Lip generator" in err
    assert not (tmp_path / "out.mp4").exists()


def test_no_half_written_mp4_when_rendering_fails(synthetic_avatar, speech_wav, tmp_path):
    class Exploding(NullGenerator):
        calls = 0

        def generate(self, batch):
            Exploding.calls += 1
            if Exploding.calls > 1:
                raise RuntimeError("boom")
            return super().generate(batch)

    out = tmp_path / "out.mp4"
    out.write_bytes(b"previous result")
    with pytest.raises(RuntimeError, match="boom"):
        render(synthetic_avatar, [speech_wav], out, generator=Exploding(96), batch_size=2, silence_gate=False,
               progress=False)
    assert out.read_bytes() == b"previous result" and not list(tmp_path.glob(".tmp-*"))

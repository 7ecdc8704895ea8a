import numpy as np

from backend.frames import AudioOutFrame, FaceFrame, FlushFrame, MelFrame, SpeechEndFrame, SpeechStartFrame
from backend.generate_stage import GenerateStage
from tests.backend.helpers import RecordingGenerator


def _feed(stage, flags, end=True):
    out = stage.push(SpeechStartFrame(0))
    for i, speech in enumerate(flags):
        mel = MelFrame(pts_ns=i * 40_000_000, index=i, mel=np.zeros((80, 16), np.float32), speech=speech)
        out += stage.push(mel)
        out += stage.push(AudioOutFrame(pts_ns=mel.pts_ns, pcm=np.full(640, i, np.float32), speech=speech))
    if end:
        out += stage.push(SpeechEndFrame(0))
    return out


def _stage(batch=4, **kw):
    gen = RecordingGenerator()
    counter = iter(range(10**6))
    face = np.zeros((96, 96, 3), np.uint8)
    return gen, GenerateStage(gen, lambda i: face, lambda mel: next(counter), batch_size=batch, **kw)


def test_batches_and_order():
    gen, st = _stage(batch=4)
    out = _feed(st, [True] * 10)
    faces = [f for f in out if isinstance(f, FaceFrame)]
    assert [f.index for f in faces] == list(range(10))
    assert [len(b) for b in gen.batches] == [4, 4, 2]
    assert all(f.face is not None and f.blend == 1.0 for f in faces)


def test_each_face_is_followed_by_its_audio():
    _, st = _stage(batch=3)
    out = _feed(st, [True, False, False, False, False, False, True, True])
    body = [f for f in out if isinstance(f, (FaceFrame, AudioOutFrame))]
    for face, audio in zip(body[::2], body[1::2]):
        assert isinstance(face, FaceFrame) and isinstance(audio, AudioOutFrame)
        assert audio.pcm[0] == face.index and audio.pts_ns == face.pts_ns


def test_silence_ramps_and_skips_the_generator():
    gen, st = _stage(batch=2)
    flags = [False] * 5 + [True] * 3 + [False] * 6
    faces = [f for f in _feed(st, flags) if isinstance(f, FaceFrame)]
    blends = [round(f.blend, 3) for f in faces]
    assert blends == [0, 0, 0, 0.333, 0.667, 1, 1, 1, 0.667, 0.333, 0, 0, 0, 0]
    assert sum(len(b) for b in gen.batches) == 7  # only frames with blend > 0
    assert all((f.face is None) == (f.blend == 0) for f in faces)


def test_causal_ramp_without_lookahead():
    _, st = _stage(batch=1, lookahead=0)
    out = st.push(SpeechStartFrame(0))
    mel = MelFrame(pts_ns=0, index=0, mel=np.zeros((80, 16), np.float32), speech=True)
    out += st.push(mel)
    assert any(isinstance(f, FaceFrame) for f in out)  # no waiting for the future


def test_flush_drops_pending_and_resets_generator():
    gen, st = _stage(batch=8)
    _feed(st, [True] * 5, end=False)
    assert st.pending == 5
    assert st.push(FlushFrame(0)) == [FlushFrame(0)]
    assert st.pending == 0 and gen.resets >= 2 and gen.batches == []


def test_run_pending_bounds_latency():
    gen, st = _stage(batch=8, lookahead=0)
    out = _feed(st, [True] * 3, end=False)
    assert not any(isinstance(f, FaceFrame) for f in out)
    out = st.run_pending()
    assert [f.index for f in out if isinstance(f, FaceFrame)] == [0, 1, 2]

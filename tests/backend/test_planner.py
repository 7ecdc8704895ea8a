"""The planner (frames in, decisions out): blend ramps, look-ahead, content-only batches, utterance boundaries."""
import numpy as np
import pytest

from backend.frames import AudioOutFrame, FlushFrame, MelFrame, SpeechEndFrame, SpeechStartFrame
from backend.planner import Planner


def _feed(planner, flags, end=True, speech_id=0):
    planner.push(SpeechStartFrame(0, speech_id))
    for i, speech in enumerate(flags):
        mel = MelFrame(pts_ns=i * 40_000_000, index=i, mel=np.zeros((80, 16), np.float32), speech=speech,
                       speech_id=speech_id)
        planner.push(mel)
        planner.push(AudioOutFrame(pts_ns=mel.pts_ns, pcm=np.full(640 if i < len(flags) - 1 else 100, i,
                                                                   np.float32), speech=speech))
    if end:
        planner.push(SpeechEndFrame(0, speech_id))


def _all(planner, force=True):
    batches = []
    while batch := planner.take_batch(force):
        batches.append(batch)
    return batches


def test_batches_and_order():
    p = Planner(batch_size=4)
    _feed(p, [True] * 10)
    batches = _all(p, force=False)
    assert [len(b) for b in batches] == [4, 4, 2]  # the utterance's last frame completes a batch
    items = [it for b in batches for it in b]
    assert [it.mel.index for it in items] == list(range(10)) and all(it.blend == 1.0 for it in items)
    assert items[0].first and not any(it.first for it in items[1:]) and items[-1].last


def test_each_frame_carries_its_own_audio_padded_to_40ms():
    p = Planner(batch_size=3)
    _feed(p, [True, False, True])
    items = [it for b in _all(p) for it in b]
    assert [it.audio[0] for it in items] == [0, 1, 2] and all(it.audio.size == 640 for it in items)
    assert [it.samples for it in items] == [640, 640, 100] and not items[-1].audio[100:].any()


def test_silence_ramps_and_is_never_generated():
    p = Planner(batch_size=2)
    flags = [False] * 5 + [True] * 3 + [False] * 6
    _feed(p, flags)
    batches = _all(p)
    blends = [round(it.blend, 3) for b in batches for it in b]
    assert blends == [0, 0, 0, 0.333, 0.667, 1, 1, 1, 0.667, 0.333, 0, 0, 0, 0]
    for b in batches:  # a frame with blend 0 goes alone; generated ones in batches of up to 2
        assert len(b) == 1 or all(it.generate for it in b)


def test_a_generator_that_handles_silence_gets_every_frame():
    p = Planner(batch_size=4, handles_silence=True)
    _feed(p, [False] * 6)
    assert [len(b) for b in _all(p, force=False)] == [4, 2]


def test_causal_ramp_without_lookahead():
    p = Planner(batch_size=1, lookahead=0)
    _feed(p, [True], end=False)
    assert len(p.take_batch()) == 1  # no waiting for the future


def test_an_incomplete_batch_waits_unless_forced():
    p = Planner(batch_size=8, lookahead=0)
    _feed(p, [True] * 3, end=False)
    assert p.take_batch() == [] and p.ready == 3
    assert [it.mel.index for it in p.take_batch(force=True)] == [0, 1, 2]


def test_batches_are_cut_where_the_generator_stops_and_at_utterances():
    p = Planner(batch_size=4, ramp=1)
    _feed(p, [True, True, False, True], speech_id=1)
    _feed(p, [True] * 3, speech_id=2)
    shapes = [[(it.speech_id, it.mel.index) for it in b] for b in _all(p, force=False)]
    assert shapes == [[(1, 0), (1, 1)], [(1, 2)], [(1, 3)], [(2, 0), (2, 1), (2, 2)]]


def test_flush_drops_everything_pending():
    p = Planner(batch_size=8)
    _feed(p, [True] * 5, end=False)
    assert p.pending == 5
    p.push(FlushFrame(0))
    assert p.pending == 0 and p.take_batch(force=True) == []


def test_a_speech_frame_is_decided_at_once_a_silent_one_waits_for_its_future():
    """A live stream's speech does not wait the look-ahead: its blend is 1 whatever follows; a silent frame
    may ramp up before speech, so it waits (or is forced)."""
    p = Planner(batch_size=1, lookahead=2)
    _feed(p, [True], end=False)
    assert p.ready == 1
    p.push(MelFrame(pts_ns=0, index=1, mel=np.zeros((80, 16), np.float32), speech=False, speech_id=0))
    p.push(AudioOutFrame(pts_ns=0, pcm=np.zeros(640, np.float32), speech=False))
    assert p.ready == 1, "the silent frame waits for two frames of its future"
    assert len(p.take_batch(force=False)) == 1 and p.take_batch(force=False) == []
    assert [it.blend for it in p.take_batch(force=True)] == [pytest.approx(2 / 3)], "forced: ramps down"


def test_a_limit_completes_a_smaller_batch():
    p = Planner(batch_size=4)
    _feed(p, [True] * 3, end=False)
    assert p.take_batch(force=False) == [], "3 of 4: not complete"
    assert len(p.take_batch(force=False, limit=2)) == 2 and p.take_batch(force=False, limit=2) == []
    assert len(p.take_batch(force=True, limit=2)) == 1


def test_the_gate_flags_ahead_decide_a_silent_frame_at_once_and_alike():
    """With MelFrame.ahead (the features stage's flags of the next frames) a silent frame is decided as soon as
    it is in, with the same blend as when the planner waits for the next frames themselves."""
    rng = np.random.default_rng(5)
    flags = [bool(x) for x in rng.random(60) > 0.6] + [False, False]
    waited, at_once = Planner(batch_size=1), Planner(batch_size=1)
    _feed(waited, flags)
    at_once.push(SpeechStartFrame(0, 0))
    blends = []
    for i, speech in enumerate(flags):
        mel = MelFrame(pts_ns=i * 40_000_000, index=i, mel=np.zeros((80, 16), np.float32), speech=speech,
                       ahead=tuple(flags[i + 1:i + 5]))
        at_once.push(mel)
        at_once.push(AudioOutFrame(pts_ns=mel.pts_ns, pcm=np.zeros(640, np.float32), speech=speech))
        if i < len(flags) - 2:  # decided the moment it came in
            assert at_once.ready == 1 and at_once.pending == 1
            blends.append(at_once.take_batch()[0].blend)
    assert at_once.ready == 0  # the last silent frame's future is not all known until the end
    at_once.push(SpeechEndFrame(0, 0))
    blends += [b[0].blend for b in _all(at_once)]
    assert blends == [b[0].blend for b in _all(waited)]
    assert {round(b, 3) for b in blends} == {0.0, 0.333, 0.667, 1.0}  # ramps up and down both occur

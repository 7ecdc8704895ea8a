"""shm_protocol rings: the byte layout (docs/shm-protocol.md), reader/writer, seqlock and stale-segment reclaim."""
from __future__ import annotations

import multiprocessing as mp
import os
import struct
import time

import numpy as np
import pytest

import shm_protocol as S


def test_header_fields_are_at_the_documented_offsets(session):
    with S.RingWriter(S.video_name(session), S.video_header(5, 3, slots=3)) as w:
        raw = bytes(w._buf[:64])
        magic, ver, width, height, stride, fmt, slots, _r, slot_size, pub, hb, pid = struct.unpack("<4s7IQQQQ", raw)
        assert (magic, ver, width, height, stride, fmt, slots) == (b"S2LV", 1, 5, 3, 20, 1, 3)
        assert slot_size % 4096 == 0 and slot_size >= 64 + 3 * 20
        assert (pub, pid) == (0, os.getpid()) and abs(hb - time.monotonic_ns()) < 1e9
        w.publish(123, 7, S.FLAG_SPEECH, payload=np.full((3, 5, 4), 9, np.uint8))
        base = 4096
        seq, pts, index, flags, _r2, seqno = struct.unpack_from("<QqQIIQ", w._buf, base)
        assert (seq % 2, pts, index, flags, seqno) == (0, 123, 7, 1, 0)
        assert struct.unpack_from("<Q", w._buf, 40)[0] == 1
        assert bytes(w._buf[base + 64: base + 64 + 60]) == bytes([9]) * 60


def test_audio_header_words_are_at_the_documented_offsets(session):
    with S.RingWriter(S.audio_name(session), S.audio_header(48000, 2, 960, slots=4, sample_format=S.SAMPLE_S16)) as w:
        magic, ver, rate, channels, frames, fmt, slots = struct.unpack_from("<4s6I", w._buf, 0)
        assert (magic, ver, rate, channels, frames, fmt, slots) == (b"S2LA", 1, 48000, 2, 960, 2, 4)
        assert w.header.payload_size == 960 * 2 * 2


def test_header_words_are_named_per_kind():
    """The four words at offsets 8-23 mean different things per ring; a name of the other kind is refused."""
    video = S.video_header(6, 3)
    assert (video.width, video.height, video.stride, video.pixel_format) == (6, 3, 24, S.PIXFMT_BGRA8)
    assert video.format_words == (6, 3, 24, S.PIXFMT_BGRA8) and video.payload_size == 3 * 24
    audio = S.audio_header(16000, 1, 640)
    assert (audio.sample_rate, audio.channels, audio.frames_per_block, audio.sample_format) == (16000, 1, 640,
                                                                                               S.SAMPLE_F32)
    assert audio.payload_size == 640 * 4
    with pytest.raises(ValueError, match="video"):
        audio.width
    with pytest.raises(ValueError, match="audio"):
        video.sample_rate
    packed = S.pack_header(video, published=5, heartbeat=7)
    assert S.unpack_header(packed) == (video, 5, 7)


def test_video_roundtrip_and_latest(session):
    with S.RingWriter(S.video_name(session), S.video_header(4, 2, slots=3)) as w:
        with S.RingReader(S.video_name(session)) as r:
            assert r.poll_latest() is None
            for i in range(5):
                w.publish(1000 + i, i, 0, payload=np.full((2, 4, 4), i, np.uint8))
            slot = r.poll_latest()
            assert (slot.pts_ns, slot.index, slot.sequence) == (1004, 4, 4)
            assert (r.video_array(slot) == 4).all() and r.video_array(slot).shape == (2, 4, 4)
            assert r.poll_latest() is None
            assert r.writer_alive()


def test_audio_poll_all_in_order_and_skips_overwritten(session):
    hdr = S.audio_header(16000, 1, 640, slots=4)
    with S.RingWriter(S.audio_name(session), hdr) as w, S.RingReader(S.audio_name(session)) as r:
        for i in range(3):
            w.publish(i * 40, 640, 0, payload=np.full(640, i, np.float32))
        got = r.poll_all()
        assert [s.pts_ns for s in got] == [0, 40, 80]
        assert all((r.audio_array(s)[:, 0] == i).all() for i, s in enumerate(got))
        for i in range(3, 13):  # lap the reader: only the last N-1 are still readable
            w.publish(i * 40, 320, 0, payload=np.full(320, i, np.float32))
        got = r.poll_all()
        assert [s.sequence for s in got] == [10, 11, 12]
        assert r.audio_array(got[0]).shape == (320, 1)


def test_headers_without_payload_and_borrowing_a_slot_in_place(session):
    """The OBS pusher reads only headers while frames wait for their pts, then hands the shown slot's pixels to
    libobs straight from the ring (borrow) when the writer cannot reach it during the copy."""
    with S.RingWriter(S.video_name(session), S.video_header(4, 2, slots=4)) as w, \
            S.RingReader(S.video_name(session)) as r:
        for i in range(2):
            w.publish(1000 + i, i, S.FLAG_SPEECH, payload=np.full((2, 4, 4), i + 1, np.uint8))
        heads = r.poll_all(payload=False)
        assert [(h.pts_ns, h.index, h.flags, h.sequence, h.payload) for h in heads] == [
            (1000, 0, S.FLAG_SPEECH, 0, None), (1001, 1, S.FLAG_SPEECH, 1, None)]
        assert r.borrow(0) is None  # the writer is 2 slots away from slot 0: copy it instead
        view, lock = r.borrow(1)  # the newest: the writer must publish 2 more before it can touch it
        assert (view == 2).all() and not view.flags.writeable and r.unchanged(1, lock)
        copied = r.read_slot(1).payload
        assert np.array_equal(view, copied) and view.ctypes.data != copied.ctypes.data  # in place vs a copy
        for i in range(2, 6):  # lap the ring: sequence 1's slot now holds sequence 5
            w.publish(1000 + i, i, 0, payload=np.full((2, 4, 4), i + 1, np.uint8))
        assert not r.unchanged(1, lock)
        assert r.borrow(1) is None and r.read_slot(1) is None and r.read_slot(1, payload=False) is None
        view, lock = r.borrow(5)
        assert (view == 6).all() and r.read_slot(5, payload=False).pts_ns == 1005


def _writer_process(name: str, width: int, height: int, frames: int, ready) -> None:
    hdr = S.video_header(width, height, slots=3)
    w = S.RingWriter(name, hdr)
    ready.set()
    try:
        for i in range(frames):
            value = i % 251
            w.publish(i, i, 0, fill=lambda flat, v=value: flat.__setitem__(slice(0, height * width * 4), v))
    finally:
        time.sleep(0.2)
        w.close()


def test_reader_racing_a_writer_in_another_process_never_sees_a_torn_frame(session):
    """The writer rewrites 3 slots as fast as it can; every slot the reader accepts is uniform and matches its index."""
    name = S.video_name(session)
    ctx = mp.get_context("spawn")
    ready = ctx.Event()
    proc = ctx.Process(target=_writer_process, args=(name, 320, 240, 4000, ready))
    proc.start()
    try:
        assert ready.wait(20)
        reader = S.RingReader(name)
        accepted = rejected = 0
        deadline = time.monotonic() + 10
        while proc.is_alive() and time.monotonic() < deadline:
            published = reader.published
            for seq in range(max(0, published - 3), published):
                slot = reader.read_slot(seq)
                if slot is None:
                    rejected += 1
                    continue
                px = slot.payload[: 320 * 240 * 4]
                assert px.min() == px.max() == slot.index % 251, "torn frame accepted"
                accepted += 1
        reader.close()
    finally:
        proc.join(20)
    assert accepted > 50


def _fake_crash(name: str, header: S.RingHeader, dead_pid: int) -> None:
    """Leave a segment behind as a killed writer would (no unlink, pid of a process that is gone)."""
    w = S.RingWriter(name, header)
    struct.pack_into("<Q", w._buf, 56, dead_pid)
    w.close(unlink=False)  # RingWriter segments are never registered with the resource tracker


def _dead_pid() -> int:
    proc = mp.get_context("spawn").Process(target=time.sleep, args=(0,))
    proc.start()
    proc.join()
    return proc.pid


def test_stale_segment_of_a_dead_writer_is_reclaimed(session):
    name = S.video_name(session)
    _fake_crash(name, S.video_header(4, 2), _dead_pid())
    assert S.segment_exists(name)
    with S.RingWriter(name, S.video_header(8, 4)) as w:  # new size: the old segment was really replaced
        assert w.header.width == 8
    assert not S.segment_exists(name)


def test_live_segment_is_not_taken_over(session):
    name = S.video_name(session)
    with S.RingWriter(name, S.video_header(4, 2)):
        with pytest.raises(FileExistsError):
            S.RingWriter(name, S.video_header(4, 2))


def test_writer_staleness_rule():
    now = time.monotonic_ns()
    assert not S.writer_is_stale(os.getpid(), now, now)
    assert S.writer_is_stale(os.getpid(), now - 3_000_000_000, now)
    assert S.writer_is_stale(_dead_pid(), now, now)


def test_reader_rejects_foreign_segment(session):
    from multiprocessing import shared_memory

    shm = shared_memory.SharedMemory(name=f"s2l_{session}_junk", create=True, size=4096)
    try:
        with pytest.raises(ValueError, match="not a stream-wav2lip ring"):
            S.RingReader(shm.name)
    finally:
        shm.close()
        shm.unlink()

"""The sink-side worker of `render`: order, bounded prefetch, errors and abort, with frames in and out."""
import threading
import time

import numpy as np
import pytest

from backend.frames import AudioOutFrame, FaceFrame, VideoFrame
from backend.post import PostWorker


class ListSink:
    def __init__(self, fail_at: int | None = None):
        self.frames, self.closed, self.aborted, self.fail_at = [], False, False, fail_at

    def write(self, video, audio):
        if self.fail_at is not None and len(self.frames) == self.fail_at:
            raise OSError("disk full")
        self.frames.append((video.index, video.image[0, 0, 0], audio.pts_ns))

    def close(self):
        self.closed = True

    def abort(self):
        self.aborted = True


def pairs(n, start=0):
    return [(VideoFrame(k * 40, k, k % 5, None, pending=FaceFrame(k * 40, k, k % 5, None)),
             AudioOutFrame(k * 40, np.zeros(640, np.float32))) for k in range(start, start + n)]


def finish_slowly(video):
    time.sleep(0.001 * (video.index % 3))  # uneven work must not reorder frames
    return VideoFrame(video.pts_ns, video.index, video.avatar_index, np.full((2, 2, 3), video.index % 256, np.uint8))


def test_frames_come_out_composed_and_in_order():
    sink = ListSink()
    written = []
    post = PostWorker(finish_slowly, lambda i: None, [sink], depth=4, on_written=written.append)
    for k in range(0, 40, 8):
        post.put(pairs(8, k))
    post.close()
    assert [f[0] for f in sink.frames] == list(range(40))
    assert [f[1] for f in sink.frames] == list(range(40))  # the image came from finish()
    assert [f[2] for f in sink.frames] == [k * 40 for k in range(40)]  # each with its own audio
    assert sink.closed and post.written == 40 and sum(written) == 40


def test_prefetch_runs_ahead_but_boundedly():
    loads, gate = [], threading.Event()

    def finish(video):
        gate.wait(5)
        return finish_slowly(video)

    post = PostWorker(finish, loads.append, [ListSink()], depth=64, prefetch=3)
    post.put(pairs(20))
    time.sleep(0.2)
    assert loads == [0, 1, 2, 3]  # the frame being composed + the next 3, no more while the worker waits
    gate.set()
    post.close()
    assert len(loads) == 20 and loads[:6] == [0, 1, 2, 3, 4, 0]


def test_a_sink_error_surfaces_and_close_does_not_finish():
    sink = ListSink(fail_at=3)
    post = PostWorker(finish_slowly, lambda i: None, [sink], depth=2)
    with pytest.raises(OSError, match="disk full"):
        for k in range(0, 400, 4):
            post.put(pairs(4, k))
        post.close()
    post.abort()
    assert sink.aborted and not sink.closed and len(sink.frames) == 3


def test_abort_stops_a_blocked_worker():
    gate = threading.Event()
    sink = ListSink()

    def finish(video):
        gate.wait(5)
        return finish_slowly(video)

    post = PostWorker(finish, lambda i: None, [sink], depth=2)
    post.put(pairs(3))
    t = time.perf_counter()
    threading.Timer(0.1, gate.set).start()
    post.abort()
    assert time.perf_counter() - t < 3 and sink.aborted and not sink.closed


def _idle_policy_allowed() -> bool:
    """Whether this machine lets a thread switch itself to SCHED_IDLE (containers may forbid it)."""
    import os

    if not hasattr(os, "SCHED_IDLE"):
        return False
    ok = []

    def probe():
        try:
            os.sched_setscheduler(threading.get_native_id(), os.SCHED_IDLE, os.sched_param(0))
            ok.append(True)
        except OSError:
            pass

    t = threading.Thread(target=probe)
    t.start()
    t.join()
    return bool(ok)


@pytest.mark.skipif(not _idle_policy_allowed(), reason="SCHED_IDLE not available here")
@pytest.mark.parametrize("idle", [True, False])
def test_workers_take_only_idle_cpu_when_asked(idle):
    import os

    seen = []

    def finish(video):
        seen.append(os.sched_getscheduler(0))
        return finish_slowly(video)

    post = PostWorker(finish, lambda i: seen.append(os.sched_getscheduler(0)), [ListSink()], idle_priority=idle)
    post.put(pairs(2))
    post.close()
    assert len(seen) == 4 and set(seen) == {os.SCHED_IDLE if idle else os.SCHED_OTHER}
    assert os.sched_getscheduler(0) == os.SCHED_OTHER  # the caller (the network's thread) is untouched

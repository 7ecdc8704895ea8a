"""The sink side of `render` on its own thread: compose the finished frames and hand them to the sinks.

Why: on the main thread the network and the compositor/decoder take turns, so every millisecond spent
decoding a 1080p background or blending a face is a millisecond the network waits. Here the engine leaves
`VideoFrame.pending` set (Engine(compose_later=True)), the main thread only runs features + network, and
this worker composes, writes the sinks (the mp4 sink encodes on a third thread) and, one queue ahead,
decodes the avatar frames that are about to be needed on a small prefetch thread. On a GPU host that keeps
several cores busy at once; on a 2-core CPU host it fills the cycles the network's threads leave idle.

Order is preserved (one worker, one FIFO), the queue is bounded (a slow sink slows the producer instead of
growing memory), and an error on the worker surfaces on the next `put()` or on `close()`.
"""
from __future__ import annotations

import queue
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Sequence

from backend.frames import AudioOutFrame, VideoFrame

Pair = tuple[VideoFrame, AudioOutFrame]
def lower_priority() -> None:
    """Run the calling thread only on CPU time nobody else wants (Linux SCHED_IDLE; threads it creates, such
    as the encoder's, inherit it). Elsewhere, or if refused, the lowest nice value.

    Why: on a CPU host the network's threads must not be preempted. When one is, the other spins at the next
    barrier and the machine does less work in total (measured: the network ran ~18 % slower next to a
    normal-priority encoder; nice 19 did no better). At idle priority this work fills the gaps, and when its
    queue is full the network waits for it, its threads go to sleep, and it runs on every core: nothing
    starves -- unless another program keeps every core busy: then this work waits for it, which is why
    `render` uses it only when the network runs on the CPU (a GPU host has idle CPU time to give anyway).
    """
    import os

    tid = threading.get_native_id()
    try:
        os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0))
        return
    except (AttributeError, OSError):
        pass
    try:
        os.setpriority(os.PRIO_PROCESS, tid, 19)
    except (AttributeError, OSError):
        pass


class PostWorker:
    """`put(pairs)` in timeline order, then `close()` (or `abort()` on failure).

    finish: VideoFrame with `pending` → finished VideoFrame (the engine compositor's `finish` or
    `finish_i420`; the compositor is used only from this worker once rendering starts);
    load: avatar frame index → decoded background (cached by the package), called on the prefetch thread;
    sinks: objects with write(video, audio) and close(); on_written(n): progress callback (worker thread);
    idle_priority: run the worker and prefetch threads at idle CPU priority (see lower_priority; for a network
    on the CPU);
    prefetch: how many upcoming avatar frames to decode ahead on a helper thread (0 = none); bounded because
    a 1080p frame is 6 MB and the package's frame cache is shared with the main thread.
    """

    def __init__(self, finish: Callable[[VideoFrame], VideoFrame], load: Callable[[int], object],
                 sinks: Sequence, *, depth: int = 16, prefetch: int = 6, idle_priority: bool = True,
                 on_written: Callable[[int], None] | None = None):
        self.finish = finish
        self.load = load
        self.sinks = list(sinks)
        self.on_written = on_written
        self.busy_ns = 0  # compositing time (the sinks keep their own)
        self.written = 0
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self._error: BaseException | None = None
        self._stopping = False
        self._idle = idle_priority
        self._prefetch = (ThreadPoolExecutor(1, thread_name_prefix="prefetch",
                                             initializer=lower_priority if idle_priority else None)
                          if prefetch > 0 else None)
        self._prefetch_depth = prefetch
        self._upcoming: deque[int] = deque()  # avatar indices queued but not yet sent to the prefetcher
        self._ahead = 0  # sent to the prefetcher, not yet composed
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._work, name="render-post", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ producer side
    def put(self, pairs: Sequence[Pair]) -> None:
        self._raise()
        if self._prefetch is not None:
            with self._lock:
                self._upcoming.extend(video.avatar_index for video, _ in pairs)
            self._top_up()
        for pair in pairs:
            while True:  # wake up now and then so a dead worker cannot block the producer forever
                try:
                    self._queue.put(pair, timeout=0.5)
                    break
                except queue.Full:
                    self._raise()

    def close(self) -> None:
        """Compose and write everything queued, close the sinks; raises what the worker hit."""
        self._queue.put(None)
        self._thread.join()
        self._shutdown_prefetch()
        self._raise()
        for sink in self.sinks:
            sink.close()

    def abort(self) -> None:
        """Stop without writing the rest; sinks that can abort (Mp4Sink) are aborted, nothing is finished."""
        self._stopping = True
        self._error = self._error or RuntimeError("aborted")
        while True:  # unblock the worker if it waits on a full queue
            try:
                self._queue.put_nowait(None)
                break
            except queue.Full:
                try:
                    self._queue.get_nowait()
                except queue.Empty:
                    pass
        self._thread.join()
        self._shutdown_prefetch()
        for sink in self.sinks:
            abort = getattr(sink, "abort", None)
            if abort is not None:
                abort()

    # ------------------------------------------------------------------ worker
    def _work(self) -> None:
        if self._idle:
            lower_priority()
        while True:
            item = self._queue.get()
            if item is None or self._stopping:
                return
            if self._error is not None:
                continue
            if self._prefetch is not None:
                self._consumed()
            try:
                video, audio = item
                t = time.perf_counter_ns()
                video = self.finish(video)
                self.busy_ns += time.perf_counter_ns() - t
                for sink in self.sinks:
                    sink.write(video, audio)
                self.written += 1
                if self.on_written is not None:
                    self.on_written(1)
            except BaseException as exc:  # surfaced by the next put()/close()
                self._error = exc

    def _consumed(self) -> None:
        """The worker took the oldest queued pair: it was prefetched (ahead) or is still first in upcoming."""
        with self._lock:
            if self._ahead > 0:
                self._ahead -= 1
            elif self._upcoming:
                self._upcoming.popleft()
        self._top_up()

    def _top_up(self) -> None:
        with self._lock:
            todo = []
            while self._ahead < self._prefetch_depth and self._upcoming:
                todo.append(self._upcoming.popleft())
                self._ahead += 1
        load, pool = self.load, self._prefetch
        for index in todo:
            if pool is None:
                return
            try:
                pool.submit(load, index)
            except RuntimeError:  # shut down (abort) while the producer was still putting
                return

    def _raise(self) -> None:
        if self._error is not None and not self._stopping:
            raise self._error

    def _shutdown_prefetch(self) -> None:
        if self._prefetch is not None:
            self._prefetch.shutdown(wait=True, cancel_futures=True)
            self._prefetch = None

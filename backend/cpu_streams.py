"""A CPU network run as several single-threaded streams, each on its own part of the batch.

Why: torch splits every layer of a batch between its intra-op threads and waits for all of them at the end
of the layer (about fifty times per Wav2Lip call). When other work shares the cores -- in `render`, the
compositor and the H.264 encoder -- the thread that loses its core for a moment delays the whole layer while
the others spin at the barrier, so the network loses about as much time as the other work took, and the spin
is CPU nobody uses. Independent single-threaded streams meet once per call instead: a stream that loses its
core finishes later, the others go on, and the time the first waits at the end is spent asleep, where the
other work can use it. Measured on 2 cores (wav2lip96, batch 8, 720p render; docs/benchmarks.md): the
network alone runs at the same speed either way; in the same runs the render's median ratio to it went from
0.80-0.87 to 0.87-0.93 (one run of four on a busy machine showed no difference).

A stream is a thread whose torch intra-op thread count is 1 (torch keeps that count per thread); parts are
given to streams in order, so a stream always computes the same rows of a batch. The caller waits, asleep.
A batch that does not divide evenly between the streams runs as one call on the caller's thread with its own
(multi-threaded) settings: 3 frames as 2 + 1 would take as long as 2 frames on one thread, longer than 3 on two.
"""
from __future__ import annotations

import queue
import threading
from typing import Callable

import numpy as np

Forward = Callable[[np.ndarray, np.ndarray], np.ndarray]


class CpuStreams:
    """`run(forward, faces, mels)`: `forward` on parts of the batch in `count` single-threaded streams.

    `close()` (or dropping the object) stops the threads; they hold no reference to it.
    """

    def __init__(self, count: int):
        self.count = max(1, int(count))
        self._inbox: list[queue.SimpleQueue] = [queue.SimpleQueue() for _ in range(self.count)]
        self._ready = threading.Barrier(self.count + 1)
        self.threads_per_stream: list[int] = [0] * self.count  # what torch reported in each stream (tests)
        before = thread_count()
        self._threads = [threading.Thread(target=_stream, name=f"net-stream-{k}", daemon=True,
                                          args=(self._inbox[k], self._ready, self.threads_per_stream, k))
                         for k in range(self.count)]
        for t in self._threads:
            t.start()
        self._ready.wait()
        use_threads(before)  # the streams' counts also set the one new threads start with: restore it

    def even_batch(self, frames: int) -> int:
        """`frames` rounded up to a batch that splits into equal parts (see `run`)."""
        return -(-frames // self.count) * self.count

    def run(self, forward: Forward, faces: np.ndarray, mels: np.ndarray) -> np.ndarray:
        """forward(faces, mels) computed as `count` parts at once; the parts' outputs joined in order."""
        n = len(faces)
        parts = self.count
        if parts < 2 or n < parts or n % parts:
            return forward(faces, mels)
        bounds = np.arange(parts + 1) * (n // parts)
        replies: list[queue.SimpleQueue] = []
        for k in range(parts):
            reply: queue.SimpleQueue = queue.SimpleQueue()
            a, b = bounds[k], bounds[k + 1]
            self._inbox[k].put((forward, faces[a:b], mels[a:b], reply))
            replies.append(reply)
        outs, error = [], None
        for reply in replies:  # wait for every part, also after a failure, so no stream still uses the inputs
            ok, value = reply.get()
            if ok:
                outs.append(value)
            elif error is None:
                error = value
        if error is not None:
            raise error
        return np.concatenate(outs)

    def close(self) -> None:
        for inbox in self._inbox:
            inbox.put(None)
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(timeout=5)
        self._threads = []

    def __del__(self) -> None:
        for inbox in getattr(self, "_inbox", ()):
            inbox.put(None)


def _stream(inbox: queue.SimpleQueue, ready: threading.Barrier, report: list[int], k: int) -> None:
    """One stream's thread: single-threaded torch, then jobs from `inbox` until None."""
    use_threads(1)
    report[k] = thread_count()
    ready.wait()
    while True:
        job = inbox.get()
        if job is None:
            return
        forward, faces, mels, reply = job
        try:
            reply.put((True, forward(faces, mels)))
        except BaseException as exc:  # handed to the caller
            reply.put((False, exc))
        del job, forward, faces, mels, reply  # hold nothing between jobs


def default_stream_count(device_type: str) -> int:
    """One stream per intra-op thread on the CPU (the threads torch would use), none elsewhere."""
    if device_type != "cpu":
        return 1
    import torch

    return max(1, torch.get_num_threads())


def thread_count() -> int:
    """The calling thread's torch intra-op thread count."""
    import torch

    return torch.get_num_threads()


def use_threads(count: int) -> None:
    """Set the calling thread's torch intra-op thread count. torch keeps the count per thread, but a new
    thread starts with the count set last anywhere: whoever starts threads that call this restores its own
    count afterwards (as `CpuStreams` does)."""
    import torch

    torch.get_num_threads()  # a thread takes the global count on first use: do that before setting its own
    torch.set_num_threads(max(1, int(count)))


def single_threaded_blas() -> None:
    """numpy's BLAS on one thread from now on, in this process (`render` and `serve` call it).

    Why: the pipeline's numpy matrix work is small (the mel filterbank, colour transforms), and OpenBLAS keeps
    a thread per core that spins after each call. Measured in `serve` (wav2lip96 fp32, 2 cores, 720p): those
    threads took 0.06-0.10 of a core from the network during speech; on one thread, 0.01-0.02."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # a machine without it (a bare GPU host): the pool stays as it is
        return
    threadpool_limits(1, user_api="blas")

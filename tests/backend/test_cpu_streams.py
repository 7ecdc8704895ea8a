"""backend.cpu_streams: a batch split between single-threaded streams, joined back in order."""
import gc
import threading

import numpy as np
import pytest
import torch

from backend.cpu_streams import CpuStreams


def _faces(n: int) -> tuple[np.ndarray, np.ndarray]:
    return np.arange(n, dtype=np.uint8).reshape(n, 1, 1, 1) * np.ones((1, 2, 2, 3), np.uint8), np.zeros((n, 80, 16))


def test_streams_are_single_threaded_and_leave_the_callers_threads_alone():
    torch.set_num_threads(2)
    streams = CpuStreams(2)
    try:
        assert streams.threads_per_stream == [1, 1]
        assert torch.get_num_threads() == 2
        seen = streams.run(lambda f, m: np.full((len(f),), torch.get_num_threads()), *_faces(4))
        assert list(seen) == [1, 1, 1, 1]
        # a thread started now still gets the caller's count (torch's global default was restored)
        started = []
        t = threading.Thread(target=lambda: started.append(torch.get_num_threads()))
        t.start()
        t.join()
        assert started == [2]
    finally:
        streams.close()


def test_even_batch_rounds_up_to_equal_parts():
    streams = CpuStreams(2)
    try:
        assert [streams.even_batch(n) for n in (1, 2, 7, 8)] == [2, 2, 8, 8]
    finally:
        streams.close()


@pytest.mark.parametrize("n,parts", [(8, [4, 4]), (2, [1, 1]), (6, [3, 3])])
def test_batch_split_in_order_and_joined(n, parts):
    streams = CpuStreams(2)
    sizes, names = [], []

    def forward(faces, mels):
        sizes.append(len(faces))
        names.append(threading.current_thread().name)
        return faces + 1

    try:
        faces, mels = _faces(n)
        out = streams.run(forward, faces, mels)
        assert np.array_equal(out, faces + 1)  # every frame's own result, in order
        assert sorted(sizes) == sorted(parts) and all(name.startswith("net-stream") for name in names)
    finally:
        streams.close()


@pytest.mark.parametrize("n", [1, 3])
def test_a_batch_that_does_not_split_evenly_runs_on_the_callers_thread(n):
    streams = CpuStreams(2)
    try:
        names = streams.run(lambda f, m: np.array([threading.current_thread().name] * len(f)), *_faces(n))
        assert list(names) == [threading.current_thread().name] * n
    finally:
        streams.close()


def test_an_error_in_a_stream_reaches_the_caller_and_the_streams_go_on():
    streams = CpuStreams(2)

    def failing(faces, mels):
        if faces[0, 0, 0, 0] >= 2:  # the second half
            raise ValueError("boom")
        return faces

    try:
        with pytest.raises(ValueError, match="boom"):
            streams.run(failing, *_faces(4))
        assert np.array_equal(streams.run(lambda f, m: f, *_faces(4))[:, 0, 0, 0], [0, 1, 2, 3])
    finally:
        streams.close()


def test_threads_end_when_closed_or_dropped():
    def alive():
        return sum(t.name.startswith("net-stream") and t.is_alive() for t in threading.enumerate())

    before = alive()
    streams = CpuStreams(2)
    assert alive() == before + 2
    streams.close()
    assert alive() == before
    streams = CpuStreams(2)
    threads = list(streams._threads)
    del streams
    gc.collect()
    for t in threads:
        t.join(timeout=5)
    assert not any(t.is_alive() for t in threads)


@pytest.mark.slow
def test_wav2lip96_in_streams_matches_one_call(tmp_path):
    from backend.generators.wav2lip import Wav2LipGenerator
    from models.testing import deterministic_state_dict, save_reference_checkpoint

    torch.set_num_threads(2)
    ckpt = save_reference_checkpoint(deterministic_state_dict("wav2lip96"), tmp_path / "g.pth", with_optimizer=False)
    split, whole = Wav2LipGenerator(ckpt, device="cpu", streams=None), Wav2LipGenerator(ckpt, device="cpu")
    assert split.streams is not None and split.streams.count == 2 and whole.streams is None
    rng = np.random.default_rng(0)
    faces = rng.integers(0, 256, (6, 96, 96, 3), dtype=np.uint8)
    mels = rng.uniform(-4, 4, (6, 80, 16)).astype(np.float32)
    diff = np.abs(split.forward(faces, mels).astype(int) - whole.forward(faces, mels))
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3  # another batch size: float rounding only

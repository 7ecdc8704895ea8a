"""serve's batch choice (backend/live/batching.py): measured times per size, the latency budget, the spread."""
from __future__ import annotations

import pytest

from backend.live.batching import BatchChoice, BatchTimes, choose_batch, spread


def lead(render_ns: float, frames: int) -> float:
    return 1.5 * render_ns + 5e6


def test_times_are_measured_per_size_and_estimated_between_or_beyond_them_times_a_running_factor():
    t = BatchTimes([(250e6, 4), (74e6, 1)])
    assert t.estimate(1) == 74e6 and t.estimate(4) == 250e6
    assert t.estimate(2) == pytest.approx(74e6 + 176e6 / 3), "on the line between measured sizes"
    assert t.estimate(8) == pytest.approx(500e6)
    t.update(1, 84e6)
    assert t.estimate(1) == pytest.approx(0.8 * 74e6 + 0.2 * 84e6)
    t.update(1, 1e9)  # a stall moves the mean halfway
    assert t.estimate(1) == pytest.approx(0.5 * (0.8 * 74e6 + 0.2 * 84e6) + 0.5e9)
    assert BatchTimes().estimate(4) == pytest.approx(110e6), "no measurement: 10 ms a call + 25 ms a frame"


def test_calls_of_one_size_rescale_every_size_so_a_size_not_chosen_is_not_stuck_with_an_old_time():
    """int8 on 2 cores: alone, batch 2 is 25 % faster per frame than batch 1. Inside serve everything runs
    ~20 % slower; the calls of batch 1 that show it must not leave batch 2 at its alone time (nor, after one
    slow batch-2 call, at that call's time forever)."""
    t = BatchTimes([(40e6, 1), (64e6, 2)])
    for _ in range(30):
        t.update(1, 48e6)
    assert t.estimate(1) == pytest.approx(48e6, rel=0.01)
    assert t.estimate(2) == pytest.approx(64e6 * 1.2, rel=0.01), "the same slow-down for every size"
    assert choose_batch(t, 2, 1e9, lead).rendered == 2
    t.set(2, 70e6)
    assert t.estimate(2) == pytest.approx(70e6) and t.estimate(1) == pytest.approx(48e6, rel=0.01)


def test_a_slow_cpu_network_renders_one_frame_a_call_within_the_budget():
    """wav2lip96 fp32 on 2 EPYC cores: 13.5 fps at batch 1, 15.9 at 4. Batch 4 is faster per frame but its
    wait for audio + lead (~540 ms) blows the 180 ms budget; batch 1 fits (116 ms)."""
    t = BatchTimes([(74e6, 1), (148e6, 2), (220e6, 3), (252e6, 4)])
    c = choose_batch(t, 4, 180e6, lead)
    assert c == BatchChoice(1, 1, 74e6, pytest.approx(40 / 74))
    big = choose_batch(t, 4, 2e9, lead)  # a generous budget: the fastest per frame, spread over 4 planned
    assert (big.rendered, big.planned) == (4, 4) and big.rate == pytest.approx(160 / 252)


def test_a_fast_network_batches_as_far_as_the_budget_allows_and_renders_every_frame():
    t = BatchTimes([(20e6, 1), (30e6, 2), (40e6, 3), (50e6, 4)])
    c = choose_batch(t, 4, 180e6, lead)  # 4: 120 ms wait + 80 ms lead > 180; 3: 80 + 65 fits
    assert (c.rendered, c.planned, c.rate) == (3, 3, 1.0)
    assert choose_batch(t, 4, 60e6, lead).rendered == 1, "nothing fits: one frame a call"


def test_a_bigger_batch_must_be_worth_its_latency():
    t = BatchTimes([(40e6, 1), (80.5e6, 2)])  # no faster per frame
    assert choose_batch(t, 2, 1e9, lead).rendered == 1


def test_a_batch_below_capacity_is_spread_evenly_over_more_planned_frames():
    t = BatchTimes([(100e6, 1), (140e6, 2)])  # batch 2: 14.3 fps, rate 0.57 -> 2 drawn of 4 planned
    c = choose_batch(t, 4, 1e9, lead)
    assert (c.rendered, c.planned) == (2, 4)
    assert spread(4, c) == {0, 2}
    assert spread(2, c) == {0}, "a stream with fewer frames ready: its share, at least one"
    assert spread(1, c) == {0} and spread(0, c) == set()
    assert spread(3, BatchChoice(3, 3, 1.0, 1.0)) == {0, 1, 2}


def test_frames_already_there_cost_no_wait():
    """A queued file: every frame is there, only the lead counts (against the queued budget, when given); a
    live stream with one frame there waits 40 ms for each further frame of the batch."""
    t = BatchTimes([(61e6, 1), (81e6, 2), (106e6, 3), (125e6, 4)])  # int8 on 2 EPYC cores
    assert choose_batch(t, 4, 170e6, lead, available=1).rendered == 2, "b=2: 40 + 126.5 ms; b=3: 80 + 164"
    assert choose_batch(t, 4, 170e6, lead, available=40).rendered == 3, "no wait: b=3 (lead 164 ms) fits, b=4 (192.5) not"
    queued = choose_batch(t, 4, 170e6, lead, available=40, queued_budget_ns=300e6)
    assert queued.rendered == 4 and queued.rate == 1.0


def test_the_streamed_budget_keeps_a_fast_cpus_int8_within_the_latency_target():
    """int8 on this 2-core Xeon in a fast phase, two calls side by side, as serve measured it (session 13):
    B1 40, B2 65, B3 88 ms a call. At a 200 ms budget batch 3 fitted (wait 80 + lead 110) and streamed at 472-481 ms
    p95; the default budget leaves room for the mel look-ahead and an utterance start's 40-80 ms."""
    from backend.live.pacing import STREAMED_BUDGET_MS, Pacer

    pacer = Pacer([(40e6, 1), (65e6, 2), (88e6, 3), (109e6, 4)], min_lead_ns=12_000_000, max_lead_ns=400_000_000,
                  audio_lead_ns=60_000_000, batch_budget_ns=int(STREAMED_BUDGET_MS * 1e6))
    pacer.workers = 2
    c = pacer.batch(4, live=True, available=1)
    assert c.rendered == 2
    assert 212.5 + (pacer.wait(c, True) + pacer.lead_for(c.render_ns, c.rendered)) / 1e6 + 70 <= 450
    assert STREAMED_BUDGET_MS + 212.5 + 70 <= 450


def test_a_renderer_with_ample_capacity_renders_one_frame_a_call():
    """The mouth engine or the null generator: bigger batches are still faster per frame, but at many times the
    clock's rate the only thing they change is a live stream's wait for audio (40 ms a frame)."""
    t = BatchTimes([(2e6, 1), (3e6, 2), (4e6, 3), (5e6, 4)])  # 500 fps at batch 1 (two workers)
    assert choose_batch(t, 4, 160e6, lead, parallel=2).rendered == 1
    assert choose_batch(t, 4, 160e6, lead, parallel=2, available=40).rendered == 4, "queued audio: no wait"
    t = BatchTimes([(40e6, 1), (65e6, 2)])  # int8 on 2 cores: 2x the clock, batch 2 still saves a fifth of the CPU
    assert choose_batch(t, 4, 160e6, lead, parallel=2).rendered == 2

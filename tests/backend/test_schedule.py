import pytest

from backend.idle_walk import ScheduleWalk
from backend.schedule import forward_index, pingpong_index, schedule


def test_pingpong_walk_has_no_repeat_at_the_turns():
    assert schedule(12, 4) == [0, 1, 2, 3, 2, 1, 0, 1, 2, 3, 2, 1]
    walk = schedule(200, 7)
    assert all(a != b for a, b in zip(walk, walk[1:]))
    assert all(abs(a - b) == 1 for a, b in zip(walk, walk[1:]))


def test_single_and_two_frame_avatars():
    assert schedule(5, 1) == [0] * 5
    assert schedule(5, 2) == [0, 1, 0, 1, 0]


def test_start_frame_and_forward_loop():
    assert schedule(6, 4, start=2) == [2, 3, 2, 1, 0, 1]
    assert schedule(6, 4, start=2, loop="forward") == [2, 3, 0, 1, 2, 3]
    assert forward_index(5, 3) == 2 and pingpong_index(0, 5, start=7) == 2


def test_cursor_continues_the_walk():
    c = ScheduleWalk(3)
    assert [c.next() for _ in range(6)] == schedule(6, 3)
    assert c.peek() == schedule(7, 3)[6]


def test_bad_inputs():
    with pytest.raises(ValueError):
        schedule(3, 0)
    with pytest.raises(ValueError):
        ScheduleWalk(3, loop="sideways")

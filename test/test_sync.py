"""ApproximateTimeSync: the message_filters approximate-time semantics, plus drop counts."""
from types import SimpleNamespace

import pytest

from movseg_ros.sync import ApproximateTimeSync, JumpBack, clear_queues


def msg(t: float, tag: str = ""):
    sec = int(t)
    stamp = SimpleNamespace(sec=sec, nanosec=int(round((t - sec) * 1e9)))
    return SimpleNamespace(header=SimpleNamespace(stamp=stamp), tag=tag)


def collect(n=3, queue=5, slop=0.01):
    out = []
    return ApproximateTimeSync(n, queue, slop, lambda *m: out.append(tuple(x.tag for x in m))), out


def test_emits_once_all_inputs_arrive_within_slop():
    sync, out = collect()
    sync.add(0, msg(1.000, "c1"))
    sync.add(1, msg(1.004, "d1"))
    assert out == []
    sync.add(2, msg(1.000, "i1"))
    assert out == [("c1", "d1", "i1")]
    assert all(not q for q in sync.queues)  # matched messages leave the queues


def test_no_match_beyond_slop():
    sync, out = collect(slop=0.01)
    sync.add(0, msg(1.0, "c"))
    sync.add(1, msg(1.05, "d"))
    sync.add(2, msg(1.0, "i"))
    assert out == []


def test_picks_closest_partner_when_several_are_queued():
    sync, out = collect(n=2, slop=0.02)
    sync.add(1, msg(0.985, "far"))
    sync.add(1, msg(0.999, "near"))
    sync.add(0, msg(1.000, "c"))
    assert out == [("c", "near")]
    assert list(sync.queues[1]) == [pytest.approx(0.985)]  # the unmatched one stays until evicted


def test_full_queue_evicts_oldest_and_counts_it():
    sync, out = collect(n=2, queue=2)
    for t in (1.0, 2.0, 3.0):
        sync.add(0, msg(t, f"c{t}"))
    assert sync.evicted == 1 and sorted(sync.queues[0]) == [2.0, 3.0]
    sync.add(1, msg(3.0, "d3"))
    assert out == [("c3.0", "d3")]


def test_duplicate_stamp_on_one_input_is_counted_and_replaced():
    sync, out = collect(n=2)
    sync.add(0, msg(1.0, "first"))
    sync.add(0, msg(1.0, "second"))
    assert sync.replaced == 1
    sync.add(1, msg(1.0, "d"))
    assert out == [("second", "d")]


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="synchroniser"):
        ApproximateTimeSync(1, 5, 0.1, print)


def test_stamps_that_jump_back_stall_a_full_queue_until_it_is_cleared():
    """Leftovers of the old stream fill a queue: the new (older) stream's messages are the oldest
    there and are evicted at once, so nothing matches again; clearing the queues ends the stall."""
    sync, out = collect(n=2, queue=3, slop=0.01)
    for t in (100.0, 100.1, 100.2):
        sync.add(0, msg(t, "old"))  # colour arrived, depth lost
    sync.add(0, msg(90.0, "c"))
    sync.add(1, msg(90.0, "d"))
    assert out == []
    clear_queues(sync)
    sync.add(0, msg(90.1, "c"))
    sync.add(1, msg(90.1, "d"))
    assert out == [("c", "d")]


@pytest.mark.parametrize("stamps, new_stream_at", [
    ([10.0, 10.1, 10.2, 0.0, 0.1], {3: pytest.approx(10.2)}),  # 10 s back: a new stream, once
    ([10.0, 10.1, 10.05, 10.1, 9.5], {}),                      # reordering, duplicate, 0.6 s back: not
    ([10.0, 10.0, 8.9, 8.9, 9.0], {2: pytest.approx(1.1)}),    # all inputs of the new stream: one reset
])
def test_jump_back_tells_a_new_stream_from_a_reordering(stamps, new_stream_at):
    watch = JumpBack(1.0)
    assert {i: j for i, t in enumerate(stamps) if (j := watch.check(t)) is not None} == new_stream_at
    never = JumpBack(0.0)  # reset_jump_s 0: never a new stream
    assert [never.check(t) for t in (5.0, 0.0)] == [None, None]

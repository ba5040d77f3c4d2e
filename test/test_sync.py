"""ApproximateTimeSync: the message_filters approximate-time semantics, plus drop counts."""
from types import SimpleNamespace

import pytest

from movseg_ros.sync import ApproximateTimeSync


def msg(t: float, tag: str = ""):
    sec = int(t)
    return SimpleNamespace(header=SimpleNamespace(stamp=SimpleNamespace(sec=sec, nanosec=int(round((t - sec) * 1e9)))), tag=tag)


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

"""movseg_ros.executor: the executor the node spins on, from the ``executor`` parameter."""
from __future__ import annotations

import pytest

from movseg_ros.executor import check_executor, events_executor_available, make_executor


def test_known_executors_are_accepted_unknown_or_missing_ones_refused_clearly():
    assert check_executor("single_threaded", available=False) == "single_threaded"
    assert check_executor("events", available=True) == "events"
    with pytest.raises(ValueError, match="needs rclpy.experimental.EventsExecutor"):
        check_executor("events", available=False)  # Humble's rclpy
    with pytest.raises(ValueError, match="unknown executor 'multi'"):
        check_executor("multi")


def test_this_install_builds_the_executor_asked_for():
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    ctx = rclpy.context.Context()
    rclpy.init(context=ctx)
    try:
        assert isinstance(make_executor("single_threaded", ctx), SingleThreadedExecutor)
        if events_executor_available():
            ex = make_executor("events", ctx)
            assert type(ex).__name__ == "EventsExecutor"
            ex.shutdown()
    finally:
        rclpy.shutdown(context=ctx)

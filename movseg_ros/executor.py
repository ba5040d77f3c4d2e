"""The executor that runs movseg_node's callbacks (parameter ``executor``).

``single_threaded`` (default): rclpy's SingleThreadedExecutor, which rebuilds its wait set in
Python for every message it takes (three per RGB-D frame). ``events``: rclpy.experimental.EventsExecutor
(ROS 2 Jazzy and newer), which queues the middleware's events in C++ and runs only the callbacks.
Measured side by side (docs/node.md, "Executor parameter"): the events executor saves 0.6-1.7 ms of
CPU a frame and ~0.5 ms of input age; rate and latency differ less between the executors than between
rounds on these 2 cores, so it is not the default. Its early releases could not run async service
callbacks (ros2/rclpy#1473, fixed by #1478), which /set_queries is: test_node_executor.py checks it
on this rclpy.
"""
from __future__ import annotations

EXECUTORS = ("single_threaded", "events")


def events_executor_available() -> bool:
    """Whether this rclpy has ``rclpy.experimental.EventsExecutor``."""
    import importlib

    try:  # rclpy.experimental exists from Jazzy; Humble has neither
        return hasattr(importlib.import_module("rclpy.experimental"), "EventsExecutor")
    except ImportError:
        return False


def check_executor(kind: str, available: bool | None = None) -> str:
    """``kind`` when this install can make it (``available``: has the EventsExecutor; default: this
    rclpy's); ValueError naming the choices or the missing executor otherwise."""
    if kind not in EXECUTORS:
        raise ValueError(f"unknown executor '{kind}' (expected one of {EXECUTORS})")
    if kind == "events" and not (events_executor_available() if available is None else available):
        raise ValueError("executor 'events' needs rclpy.experimental.EventsExecutor (ROS 2 Jazzy or newer); "
                         "set executor: single_threaded")
    return kind


def make_executor(kind: str, context=None):  # noqa: ANN001, ANN201  (rclpy Context, executor)
    """A new executor of a kind :func:`check_executor` accepted, on ``context`` (default: rclpy's)."""
    if check_executor(kind) == "events":
        from rclpy.experimental import EventsExecutor

        return EventsExecutor(context=context)
    from rclpy.executors import SingleThreadedExecutor

    return SingleThreadedExecutor(context=context)

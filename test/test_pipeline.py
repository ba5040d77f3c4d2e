"""movseg_ros.pipeline.PublishStage, the node's publisher stage: order, bound, errors, shutdown."""
from __future__ import annotations

import threading
import time

import pytest

from movseg_ros.pipeline import PublishStage, PublishStageClosed


def test_items_are_handled_in_order_on_another_thread_and_close_handles_them_all():
    seen, threads = [], set()

    def handle(i):
        time.sleep(0.002 * (i % 3))
        threads.add(threading.current_thread().name)
        seen.append(i)

    stage = PublishStage(handle, on_error=pytest.fail, depth=2)
    for i in range(50):
        stage.submit(i)
    assert stage.close(10)
    assert seen == list(range(50))
    assert threads == {"movseg-publisher"}


def _stuck_stage(wait_s: float):
    """A depth-1 stage whose publisher is inside ``handle(0)`` until the returned gate is set."""
    gate, started = threading.Event(), threading.Event()

    def handle(i):
        started.set()
        gate.wait(wait_s)

    stage = PublishStage(handle, on_error=pytest.fail, depth=1)
    stage.submit(0)
    assert started.wait(5)
    return stage, gate


def test_submit_blocks_while_depth_items_wait_so_memory_is_bounded():
    """One item being handled plus ``depth`` waiting: the next submit waits for the publisher."""
    stage, gate = _stuck_stage(10)
    assert stage.submit(1) < 0.5  # the one waiting place
    blocked = threading.Thread(target=stage.submit, args=(2,))
    blocked.start()
    blocked.join(0.3)
    assert blocked.is_alive(), "a third result was queued while one was handled and one waited"
    assert stage.pending() == 1
    gate.set()
    blocked.join(5)
    assert not blocked.is_alive() and stage.close(5)


def test_an_error_is_reported_and_the_stage_goes_on():
    seen, errors = [], []

    def handle(i):
        if i == 1:
            raise RuntimeError("bad frame")
        seen.append(i)

    stage = PublishStage(handle, on_error=errors.append)
    for i in range(3):
        stage.submit(i)
    assert stage.close(5)
    assert seen == [0, 2] and [str(e) for e in errors] == ["bad frame"]


def test_close_gives_up_after_its_timeout_when_the_publisher_is_stuck_and_later_submits_are_refused():
    """A publisher stuck in ``handle`` with the queue full: close() returns False within its timeout instead
    of hanging the node's shutdown, and a frame submitted afterwards is refused (counted by the node)."""
    stage, gate = _stuck_stage(30)
    stage.submit(1)  # waits in the full queue
    result = []
    closer = threading.Thread(target=lambda: result.append(stage.close(timeout_s=0.5)), daemon=True)
    t0 = time.monotonic()
    closer.start()
    closer.join(5)
    assert not closer.is_alive() and result == [False] and time.monotonic() - t0 < 3
    with pytest.raises(PublishStageClosed):
        stage.submit(2)
    gate.set()

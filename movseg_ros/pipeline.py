"""The node's second stage: results handed from the inference worker to a publisher thread, in order, bounded.

With it the node publishes frame t (messages, overlay, point cloud) while frame t+1 is inferred.
No rclpy import here (the node passes its publishing function), so the hand-off is tested on its own.

- **Order**: one publisher thread takes results first in, first out: outputs leave in the order the
  worker finished them, which is stamp order (the worker takes frames in stamp order).
- **Bounded**: at most ``depth`` results wait; :meth:`PublishStage.submit` blocks while the queue is
  full, so a slow publisher holds the worker back (backpressure) and newer camera frames replace the
  one waiting in the node's input slot, where they are counted (``drop_busy``); nothing is dropped here.
- **Errors**: an exception while handling one result goes to ``on_error`` and the stage goes on.
- **Shutdown**: :meth:`PublishStage.close` handles everything submitted before it, then ends the thread.
"""
from __future__ import annotations

import queue
import threading
import time
from typing import Any, Callable

_STOP = object()


class PublishStageClosed(RuntimeError):
    """An item submitted after :meth:`PublishStage.close` (the node counts it as a shutdown drop)."""


class PublishStage:
    """A thread that calls ``handle(item)`` for each submitted item in order; at most ``depth`` wait."""

    def __init__(self, handle: Callable[[Any], None], on_error: Callable[[Exception], None], depth: int = 1,
                 name: str = "movseg-publisher"):
        if depth < 1:
            raise ValueError(f"publish queue depth must be >= 1, got {depth}")
        self._handle, self._on_error = handle, on_error
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, item: Any) -> float:
        """Queue ``item`` for handling (blocks while ``depth`` items wait); returns the seconds it waited."""
        if self._closed:
            raise PublishStageClosed("the publisher stage is closed (shutting down)")
        t0 = time.monotonic()
        self._queue.put(item)
        return time.monotonic() - t0

    def pending(self) -> int:
        """Items submitted and not yet taken by the publisher thread."""
        return self._queue.qsize()

    def close(self, timeout_s: float = 30.0) -> bool:
        """Handle what was submitted, then stop the thread; False when it did not finish within ``timeout_s``
        (a publisher stuck in ``handle`` with the queue full does not hang the caller). Later submits raise
        :class:`PublishStageClosed`."""
        self._closed = True
        deadline = time.monotonic() + timeout_s
        if self._thread.is_alive():
            try:
                self._queue.put(_STOP, timeout=timeout_s)
            except queue.Full:
                return False
        self._thread.join(timeout=max(0.0, deadline - time.monotonic()))
        return not self._thread.is_alive()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            try:
                self._handle(item)
            except Exception as exc:  # noqa: BLE001  (one bad result must not stop the stage)
                self._on_error(exc)

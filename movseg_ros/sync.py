"""Approximate-time synchronisation of several message streams.

Same semantics as ROS 2 ``message_filters.ApproximateTimeSynchronizer`` (Python):
each input keeps a queue of at most ``queue_size`` messages keyed by stamp; when a
message arrives, the closest messages of the other inputs within ``slop`` seconds
are searched, and the first combination whose stamps span less than ``slop`` is
emitted and removed from the queues. Used where ROS 2 ``message_filters`` is not
installed (the pip-only stack); on a real ROS 2 install the node uses
``message_filters`` itself. Unlike ``message_filters`` this one counts what it
evicts, so the node can report drops.

Both keep their queues across a jump of the stamps back in time (``ros2 bag play --loop``, a
simulation clock reset, a restarted driver): the new stream's messages are older than the queued
ones and are evicted first. :func:`make_synchronizer` therefore watches every input's stamps
(:class:`JumpBack`) and clears the queues (:func:`clear_queues`) when a stream starts again.
"""
from __future__ import annotations

import itertools
import threading
from typing import Any, Callable


def stamp_seconds(msg: Any) -> float:
    """Header stamp of ``msg`` in seconds (float)."""
    s = msg.header.stamp
    return s.sec + s.nanosec * 1e-9


class ApproximateTimeSync:
    """Feed messages with ``add(index, msg)``; ``callback(*msgs)`` gets matched tuples."""

    def __init__(self, n_inputs: int, queue_size: int, slop: float, callback: Callable[..., None]):
        if n_inputs < 2 or queue_size < 1 or slop < 0:
            raise ValueError(f"bad synchroniser settings: inputs={n_inputs}, queue={queue_size}, slop={slop}")
        self.queue_size = queue_size
        self.slop = slop
        self.callback = callback
        self.queues: list[dict[float, Any]] = [{} for _ in range(n_inputs)]
        self.evicted = 0       # messages pushed out of a full queue before they matched
        self.replaced = 0      # messages whose stamp was already queued on that input (duplicates)
        self._lock = threading.Lock()

    def clear(self) -> None:
        """Forget every queued message (a new stream begins)."""
        with self._lock:
            for queue in self.queues:
                queue.clear()

    def add(self, index: int, msg: Any) -> None:
        """Queue ``msg`` on input ``index``; if that completes a match, call ``callback`` (outside the lock)."""
        t = stamp_seconds(msg)
        with self._lock:
            queue = self.queues[index]
            if t in queue:
                self.replaced += 1
            queue[t] = msg
            while len(queue) > self.queue_size:
                del queue[min(queue)]
                self.evicted += 1
            match = self._find(index, t)
            if match is None:
                return
            msgs = [self.queues[i].pop(s) for i, s in enumerate(match)]
        self.callback(*msgs)

    def _find(self, index: int, t: float) -> list[float] | None:
        candidates = []
        for i, queue in enumerate(self.queues):
            if i == index:
                candidates.append([t])
                continue
            near = sorted((abs(s - t), s) for s in queue if abs(s - t) <= self.slop)
            if not near:
                return None
            candidates.append([s for _, s in near])
        for combo in itertools.product(*candidates):  # closest-first order
            if max(combo) - min(combo) <= self.slop:
                return list(combo)
        return None


class JumpBack:
    """Tells a new stream from a reordering: a stamp more than ``jump_s`` seconds older than the
    newest stamp seen on any input starts a new stream (0 = never).

    Smaller steps back (reordered or duplicated messages) are left to the consumer to drop.
    """

    def __init__(self, jump_s: float):
        self.jump_s = float(jump_s)
        self.newest: float | None = None

    def check(self, t: float) -> float | None:
        """Record stamp ``t`` (seconds); returns how far it jumped back when it starts a new stream, else None."""
        if self.newest is not None and self.jump_s > 0 and t < self.newest - self.jump_s:
            jump, self.newest = self.newest - t, t
            return jump
        self.newest = t if self.newest is None else max(self.newest, t)
        return None


def clear_queues(sync) -> None:
    """Empty the queues of an :class:`ApproximateTimeSync` or a ROS 2 ``message_filters``
    synchroniser (its ``queues`` dicts under its ``lock``, cleared in place: its inputs hold them)."""
    if isinstance(sync, ApproximateTimeSync):
        return sync.clear()
    with sync.lock:
        for queue in sync.queues:
            queue.clear()


def make_synchronizer(node, subscribers_spec, queue_size: int, slop: float, callback, qos, received: list[int],
                      reset_jump_s: float = 0.0, on_new_stream: Callable[[float, float], None] | None = None):
    """Subscribe and synchronise; returns (sync, how).

    ``subscribers_spec``: list of (msg_type, topic). Uses ROS 2 ``message_filters``
    when installed, else :class:`ApproximateTimeSync` with the same semantics.
    ``how`` is "message_filters" or "builtin" (logged by the node). ``received[i]`` counts the
    messages that arrived on input i (so the node can say which input is missing).
    A message stamped more than ``reset_jump_s`` seconds before the newest one seen (0 = never)
    clears the synchroniser's queues before it is queued, then ``on_new_stream(jump_s, stamp_s)``
    is called (the node resets its own stamp state).
    """
    watch = JumpBack(reset_jump_s)
    sync = None

    def counted(i: int, then=None):
        def on_message(msg):
            received[i] += 1
            t = stamp_seconds(msg)
            jump = watch.check(t)
            if jump is not None:
                clear_queues(sync)
                if on_new_stream is not None:
                    on_new_stream(jump, t)
            if then is not None:
                then(i, msg)
        return on_message

    try:
        import message_filters  # real ROS 2 install
        if not hasattr(message_filters, "ApproximateTimeSynchronizer"):
            raise ImportError("not ROS 2 message_filters")
    except ImportError:
        sync = ApproximateTimeSync(len(subscribers_spec), queue_size, slop, callback)
        subs = [node.create_subscription(mt, topic, counted(i, sync.add), qos)
                for i, (mt, topic) in enumerate(subscribers_spec)]
        sync.subscriptions = subs
        return sync, "builtin"
    subs = [message_filters.Subscriber(node, mt, topic, qos_profile=qos) for mt, topic in subscribers_spec]
    for i, sub in enumerate(subs):
        sub.registerCallback(counted(i))  # registered first: runs before the synchroniser queues the message
    sync = message_filters.ApproximateTimeSynchronizer(subs, queue_size, slop)
    sync.registerCallback(callback)
    sync.subscriptions = subs
    return sync, "message_filters"

"""The one SetQueries client (:func:`call_set_queries`) and `movseg set-queries`, its shell form.

``movseg set-queries chair table`` sends the same request as ``ros2 service call /set_queries
movseg_ros/srv/SetQueries "{queries: [chair, table]}"`` on a real ROS 2 install (ros2cli is not on
the pip-only stack). Exit codes: 0 the node took the queries, 1 it refused them (the message says
why; its vocabulary is unchanged), 3 no service or no answer in time.
"""
from __future__ import annotations

import argparse
import sys
import time

from movseg_ros import topics


def call_set_queries(client, queries: list[str], service_timeout_s: float = 30.0, answer_timeout_s: float = 120.0,
                     executor=None):
    """Send ``queries`` through ``client`` (``node.create_client(SetQueries, topics.SET_QUERIES)``) and
    return the response (``success`` False: refused, ``message`` says why, vocabulary unchanged).

    Waits up to ``service_timeout_s`` for the service, then up to ``answer_timeout_s`` for the answer
    (the node answers once the new vocabulary is encoded: seconds for a large one on a CPU).
    executor: spun here while waiting; None when another thread spins the client's node.
    Raises TimeoutError when there is no service or no answer in time.
    """
    from movseg_ros.srv import SetQueries

    if not client.service_is_ready() and not client.wait_for_service(timeout_sec=service_timeout_s):
        raise TimeoutError(f"no {client.srv_name} service after {service_timeout_s:.0f} s: is movseg_node running "
                           "(same ROS_DOMAIN_ID and ROS_AUTOMATIC_DISCOVERY_RANGE)?")
    future = client.call_async(SetQueries.Request(queries=list(queries)))
    deadline = time.monotonic() + answer_timeout_s
    while not future.done() and time.monotonic() < deadline:
        if executor is not None:
            executor.spin_once(timeout_sec=0.02)
        else:
            time.sleep(0.01)
    if not future.done():
        client.remove_pending_request(future)
        raise TimeoutError(f"{client.srv_name} did not answer within {answer_timeout_s:.0f} s")
    return future.result()


def register(sub) -> None:
    """Add `movseg set-queries` to the `movseg` subcommands."""
    p = sub.add_parser("set-queries", help="set the node's vocabulary through the set_queries service")
    p.add_argument("queries", nargs="*", help="text queries, label ids 1..N in this order")
    p.add_argument("--service", default=topics.SET_QUERIES)
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the service, and for its answer")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from movseg_ros.srv import SetQueries

    rclpy.init()
    node = rclpy.create_node("movseg_set_queries")
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:  # TimeoutError (no answer): exit 3 with the message on stderr (movseg_ros.cli)
        resp = call_set_queries(node.create_client(SetQueries, args.service), args.queries, args.timeout, args.timeout,
                                executor)
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    ids = ", ".join(f"{i}={n}" for i, n in zip(resp.ids, resp.names))
    line = f"{'ok' if resp.success else 'refused'}: {resp.message} (v{resp.vocabulary_version}: {ids})"
    print(line, file=sys.stdout if resp.success else sys.stderr)
    return 0 if resp.success else 1

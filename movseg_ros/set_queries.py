"""`movseg set-queries`: call the node's set_queries service from the shell.

The same request as ``ros2 service call /set_queries movseg_ros/srv/SetQueries
"{queries: [chair, table]}"`` on a real ROS 2 install (ros2cli is not on the
pip-only stack).
"""
from __future__ import annotations

import argparse
import sys


def call_set_queries(queries: list[str], service: str = "/set_queries", timeout_s: float = 30.0):
    """Call the service over DDS; returns the response. TimeoutError if no server answers."""
    import rclpy

    from movseg_ros.srv import SetQueries

    rclpy.init()
    node = rclpy.create_node("movseg_set_queries")
    try:
        client = node.create_client(SetQueries, service)
        if not client.wait_for_service(timeout_sec=timeout_s):
            raise TimeoutError(f"no {service} service after {timeout_s:.0f} s: is movseg_node running "
                               "(same ROS_DOMAIN_ID and ROS_AUTOMATIC_DISCOVERY_RANGE)?")
        future = client.call_async(SetQueries.Request(queries=list(queries)))
        rclpy.spin_until_future_complete(node, future, timeout_sec=timeout_s)
        if not future.done():
            raise TimeoutError(f"{service} did not answer within {timeout_s:.0f} s")
        return future.result()
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


def register(sub) -> None:
    p = sub.add_parser("set-queries", help="set the node's vocabulary through the set_queries service")
    p.add_argument("queries", nargs="*", help="text queries, label ids 1..N in this order")
    p.add_argument("--service", default="/set_queries")
    p.add_argument("--timeout", type=float, default=30.0)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    try:
        resp = call_set_queries(args.queries, args.service, args.timeout)
    except TimeoutError as exc:
        print(f"set-queries: {exc}", file=sys.stderr)
        return 3
    ids = ", ".join(f"{i}={n}" for i, n in zip(resp.ids, resp.names))
    print(f"{'ok' if resp.success else 'refused'}: {resp.message} (v{resp.vocabulary_version}: {ids})")
    return 0 if resp.success else 1

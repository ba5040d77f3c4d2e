"""`movseg run`: start movseg_node as `ros2 launch movseg_ros segment.launch.py` would.

For the pip-only stack, where the ``launch`` package cannot be installed: same
launch arguments, same parameters YAML, same remappings (both come from
``movseg_ros.launch_config``). The node runs in this process.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys

from movseg_ros.launch_config import LAUNCH_ARGUMENTS, node_arguments

log = logging.getLogger("movseg.run")


def register(sub) -> None:
    p = sub.add_parser("run", help="start movseg_node with the launch file's arguments (no `ros2 launch` needed)")
    for name, (default, doc) in LAUNCH_ARGUMENTS.items():
        p.add_argument(f"--{name.replace('_', '-')}", dest=name, default=default, help=doc)
    p.add_argument("--print", action="store_true", help="print the node command line and exit")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    ros_args = node_arguments({k: getattr(args, k) for k in LAUNCH_ARGUMENTS})
    if args.print:
        print("movseg_node " + " ".join(ros_args))
        return 0
    log.info("movseg_node %s (ROS_AUTOMATIC_DISCOVERY_RANGE=%s)", " ".join(ros_args),
             os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE"))
    from movseg_ros.node import main

    return main([sys.argv[0], *ros_args])

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

from movseg_ros.launch_config import LAUNCH_ARGUMENTS, default_config_path, node_arguments, node_fqn

log = logging.getLogger("movseg.run")


def register(sub) -> None:
    """Add `movseg run` to the `movseg` subcommands."""
    p = sub.add_parser("run", help="start movseg_node with the launch file's arguments (no `ros2 launch` needed)")
    for name, (default, doc) in LAUNCH_ARGUMENTS.items():
        p.add_argument(f"--{name.replace('_', '-')}", dest=name, default=default, help=doc)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="set a node parameter over the YAML, e.g. --set depth.max_m=4.0 (repeatable; -p NAME:=VALUE)")
    p.add_argument("--print", action="store_true", help="print the node command line and exit")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from movseg_core.config import parse_overrides
    from movseg_ros.params import load_node_params  # imports torch: not at `movseg --help` time

    values = {k: getattr(args, k) for k in LAUNCH_ARGUMENTS}
    try:  # what the node would ignore or refuse (unknown names, wrong types, a YAML without its entry): now
        overrides = parse_overrides(args.set)
        load_node_params(values["config"] or default_config_path(), overrides, node_fqn=node_fqn(values["namespace"]))
    except ValueError as exc:
        print(f"movseg run: error: {exc}", file=sys.stderr)
        return 2
    ros_args = node_arguments(values, overrides)
    if args.print:
        print("movseg_node " + " ".join(ros_args))
        return 0
    log.info("movseg_node %s (ROS_AUTOMATIC_DISCOVERY_RANGE=%s)", " ".join(ros_args),
             os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE"))
    from movseg_ros.node import main

    return main([sys.argv[0], *ros_args])

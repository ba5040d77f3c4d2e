"""`movseg` command-line tool: one entry point, one module per subcommand.

Each subcommand module exposes ``register(subparsers)`` which adds its parser and
sets ``func`` (called with the parsed namespace, returns an exit code). Modules
are imported only when listed here, so a missing optional dependency of one
tool does not break the others.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

#: subcommand modules, in help order
SUBCOMMAND_MODULES = (
    "movseg_ros.runner",       # run: start the node with a params YAML (what the launch file does)
    "movseg_ros.set_queries",  # set-queries: call /set_queries over DDS
    "movseg_ros.player",       # play: publish RGB-D frames as a camera would
    "movseg_ros.bag",          # nyu2bag: NYUv2 -> rosbag2
    "movseg_ros.replay_eval",  # eval: replay a bag through the node (or offline) and score
    "movseg_ros.train_cli",    # train / export: the MOVSeg trained path
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="movseg", description="MOVSeg-ROS tools")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # that tool is not part of this install
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    # DDS stays on this machine unless the user chose otherwise (REP 2005 range variable).
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())

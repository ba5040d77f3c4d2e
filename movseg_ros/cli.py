"""`movseg` command-line tool: one entry point, one module per subcommand.

Each subcommand module exposes ``register(subparsers)`` which adds its parser and
sets ``func`` (called with the parsed namespace, returns an exit code). Modules
are imported only when listed here, so a missing optional dependency of one
tool does not break the others. :func:`main` is the only entry point (console script
``movseg``, ``python -m movseg_ros.cli``): it turns ValueError / FileNotFoundError into exit
code 2 and TimeoutError into 3, with the message on stderr (:data:`EPILOG`).
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

#: exit codes of every subcommand (also in README and `movseg --help`)
EXIT_OK = 0          # done (report written, node stopped cleanly, vocabulary set, ...)
EXIT_FAILED = 1      # refused or failed while running (the node refused the queries; node start-up error)
EXIT_BAD_INPUT = 2   # bad arguments or input: usage, unknown config key, wrong value, unreadable bag/dataset
EXIT_NO_ANSWER = 3   # the node is absent or did not answer in time (eval --bag, set-queries)

EPILOG = """exit codes (every command):
  0  done
  1  refused or failed while running (e.g. the node refused the queries, node start-up error)
  2  bad arguments or input (usage, unknown config key or wrong value, unreadable bag or data set)
  3  the node is absent or did not answer in time (eval --bag, set-queries)
Errors and warnings go to stderr; results (report paths, scores, command lines) to stdout."""

#: subcommand modules, in help order
SUBCOMMAND_MODULES = (
    "movseg_ros.runner",       # run: start the node with a params YAML (what the launch file does)
    "movseg_ros.set_queries",  # set-queries: call /set_queries over DDS
    "movseg_ros.player",       # play: publish RGB-D frames as a camera would
    "movseg_ros.bag",          # nyu2bag: NYUv2 -> rosbag2
    "movseg_ros.folder_cli",   # nyu2folder: the NYUv2 labeled .mat -> a folder of PNGs (bench/proposals.py --data)
    "movseg_ros.eval_cli",     # eval: replay a bag through the node (or offline) and score
    "movseg_ros.train_cli",    # train / export: the MOVSeg trained path
    "movseg_ros.export_cli",   # export-onnx: the CLIP encoders for segmenter.backend onnxruntime / openvino
)


def add_command(subparsers, name: str, help: str, doc: str | None) -> argparse.ArgumentParser:
    """A subcommand's parser; its ``--help`` shows the module docstring ``doc`` as written."""
    return subparsers.add_parser(name, help=help, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)


def add_node_params_arguments(parser, example: str) -> None:
    """``--config YAML`` and repeatable ``--set KEY=VALUE``: the node's parameters, read as the node reads them
    (:func:`movseg_ros.params.load_node_params`). ``example``: a KEY=VALUE for the help text."""
    parser.add_argument("--config", help="the node's parameters YAML (default config/segment.yaml)")
    parser.add_argument("--set", "--param", dest="set", action="append", default=[], metavar="KEY=VALUE",
                        help=f"override a node parameter as -p would, e.g. {example} (repeatable)")


def build_parser() -> argparse.ArgumentParser:
    """The `movseg` parser with every subcommand registered."""
    parser = argparse.ArgumentParser(prog="movseg", description="MOVSeg-ROS tools", epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
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
    """Run one `movseg` subcommand; returns its exit code (see the epilog)."""
    # DDS stays on this machine unless the user chose otherwise (REP 2005 range variable).
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return EXIT_BAD_INPUT
    try:
        return int(args.func(args) or EXIT_OK)
    except TimeoutError as exc:  # incl. replay's NodeNotAnswering
        print(f"movseg {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_NO_ANSWER
    except (ValueError, FileNotFoundError) as exc:
        print(f"movseg {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())

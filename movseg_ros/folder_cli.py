"""``movseg nyu2folder MAT OUT``: the official NYUv2 labeled .mat as a folder in the bundled layout.

What ``bench/proposals.py --data OUT`` (RGB-only vs RGB-D proposals on the 654 test frames, filled and
raw depth), ``movseg eval --offline OUT`` and ``movseg nyu2bag OUT`` read. Needs classMapping40.mat
(894 -> 40 classes) and, for ``--split train|test``, splits.mat (both from the NYUv2 toolbox or
nyuv2-meta-data). About 0.85 MB and 30 ms a frame (the bundled frames written into a .mat and exported,
2026-12-03): some 1.2 GB and a minute for the 1449 frames, plus reading the 2.8 GB file.

    movseg nyu2folder nyu_depth_v2_labeled.mat out/nyuv2_test --class-mapping classMapping40.mat \\
        --split test --splits splits.mat
    python bench/proposals.py --data out/nyuv2_test
"""
from __future__ import annotations

import argparse
import logging

from movseg_ros.cli import add_command


def _run(args: argparse.Namespace) -> int:
    from movseg_core.data.nyuv2_mat import export_folder

    # bad input (ValueError) ends in movseg_ros.cli.main: message on stderr, exit code 2
    summary = export_folder(args.mat, args.class_mapping, args.out, args.split, args.splits, args.limit)
    if not summary["raw"]:
        logging.getLogger("movseg.nyu2folder").warning("%s has no rawDepths: depth_raw/ not written", args.mat)
    print(f"wrote {summary['frames']} frames to {summary['out']} ({', '.join(summary['folders'])})")
    return 0


def register(subparsers) -> argparse.ArgumentParser:
    """Add ``nyu2folder MAT OUT`` to a CLI; the parser's ``func(args)`` returns the exit code."""
    p = add_command(subparsers, "nyu2folder", "write the NYUv2 labeled .mat as a folder of PNGs", __doc__)
    p.add_argument("mat", help="nyu_depth_v2_labeled.mat (MATLAB v7.3)")
    p.add_argument("out", help="output folder (must not hold frames yet)")
    p.add_argument("--class-mapping", required=True, help="classMapping40.mat (894 -> 40 classes)")
    p.add_argument("--split", choices=("all", "train", "test"), default="all")
    p.add_argument("--splits", help="splits.mat (trainNdxs/testNdxs) for --split train|test")
    p.add_argument("--limit", type=int, default=0, help="write at most N frames (0 = all)")
    p.set_defaults(func=_run)
    return p

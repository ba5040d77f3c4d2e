#!/usr/bin/env python3
"""Point the ROS 2 pip wheels' CMake exports at this venv's Python and numpy headers.

The Kilted generator wheels hard-code the wheel builder's include directories
(/opt/python/cp311-cp311/...) in their ``*_generator_pyExport.cmake`` files, so
rosidl's Python typesupport would not compile against this interpreter.
Idempotent: rewrites only files that still name the builder's paths.

Usage: fix_ros_wheels.py VENV
"""
from __future__ import annotations

import re
import sys
import sysconfig
from pathlib import Path

import numpy

BUILDER_INCLUDES = re.compile(r'INTERFACE_INCLUDE_DIRECTORIES "/opt/python/[^"]*"')


def main(venv: str) -> int:
    share = Path(venv) / "share"
    if not share.is_dir():
        print(f"fix_ros_wheels: no {share}; install the ROS 2 wheels first", file=sys.stderr)
        return 1
    includes = f'{sysconfig.get_paths()["include"]};{numpy.get_include()}'
    fixed = 0
    for path in share.glob("*/cmake/*_generator_pyExport.cmake"):
        text = path.read_text()
        new = BUILDER_INCLUDES.sub(f'INTERFACE_INCLUDE_DIRECTORIES "{includes}"', text)
        if new != text:
            path.write_text(new)
            fixed += 1
    print(f"fix_ros_wheels: rewrote include paths in {fixed} export file(s)")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        raise SystemExit(2)
    raise SystemExit(main(sys.argv[1]))

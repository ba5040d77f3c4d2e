"""What every bench script shares: the repo on ``sys.path``, a local offline environment, the JSON last line.

Importing this module (``from _common import ...``: a script's own folder is first on ``sys.path``)
puts the repository first on ``sys.path`` and calls :func:`movseg_ros.env.local_ros_env` (DDS on
loopback, no model hub), so import it before open_clip, rclpy or the project (ruff sorts it among
the third-party imports; numpy, torch, tqdm and yaml read none of these variables).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from movseg_ros.env import local_ros_env  # noqa: E402

local_ros_env()


def print_summary(summary: dict) -> int:
    """Print ``summary`` as the script's last line (one JSON object, what callers parse); returns exit code 0."""
    print(json.dumps(summary))
    return 0

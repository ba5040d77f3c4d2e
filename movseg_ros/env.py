"""Process environment for local ROS 2 runs: DDS on loopback, the repo's FastDDS profile, no model hub."""
from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def local_ros_env(force_hub_offline: bool = False) -> None:
    """Set this process's ROS/hub environment before rclpy or open_clip is imported.

    DDS stays on loopback (ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST, always); ROS_DOMAIN_ID defaults
    to a per-process domain (10 + pid % 200) so concurrent runs do not see each other;
    FASTDDS_DEFAULT_PROFILES_FILE defaults to config/fastdds_shm.xml; HF_HUB_OFFLINE defaults to 1
    (forced to 1 with ``force_hub_offline``). Values already set by the caller are kept otherwise.
    """
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    os.environ.setdefault("ROS_DOMAIN_ID", str(10 + os.getpid() % 200))
    os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(REPO / "config" / "fastdds_shm.xml"))
    if force_hub_offline:
        os.environ["HF_HUB_OFFLINE"] = "1"
    else:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")

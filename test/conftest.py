"""Shared test set-up: keep DDS on loopback, never reach a model hub, isolate runs."""
from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Set before any test imports rclpy or open_clip (conftest is imported first).
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("ROS_DOMAIN_ID", str(10 + os.getpid() % 200))
os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(REPO / "config" / "fastdds_shm.xml"))
os.environ["HF_HUB_OFFLINE"] = "1"

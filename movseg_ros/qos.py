"""QoS profiles by name, for parameters and command-line options."""
from __future__ import annotations

from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data, qos_profile_system_default

QOS_NAMES = ("sensor_data", "reliable", "system_default")


def qos_by_name(name: str, depth: int | None = None) -> QoSProfile:
    """'sensor_data' (best effort, keep last 5), 'reliable' (keep last depth) or 'system_default'."""
    if name == "sensor_data":
        profile = QoSProfile(depth=depth or qos_profile_sensor_data.depth)
        profile.reliability = ReliabilityPolicy.BEST_EFFORT
        profile.history = HistoryPolicy.KEEP_LAST
        return profile
    if name == "reliable":
        return QoSProfile(depth=depth or 10, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
    if name == "system_default":
        return qos_profile_system_default
    raise ValueError(f"unknown QoS profile '{name}' (expected one of {QOS_NAMES})")

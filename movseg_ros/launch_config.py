"""What `segment.launch.py` and `movseg run` share: arguments, remappings, overrides.

Kept free of the ``launch`` package so the pip-only runner can use it too; the
launch file turns these into DeclareLaunchArgument / Node settings.
"""
from __future__ import annotations

from pathlib import Path

#: launch argument -> (default, description). '' means "leave the YAML / node default".
LAUNCH_ARGUMENTS: dict[str, tuple[str, str]] = {
    "config": ("", "parameters YAML (default: the package's config/segment.yaml)"),
    "namespace": ("", "namespace for the node, its topics and its set_queries service"),
    "color_topic": ("/camera/color/image_raw", "colour image topic"),
    "depth_topic": ("/camera/depth/image_raw", "depth image topic (16UC1 mm or 32FC1 m, registered to colour)"),
    "camera_info_topic": ("/camera/color/camera_info", "colour camera_info topic"),
    "device": ("", "override segmenter.clip.device: auto | cpu | cuda | cuda:N"),
}

#: node input name -> launch argument holding the remapped topic
REMAPPED_INPUTS = {
    "camera/color/image_raw": "color_topic",
    "camera/depth/image_raw": "depth_topic",
    "camera/color/camera_info": "camera_info_topic",
}

#: launch argument -> node parameter it overrides when not empty
PARAMETER_OVERRIDES = {"device": "segmenter.clip.device"}


def default_config_path() -> Path:
    """config/segment.yaml: in the source tree, else in the installed share directory."""
    src = Path(__file__).resolve().parents[1] / "config" / "segment.yaml"
    if src.exists():
        return src
    from ament_index_python.packages import get_package_share_directory  # real ROS 2 install

    return Path(get_package_share_directory("movseg_ros")) / "config" / "segment.yaml"


def node_arguments(values: dict[str, str]) -> list[str]:
    """``--ros-args`` for the node, exactly what the launch file configures."""
    v = {k: values.get(k, d) for k, (d, _) in LAUNCH_ARGUMENTS.items()}
    args = ["--ros-args", "--params-file", v["config"] or str(default_config_path())]
    if v["namespace"]:
        args += ["-r", f"__ns:={v['namespace'] if v['namespace'].startswith('/') else '/' + v['namespace']}"]
    for node_topic, arg in REMAPPED_INPUTS.items():
        args += ["-r", f"{node_topic}:={v[arg]}"]
    for arg, param in PARAMETER_OVERRIDES.items():
        if v[arg]:
            args += ["-p", f"{param}:={v[arg]}"]
    return args

"""What `segment.launch.py` and `movseg run` share: arguments, remappings, overrides.

Kept free of the ``launch`` package so the pip-only runner can use it too; the
launch file turns these into DeclareLaunchArgument / Node settings.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from movseg_ros import topics
from movseg_ros.topics import node_side

#: launch argument -> (default, description). '' means "leave the YAML / node default".
LAUNCH_ARGUMENTS: dict[str, tuple[str, str]] = {
    "config": ("", "parameters YAML (default: the package's config/segment.yaml)"),
    "namespace": ("", "namespace for the node, its topics and its set_queries service"),
    "color_topic": (topics.COLOR, "colour image topic"),
    "depth_topic": (topics.DEPTH, "depth image topic (16UC1/mono16 mm or 32FC1 m, registered to colour)"),
    "camera_info_topic": (topics.CAMERA_INFO, "colour camera_info topic"),
    "device": ("", "override segmenter.clip.device: auto | cpu | cuda | cuda:N"),
}

#: node input name -> launch argument holding the remapped topic
REMAPPED_INPUTS = {
    node_side(topics.COLOR): "color_topic",
    node_side(topics.DEPTH): "depth_topic",
    node_side(topics.CAMERA_INFO): "camera_info_topic",
}

#: launch argument -> node parameter it overrides when not empty
PARAMETER_OVERRIDES = {"device": "segmenter.clip.device"}

#: the node's name; its full name is ``/<namespace>/movseg``
NODE_NAME = topics.NODE_NAME


def default_config_path() -> Path:
    """config/segment.yaml: in the source tree, else in the installed share directory."""
    src = Path(__file__).resolve().parents[1] / "config" / "segment.yaml"
    if src.exists():
        return src
    from ament_index_python.packages import get_package_share_directory  # real ROS 2 install

    return Path(get_package_share_directory("movseg_ros")) / "config" / "segment.yaml"


def node_fqn(namespace: str) -> str:
    """The node's full name in ``namespace`` ('' / 'robot1' / '/robot1'): ``/movseg``, ``/robot1/movseg``."""
    ns = namespace.strip("/")
    return f"/{ns}/{NODE_NAME}" if ns else f"/{NODE_NAME}"


def node_settings(values: dict[str, str], overrides: dict[str, Any] | None = None) -> dict:
    """launch_ros ``Node`` keyword arguments for the launch ``values`` (missing ones at their defaults):
    name, namespace, parameters (the YAML path, then a dict of the launch-argument overrides and
    ``overrides``, e.g. ``movseg run --set``) and remappings."""
    v = {k: values.get(k, d) for k, (d, _) in LAUNCH_ARGUMENTS.items()}
    return {"name": NODE_NAME, "namespace": v["namespace"],
            "parameters": [v["config"] or str(default_config_path()),
                           {**{param: v[arg] for arg, param in PARAMETER_OVERRIDES.items() if v[arg]},
                            **(overrides or {})}],
            "remappings": [(node_topic, v[arg]) for node_topic, arg in REMAPPED_INPUTS.items()]}


def node_arguments(values: dict[str, str], overrides: dict[str, Any] | None = None) -> list[str]:
    """``--ros-args`` for the node, exactly what the launch file configures (:func:`node_settings`);
    the overrides become ``-p NAME:=VALUE`` (VALUE in YAML, as rcl reads it)."""
    s = node_settings(values, overrides)
    args = ["--ros-args", "-r", f"__node:={s['name']}"]
    if s["namespace"]:
        args += ["-r", f"__ns:={node_fqn(s['namespace']).rsplit('/', 1)[0]}"]
    path, params = s["parameters"]
    args += ["--params-file", path]
    for src, dst in s["remappings"]:
        args += ["-r", f"{src}:={dst}"]
    for param, value in params.items():
        args += ["-p", f"{param}:={_yaml_scalar(value)}"]
    return args


def _yaml_scalar(value: Any) -> str:
    """``value`` as rcl's ``-p`` reads it back: plain strings stay as typed, others in YAML flow (JSON) form."""
    import yaml

    if isinstance(value, str) and yaml.safe_load(value) == value:
        return value
    return json.dumps(value)

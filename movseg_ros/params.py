"""ROS parameters of movseg_node: what it declares, its parameters files, dataclass trees <-> flat names.

:func:`load_node_params` is the one reader of the node's parameters file: the node validates its
``--params-file`` arguments with it at start-up, and ``movseg eval`` (offline and replay) builds the
node's settings (:class:`NodeParams`: depth range, segmenter config, ...) with :func:`node_params`,
which the node itself uses on its declared parameters. No rclpy import here.

``segmenter.clip.model_name`` <-> ``SegmenterConfig().clip.model_name``: the node
declares one parameter per leaf field, so the YAML, the launch file and the core
config cannot drift apart silently (a test compares them).

Parameters files follow rcl's rules (checked against rclpy's ``_populate_node_parameters_from_rcl_params``):
the top-level keys are node names, ``/`` is prepended when missing, ``/*`` matches one name token
and ``/**`` any number; every matching entry applies in file order, later files override earlier
ones. ``/**`` therefore applies in any namespace; a plain ``movseg:`` key only to ``/movseg``.
"""
from __future__ import annotations

import dataclasses
import re
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

from movseg_core.config import apply_overrides
from movseg_core.segmenter import SegmenterConfig, config_from_dict

#: the key config/segment.yaml uses: the node's parameters in any namespace, under any node name
ANY_NODE = "/**"

#: the node's own parameters (the segmenter's come from SegmenterConfig under ``segmenter.``)
NODE_PARAMETERS: dict[str, tuple[typing.Any, str]] = {
    "queries": (["wall", "floor", "chair", "table"], "open-vocabulary text queries; label id i+1 = queries[i]"),
    "qos": ("sensor_data", "QoS of the camera subscriptions: sensor_data | reliable | system_default"),
    "sync.queue_size": (10, "approximate-time synchroniser queue per input"),
    "sync.slop": (0.05, "max stamp difference (s) between colour, depth and camera_info"),
    "sync.reset_jump_s": (1.0, "a stamp this many seconds before the newest one starts a new stream (bag loop, "
                               "sim clock reset, restarted driver): synchroniser and stamp order are reset; "
                               "smaller steps back are dropped as out of order; 0 = never"),
    "executor": ("single_threaded", "what runs the callbacks: single_threaded (rclpy's SingleThreadedExecutor) | "
                                    "events (rclpy.experimental.EventsExecutor, Jazzy and newer: ~1 ms less CPU a "
                                    "frame here; /set_queries needs an rclpy with ros2/rclpy#1478)"),
    "max_rate": (0.0, "max frames per second to process (0 = as fast as possible)"),
    "freshness_budget": (0.1, "share of the worker's time it may spend waiting for the camera's next frame "
                              "instead of labelling one that queued while it was busy (lower latency, "
                              "slightly lower rate); 0 = always label the queued frame"),
    "pipeline": (True, "publish frame t on a second thread while frame t+1 is inferred (in order, at most one "
                       "result waiting); false = the worker publishes each frame before taking the next"),
    "depth.min_m": (0.0, "depth below this (metres) is invalid (0 = no limit)"),
    "depth.max_m": (0.0, "depth above this (metres) is invalid (0 = no limit)"),
    "publish.labels": (True, "publish ~/labels (mono16)"),
    "publish.label_info": (True, "publish ~/label_info (always with the labels it describes)"),
    "publish.overlay": (True, "publish ~/overlay (rgb8 with legend)"),
    "publish.confidence": (True, "publish ~/confidence (32FC1)"),
    "publish.pointcloud": (False, "publish ~/points (PointCloud2 with label, confidence and instance)"),
    "publish.instances": (True, "publish ~/instances (mono16 instance image, 0 = none; "
                                "needs segmenter.objects.enabled)"),
    "publish.objects": (True, "publish ~/objects (movseg_ros/ObjectArray; needs segmenter.objects.enabled)"),
    "publish.detections": (True, "publish ~/detections_2d and ~/detections_3d (vision_msgs Detection2DArray / "
                                 "Detection3DArray) where vision_msgs is installed"),
    "publish.vision_label_info": (True, "publish ~/vision_label_info (vision_msgs/LabelInfo, transient-local, "
                                        "on every vocabulary change) where vision_msgs is installed"),
    "log_period_s": (10.0, "seconds between statistics log lines"),
}
SEGMENTER_PREFIX = "segmenter"

#: parameters rclpy declares on every node itself; a parameters file may set them
RCLPY_PARAMETERS = ("use_sim_time", "start_type_description_service")
RCLPY_PREFIXES = ("qos_overrides.",)


def flatten_dataclass(obj: Any, prefix: str) -> Iterator[tuple[str, Any]]:
    """Yield (dotted name, default value) for every leaf of a dataclass instance.

    Leaves are bool/int/float/str, lists of those, or None (declared as str '').
    Nested dataclasses recurse; tuples are declared as lists.
    """
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        name = f"{prefix}.{f.name}" if prefix else f.name
        if dataclasses.is_dataclass(value):
            yield from flatten_dataclass(value, name)
        elif isinstance(value, tuple):
            yield name, list(value)
        else:
            yield name, value


def unflatten(values: dict[str, Any], prefix: str) -> dict[str, Any]:
    """{'p.a.b': 1} -> {'a': {'b': 1}} for keys under ``prefix``."""
    return apply_overrides({}, {k[len(prefix) + 1:]: v for k, v in values.items() if k.startswith(prefix + ".")})


def _dotted_leaves(items: Iterable[tuple[Any, Any]], children: Callable[[Any], Iterable | None],
                   prefix: str = "") -> dict[str, Any]:
    """Flatten a tree to ``{"a.b.c": leaf}``; ``children(value)``: a branch's (key, value) pairs, None for a leaf."""
    out: dict[str, Any] = {}
    for key, value in items:
        name = f"{prefix}.{key}" if prefix else str(key)
        sub = children(value)
        if sub is None:
            out[name] = value
        else:
            out.update(_dotted_leaves(sub, children, name))
    return out


def _typed_fields(cls: type) -> list[tuple[str, Any]]:
    hints = typing.get_type_hints(cls)
    return [(f.name, hints[f.name]) for f in dataclasses.fields(cls)]


def field_types(cls: type, prefix: str) -> dict[str, Any]:
    """Dotted name -> annotated type of every leaf field of a dataclass class."""
    return _dotted_leaves(_typed_fields(cls), lambda t: _typed_fields(t) if dataclasses.is_dataclass(t) else None,
                          prefix)


# --------------------------------------------------------------------------- parameters files
def node_key_matches(key: str, node_fqn: str) -> bool:
    """Whether a parameters-file key (``/**``, ``movseg``, ``/robot1/movseg``, ``/*/movseg``) names the node
    ``node_fqn`` (fully qualified, e.g. ``/robot1/movseg``), as rcl/rclpy decide it."""
    key = key if key.startswith("/") else "/" + key
    try:  # rclpy: replace "/*" by "(/\w+)" and match the result as a regular expression ("/**" -> "(/\w+)*")
        return re.fullmatch(key.replace("/*", r"(/\w+)"), node_fqn) is not None
    except re.error:
        return False


def _flatten_tree(tree: dict[str, Any]) -> dict[str, Any]:
    return _dotted_leaves(tree.items(), lambda v: v.items() if isinstance(v, dict) else None)


def read_params_file(path: str | Path, node_fqn: str) -> dict[str, Any]:
    """Flat ``{dotted name: value}`` that the parameters file ``path`` sets on the node ``node_fqn``.

    Raises ValueError when the file cannot be read as a ROS parameters file or when none of its
    entries applies to the node (rclpy would silently apply nothing): the message names the keys
    found and the ones that work.
    """
    import yaml

    p = Path(path)
    if not p.is_file():
        raise ValueError(f"parameters file {p} not found")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        raise ValueError(f"parameters file {p}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict) or not all(isinstance(v, dict) and "ros__parameters" in v for v in data.values()):
        raise ValueError(f"parameters file {p}: expected '<node name>: ros__parameters: ...' entries "
                         f"(e.g. '{ANY_NODE}:' for any namespace), got top-level keys {list(data or [])}")
    matching = [k for k in data if node_key_matches(str(k), node_fqn)]
    if not matching:
        raise ValueError(f"parameters file {p} sets nothing for the node {node_fqn}: its keys {list(data)} name other "
                         f"nodes (a plain 'movseg:' key only matches /movseg, outside any namespace). "
                         f"Key it '{ANY_NODE}:' (any namespace) or '{node_fqn}:'.")
    flat: dict[str, Any] = {}
    for k in matching:
        flat.update(_flatten_tree(data[k]["ros__parameters"] or {}))
    return flat


def params_files(argv: Sequence[str]) -> list[str]:
    """The ``--params-file PATH`` arguments among a node's ROS arguments, in order."""
    args = list(argv)
    return [args[i + 1] for i, a in enumerate(args[:-1]) if a == "--params-file"]


def check_params_files(argv: Sequence[str], node_fqn: str) -> None:
    """Raise ValueError when a ``--params-file`` in ``argv`` would set nothing on ``node_fqn``, or sets a
    parameter the node does not declare or a value of the wrong type (:func:`load_node_params`)."""
    for path in params_files(argv):
        load_node_params(path, node_fqn=node_fqn)


# --------------------------------------------------------------------------- the node's settings
def declared_defaults() -> dict[str, Any]:
    """Every parameter the node declares -> its default (segmenter leaves as :func:`flatten_dataclass` gives)."""
    out = {name: default for name, (default, _) in NODE_PARAMETERS.items()}
    out.update(flatten_dataclass(SegmenterConfig(), SEGMENTER_PREFIX))
    return out


def declared_parameter_names() -> list[str]:
    """Every parameter the node declares (the launch-file test compares against this)."""
    return sorted(declared_defaults())


@dataclass(frozen=True)
class NodeParams:
    """The node's settings. ``values``: every node-level parameter (:data:`NODE_PARAMETERS`) by its flat
    name, defaults filled in; ``segmenter``: the segmenter's config (``''`` in ROS means None)."""

    values: Mapping[str, Any]
    segmenter: SegmenterConfig

    @property
    def depth_range(self) -> tuple[float, float] | None:
        """``valid_range`` for :func:`movseg_core.geometry.decode_depth` in metres (None = no limit):
        ``depth.min_m`` / ``depth.max_m``, 0 meaning no limit on that side."""
        lo, hi = float(self.values["depth.min_m"]), float(self.values["depth.max_m"])
        if lo <= 0 and hi <= 0:
            return None
        return (max(lo, 0.0), hi if hi > 0 else float("inf"))


def node_params(values: Mapping[str, Any]) -> NodeParams:
    """Flat ``{declared parameter name: value}`` (a parameters file's, or the running node's) -> :class:`NodeParams`.

    Names not given, or given as None (a parameter not set), take their defaults. Raises ValueError naming any
    undeclared name (the node would ignore it silently) and any value of another type than the node declares
    (the node would refuse to start).
    """
    defaults = declared_defaults()
    values = {k: v for k, v in values.items() if v is not None}
    unknown = sorted(k for k in values if k not in defaults and k not in RCLPY_PARAMETERS
                     and not k.startswith(RCLPY_PREFIXES))
    if unknown:
        raise ValueError("; ".join(_unknown_parameter(k, defaults) for k in unknown))
    node = {}
    for name, (default, _) in NODE_PARAMETERS.items():
        value = values.get(name, default)
        if type(value) is not type(default):  # rclpy refuses e.g. an integer for a double parameter
            raise ValueError(f"parameter {name}: {value!r} is a {type(value).__name__}, the node declares a "
                             f"{type(default).__name__} (e.g. {default!r})")
        node[name] = value
    types = field_types(SegmenterConfig, SEGMENTER_PREFIX)  # ROS has no None: '' stands for it where allowed
    seg = {k: (None if v == "" and type(None) in typing.get_args(types.get(k)) else v)
           for k, v in values.items() if k.startswith(SEGMENTER_PREFIX + ".")}
    return NodeParams(node, config_from_dict(unflatten(seg, SEGMENTER_PREFIX)))


def _unknown_parameter(name: str, declared: Mapping[str, Any]) -> str:
    """'unknown node parameter NAME; valid under its deepest declared section: ...'."""
    parts = name.split(".")
    for i in range(len(parts) - 1, -1, -1):
        section = ".".join(parts[:i])
        valid = sorted({n[len(section) + 1:].split(".")[0] if section else n.split(".")[0]
                        for n in declared if not section or n.startswith(section + ".")})
        if valid:
            return f"unknown node parameter {name!r}; valid under {section or 'the top level'}: {', '.join(valid)}"
    return f"unknown node parameter {name!r}"


def load_node_params(path: str | Path | None, overrides: Mapping[str, Any] | None = None,
                     node_fqn: str = "/movseg") -> NodeParams:
    """The settings the node ``node_fqn`` runs with from the parameters file ``path`` (None: defaults only)
    plus ``overrides`` (``{"depth.max_m": 2.0, "segmenter.clip.device": "cpu"}``, what ``-p`` would set).

    Raises ValueError when the file applies nothing to the node, names an undeclared parameter or
    sets a value of the wrong type (see :func:`read_params_file`, :func:`node_params`).
    """
    values = read_params_file(path, node_fqn) if path is not None else {}
    values.update(overrides or {})
    return node_params(values)


"""ROS parameters of movseg_node: dataclass trees <-> flat names, and the node's parameters files.

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
from pathlib import Path
from typing import Any, Iterator, Sequence

from movseg_core.config import apply_overrides

#: the key config/segment.yaml uses: the node's parameters in any namespace, under any node name
ANY_NODE = "/**"


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


def field_types(cls: type, prefix: str) -> dict[str, Any]:
    """Dotted name -> annotated type of every leaf field of a dataclass class."""
    out: dict[str, Any] = {}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        name = f"{prefix}.{f.name}" if prefix else f.name
        t = hints[f.name]
        if dataclasses.is_dataclass(t):
            out.update(field_types(t, name))
        else:
            out[name] = t
    return out


# --------------------------------------------------------------------------- parameters files
def node_key_matches(key: str, node_fqn: str) -> bool:
    """Whether a parameters-file key (``/**``, ``movseg``, ``/robot1/movseg``, ``/*/movseg``) names the node
    ``node_fqn`` (fully qualified, e.g. ``/robot1/movseg``), as rcl/rclpy decide it."""
    key = key if key.startswith("/") else "/" + key
    try:  # rclpy: replace "/*" by "(/\w+)" and match the result as a regular expression ("/**" -> "(/\w+)*")
        return re.fullmatch(key.replace("/*", r"(/\w+)"), node_fqn) is not None
    except re.error:
        return False


def _flatten_tree(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in tree.items():
        name = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, dict):
            out.update(_flatten_tree(v, name))
        else:
            out[name] = v
    return out


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
    """Raise ValueError when a ``--params-file`` in ``argv`` would set nothing on ``node_fqn``."""
    for path in params_files(argv):
        read_params_file(path, node_fqn)

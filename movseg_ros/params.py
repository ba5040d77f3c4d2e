"""Map a dataclass config tree onto flat ROS parameters and back.

``segmenter.clip.model_name`` <-> ``SegmenterConfig().clip.model_name``: the node
declares one parameter per leaf field, so the YAML, the launch file and the core
config cannot drift apart silently (a test compares them).
"""
from __future__ import annotations

import dataclasses
import typing
from typing import Any, Iterator

from movseg_core.config import apply_overrides

LEAF_TYPES = (bool, int, float, str)


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

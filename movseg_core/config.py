"""Config building shared by every loader (segmenter, node parameters, training, stage 2, evaluation).

    cfg = build_config(TrainConfig, yaml.safe_load(text), {"data.n_train": 64})   # -> TrainConfig

One path from a nested dict (YAML, ROS parameters) plus dotted ``--set KEY=VALUE`` overrides to a
dataclass: nested dataclass fields are built recursively, unknown keys are errors that name the
key (dotted) and the valid ones, and scalar values are checked against the field's type.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from typing import TYPE_CHECKING, Any, Mapping, Sequence, TypeVar

if TYPE_CHECKING:
    import torch

T = TypeVar("T")


def set_dotted(tree: dict[str, Any], key: str, value: Any) -> None:
    """``set_dotted(d, "a.b.c", 1)`` -> ``d["a"]["b"]["c"] = 1``, creating the sections on the way."""
    parts = key.split(".")
    for part in parts[:-1]:
        tree = tree.setdefault(part, {})
        if not isinstance(tree, dict):
            raise ValueError(f"cannot set {key!r}: {part!r} is a value, not a section")
    tree[parts[-1]] = value


def apply_overrides(tree: dict[str, Any], overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """Apply ``{"dotted.key": value}`` overrides to a nested config dict (in place); returns it."""
    for key, value in (overrides or {}).items():
        set_dotted(tree, key, value)
    return tree


def parse_overrides(items: Sequence[str] | None) -> dict[str, Any]:
    """``--set KEY=VALUE`` items -> ``{dotted key: YAML-parsed value}``: ``["data.n_train=64", "queries=[a, b]"]``."""
    import yaml

    out: dict[str, Any] = {}
    for item in items or ():
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        out[key.strip()] = yaml.safe_load(value)
    return out


def resolve_device(name: str) -> "torch.device":
    """A config's device string -> ``torch.device``: ``auto`` is CUDA when available (``cuda:LOCAL_RANK``
    under torchrun, else ``cuda:0``) and the CPU otherwise; ``cpu``, ``cuda``, ``cuda:N`` as torch reads them.
    Raises ValueError for a CUDA device on a machine without CUDA, or a string torch does not know."""
    import os

    import torch

    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as exc:
        raise ValueError(f"device {name!r}: {exc} (use auto, cpu, cuda or cuda:N)") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available")
    return dev


def build_config(cls: type[T], tree: Mapping[str, Any] | T | None = None, overrides: Mapping[str, Any] | None = None,
                 *, where: str = "") -> T:
    """Nested dict ``tree`` (or an instance of ``cls``) plus dotted ``overrides`` -> a ``cls`` dataclass.

    Fields typed as dataclasses are built recursively from dicts; missing keys keep their defaults.
    Raises ValueError for an unknown key (``unknown key 'data.n_trian' in training config; valid in data:
    ...``), a section that is not a mapping, a value of the wrong scalar type, or what the dataclass's own
    ``__post_init__`` refuses. ``where`` names the config in messages (e.g. ``"training"``).
    """
    if isinstance(tree, cls) and not overrides:
        return tree
    data = _as_tree(tree)
    apply_overrides(data, overrides)
    return _build(cls, data, "", where)


def _as_tree(tree: Any) -> dict[str, Any]:
    if tree is None:
        return {}
    if dataclasses.is_dataclass(tree) and not isinstance(tree, type):
        return {f.name: _as_tree(getattr(tree, f.name)) if dataclasses.is_dataclass(getattr(tree, f.name))
                else getattr(tree, f.name) for f in dataclasses.fields(tree)}
    if not isinstance(tree, Mapping):
        raise ValueError(f"config: expected a mapping, got {type(tree).__name__}")
    return {k: (_as_tree(v) if isinstance(v, Mapping) or dataclasses.is_dataclass(v) else v) for k, v in tree.items()}


def _build(cls: type, data: Any, path: str, where: str) -> Any:
    label = f"{where + ' ' if where else ''}config"
    if isinstance(data, cls):
        return data
    if not isinstance(data, Mapping):
        raise ValueError(f"{label}: {path or 'the top level'} must be a section (mapping) of {cls.__name__} "
                         f"keys, got {type(data).__name__} {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(str(k) for k in data if k not in fields)
    if unknown:
        keys = ", ".join(repr(f"{path}.{k}" if path else k) for k in unknown)
        raise ValueError(f"unknown key{'s' if len(unknown) > 1 else ''} {keys} in {label}; "
                         f"valid in {path or 'the top level'}: {', '.join(sorted(fields))}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in data.items():
        name = f"{path}.{key}" if path else key
        hint = hints.get(key)
        if dataclasses.is_dataclass(hint):
            kwargs[key] = _build(hint, value, name, where)
        else:
            kwargs[key] = _check_scalar(hint, value, name, label)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{label}: {path or cls.__name__}: {exc}") from exc


def _check_scalar(hint: Any, value: Any, name: str, label: str) -> Any:
    """``value`` for a field annotated ``hint``: ints widen to float; plain bool/int/float/str (or Optional
    of one) must match, also for YAML's ``1e-4`` (a string in YAML 1.1, read as a float here)."""
    allowed = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    if value is None and type(None) in allowed:
        return None
    scalars = [t for t in allowed if t in (bool, int, float, str)]
    if not scalars or len(scalars) != len([t for t in allowed if t is not type(None)]):
        return value  # lists, tuples, dicts, unions of several kinds: the dataclass checks them
    if any(type(value) is t for t in scalars):
        return value
    if float in scalars and type(value) is int:
        return float(value)
    if float in scalars and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    want = " or ".join(t.__name__ for t in scalars) + (" or null" if type(None) in allowed else "")
    raise ValueError(f"{label}: {name} must be {want}, got {type(value).__name__} {value!r}")

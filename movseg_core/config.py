"""Small helpers shared by the config loaders (segmenter, training, evaluation)."""
from __future__ import annotations

from typing import Any, Sequence


def set_dotted(tree: dict[str, Any], key: str, value: Any) -> None:
    """``set_dotted(d, "a.b.c", 1)`` -> ``d["a"]["b"]["c"] = 1``, creating the sections on the way."""
    parts = key.split(".")
    for part in parts[:-1]:
        tree = tree.setdefault(part, {})
        if not isinstance(tree, dict):
            raise ValueError(f"cannot set {key!r}: {part!r} is a value, not a section")
    tree[parts[-1]] = value


def apply_overrides(tree: dict[str, Any], overrides: dict[str, Any] | None) -> dict[str, Any]:
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

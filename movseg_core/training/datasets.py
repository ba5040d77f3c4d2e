"""DataConfig -> (train reader, val reader, class names)."""
from __future__ import annotations

from typing import Any, Sequence

from .config import DataConfig

_SYNTHETIC: dict[tuple, tuple[Any, Any]] = {}


class _Capped:
    def __init__(self, reader: Sequence[Any], n: int):
        self.reader, self.n = reader, min(n, len(reader)) if n > 0 else len(reader)
        self.class_names = getattr(reader, "class_names", ())

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> Any:
        if not 0 <= i < self.n:
            raise IndexError(i)
        return self.reader[i]


def build_readers(cfg: DataConfig) -> tuple[Sequence[Any], Sequence[Any], tuple[str, ...]]:
    """Readers for ``cfg.kind`` (train, val) and the class names (id = index + 1)."""
    size = (cfg.height, cfg.width) if cfg.height and cfg.width else None
    if cfg.kind == "synthetic":
        from ..data.synthetic import CLASS_NAMES, SceneConfig, SyntheticScenes

        sc = SceneConfig(height=cfg.height or 96, width=cfg.width or 128)
        key = (cfg.n_train, cfg.n_val, cfg.seed, sc.height, sc.width)
        if not cfg.cache or key not in _SYNTHETIC:
            pair = (SyntheticScenes(cfg.n_train, cfg.seed, sc, cache=cfg.cache),
                    SyntheticScenes(cfg.n_val, cfg.seed + 1_000_000, sc, cache=cfg.cache))
            if cfg.cache:  # rendered scenes are shared by runs in one process (benchmarks, tests)
                _SYNTHETIC[key] = pair
        else:
            pair = _SYNTHETIC[key]
        return pair[0], pair[1], CLASS_NAMES
    if cfg.kind == "coco_stuff":
        from ..data.coco_stuff import CocoStuff

        tr = CocoStuff(cfg.root, cfg.train_split, size=size, x_dir=cfg.x_dir)
        va = CocoStuff(cfg.root, cfg.val_split, size=size, x_dir=cfg.x_dir)
    elif cfg.kind == "ade20k":
        from ..data.ade20k import ADE20K

        tr = ADE20K(cfg.root, cfg.train_split, size=size, x_dir=cfg.x_dir)
        va = ADE20K(cfg.root, cfg.val_split, size=size, x_dir=cfg.x_dir)
    elif cfg.kind == "nyuv2":
        from ..data.nyuv2_train import NYUv2Train

        tr = NYUv2Train(cfg.root, cfg.train_split, size=size, x_dir=cfg.x_dir)
        va = NYUv2Train(cfg.root, cfg.val_split, size=size, x_dir=cfg.x_dir)
    else:  # pragma: no cover - DataConfig validates kind
        raise ValueError(cfg.kind)
    return _Capped(tr, cfg.max_samples), _Capped(va, cfg.max_samples), tuple(tr.class_names)

"""Training configuration (dataclasses, loaded from YAML). Unknown keys are errors."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..config import build_config

DATA_KINDS = ("synthetic", "coco_stuff", "ade20k", "nyuv2")


@dataclass
class DataConfig:
    """Which data. kind: one of :data:`DATA_KINDS`. root: dataset folder (published layout).
    train_split / val_split: reader split names. n_train / n_val / seed: synthetic set sizes and
    base seed (val scenes use seeds after the train ones). height / width: synthetic render size,
    or the size real images are resized to (None = keep; needs equal sizes within a batch).
    x_dir: folder of precomputed X images (``<x_dir>/<sample name>.png``, e.g. normals from a
    monocular predictor) instead of computing them from depth. max_samples: cap per split (0 = all).
    """

    kind: str = "synthetic"
    root: str | None = None
    train_split: str = "train"
    val_split: str = "val"
    n_train: int = 256
    n_val: int = 32
    seed: int = 0
    height: int | None = 96
    width: int | None = 128
    x_dir: str | None = None
    max_samples: int = 0
    cache: bool = True

    def __post_init__(self) -> None:
        if self.kind not in DATA_KINDS:
            raise ValueError(f"data.kind {self.kind!r} not in {DATA_KINDS}")
        if self.kind != "synthetic" and not self.root:
            raise ValueError(f"data.root is required for data.kind={self.kind!r}")


@dataclass
class ClipSpec:
    """The CLIP whose text space the proposals are trained in (see movseg_core.clip.ClipConfig)."""

    model_name: str = "ViT-B-16"
    pretrained: str = "openai"
    templates: str = "single"


@dataclass
class TrainConfig:
    """One training run.

    model: a preset name under ``preset`` plus MaskFormerConfig overrides. steps: optimiser steps.
    batch_size: GLOBAL batch (split evenly over processes). lr / weight_decay: AdamW;
    backbone_lr_mult: lr factor for the backbones; poly_power: poly decay exponent; warmup_steps.
    grad_clip: max gradient norm (0 = off). eval_every / ckpt_every / log_every: in steps (0 = at the
    end only; eval_every < 0 = never). out_dir: run folder (metrics.csv, eval.csv, checkpoints/, model_final.pt). seed.
    amp: fp16 autocast + GradScaler on CUDA (ignored on CPU). device: auto / cpu / cuda.
    num_workers: DataLoader workers. resume: continue from ``out_dir/checkpoints/last.pt`` if present.
    """

    model: dict[str, Any] = field(default_factory=lambda: {"preset": "movseg-tiny"})
    data: DataConfig = field(default_factory=DataConfig)
    clip: ClipSpec = field(default_factory=ClipSpec)
    steps: int = 1000
    batch_size: int = 8
    lr: float = 1e-4
    weight_decay: float = 0.05
    backbone_lr_mult: float = 0.1
    poly_power: float = 0.9
    warmup_steps: int = 0
    grad_clip: float = 1.0
    eos_coef: float = 0.1
    eval_every: int = 0
    ckpt_every: int = 0
    log_every: int = 1
    out_dir: str = "runs/movseg"
    seed: int = 0
    amp: bool = True
    device: str = "auto"
    num_workers: int = 0
    resume: bool = True
    progress: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.data, dict):
            self.data = _build(DataConfig, self.data, "data")
        if isinstance(self.clip, dict):
            self.clip = _build(ClipSpec, self.clip, "clip")
        if isinstance(self.model, str):
            self.model = {"preset": self.model}
        if self.steps <= 0 or self.batch_size <= 0:
            raise ValueError("steps and batch_size must be positive")

    def to_dict(self) -> dict[str, Any]:
        """The nested plain dict of this config (what is saved beside checkpoints)."""
        return asdict(self)


def _build(cls: type, d: Any, where: str) -> Any:
    """A ``where`` section of a training / stage-2 config from a dict (:func:`movseg_core.config.build_config`)."""
    return build_config(cls, d, where=where)


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """YAML file -> :class:`TrainConfig`; ``overrides`` maps dotted keys (``data.n_train``) to values."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"training config {path} not found")
    d = yaml.safe_load(path.read_text()) or {}
    if not isinstance(d, dict):
        raise ValueError(f"{path}: expected a mapping at the top level")
    return build_config(TrainConfig, d, overrides, where="training")

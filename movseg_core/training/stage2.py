"""Stage-2 runs from YAML: CLIP-X adaptation and mask prompt tuning on a dataset's masked crops.

YAML keys (:class:`Stage2Config`): ``clip`` (model_name, pretrained, templates), ``data`` (as in
training), ``x_modality`` (normals / depth / hha; CLIP-X only), ``max_images`` (crops come from
the first N training images), ``steps``, ``batch_size``, ``lr``, ``seed``, ``output`` (weights file).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from ..config import apply_overrides
from ..geometry.modality import X_MODALITIES
from .config import ClipSpec, DataConfig, _build


@dataclass
class Stage2Config:
    """Stage-2 run settings (the YAML keys in the module docstring)."""
    clip: ClipSpec = field(default_factory=ClipSpec)
    data: DataConfig = field(default_factory=DataConfig)
    x_modality: str = "normals"
    max_images: int = 500
    min_pixels: int = 256
    steps: int = 1000
    batch_size: int = 32
    lr: float = 1e-5
    seed: int = 0
    output: str = "runs/clip_x.pt"

    def __post_init__(self) -> None:
        if isinstance(self.clip, dict):
            self.clip = _build(ClipSpec, self.clip, "clip")
        if isinstance(self.data, dict):
            self.data = _build(DataConfig, self.data, "data")
        if self.x_modality not in X_MODALITIES:
            raise ValueError(f"x_modality {self.x_modality!r} not in {X_MODALITIES}")


def load_stage2_config(path: str | Path, overrides: dict[str, Any] | None = None) -> Stage2Config:
    """Read a stage-2 YAML at ``path``, apply dotted ``overrides`` and validate -> :class:`Stage2Config`."""
    d = yaml.safe_load(Path(path).read_text()) or {}
    return _build(Stage2Config, apply_overrides(d, overrides), "stage-2")


def _crops(cfg: Stage2Config, clip, with_x: bool) -> tuple[dict[str, torch.Tensor], tuple[str, ...]]:
    from .crops import crop_pairs
    from .data import x_image
    from .datasets import build_readers

    train, _, names = build_readers(cfg.data)
    recs = [train[i] for i in range(min(len(train), cfg.max_images))]
    xs = None
    if with_x:
        xs = [r.x if getattr(r, "x", None) is not None else x_image(cfg.x_modality, r.depth, r.K) for r in recs]
    mean, std = clip.mean.flatten().tolist(), clip.std.flatten().tolist()
    return crop_pairs(recs, xs, clip.image_size[0], mean, std, cfg.min_pixels), names


def _clip(cfg: Stage2Config):
    from ..clip import ClipConfig, create_clip

    torch.manual_seed(cfg.seed)
    return create_clip(ClipConfig(model_name=cfg.clip.model_name, pretrained=cfg.clip.pretrained,
                                  templates=cfg.clip.templates))


def run_clip_x(cfg: Stage2Config) -> dict[str, Any]:
    """Train CLIP-X; writes ``cfg.output`` (visual-tower state dict). Returns a summary."""
    from .clip_x import train_clip_x

    clip = _clip(cfg)
    pairs, _ = _crops(cfg, clip, with_x=True)
    _, losses = train_clip_x(clip.model, pairs, cfg.steps, cfg.batch_size, cfg.lr, cfg.seed, cfg.output)
    return {"output": cfg.output, "crops": int(pairs["rgb"].shape[0]), "first_loss": losses[0],
            "last_loss": float(np.mean(losses[-10:]))}


def run_prompt_tuning(cfg: Stage2Config) -> dict[str, Any]:
    """Tune mask prompts on (mask crop, class) pairs; writes ``cfg.output``. Returns a summary."""
    from .prompt_tuning import tune_prompts

    clip = _clip(cfg)
    crops, names = _crops(cfg, clip, with_x=False)
    text = clip.text_embeddings(list(names))
    _, losses = tune_prompts(clip.model, crops, text, cfg.steps, cfg.batch_size, cfg.lr, cfg.seed, cfg.output)
    return {"output": cfg.output, "crops": int(crops["rgb"].shape[0]), "first_loss": losses[0],
            "last_loss": float(np.mean(losses[-10:]))}

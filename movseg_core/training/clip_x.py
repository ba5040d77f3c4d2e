"""MOVSeg stage 2, CLIP-X: adapt a copy of CLIP's visual encoder to the X modality (depth / normals
images) with a cosine-similarity loss to the frozen CLIP-RGB embedding of the same masked crop.

Only the X copy trains; CLIP (RGB visual tower, text tower) stays frozen. The result is saved as
a visual-tower state dict that :func:`movseg_core.clip.load_visual_weights` loads for the
segmenter's CLIP-X branch.
"""
from __future__ import annotations

import copy
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .crops import random_batches


def clip_x_loss(x_emb: torch.Tensor, rgb_emb: torch.Tensor) -> torch.Tensor:
    """Mean of ``1 - cos(x_i, rgb_i)`` over the batch (``B x D`` each)."""
    return (1.0 - F.cosine_similarity(x_emb.float(), rgb_emb.float(), dim=-1)).mean()


class ClipXTrainer:
    """Holds the frozen RGB tower and the trainable X copy.

    clip_model: an open_clip CLIP (``.visual``); lr / weight_decay: AdamW on the X tower.
    """

    def __init__(self, clip_model: nn.Module, lr: float = 1e-5, weight_decay: float = 0.05,
                 device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self.rgb_visual = clip_model.visual.to(self.device).eval().requires_grad_(False)
        self.x_visual = copy.deepcopy(self.rgb_visual).train().requires_grad_(True)
        self.optim = torch.optim.AdamW(self.x_visual.parameters(), lr=lr, weight_decay=weight_decay)

    def loss(self, rgb: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Normalised crops ``B x 3 x S x S`` (RGB and X of the same segments) -> loss (differentiable in X)."""
        with torch.no_grad():
            target = self.rgb_visual(rgb.to(self.device))
        return clip_x_loss(self.x_visual(x.to(self.device)), target)

    def step(self, rgb: torch.Tensor, x: torch.Tensor) -> float:
        """One AdamW step on a batch of RGB / X crops ``B x 3 x S x S``; returns the loss."""
        loss = self.loss(rgb, x)
        self.optim.zero_grad(set_to_none=True)
        loss.backward()
        self.optim.step()
        return float(loss.detach())

    def save(self, path: str | os.PathLike) -> Path:
        """Write the X tower's state dict (keys as in ``model.visual``) for ``load_visual_weights``."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({k: v.detach().cpu() for k, v in self.x_visual.state_dict().items()}, path)
        return path


def train_clip_x(clip_model: nn.Module, pairs: dict[str, torch.Tensor], steps: int, batch_size: int = 32,
                 lr: float = 1e-5, seed: int = 0, out: str | os.PathLike | None = None,
                 progress: bool = True) -> tuple[ClipXTrainer, list[float]]:
    """Train CLIP-X on crop pairs (from :func:`~movseg_core.training.crops.crop_pairs`, needs ``x``).

    Returns the trainer and the per-step losses; writes the weights to ``out`` when given.
    """
    if "x" not in pairs:
        raise ValueError("CLIP-X needs X crops (crop_pairs(..., x_images=...))")
    trainer = ClipXTrainer(clip_model, lr=lr)
    losses = []
    for idx in random_batches(pairs["rgb"].shape[0], batch_size, steps, seed, "clip-x", progress):
        losses.append(trainer.step(pairs["rgb"][idx], pairs["x"][idx]))
    if out is not None:
        trainer.save(out)
    return trainer, losses

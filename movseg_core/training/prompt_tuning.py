"""OVSeg mask prompt tuning: learnable tokens replace the patch tokens of masked-out regions of a
masked crop; CLIP stays frozen; trained with cross-entropy of the crop's embedding against the
text embeddings of the class names (mask-category pairs).

A patch counts as masked out when less than ``keep_threshold`` of its pixels are in the mask.
Prompts replace the patch embeddings before the positional embedding is added (one prompt token
per patch position), so a fully-kept mask gives exactly CLIP's own image embedding.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..clip import OpenClipVision
from .crops import random_batches


class MaskPromptCLIP(nn.Module):
    """Frozen open_clip visual tower + learnable mask prompts ``grid_h*grid_w x width``."""

    def __init__(self, clip_model: nn.Module, keep_threshold: float = 0.5):
        super().__init__()
        self.vision = OpenClipVision(clip_model.visual)
        self.visual = clip_model.visual.eval().requires_grad_(False)
        self.patch = self.vision.patch
        gh, gw = self.vision.grid
        self.grid = (gh, gw)
        self.prompt = nn.Parameter(torch.zeros(gh * gw, self.vision.width))
        nn.init.normal_(self.prompt, std=0.02)
        self.keep_threshold = keep_threshold

    def patch_keep(self, masks: torch.Tensor) -> torch.Tensor:
        """``B x S x S`` masks in [0, 1] -> ``B x N`` bool (patch kept)."""
        frac = F.avg_pool2d(masks[:, None].float(), self.patch)[:, 0]
        return frac.flatten(1) >= self.keep_threshold

    def forward(self, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """Normalised crops ``B x 3 x S x S`` (S = CLIP input size) and masks ``B x S x S`` -> unit ``B x D``."""
        keep = self.patch_keep(masks).to(images.device)
        if keep.shape[1] != self.prompt.shape[0]:
            raise ValueError(f"mask grid {keep.shape[1]} != patch grid {self.prompt.shape[0]} "
                             "(crops must be the CLIP input size)")

        def prompt_masked_out(t: torch.Tensor) -> torch.Tensor:
            return torch.where(keep[..., None], t, self.prompt[None].to(t.dtype))

        return F.normalize(self.vision.encode(images, prompt_masked_out), dim=-1)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the mask prompt and keep threshold to ``path`` (parents created); returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"mask_prompt": self.prompt.detach().cpu(), "keep_threshold": self.keep_threshold}, path)
        return path

    def load(self, path: str | os.PathLike) -> None:
        """Load a mask prompt saved by :meth:`save`; raises ValueError if its shape does not match."""
        st = torch.load(path, map_location="cpu", weights_only=True)
        if "mask_prompt" not in st or st["mask_prompt"].shape != self.prompt.shape:
            raise ValueError(f"{path}: not mask prompts of shape {tuple(self.prompt.shape)}")
        with torch.no_grad():
            self.prompt.copy_(st["mask_prompt"])
        self.keep_threshold = float(st.get("keep_threshold", self.keep_threshold))


def prompt_tuning_loss(model: MaskPromptCLIP, images: torch.Tensor, masks: torch.Tensor, labels: torch.Tensor,
                       text: torch.Tensor, logit_scale: float = 100.0) -> torch.Tensor:
    """Cross-entropy of ``logit_scale * emb @ text.T`` against 0-based class indices ``labels``."""
    logits = logit_scale * model(images, masks) @ F.normalize(text, dim=-1).t()
    return F.cross_entropy(logits, labels)


def tune_prompts(clip_model: nn.Module, crops: dict[str, torch.Tensor], text: torch.Tensor, steps: int,
                 batch_size: int = 32, lr: float = 2e-2, seed: int = 0, out: str | os.PathLike | None = None,
                 progress: bool = True) -> tuple[MaskPromptCLIP, list[float]]:
    """Train the mask prompts on crops from :func:`~movseg_core.training.crops.crop_pairs` (labels are
    class ids 1..C matching the rows of ``text``). Returns the model and per-step losses."""
    model = MaskPromptCLIP(clip_model)
    opt = torch.optim.AdamW([model.prompt], lr=lr, weight_decay=0.0)
    losses = []
    for idx in random_batches(crops["rgb"].shape[0], batch_size, steps, seed, "mask-prompt", progress):
        loss = prompt_tuning_loss(model, crops["rgb"][idx], crops["mask"][idx], crops["label"][idx] - 1, text)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    if out is not None:
        model.save(out)
    return model, losses

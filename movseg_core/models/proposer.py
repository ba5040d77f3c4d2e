"""A trained RGB+X MaskFormer as a drop-in proposal generator for the segmenter.

``TrainedProposer(path).propose(rgb, depth, normals, valid)`` follows the contract of
:func:`movseg_core.proposals.propose`: HxWx3 uint8 RGB, depth HxW metres | None, normals HxWx3 |
None, valid HxW | None -> segments HxW int32 in 0..S-1 (S proposals, each pixel to the query
maximising objectness * mask probability). :meth:`TrainedProposer.predict` also returns the
per-segment proposal embeddings (CLIP space) for classifiers that want them.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .checkpoint import load_checkpoint


@dataclass
class Proposals:
    """segments HxW int32 (0..S-1); embeddings S x E (unit, CLIP space); objectness (S,) in [0, 1]."""

    segments: np.ndarray
    embeddings: torch.Tensor
    objectness: torch.Tensor


class TrainedProposer:
    """Load an exported checkpoint (``movseg export``) and run it on single frames.

    device: ``cpu`` / ``cuda``. input_short_side: the frame is resized so its short side is this
    (snapped to a multiple of 32) before the network; segments come back at full resolution.
    min_objectness: queries below it are dropped (all kept if none passes).
    """

    def __init__(self, path: str | os.PathLike, device: str = "cpu", input_short_side: int = 480,
                 min_objectness: float = 0.5):
        self.model, self.meta = load_checkpoint(path, device)
        self.device = torch.device(device)
        self.short = input_short_side
        self.min_objectness = min_objectness
        self.x_modality = self.model.cfg.x_modality

    def _size(self, h: int, w: int) -> tuple[int, int]:
        s = self.short / min(h, w)
        return max(32, int(round(h * s / 32)) * 32), max(32, int(round(w * s / 32)) * 32)

    def _x_image(self, depth: np.ndarray | None, normals: np.ndarray | None, valid: np.ndarray | None) -> np.ndarray:
        from ..geometry import depth_to_rgb, normals_to_rgb

        if self.x_modality == "normals":
            if normals is None:
                raise ValueError("this proposal model fuses normals: pass normals (or depth + K to the segmenter)")
            return np.asarray(normals_to_rgb(normals, valid))
        if self.x_modality == "depth":
            if depth is None:
                raise ValueError("this proposal model fuses depth: pass depth")
            d = np.nan_to_num(np.asarray(depth, np.float32), nan=0.0)
            return np.asarray(depth_to_rgb(d, valid, colormap=None))
        raise ValueError(f"X modality {self.x_modality!r} is not supported at inference here (normals, depth)")

    @torch.no_grad()
    def predict(self, rgb: np.ndarray, depth: np.ndarray | None = None, normals: np.ndarray | None = None,
                valid: np.ndarray | None = None) -> Proposals:
        """One frame (rgb HxWx3 uint8; depth HxW m / normals HxWx3 / valid HxW as X needs) -> :class:`Proposals`."""
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"rgb must be HxWx3 uint8, got {rgb.dtype} {rgb.shape}")
        h, w = rgb.shape[:2]
        size = self._size(h, w)

        def prep(img: np.ndarray) -> torch.Tensor:
            t = torch.from_numpy(np.ascontiguousarray(img)).to(self.device).permute(2, 0, 1)[None].float() / 255.0
            return F.interpolate(t, size=size, mode="bilinear", align_corners=False, antialias=True)

        x = prep(self._x_image(depth, normals, valid)) if self.model.uses_x else None
        out = self.model(prep(rgb), x)
        emb = out["pred_embeddings"][0]
        # objectness = 1 - p(no object) against the training vocabulary stored at export (all 1 if absent)
        text = self.meta.get("class_embeddings")
        if text is not None:
            obj = 1.0 - self.model.classify(emb[None], text.to(self.device))[0].softmax(-1)[:, -1]
        else:
            obj = torch.ones(emb.shape[0], device=emb.device)
        keep = obj >= self.min_objectness
        if not bool(keep.any()):
            keep = torch.ones_like(keep)
        masks = F.interpolate(out["pred_masks"][:, keep].float(), size=(h, w), mode="bilinear", align_corners=False)[0]
        score = obj[keep, None, None] * masks.sigmoid()
        q = score.argmax(0)
        used, seg = torch.unique(q, return_inverse=True)
        kept_idx = torch.nonzero(keep).flatten()[used]
        return Proposals(seg.to(torch.int32).cpu().numpy(), emb[kept_idx].cpu(), obj[kept_idx].cpu())

    def propose(self, rgb: np.ndarray, depth: np.ndarray | None = None, normals: np.ndarray | None = None,
                valid: np.ndarray | None = None, cfg: object | None = None) -> np.ndarray:
        """Segments HxW int32 in 0..S-1 (the :func:`movseg_core.proposals.propose` contract)."""
        return self.predict(rgb, depth, normals, valid).segments

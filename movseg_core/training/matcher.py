"""Hungarian matching between predicted queries and ground-truth segments (Mask2Former-style,
kept apart from the model and the loss). Uses scipy's ``linear_sum_assignment``."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment


def pairwise_sigmoid_focal(logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25,
                           gamma: float = 2.0) -> torch.Tensor:
    """Mean-over-pixels sigmoid focal loss of every prediction against every target.

    logits ``N x P`` (mask logits, P pixels), targets ``M x P`` in {0, 1} -> ``N x M``.
    """
    p = logits.sigmoid()
    pos = (1 - p) ** gamma * F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits), reduction="none")
    neg = p ** gamma * F.binary_cross_entropy_with_logits(logits, torch.zeros_like(logits), reduction="none")
    if alpha >= 0:
        pos, neg = pos * alpha, neg * (1 - alpha)
    return (pos @ targets.t() + neg @ (1 - targets).t()) / logits.shape[1]


def pairwise_dice(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Dice loss ``1 - (2|p t| + 1) / (|p| + |t| + 1)`` of every prediction vs every target -> ``N x M``."""
    p = logits.sigmoid()
    num = 2 * p @ targets.t()
    den = p.sum(-1)[:, None] + targets.sum(-1)[None, :]
    return 1 - (num + 1) / (den + 1)


@dataclass
class HungarianMatcher:
    """Cost = cost_class * (-p(class)) + cost_mask * focal + cost_dice * dice (MOVSeg Eq. 1 weights).

    Masks are compared at the prediction's resolution (targets are resized bilinearly).
    """

    cost_class: float = 1.0
    cost_mask: float = 20.0
    cost_dice: float = 1.0

    @torch.no_grad()
    def __call__(self, outputs: dict, targets: list[dict]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """outputs: ``pred_logits`` ``B x N x (C+1)``, ``pred_masks`` ``B x N x h x w``; targets: per image
        ``labels`` (M,) long and ``masks`` ``M x H x W``. Returns per image (query indices, target indices),
        both int64 of length min(N, M), sorted by query index."""
        logits, masks = outputs["pred_logits"], outputs["pred_masks"]
        if len(targets) != logits.shape[0]:
            raise ValueError(f"{len(targets)} targets for a batch of {logits.shape[0]}")
        out = []
        for b, tgt in enumerate(targets):
            labels, tmasks = tgt["labels"], tgt["masks"]
            if len(labels) == 0:
                e = torch.empty(0, dtype=torch.int64)
                out.append((e, e.clone()))
                continue
            prob = logits[b].float().softmax(-1)
            c_cls = -prob[:, labels]
            pm = masks[b].float()
            tm = tmasks.float()
            if tm.shape[-2:] != pm.shape[-2:]:
                tm = F.interpolate(tm[None], size=pm.shape[-2:], mode="bilinear", align_corners=False)[0]
            pm, tm = pm.flatten(1), tm.flatten(1)
            cost = (self.cost_class * c_cls + self.cost_mask * pairwise_sigmoid_focal(pm, tm)
                    + self.cost_dice * pairwise_dice(pm, tm))
            if not torch.isfinite(cost).all():
                raise ValueError("matching cost has NaN/inf (diverged predictions?)")
            qi, ti = linear_sum_assignment(cost.cpu().numpy())
            out.append((torch.as_tensor(qi, dtype=torch.int64), torch.as_tensor(ti, dtype=torch.int64)))
        return out

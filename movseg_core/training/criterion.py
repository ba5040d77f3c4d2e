"""MOVSeg loss (Eq. 1): L = L_cls + 20 * L_mask + L_dice over Hungarian-matched queries.

L_cls: cross-entropy of every query's logits (C classes + no object; no-object weight
``eos_coef``) against its matched class or no object. L_mask: sigmoid focal loss (alpha 0.25,
gamma 2) averaged over pixels, summed over matched masks, divided by the number of target masks.
L_dice: dice loss summed over matched masks, divided by the number of target masks. Under
torch.distributed both normalisers are averaged over processes (as in Mask2Former), so the DDP
gradient equals the single-process gradient on the same global batch. Auxiliary (earlier layer)
outputs get the same terms with suffix ``_i``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .distributed import all_reduce_mean
from .matcher import HungarianMatcher


def sigmoid_focal_loss(logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25,
                       gamma: float = 2.0) -> torch.Tensor:
    """Per-mask focal loss ``M x P`` -> ``M`` (mean over pixels). RetinaNet's definition."""
    p = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return loss.mean(1)


def dice_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-mask dice loss ``M x P`` -> ``M``: ``1 - (2 sum(p t) + 1) / (sum p + sum t + 1)``."""
    p = logits.sigmoid()
    return 1 - (2 * (p * targets).sum(1) + 1) / (p.sum(1) + targets.sum(1) + 1)


class SetCriterion(nn.Module):
    """See module docstring. ``weights`` = {"loss_ce": 1, "loss_mask": 20, "loss_dice": 1} (Eq. 1)."""

    def __init__(self, matcher: HungarianMatcher | None = None, eos_coef: float = 0.1, weight_ce: float = 1.0,
                 weight_mask: float = 20.0, weight_dice: float = 1.0, focal_alpha: float = 0.25,
                 focal_gamma: float = 2.0):
        super().__init__()
        self.matcher = matcher or HungarianMatcher(weight_ce, weight_mask, weight_dice)
        self.eos_coef = eos_coef
        self.weights = {"loss_ce": weight_ce, "loss_mask": weight_mask, "loss_dice": weight_dice}
        self.alpha, self.gamma = focal_alpha, focal_gamma

    def _terms(self, out: dict, targets: list[dict], num_masks: torch.Tensor) -> dict[str, torch.Tensor]:
        indices = self.matcher(out, targets)
        logits = out["pred_logits"].float()
        b, n, c1 = logits.shape
        tgt_cls = torch.full((b, n), c1 - 1, dtype=torch.int64, device=logits.device)
        for i, (qi, ti) in enumerate(indices):
            tgt_cls[i, qi.to(logits.device)] = targets[i]["labels"][ti].to(logits.device)
        w = torch.ones(c1, device=logits.device)
        w[-1] = self.eos_coef
        ce = F.cross_entropy(logits.reshape(-1, c1), tgt_cls.reshape(-1), weight=w, reduction="sum")
        w_sum = all_reduce_mean(w[tgt_cls].sum())
        loss_ce = ce / w_sum.clamp(min=1e-6)

        src = [out["pred_masks"][i][qi] for i, (qi, _) in enumerate(indices)]
        tgt = [targets[i]["masks"][ti].to(logits.device).float() for i, (_, ti) in enumerate(indices)]
        src_m = torch.cat(src) if src else out["pred_masks"].new_zeros((0, 1, 1))
        if src_m.shape[0] == 0:
            zero = out["pred_masks"].sum() * 0.0
            return {"loss_ce": loss_ce, "loss_mask": zero, "loss_dice": zero}
        tgt_m = torch.cat(tgt)
        if src_m.shape[-2:] != tgt_m.shape[-2:]:
            src_m = F.interpolate(src_m[None].float(), size=tgt_m.shape[-2:], mode="bilinear", align_corners=False)[0]
        src_m, tgt_m = src_m.float().flatten(1), tgt_m.flatten(1)
        return {
            "loss_ce": loss_ce,
            "loss_mask": sigmoid_focal_loss(src_m, tgt_m, self.alpha, self.gamma).sum() / num_masks,
            "loss_dice": dice_loss(src_m, tgt_m).sum() / num_masks,
        }

    def forward(self, outputs: dict, targets: list[dict]) -> dict[str, torch.Tensor]:
        """Loss terms (unweighted) for the final and auxiliary outputs; see :meth:`total`."""
        dev = outputs["pred_masks"].device
        n = torch.tensor(float(sum(len(t["labels"]) for t in targets)), device=dev)
        num_masks = all_reduce_mean(n).clamp(min=1.0)
        losses = self._terms(outputs, targets, num_masks)
        for i, aux in enumerate(outputs.get("aux_outputs", [])):
            losses.update({f"{k}_{i}": v for k, v in self._terms(aux, targets, num_masks).items()})
        return losses

    def total(self, losses: dict[str, torch.Tensor]) -> torch.Tensor:
        """Weighted sum L = sum_k w_k * loss_k over all terms (final + auxiliary)."""
        return sum(self.weights[k.rsplit("_", 1)[0] if k not in self.weights else k] * v for k, v in losses.items())

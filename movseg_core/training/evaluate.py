"""Evaluation of a proposal generator: end-to-end mIoU (proposal embeddings vs text embeddings)
and proposal mIoU with oracle classification (each proposal segment takes its majority
ground-truth class), both from one dataset-level confusion matrix (movseg_core.eval.metrics)."""
from __future__ import annotations

from typing import Any, Iterable

import numpy as np
import torch
import torch.nn.functional as F

from ..eval.metrics import confusion_matrix, miou_from_confusion, per_class_iou
from ..models.maskformer import semantic_inference


def proposal_segments(pred_logits: torch.Tensor, pred_masks: torch.Tensor, min_objectness: float = 0.5) -> torch.Tensor:
    """Class-agnostic segmentation ``H x W`` int64 (query index per pixel) of one image.

    Each pixel goes to the query maximising objectness * sigmoid(mask), objectness = 1 - p(no object);
    queries with objectness below ``min_objectness`` are dropped (all kept if none passes).
    """
    obj = 1.0 - pred_logits.float().softmax(-1)[:, -1]
    keep = obj >= min_objectness
    if not bool(keep.any()):
        keep = torch.ones_like(keep)
    score = obj[keep, None, None] * pred_masks.float().sigmoid()[keep]
    idx = torch.nonzero(keep).flatten()
    return idx[score.argmax(0)]


def oracle_labels(segments: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Give every segment the majority non-zero ground-truth id inside it (0 if it has none)."""
    out = np.zeros_like(gt)
    for s in np.unique(segments):
        m = segments == s
        g = gt[m]
        g = g[g > 0]
        if g.size:
            out[m] = np.bincount(g).argmax()
    return out


@torch.no_grad()
def evaluate(model: torch.nn.Module, batches: Iterable[dict], class_embeddings: torch.Tensor, num_classes: int,
             device: torch.device | str = "cpu", per_class: bool = False) -> dict[str, Any]:
    """mIoU over batches from :func:`~movseg_core.training.data.collate` -> {``miou``, ``oracle_miou``}
    (plus ``iou`` / ``oracle_iou``: per-id IoU arrays, index = class id, NaN for 0, when ``per_class``).

    Ids are 1..num_classes, 0 = ignore. The model is run in eval mode (and restored after).
    """
    model = getattr(model, "module", model)
    was_training = model.training
    model.eval()
    n = num_classes + 1
    cm_e2e = np.zeros((n, n), np.int64)
    cm_orc = np.zeros((n, n), np.int64)
    for batch in batches:
        rgb = batch["rgb"].to(device)
        x = batch["x"].to(device) if batch["x"] is not None else None
        out = model(rgb, x, class_embeddings.to(device))
        masks = F.interpolate(out["pred_masks"].float(), size=rgb.shape[-2:], mode="bilinear", align_corners=False)
        sem = semantic_inference(out["pred_logits"], masks).argmax(1) + 1
        for b in range(rgb.shape[0]):
            gt = batch["label"][b].numpy()
            cm_e2e += confusion_matrix(sem[b].cpu().numpy(), gt, n)
            seg = proposal_segments(out["pred_logits"][b], masks[b]).cpu().numpy()
            cm_orc += confusion_matrix(oracle_labels(seg, gt), gt, n)
    model.train(was_training)
    res: dict[str, Any] = {"miou": miou_from_confusion(cm_e2e), "oracle_miou": miou_from_confusion(cm_orc)}
    if per_class:
        res["iou"], res["oracle_iou"] = per_class_iou(cm_e2e), per_class_iou(cm_orc)
    return res

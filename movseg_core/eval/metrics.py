"""Semantic segmentation metrics from a confusion matrix (the convention of the papers).

Confusion matrix ``cm[g, p]`` counts pixels of ground-truth id ``g`` predicted as ``p``, over ids
``0..num_classes-1``. Pixels whose ground truth is ``ignore_index`` (NYUv2: 0 = unlabeled) are
not counted. A prediction of ``ignore_index`` (0 = "unknown") on a labelled pixel stays in the
matrix and counts as a miss of the true class. Accumulate one matrix over the whole dataset,
then derive the scores (dataset-level IoU, not a mean of per-image IoUs).

IoU_c = cm[c,c] / (row_c + col_c - cm[c,c]); classes with an empty union (neither in ground
truth nor predicted) are NaN and left out of means; the ``ignore_index`` class is NaN.
"""
from __future__ import annotations

import numpy as np


def paired_maps(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(pred, gt)`` as numpy arrays; ValueError when a prediction and its ground truth differ in shape."""
    pred = np.asarray(pred)
    gt = np.asarray(gt)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {pred.shape} != ground truth shape {gt.shape}")
    return pred, gt


def confusion_matrix(pred: np.ndarray, gt: np.ndarray, num_classes: int, ignore_index: int | None = 0) -> np.ndarray:
    """(num_classes, num_classes) int64 counts, rows = ground truth, columns = prediction.

    pred, gt: HxW integer label maps of the same shape with ids in 0..num_classes-1.
    """
    pred, gt = paired_maps(pred, gt)
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    for name, a in (("prediction", pred), ("ground truth", gt)):
        if not np.issubdtype(a.dtype, np.integer):
            raise ValueError(f"{name} must be an integer label map, got {a.dtype}")
    keep = np.ones(gt.shape, bool) if ignore_index is None else gt != ignore_index
    g = gt[keep].astype(np.int64)
    p = pred[keep].astype(np.int64)
    if g.size and (g.min() < 0 or g.max() >= num_classes):
        raise ValueError(f"ground truth ids {g.min()}..{g.max()} outside 0..{num_classes - 1}")
    if p.size and (p.min() < 0 or p.max() >= num_classes):
        raise ValueError(f"prediction ids {p.min()}..{p.max()} outside 0..{num_classes - 1}")
    return np.bincount(g * num_classes + p, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def _check(cm: np.ndarray) -> np.ndarray:
    cm = np.asarray(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"confusion matrix must be square, got shape {cm.shape}")
    return cm.astype(np.float64)


def per_class_iou(cm: np.ndarray, ignore_index: int | None = 0) -> np.ndarray:
    """(C,) float64 IoU per class id; NaN for an empty union and for ``ignore_index``."""
    cm = _check(cm)
    tp = np.diag(cm)
    union = cm.sum(0) + cm.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, tp / union, np.nan)
    if ignore_index is not None:
        iou[ignore_index] = np.nan
    return iou


def miou_from_confusion(cm: np.ndarray, ignore_index: int | None = 0) -> float:
    """Mean IoU over classes with a non-empty union (NaN if there is none)."""
    iou = per_class_iou(cm, ignore_index)
    return float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")


def pixel_accuracy(cm: np.ndarray, ignore_index: int | None = 0) -> float:
    """Correct / labelled pixels (rows of ``ignore_index`` excluded; NaN if none)."""
    cm = _check(cm)
    rows = np.ones(cm.shape[0], bool)
    if ignore_index is not None:
        rows[ignore_index] = False
    total = cm[rows].sum()
    return float(np.diag(cm)[rows].sum() / total) if total > 0 else float("nan")


def frequency_weighted_iou(cm: np.ndarray, ignore_index: int | None = 0) -> float:
    """sum_c (gt pixels of c / labelled pixels) * IoU_c over classes with a defined IoU."""
    cm = _check(cm)
    iou = per_class_iou(cm, ignore_index)
    freq = cm.sum(1)
    ok = np.isfinite(iou)
    total = freq[ok].sum()
    return float((freq[ok] * iou[ok]).sum() / total) if total > 0 else float("nan")


def _boundaries(labels: np.ndarray) -> np.ndarray:
    """HxW bool: pixels with a 4-neighbour of another label, marked on BOTH sides of every change.

    Marking both sides makes the map (and the score) invariant to mirroring the image.
    """
    b = np.zeros(labels.shape, bool)
    dx = labels[:, 1:] != labels[:, :-1]
    dy = labels[1:, :] != labels[:-1, :]
    b[:, :-1] |= dx
    b[:, 1:] |= dx
    b[:-1, :] |= dy
    b[1:, :] |= dy
    return b


def boundary_f1(pred: np.ndarray, gt: np.ndarray, tolerance_px: float = 2.0, ignore_index: int | None = 0) -> float:
    """Boundary F1 (Csurka et al. 2013): boundary pixels of each map matched within ``tolerance_px``.

    pred, gt: HxW integer label maps. Boundaries are label changes between 4-neighbours, marked on
    both sides of the change (BSDS/Cityscapes style; symmetric, so mirroring both maps leaves the
    score unchanged). A change between a labelled ground-truth pixel and an ``ignore_index`` pixel is
    a ground-truth boundary (where the annotation of an object ends). Both boundary sets are scored
    only inside the evaluated region: labelled ground truth dilated by ``tolerance_px``, so a
    predicted boundary in a thin unlabelled seam between two objects (common in NYUv2) is scored and
    matches the objects' edges, while boundaries deep inside large unlabelled areas are not scored.
    Distances are exact Euclidean. 1.0 when both sets are empty, 0.0 when only one is.
    """
    import cv2

    pred = np.asarray(pred)
    gt = np.asarray(gt)
    if pred.shape != gt.shape or pred.ndim != 2:
        raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} must be equal HxW")
    bp, bg = _boundaries(pred), _boundaries(gt)
    if ignore_index is not None:
        unlabelled = gt == ignore_index
        if unlabelled.all():
            bp[:] = False
            bg[:] = False
        elif unlabelled.any():
            to_labelled = cv2.distanceTransform(unlabelled.astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
            keep = to_labelled <= tolerance_px
            bp &= keep
            bg &= keep
    if not bp.any() and not bg.any():
        return 1.0
    if not bp.any() or not bg.any():
        return 0.0
    dist_to_g = cv2.distanceTransform((~bg).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    dist_to_p = cv2.distanceTransform((~bp).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    precision = float((dist_to_g[bp] <= tolerance_px).mean())
    recall = float((dist_to_p[bg] <= tolerance_px).mean())
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)

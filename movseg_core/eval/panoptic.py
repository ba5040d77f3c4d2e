"""Instance-level metrics: panoptic quality, mask AP, 3D centroid error and 3D box IoU.

Inputs per image: a predicted and a ground-truth instance map (HxW integers, 0 = none), each with
a class per instance id (``dict`` or array indexed by id), optionally a void mask (HxW bool).
Ground-truth pixels with instance 0 are void too.

- **PQ, SQ, RQ** (Kirillov et al., "Panoptic Segmentation", CVPR 2019): a predicted and a true
  segment of the same class match when their IoU > 0.5 (unique by construction for
  non-overlapping segments). IoU leaves out the prediction's void pixels. Per class
  ``PQ = sum IoU(TP) / (TP + FP/2 + FN/2) = SQ * RQ`` with ``SQ = mean IoU(TP)``,
  ``RQ = TP / (TP + FP/2 + FN/2)``; predictions with more than half their pixels in void are not
  false positives. Means over the classes that occur (TP + FP + FN > 0), accumulated over the
  whole dataset before dividing (not a mean of per-image scores).
- **Mask AP** (COCO style): per class, predictions in descending score order over the dataset each
  match the unmatched true segment of highest IoU >= t; 101-point interpolated precision over
  recall, mean over t in 0.50:0.05:0.95 and over classes with ground truth. Mostly-void
  predictions are ignored, as COCO ignores crowd regions.
- **3D**: for PQ-matched pairs of thing segments with 3D boxes: centroid distance (m) and the
  IoU of the *axis-aligned* boxes (camera frame) -- oriented-box IoU is not computed.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from .metrics import paired_maps

AP_THRESHOLDS = np.round(np.arange(0.5, 0.951, 0.05), 2)


def _per_id(values: Mapping | Sequence | np.ndarray, n: int, dtype, fill) -> np.ndarray:
    """A value per instance id 0..n-1 (``fill`` where not given) from a mapping id -> value or a sequence."""
    out = np.full(n, fill, dtype)
    if isinstance(values, Mapping):
        for k, v in values.items():
            if 0 <= int(k) < n:
                out[int(k)] = v
    else:
        a = np.asarray(values, dtype).ravel()
        out[:min(n, a.size)] = a[:n]
    return out


def _classes(cls: Mapping[int, int] | Sequence[int] | np.ndarray, n: int) -> np.ndarray:
    """Class per instance id 0..n-1 as an int64 array (0 where unknown)."""
    return _per_id(cls, n, np.int64, 0)


@dataclass
class Overlaps:
    """Intersections of one image's predicted and true segments (void pixels left out).

    pairs_pred / pairs_gt / inter: every (pred id > 0, gt id > 0) pair that overlaps and its pixel
    count; pred_area / pred_void / gt_area: per id (index = id) pixel counts; iou: per pair.
    """

    pairs_pred: np.ndarray
    pairs_gt: np.ndarray
    inter: np.ndarray
    iou: np.ndarray
    pred_area: np.ndarray
    pred_void: np.ndarray
    gt_area: np.ndarray


def overlaps(pred: np.ndarray, gt: np.ndarray, void: np.ndarray | None = None) -> Overlaps:
    """Pairwise overlaps of instance maps ``pred`` and ``gt`` (HxW ints, 0 = none); void: HxW bool
    (gt == 0 is void as well). IoU = inter / (pred area - pred void + gt area - inter)."""
    pred, gt = paired_maps(pred, gt)
    p = pred.ravel().astype(np.int64)
    g = gt.ravel().astype(np.int64)
    if (p.size and p.min() < 0) or (g.size and g.min() < 0):
        raise ValueError("instance ids must be >= 0")
    v = g == 0
    if void is not None:
        if np.shape(void) != gt.shape:
            raise ValueError(f"void mask shape {np.shape(void)} != ground truth shape {gt.shape}")
        v |= np.asarray(void, bool).ravel()
    n_p = int(p.max()) + 1 if p.size else 1
    n_g = int(g.max()) + 1 if g.size else 1
    pred_area = np.bincount(p, minlength=n_p)
    pred_void = np.bincount(p[v], minlength=n_p)
    gt_area = np.bincount(g[~v], minlength=n_g)
    keep = ~v & (p > 0)
    keys, inter = np.unique(g[keep] * n_p + p[keep], return_counts=True)
    pp, gg = keys % n_p, keys // n_p
    iou = inter / (pred_area[pp] - pred_void[pp] + gt_area[gg] - inter)
    return Overlaps(pp, gg, inter, iou, pred_area, pred_void, gt_area)


def box_iou_3d(a_min: np.ndarray, a_max: np.ndarray, b_min: np.ndarray, b_max: np.ndarray) -> float:
    """IoU of two axis-aligned 3D boxes given by their (3,) corners (0 if either is empty)."""
    a_min, a_max, b_min, b_max = (np.asarray(x, np.float64) for x in (a_min, a_max, b_min, b_max))
    inter = np.prod(np.clip(np.minimum(a_max, b_max) - np.maximum(a_min, b_min), 0, None))
    va, vb = np.prod(np.clip(a_max - a_min, 0, None)), np.prod(np.clip(b_max - b_min, 0, None))
    union = va + vb - inter
    return float(inter / union) if union > 0 else 0.0


@dataclass
class Box3D:
    """A 3D box for :meth:`PanopticEvaluator.add`: centroid (3,), box_min (3,), box_max (3,), metres."""

    centroid: np.ndarray
    box_min: np.ndarray
    box_max: np.ndarray


@dataclass
class PanopticEvaluator:
    """Accumulates PQ / SQ / RQ, mask AP and 3D errors over a dataset (see module docstring).

    num_classes: class ids are 1..num_classes-1 (0 = none). stuff: class ids treated as stuff
    (reported separately; no 3D statistics for them).
    """

    num_classes: int
    stuff: frozenset[int] = frozenset()
    tp: np.ndarray = field(init=False)
    fp: np.ndarray = field(init=False)
    fn: np.ndarray = field(init=False)
    iou_sum: np.ndarray = field(init=False)
    centroid_err: list[float] = field(default_factory=list, init=False)
    box_iou: list[float] = field(default_factory=list, init=False)
    _ap_scores: list[list[float]] = field(init=False)
    _ap_hits: list[list[np.ndarray]] = field(init=False)
    _ap_gt: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        if self.num_classes < 2:
            raise ValueError(f"num_classes must be >= 2 (0 = none plus one class), got {self.num_classes}")
        k = self.num_classes
        self.stuff = frozenset(int(s) for s in self.stuff)
        self.tp, self.fp, self.fn = (np.zeros(k, np.int64) for _ in range(3))
        self.iou_sum = np.zeros(k)
        self._ap_scores = [[] for _ in range(k)]
        self._ap_hits = [[] for _ in range(k)]
        self._ap_gt = np.zeros(k, np.int64)

    def add(self, pred: np.ndarray, pred_classes, gt: np.ndarray, gt_classes, *, scores=None,
            void: np.ndarray | None = None, pred_boxes: Mapping[int, Box3D] | None = None,
            gt_boxes: Mapping[int, Box3D] | None = None) -> None:
        """One image. pred / gt: HxW instance maps (0 = none); *_classes: class per id (dict or array
        indexed by id); scores: confidence per predicted id (dict or array; default 1) for AP;
        void: HxW bool pixels to ignore; pred_boxes / gt_boxes: {id: Box3D} for the 3D errors."""
        ov = overlaps(pred, gt, void)
        n_p, n_g = ov.pred_area.size, ov.gt_area.size
        pc, gc = _classes(pred_classes, n_p), _classes(gt_classes, n_g)
        for name, c in (("prediction", pc), ("ground truth", gc)):
            if c.size and (c.min() < 0 or c.max() >= self.num_classes):
                raise ValueError(f"{name} class ids {c.min()}..{c.max()} outside 0..{self.num_classes - 1}")
        sc = np.ones(n_p) if scores is None else _scores(scores, n_p)
        pred_ids = np.nonzero((ov.pred_area > 0) & (np.arange(n_p) > 0))[0]
        gt_ids = np.nonzero((ov.gt_area > 0) & (np.arange(n_g) > 0))[0]
        mostly_void = (ov.pred_area - ov.pred_void) * 2 < ov.pred_area  # > half of its pixels in void
        same = pc[ov.pairs_pred] == gc[ov.pairs_gt]
        m = same & (ov.iou > 0.5)
        mp, mg, miou = ov.pairs_pred[m], ov.pairs_gt[m], ov.iou[m]
        matched_p = np.zeros(n_p, bool)
        matched_g = np.zeros(n_g, bool)
        matched_p[mp], matched_g[mg] = True, True
        np.add.at(self.tp, gc[mg], 1)
        np.add.at(self.iou_sum, gc[mg], miou)
        fn_ids = gt_ids[~matched_g[gt_ids]]
        np.add.at(self.fn, gc[fn_ids], 1)
        fp_ids = pred_ids[~matched_p[pred_ids] & ~mostly_void[pred_ids] & (pc[pred_ids] > 0)]
        np.add.at(self.fp, pc[fp_ids], 1)
        # 3D errors on matched thing pairs that have boxes on both sides
        if pred_boxes is not None and gt_boxes is not None:
            for p, g in zip(mp.tolist(), mg.tolist()):
                if int(gc[g]) in self.stuff or p not in pred_boxes or g not in gt_boxes:
                    continue
                a, b = pred_boxes[p], gt_boxes[g]
                self.centroid_err.append(float(np.linalg.norm(np.asarray(a.centroid) - np.asarray(b.centroid))))
                self.box_iou.append(box_iou_3d(a.box_min, a.box_max, b.box_min, b.box_max))
        # AP: greedy matching per class in score order, per threshold
        for c in np.unique(np.concatenate([gc[gt_ids], pc[pred_ids]])):
            if c == 0:
                continue
            gts = gt_ids[gc[gt_ids] == c]
            self._ap_gt[c] += gts.size
            preds = pred_ids[(pc[pred_ids] == c) & ~mostly_void[pred_ids]]
            if preds.size == 0:
                continue
            preds = preds[np.argsort(-sc[preds], kind="stable")]
            table = np.zeros((preds.size, gts.size))
            pos_p = {int(p): i for i, p in enumerate(preds)}
            pos_g = {int(g): j for j, g in enumerate(gts)}
            for p, g, iou in zip(ov.pairs_pred.tolist(), ov.pairs_gt.tolist(), ov.iou.tolist()):
                if p in pos_p and g in pos_g:
                    table[pos_p[p], pos_g[g]] = iou
            hits = np.zeros((AP_THRESHOLDS.size, preds.size), bool)
            for t_i, t in enumerate(AP_THRESHOLDS):
                taken = np.zeros(gts.size, bool)
                for i in range(preds.size):
                    cand = np.where(~taken & (table[i] >= t), table[i], -1.0)
                    if cand.size and cand.max() >= 0:
                        j = int(cand.argmax())
                        taken[j] = True
                        hits[t_i, i] = True
            self._ap_scores[c].extend(sc[preds].tolist())
            self._ap_hits[c].append(hits)

    def result(self) -> dict:
        """``pq``, ``sq``, ``rq`` (all, ``_things``, ``_stuff``), ``ap``, ``ap50``, ``per_class``
        ({id: {pq, sq, rq, tp, fp, fn, ap}}), ``centroid_err_m`` (list), ``box3d_iou`` (list). NaN
        where nothing was counted."""
        k = self.num_classes
        denom = self.tp + 0.5 * self.fp + 0.5 * self.fn
        occurs = denom > 0
        occurs[0] = False
        with np.errstate(invalid="ignore", divide="ignore"):
            sq = np.where(self.tp > 0, self.iou_sum / np.maximum(self.tp, 1), 0.0)
            rq = np.where(occurs, self.tp / np.where(denom > 0, denom, 1), np.nan)
            pq = np.where(occurs, self.iou_sum / np.where(denom > 0, denom, 1), np.nan)
        sq = np.where(occurs, sq, np.nan)
        ap = np.full((k, AP_THRESHOLDS.size), np.nan)
        for c in range(1, k):
            if self._ap_gt[c] == 0:
                continue
            if not self._ap_scores[c]:
                ap[c] = 0.0
                continue
            scores = np.asarray(self._ap_scores[c])
            hits = np.concatenate(self._ap_hits[c], axis=1)
            order = np.argsort(-scores, kind="stable")
            for t_i in range(AP_THRESHOLDS.size):
                ap[c, t_i] = average_precision(hits[t_i, order], int(self._ap_gt[c]))
        stuff = np.zeros(k, bool)
        stuff[list(s for s in self.stuff if 0 <= s < k)] = True

        def mean(x: np.ndarray, sel: np.ndarray) -> float:
            v = x[sel & occurs]
            return float(np.nanmean(v)) if v.size and not np.all(np.isnan(v)) else float("nan")

        out = {}
        for suffix, sel in (("", np.ones(k, bool)), ("_things", ~stuff), ("_stuff", stuff)):
            out["pq" + suffix], out["sq" + suffix], out["rq" + suffix] = mean(pq, sel), mean(sq, sel), mean(rq, sel)
        has_gt = self._ap_gt > 0
        out["ap"] = float(np.nanmean(ap[has_gt])) if has_gt.any() else float("nan")
        out["ap50"] = float(np.nanmean(ap[has_gt, 0])) if has_gt.any() else float("nan")
        out["per_class"] = {c: {"pq": float(pq[c]), "sq": float(sq[c]), "rq": float(rq[c]), "tp": int(self.tp[c]),
                                "fp": int(self.fp[c]), "fn": int(self.fn[c]),
                                "ap": float(np.nanmean(ap[c])) if has_gt[c] else float("nan")}
                            for c in range(1, k) if occurs[c] or has_gt[c]}
        out["centroid_err_m"] = list(self.centroid_err)
        out["box3d_iou"] = list(self.box_iou)
        return out


def panoptic_truth(instances: np.ndarray, label: np.ndarray,
                   stuff: frozenset[int] | set[int] = frozenset()) -> tuple[np.ndarray, dict[int, int]]:
    """Panoptic ground truth from an instance map and a class map (HxW each, 0 = none / unlabelled).

    Things: one segment per instance id (its class = ``label`` at its first pixel); stuff classes
    (``stuff``): all their labelled pixels form one segment per class (id = largest labelled instance id + class),
    whatever their instance ids. Unlabelled pixels (label 0) and thing pixels of instance 0 are void (0).
    Returns (segment map HxW int64, {segment id: class id}).
    """
    inst, lab = paired_maps(np.asarray(instances).astype(np.int64), np.asarray(label).astype(np.int64))
    seg = np.where(lab > 0, inst, 0)
    base = int(seg.max(initial=0))
    stuff_px = np.isin(lab, np.fromiter(stuff, np.int64, len(stuff))) & (lab > 0)
    seg[stuff_px] = base + lab[stuff_px]
    ids, first = np.unique(seg.ravel(), return_index=True)
    return seg, {int(i): int(lab.ravel()[f]) for i, f in zip(ids, first) if i > 0}


def _scores(scores, n: int) -> np.ndarray:
    """Score per instance id 0..n-1 as float64 (1 where not given)."""
    return _per_id(scores, n, np.float64, 1.0)


def average_precision(hits: np.ndarray, n_gt: int) -> float:
    """COCO 101-point interpolated AP of detections in descending score order (``hits`` bool per
    detection: matched a true segment) against ``n_gt`` true segments."""
    if n_gt <= 0:
        return float("nan")
    hits = np.asarray(hits, bool)
    if hits.size == 0:
        return 0.0
    tp = np.cumsum(hits)
    fp = np.cumsum(~hits)
    recall = tp / n_gt
    precision = tp / (tp + fp)
    precision = np.maximum.accumulate(precision[::-1])[::-1]  # make it non-increasing
    rs = np.linspace(0.0, 1.0, 101)
    idx = np.searchsorted(recall, rs, side="left")
    return float(np.mean(np.where(idx < recall.size, precision[np.minimum(idx, recall.size - 1)], 0.0)))

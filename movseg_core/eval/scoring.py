"""Accumulate one evaluation: dataset confusion matrix, frame counts, latencies, a few samples.

Scores are computed once from the summed confusion matrix (see :mod:`movseg_core.eval.metrics`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from movseg_core.eval import metrics as metric  # module alias: the class below has a `metrics` method
from movseg_core.eval.panoptic import PanopticEvaluator, panoptic_truth

if TYPE_CHECKING:
    from movseg_core.eval.prompts import PromptMap


@dataclass
class Sample:
    """A frame kept for overlays: rgb HxWx3 uint8, pred / gt HxW uint16 class ids."""

    name: str
    rgb: np.ndarray
    pred: np.ndarray
    gt: np.ndarray


def _nan_to_none(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def percentiles(values: Sequence[float]) -> dict[str, float | int | None]:
    """n, mean, p50, p90, p95, p99, max of ``values`` (ms); None entries when empty."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return {"n": 0, "mean": None, "p50": None, "p90": None, "p95": None, "p99": None, "max": None}
    out: dict[str, float | int | None] = {"n": int(v.size), "mean": float(v.mean())}
    for p in (50, 90, 95, 99):
        out[f"p{p}"] = float(np.percentile(v, p))
    out["max"] = float(v.max())
    return out


@dataclass
class EvalAccumulator:
    """Scores frames of class-id label maps (0 = unlabeled in gt / unknown in pred; ids 1..C-1).

    class_names: names of ids 1..C-1. keep_samples: how many frames to keep for overlays.
    stuff: class ids scored as stuff (one segment per class) by :meth:`add_instances` (set it before the
    first one); the panoptic scores (PQ / SQ / RQ, mask AP; :mod:`movseg_core.eval.panoptic`) cover the
    frames given to it.
    """

    class_names: tuple[str, ...]
    keep_samples: int = 3
    stuff: frozenset[int] = frozenset()
    cm: np.ndarray = field(init=False)
    frames_sent: int = 0
    frames_scored: int = 0
    latency_ms: list[float] = field(default_factory=list)
    inference_ms: list[float] = field(default_factory=list)
    boundary_f1: list[float] = field(default_factory=list)
    frame_names: list[str] = field(default_factory=list)
    unscored: dict[str, str] = field(default_factory=dict)
    samples: list[Sample] = field(default_factory=list)
    panoptic: PanopticEvaluator | None = field(default=None, init=False)
    panoptic_frames: list[str] = field(default_factory=list)
    instances_unscored: int = 0  # frames with ground-truth instances but no predicted objects

    def __post_init__(self) -> None:
        n = len(self.class_names) + 1
        self.cm = np.zeros((n, n), dtype=np.int64)

    @property
    def num_classes(self) -> int:
        """Number of label ids including 0 (void): ``len(class_names) + 1``."""
        return len(self.class_names) + 1

    def sent(self, n: int = 1) -> None:
        """Count frames given to the segmenter (scored or not)."""
        self.frames_sent += n

    def miss(self, name: str, reason: str) -> None:
        """A sent frame that could not be scored, and why."""
        self.unscored[name] = reason

    def add(self, name: str, pred: np.ndarray, gt: np.ndarray, rgb: np.ndarray | None = None,
            latency_ms: float | None = None, inference_ms: float | None = None) -> None:
        """Score one frame. pred, gt: HxW class ids of the same size (ValueError otherwise)."""
        if pred.shape != gt.shape:
            raise ValueError(f"frame {name}: prediction {pred.shape} and ground truth {gt.shape} differ in size")
        self.cm += metric.confusion_matrix(pred, gt, self.num_classes, ignore_index=0)
        self.boundary_f1.append(metric.boundary_f1(pred, gt))
        self.frames_scored += 1
        self.frame_names.append(name)
        if latency_ms is not None:
            self.latency_ms.append(float(latency_ms))
        if inference_ms is not None:
            self.inference_ms.append(float(inference_ms))
        if rgb is not None and len(self.samples) < self.keep_samples:
            self.samples.append(Sample(name, rgb.copy(), pred.astype(np.uint16), gt.astype(np.uint16)))

    def add_instances(self, name: str, pred: np.ndarray, pred_classes: dict[int, int], scores: dict[int, float],
                      gt_instances: np.ndarray, gt: np.ndarray) -> None:
        """Panoptic scoring of one frame. pred: HxW predicted instance map (0 = none) with a class id and
        a score per instance id; gt_instances: HxW ground-truth instance ids (0 = none), gt: HxW class ids
        (stuff classes merged per class by :func:`panoptic_truth`, unlabelled pixels void)."""
        if self.panoptic is None:
            self.panoptic = PanopticEvaluator(self.num_classes, stuff=self.stuff)
        gt_seg, gt_classes = panoptic_truth(gt_instances, gt, self.panoptic.stuff)
        self.panoptic.add(pred, pred_classes, gt_seg, gt_classes, scores=scores)
        self.panoptic_frames.append(name)

    def add_objects(self, name: str, instance_map: np.ndarray, objects: Sequence[Any], prompts: PromptMap,
                    names: Sequence[str], ids: Sequence[int], gt_instances: np.ndarray, gt: np.ndarray) -> None:
        """:meth:`add_instances` for a segmenter's objects: ``objects`` with ``id``, ``class_id`` (a label id
        of the vocabulary ``names`` / ``ids``) and ``score`` (``ObjectInstance`` records or ``Object`` messages)."""
        cls = prompts.to_class_ids(np.array([o.class_id for o in objects], np.int64), names, ids)
        self.add_instances(name, np.asarray(instance_map), {int(o.id): int(c) for o, c in zip(objects, cls)},
                           {int(o.id): float(o.score) for o in objects}, gt_instances, gt)

    def panoptic_metrics(self) -> dict[str, Any] | None:
        """PQ / SQ / RQ (all, things, stuff), mask AP and AP50, per class by name, over the frames given to
        :meth:`add_instances`; None when there were none."""
        if self.panoptic is None:
            return None
        r = self.panoptic.result()
        out: dict[str, Any] = {k: _nan_to_none(r[k]) for k in ("pq", "sq", "rq", "pq_things", "sq_things", "rq_things",
                                                               "pq_stuff", "sq_stuff", "rq_stuff", "ap", "ap50")}
        out["per_class"] = {self.class_names[c - 1]: {k: (_nan_to_none(v) if isinstance(v, float) else v)
                                                      for k, v in pc.items()} for c, pc in r["per_class"].items()}
        out["stuff_classes"] = [self.class_names[c - 1] for c in sorted(self.panoptic.stuff)
                                if 0 < c <= len(self.class_names)]
        out["frames"] = list(self.panoptic_frames)
        return out

    def metrics(self) -> dict[str, Any]:
        """The metrics.json content (NaN written as null). ValueError when nothing was scored."""
        if self.frames_scored == 0 or self.cm.sum() == 0:
            raise ValueError(f"no frame was scored ({self.frames_sent} sent, {len(self.unscored)} unscored"
                             f"{': ' + next(iter(self.unscored.values())) if self.unscored else ''}); "
                             "no report written")
        iou = metric.per_class_iou(self.cm)
        gt_pixels = self.cm.sum(1)
        m = {
            "miou": _nan_to_none(metric.miou_from_confusion(self.cm)),
            "per_class_iou": {n: _nan_to_none(iou[i + 1]) for i, n in enumerate(self.class_names)},
            "pixel_acc": _nan_to_none(metric.pixel_accuracy(self.cm)),
            "fwiou": _nan_to_none(metric.frequency_weighted_iou(self.cm)),
            "boundary_f1": _nan_to_none(float(np.mean(self.boundary_f1))),
            "classes_present": int((gt_pixels[1:] > 0).sum()),
            "frames_scored": self.frames_scored,
            "frames_sent": self.frames_sent,
            "latency_ms": percentiles(self.latency_ms),
            "inference_ms": percentiles(self.inference_ms),
            "unknown_fraction": _nan_to_none(float(self.cm[1:, 0].sum() / max(1, self.cm[1:].sum()))),
            "class_names": list(self.class_names),
            "confusion_matrix": self.cm.tolist(),
            "frames": list(self.frame_names),
            "unscored": dict(self.unscored),
        }
        pan = self.panoptic_metrics()
        if pan is not None:  # only when ground-truth instances were scored
            m["panoptic"] = pan
        return m

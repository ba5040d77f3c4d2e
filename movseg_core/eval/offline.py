"""Offline evaluation: run :class:`movseg_core.segmenter.Segmenter` over frames and score them.

No ROS. Each frame is handed to the segmenter exactly as the node hands it over: depth in metres
as :func:`movseg_core.geometry.decode_depth` gives it (0 = invalid; a bag's depth is decoded so
when it is read), and a frame whose depth has no valid pixel is segmented from colour alone. So
the same frames give the same metrics here and through the node (``movseg eval --bag``).
"""
from __future__ import annotations

import logging
import time
from typing import Iterable

import numpy as np

from movseg_core.data.frame import RGBDFrame
from movseg_core.eval.prompts import PromptMap
from movseg_core.eval.scoring import EvalAccumulator

log = logging.getLogger(__name__)

RANDOM_WEIGHTS = ("", "random", "none")


def node_depth(depth: np.ndarray | None, depth_range: tuple[float, float] | None = None) -> np.ndarray | None:
    """What the node passes to ``segment``: metres (0 invalid; outside ``depth_range`` (min_m, max_m) too,
    the node's ``depth.min_m`` / ``depth.max_m``), or None when nothing is valid."""
    from movseg_core.geometry import decode_depth

    if depth is None:
        return None
    depth, valid = decode_depth(depth, "32FC1", valid_range=depth_range)
    return depth if valid.any() else None


def weights_warning(pretrained: str | None) -> str | None:
    """The warning a report must carry when the CLIP weights are random (None for real weights)."""
    if pretrained is None or str(pretrained).strip().lower() in RANDOM_WEIGHTS:
        return ("the segmenter ran with RANDOM weights: these numbers are meaningless (only the timings "
                "mean something). Load real weights, e.g. segmenter.clip.pretrained: openai (downloaded by "
                "open_clip) or the path of a local open_clip checkpoint file.")
    return None


def evaluate(segmenter, frames: Iterable[RGBDFrame], prompts: PromptMap, *, total: int | None = None,
             keep_samples: int = 3, progress: bool = True,
             depth_range: tuple[float, float] | None = None) -> EvalAccumulator:
    """Set the prompts as the vocabulary, segment every frame (rgb, depth, K), score it against its label.

    depth_range: the node's valid depth range in metres (``NodeParams.depth_range``; None = no limit).

    latency_ms = wall time of ``segment``; inference_ms = the segmenter's own ``timings_ms['total']``.
    Frames with ground-truth instances (``RGBDFrame.instances``) are also scored panoptically
    (:meth:`EvalAccumulator.add_instances`) from ``result.objects``, with the classes whose query is in the
    segmenter's ``objects.stuff_queries`` as stuff; without objects (``objects.enabled`` false) they are
    counted in ``acc.instances_unscored``.
    Raises ValueError when a result's labels differ in size from the ground truth.
    """
    from tqdm import tqdm

    vocab = segmenter.set_queries(list(prompts.queries))
    acc = EvalAccumulator(prompts.class_names, keep_samples=keep_samples,
                          stuff=prompts.stuff_classes(segmenter.cfg.objects.stuff_queries))
    for f in tqdm(frames, total=total, desc="eval (offline)", unit="frame", disable=not progress):
        acc.sent()
        if f.label is None:
            acc.miss(f.name, "no ground-truth labels")
            continue
        t0 = time.perf_counter()
        result = segmenter.segment(f.rgb, node_depth(f.depth, depth_range), f.K)
        wall_ms = (time.perf_counter() - t0) * 1000.0
        if result.vocabulary_version != vocab.version:
            raise RuntimeError(f"vocabulary changed during evaluation "
                               f"(v{vocab.version} -> v{result.vocabulary_version})")
        pred = prompts.to_class_ids(result.labels, result.names, result.ids)
        if pred.shape != f.label.shape:
            raise ValueError(f"frame {f.name}: labels {pred.shape} differ in size from ground truth {f.label.shape}")
        gt = np.asarray(f.label).astype(np.uint16)
        acc.add(f.name, pred, gt, f.rgb, latency_ms=wall_ms, inference_ms=(result.timings_ms or {}).get("total"))
        if f.instances is not None:
            if result.objects is None:
                acc.instances_unscored += 1
            else:
                acc.add_objects(f.name, result.objects.instance_map, result.objects.instances, prompts,
                                result.names, result.ids, f.instances, gt)
    log.info("offline evaluation: %d of %d frames scored", acc.frames_scored, acc.frames_sent)
    return acc


def settings_info(clip_model: str, pretrained: str | None, depth_range: tuple[float, float] | None) -> dict[str, str]:
    """The settings a report states, the same lines for offline and replay runs: the CLIP model and the
    valid depth range (the node's ``depth.min_m`` / ``depth.max_m``)."""
    r = depth_range
    return {"model": f"{clip_model} / {pretrained}",
            "depth range": "no limit" if r is None else f"{r[0]:g} - {r[1]:g} m (depth.min_m / depth.max_m)"}


def score_offline(frames: Iterable[RGBDFrame], prompts: PromptMap, segmenter_config,
                  depth_range: tuple[float, float] | None = None, *, total: int | None = None,
                  keep_samples: int = 3, progress: bool = True) -> tuple[EvalAccumulator, dict[str, str], list[str]]:
    """Build the segmenter from ``segmenter_config`` (SegmenterConfig or dict) and score it on ``frames``
    with the node's ``depth_range`` (metres, None = no limit); returns (scores, report info, warnings)."""
    from movseg_core.segmenter import Segmenter

    seg = Segmenter.from_config(segmenter_config)
    acc = evaluate(seg, frames, prompts, total=total, keep_samples=keep_samples, progress=progress,
                   depth_range=depth_range)
    clip = seg.cfg.clip
    w = [weights_warning(clip.pretrained)]
    if acc.instances_unscored:
        w.append(f"{acc.instances_unscored} frames have ground-truth instances, but segmenter.objects.enabled is "
                 "false: no panoptic scores (PQ, mask AP) for them")
    info = {"mode": "offline (Segmenter in-process, no ROS)",
            **settings_info(clip.model_name, clip.pretrained, depth_range),
            "latency": "wall time of Segmenter.segment per frame",
            "segmenter time": "timings_ms['total'] reported by the segmenter"}
    return acc, info, [x for x in w if x]

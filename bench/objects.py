#!/usr/bin/env python3
"""Objects (issue 15): panoptic quality, 3D accuracy and speed of instance extraction.

Held-out synthetic scenes (seeds from ``EVAL_SEED_BASE + 500``, never used for training or for
choosing parameters: the objects defaults were set by reasoning, not tuned) with look-alike
clones (``SceneConfig.clones``: copies of an object beside it, touching or up to 3 cm apart, or
behind it, partly hidden), at the 120x160 size the synthetic CLIP works at. Ground truth: the
renderer's instances (stuff = floor and walls merged per class) and the solids' 3D boxes
(:func:`movseg_core.data.synthetic.object_boxes`).

- ``pq_oracle_rgb``: RGB-only proposals, each segment given its majority true class (oracle), grouped
  into instances by image contact alone (no depth).
- ``pq_oracle_rgbd``: RGB-D proposals (depth + normals estimated from depth, as the segmenter does),
  oracle classes, grouped with depth (jumps, 3D contact, convexity).
- ``pq_clip_rgbd``: the full segmenter with the trained synthetic CLIP (test/fixtures/synth_clip.pt,
  ``synth_segmenter_config``), its own instances.
- 3D, on the segmenter's things matched to the truth (IoU > 0.5, same class): median centroid
  error (cm) and median axis-aligned 3D box IoU (camera frame; visible-surface boxes with the
  ``complete_depth`` far face).
- ``ms``: median time of :func:`extract_objects` (grouping + 2D/3D boxes) on 640x480 renders with
  RGB-D proposals and oracle classes; proposals themselves are timed beside it for scale.

    .venv/bin/python bench/objects.py [--scenes 40] [--quick] [--speed-only] [--baseline REV]

``--baseline REV`` also times git revision REV's ``extract_objects`` (its own ``movseg_core``,
kernels included) on the same frames, call by call alternating with the current one, and checks
that both give the same instance maps; ``--speed-only`` skips the quality figures.
Last line: {"pq_oracle_rgb", "pq_oracle_rgbd", "pq_clip_rgbd", "centroid_err_cm_p50", "box3d_iou_p50", "ms"}
"""
from __future__ import annotations

from _common import REPO, baseline_module, print_summary  # noqa: E402  (sets the environment up first)

import argparse
import os
import time

import numpy as np

from movseg_core.data.synthetic import CLASS_NAMES, SceneConfig, SyntheticSample, generate, object_boxes  # noqa: E402
from movseg_core.eval.oracle import oracle_labels  # noqa: E402
from movseg_core.eval.panoptic import Box3D, PanopticEvaluator  # noqa: E402
from movseg_core.eval.synthetic import EVAL_SEED_BASE, synth_segmenter_config  # noqa: E402
from movseg_core.geometry import normals_from_depth  # noqa: E402
from movseg_core.objects import Objects, ObjectsConfig, extract_objects, prepare_objects  # noqa: E402
from movseg_core.proposals import ProposalConfig, propose  # noqa: E402

NUM_CLASSES = len(CLASS_NAMES) + 1
STUFF = frozenset(i + 1 for i, n in enumerate(CLASS_NAMES)
                  if n.casefold() in {q.casefold() for q in ObjectsConfig().stuff_queries})


def truth(s: SyntheticSample) -> tuple[np.ndarray, dict[int, int], dict[int, Box3D]]:
    """Panoptic ground truth: instance map (stuff merged per class: id = 1000 + class), classes, 3D boxes."""
    inst = s.instance.astype(np.int64).copy()
    for c in STUFF:
        inst[s.label == c] = 1000 + c
    ids = np.unique(inst[inst > 0])
    first = {int(i): int(s.label[inst == i].flat[0]) for i in ids}
    boxes = {b.instance_id: Box3D(b.centre, b.box_min, b.box_max) for b in object_boxes(s.spec, s.first_object_id)}
    return inst, first, boxes


def add(ev: PanopticEvaluator, objs: Objects, s: SyntheticSample) -> None:
    gt, gt_cls, gt_boxes = truth(s)
    cls = {o.id: o.class_id for o in objs.instances}
    scores = {o.id: o.score for o in objs.instances}
    boxes = {o.id: Box3D(o.centroid, o.box_min, o.box_max) for o in objs.instances if o.has_3d}
    ev.add(objs.instance_map, cls, gt, gt_cls, scores=scores, pred_boxes=boxes, gt_boxes=gt_boxes)


def oracle_objects(s: SyntheticSample, pcfg: ProposalConfig, use_depth: bool) -> Objects:
    """Proposals (RGB or RGB-D) + oracle classes -> objects (grouped with or without depth)."""
    depth = normals = None
    if use_depth:  # as the segmenter does: proposals fit normals on their grid, objects get full-resolution ones
        normals = np.asarray(normals_from_depth(s.depth, s.K)[0])
        depth = s.depth
    segments = propose(s.rgb, depth, None, None if depth is None else depth > 0, pcfg,
                       K=s.K if use_depth else None)
    per_pixel = oracle_labels(segments, s.label, NUM_CLASSES - 1)
    seg_cls = np.zeros(int(segments.max()) + 1, np.int64)
    seg_cls[segments.ravel()] = per_pixel.ravel()
    return extract_objects(segments, seg_cls, np.ones(seg_cls.size), CLASS_NAMES, depth,
                           s.K if use_depth else None, normals)


def summary(r: dict) -> str:
    return (f"PQ {r['pq']:.3f} (things {r['pq_things']:.3f}, stuff {r['pq_stuff']:.3f})  SQ {r['sq']:.3f}  "
            f"RQ {r['rq']:.3f}  mask AP {r['ap']:.3f}  AP50 {r['ap50']:.3f}")


def speed(args: argparse.Namespace) -> float:
    """ms per 640x480 frame of extract_objects (RGB-D proposals, oracle classes), printed; with
    ``args.baseline`` also REV's, interleaved. Returns the current code's median ms."""
    base = None
    if args.baseline:  # first: loading its kernels from numba's disk cache after ours fails (same names)
        base = baseline_module(args.baseline, "movseg_core.objects", "prepare_objects")
    prepare_objects()
    tcfg = SceneConfig(height=480, width=640, clones=3, n_objects=(3, 4))
    ms, cpu, ms_prop, n_inst, ms_base = [], [], [], [], []
    for i in range(args.timing_frames):
        s = generate(args.seed + 10_000 + i, tcfg)
        normals = np.asarray(normals_from_depth(s.depth, s.K)[0])
        t0 = time.perf_counter()
        segments = propose(s.rgb, s.depth, None, s.depth > 0, ProposalConfig(), K=s.K)
        ms_prop.append((time.perf_counter() - t0) * 1e3)
        per_pixel = oracle_labels(segments, s.label, NUM_CLASSES - 1)
        seg_cls = np.zeros(int(segments.max()) + 1, np.int64)
        seg_cls[segments.ravel()] = per_pixel.ravel()
        conf = np.ones(seg_cls.size)
        for rep in range(7):
            if base is not None and rep % 2 == 0:  # alternate which one runs first
                ms_base.append(_timed(base.extract_objects, segments, seg_cls, conf, s, normals)[0])
            t0, c0 = time.perf_counter(), time.process_time()
            objs = extract_objects(segments, seg_cls, conf, CLASS_NAMES, s.depth, s.K, normals)
            ms.append((time.perf_counter() - t0) * 1e3)
            cpu.append((time.process_time() - c0) * 1e3)
            if base is not None and rep % 2 == 1:
                t, bobjs = _timed(base.extract_objects, segments, seg_cls, conf, s, normals)
                ms_base.append(t)
                if not np.array_equal(bobjs.instance_map, objs.instance_map):
                    raise SystemExit(f"{args.baseline} gives other instances on timing frame {i}")
        n_inst.append(len(objs.instances))
    ms_p50 = float(np.median(ms))
    print(f"640x480: extract_objects (grouping + 2D/3D boxes) p50 {ms_p50:.2f} ms (min {min(ms):.2f}) over "
          f"{len(ms)} runs on {args.timing_frames} frames, {np.mean(n_inst):.1f} instances; "
          f"proposals for scale: {np.median(ms_prop):.0f} ms")
    if base is not None:
        print(f"  {args.baseline} interleaved on the same frames: p50 {np.median(ms_base):.2f} ms "
              f"(min {min(ms_base):.2f}), same instance maps")
    print(f"  CPU time p50 {np.median(cpu):.2f} ms (all threads of the process); load average now "
          f"{', '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs, "
          f"{time.strftime('%H:%M UTC', time.gmtime())}")
    return ms_p50


def _timed(fn, segments, seg_cls, conf, s, normals):  # noqa: ANN001, ANN202
    t0 = time.perf_counter()
    r = fn(segments, seg_cls, conf, CLASS_NAMES, s.depth, s.K, normals)
    return (time.perf_counter() - t0) * 1e3, r


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenes", type=int, default=40, help="held-out scenes for the PQ figures")
    ap.add_argument("--timing-frames", type=int, default=3, help="640x480 renders for the speed figure")
    ap.add_argument("--seed", type=int, default=EVAL_SEED_BASE + 500)
    ap.add_argument("--quick", action="store_true", help="CI size: 6 scenes, 1 timing frame")
    ap.add_argument("--speed-only", action="store_true", help="only the 640x480 timing (no PQ, no JSON figures)")
    ap.add_argument("--baseline", default="", metavar="REV", help="also time REV's extract_objects, interleaved")
    ap.add_argument("--ckpt", default=str(REPO / "test" / "fixtures" / "synth_clip.pt"))
    args = ap.parse_args()
    if args.quick:
        args.scenes, args.timing_frames = 6, 1
    t_start = time.perf_counter()
    if args.speed_only:
        speed(args)
        return 0
    scfg = SceneConfig(clones=3, n_objects=(2, 4))
    scenes = [generate(args.seed + i, scfg) for i in range(args.scenes)]
    n_obj = sum(len(s.spec.objects) for s in scenes)
    print(f"{len(scenes)} held-out scenes (seeds {args.seed}..), {scfg.height}x{scfg.width}, {n_obj} objects "
          f"(clones beside / behind)")
    seg_cfg = synth_segmenter_config(args.ckpt)
    pcfg = ProposalConfig(**seg_cfg["proposals"])
    prepare_objects()

    evs = {k: PanopticEvaluator(NUM_CLASSES, stuff=STUFF) for k in ("oracle_rgb", "oracle_rgbd", "clip_rgbd")}
    for s in scenes:
        add(evs["oracle_rgb"], oracle_objects(s, pcfg, use_depth=False), s)
        add(evs["oracle_rgbd"], oracle_objects(s, pcfg, use_depth=True), s)
    from movseg_core.segmenter import Segmenter

    seg = Segmenter.from_config(seg_cfg)
    seg.set_queries(list(CLASS_NAMES))
    for s in scenes:
        add(evs["clip_rgbd"], seg.segment(s.rgb, s.depth, s.K).objects, s)
    res = {k: ev.result() for k, ev in evs.items()}
    for k, r in res.items():
        print(f"{k:12s} {summary(r)}")
    for k in ("oracle_rgbd", "clip_rgbd"):
        ce, bi = np.asarray(res[k]["centroid_err_m"]) * 100, np.asarray(res[k]["box3d_iou"])
        if ce.size:
            print(f"{k:12s} 3D on {ce.size} matched things: centroid error p50 {np.median(ce):.1f} cm "
                  f"(p90 {np.percentile(ce, 90):.1f}), AABB IoU p50 {np.median(bi):.3f}")
    per = res["oracle_rgbd"]["per_class"]
    print("oracle RGB-D per class PQ: " + ", ".join(f"{CLASS_NAMES[c - 1]} {v['pq']:.2f}" for c, v in per.items()))

    ms_p50 = speed(args)
    print(f"wall time {time.perf_counter() - t_start:.0f} s")
    clip = res["clip_rgbd"]
    out = {"pq_oracle_rgb": round(res["oracle_rgb"]["pq"], 4), "pq_oracle_rgbd": round(res["oracle_rgbd"]["pq"], 4),
           "pq_clip_rgbd": round(clip["pq"], 4),
           "centroid_err_cm_p50": (round(float(np.median(clip["centroid_err_m"])) * 100, 2)
                                   if clip["centroid_err_m"] else None),
           "box3d_iou_p50": round(float(np.median(clip["box3d_iou"])), 4) if clip["box3d_iou"] else None,
           "ms": round(ms_p50, 2)}
    return print_summary(out)


if __name__ == "__main__":
    raise SystemExit(main())

"""Per-stage CPU latency of the zero-shot segmenter vs OVSeg-style per-proposal crop classification.

Both use the same proposals (those the default config produces on each frame); ours classifies
them by pooling dense CLIP features from one pass over the image, the baseline runs one CLIP
forward per masked crop at 224x224 (batched; the work per crop is the same). CLIP weights are
random (speed does not depend on them): these are speed figures, never quality figures.

CPU stages (``cpu_stages_ms``, issue 14): everything a frame costs the CPU except the CLIP forward passes,
as the node runs it, with the CLIP passes replaced by the GPU stand-in (``clip.simulated_ms``: a wait that
uses no CPU, as a GPU pass looks from the host; the same model shapes): decoding the three input
messages (:func:`movseg_ros.conversions.rgbd_from_messages`), normals, proposals, pooling,
classification, painting, the segmenter's untimed glue (input checks), then building and serialising the
outputs (:func:`movseg_ros.outputs.output_messages`). Two clients, interleaved frame by frame:
``cpu_stages_ms`` for a client of the label outputs (label-info, labels, confidence, the overlay: the
stages issue 14 lists; the node then skips instance extraction, its outputs being lazy) and
``cpu_stages_with_objects_ms`` for a client of every default output (instance extraction and the
instance image and ObjectArray too). Stages run one after another (``overlap`` off, so none is slowed by
another); each figure is the p50 of the per-frame sum over ``--cpu-repeats`` passes over the frames.

    python bench/segmenter.py [--quick] [--data DIR] [--model ViT-B-16] [--short-side 448] [--cpu-repeats 10]
        [--cpu-baseline REV]

``--cpu-baseline REV`` also runs the CPU stages with git revision REV's segmenter (its ``movseg_core``,
compiled kernels included), interleaved frame by frame with the current one: on a machine whose speed
drifts, the side-by-side figures are the comparison.

Last line: {"ours_ms", "baseline_ms", "speedup", "proposals", "stages_ms", "cpu_stages_ms",
"cpu_stages_split_ms", "cpu_stages_with_objects_ms", "cpu_stages_with_objects_split_ms", ...} (per-frame
means; the CPU stages p50).
"""
from __future__ import annotations

from _common import baseline_module, print_summary  # noqa: E402  (sets the environment up first)

import argparse
import inspect
import logging
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np  # noqa: E402
import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

from movseg_core.classify import crop_embeddings, paint, score_segments  # noqa: E402
from movseg_core.clip import DENSE_MODES, DenseConfig  # noqa: E402
from movseg_core.data.nyuv2 import NYU40_CLASSES, NYUv2Folder, default_nyuv2_dir  # noqa: E402
from movseg_core.proposals import propose  # noqa: E402
from movseg_core.segmenter import Segmenter  # noqa: E402

log = logging.getLogger("bench.segmenter")


def baseline(seg: Segmenter, rgb: np.ndarray, depth: np.ndarray, K: np.ndarray, args) -> tuple:
    """OVSeg-style pipeline on the same proposals: one CLIP forward per masked crop.

    Returns (wall ms, process CPU ms, crop-classification ms, segments).
    """
    c0, t0 = time.process_time(), time.perf_counter()
    # as the segmenter has them made: normals fitted on the proposals' working grid
    segments = np.asarray(propose(rgb, depth, None, depth > 0, seg.cfg.proposals, K=K), np.int32)
    n = int(segments.max()) + 1
    t1 = time.perf_counter()
    emb = crop_embeddings(seg.clip, rgb, segments, n, args.crop_size, 0.1, args.crop_batch, progress=True)
    seg_labels, seg_conf, _ = score_segments(emb, seg.vocabulary.embeddings, None, seg.clip.logit_scale)
    crops_ms = (time.perf_counter() - t1) * 1e3
    paint(torch.from_numpy(segments), seg_labels, seg_conf)
    return (time.perf_counter() - t0) * 1e3, (time.process_time() - c0) * 1e3, crops_ms, segments


CLIP_STAGES = ("dense", "crops", "clip_x", "total")  # CLIP forward passes (and the sum): not CPU stages


OBJECT_OUTPUTS = ("instances", "objects", "detections_2d", "detections_3d", "vision_label_info", "points")


def cpu_stages(frames, args) -> dict[str, tuple[float, dict[str, float]]]:
    """Per variant, (p50 of the per-frame sum of the non-CLIP stages, p50 of each stage) in ms, as the node runs
    them (module docstring). Variants, interleaved frame by frame: ``labels`` (a client of the label outputs:
    label-info, labels, confidence, overlay; the node then skips instance extraction) and ``all`` (every
    default output, instances and objects too); with ``args.cpu_baseline`` REV also ``labels@REV`` and
    ``all@REV``: the same with REV's segmenter (its ``movseg_core``, kernels included; the ROS layer is ours)."""
    from rclpy.serialization import serialize_message

    from movseg_ros.conversions import array_to_image, depth_to_image, make_camera_info, make_header, rgbd_from_messages
    from movseg_ros.objects_msg import vision_msgs_available
    from movseg_ros.outputs import OUTPUTS, VISION_OUTPUTS, output_messages, publish_switch
    from movseg_ros.params import declared_defaults

    defaults = declared_defaults()  # the node's default outputs
    every = {k for k in OUTPUTS if defaults[f"publish.{publish_switch(k)}"]
             and (k not in VISION_OUTPUTS or vision_msgs_available())}
    cfg = {"clip": {"model_name": args.model, "pretrained": "random", "device": "cpu", "simulated_ms": 1.0},
           "dense": {"short_side": args.short_side, "mode": args.dense_mode}, "overlap": False}
    queries = [NYU40_CLASSES[i % 40] + ("" if i < 40 else f" {i // 40}") for i in range(args.queries)]
    segmenters = {"": Segmenter}
    if args.cpu_baseline:
        segmenters[f"@{args.cpu_baseline}"] = baseline_module(args.cpu_baseline, "movseg_core.segmenter",
                                                              "prepare_proposals").Segmenter
    variants = {}
    for suffix, cls in segmenters.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            seg = cls.from_config(cfg)
        seg.set_queries(queries)
        # a revision from before start(want_objects=...) computes the objects' normals in finish instead
        takes_want = "want_objects" in inspect.signature(seg.start).parameters
        for name, wanted, objects in (("labels", every - set(OBJECT_OUTPUTS), False), ("all", every, True)):
            variants[f"{name}{suffix}"] = (seg, wanted, objects, {"want_objects": objects} if takes_want else {})
    log.info("CPU stages: outputs %s", {k: sorted(v[1]) for k, v in variants.items()})
    header = make_header(0, "camera_color_optical_frame")
    msgs = [(array_to_image(f.rgb, "rgb8", header), depth_to_image(f.depth, header),
             make_camera_info(f.K, *f.rgb.shape[:2], header)) for f in frames]
    sums: dict[str, list[float]] = {v: [] for v in variants}
    split: dict[str, dict[str, list[float]]] = {v: {} for v in variants}
    for rep in tqdm(range(args.cpu_repeats + 1), desc="CPU stages", unit="pass"):
        for color, depth, info in msgs:
            for variant, (seg, wanted, objects, start_kw) in variants.items():
                t0 = time.perf_counter()
                rgb, depth_m, K, _ = rgbd_from_messages(color, depth, info)
                times = {"decode": (time.perf_counter() - t0) * 1e3}
                t0 = time.perf_counter()
                res = seg.finish(seg.start(rgb, depth_m, K, **start_kw), want_objects=objects)  # as the node does
                wall = (time.perf_counter() - t0) * 1e3
                times.update({k: v for k, v in res.timings_ms.items() if k not in CLIP_STAGES})
                # the segmenter's time outside its timed stages (input checks, hand-offs): the sum is all of it
                times["segment_other"] = wall - sum(v for k, v in res.timings_ms.items() if k != "total")
                t0 = time.perf_counter()
                for _, msg in output_messages(header, rgb, res, depth_m, K, res.timings_ms["total"], wanted):
                    serialize_message(msg)
                times["messages"] = (time.perf_counter() - t0) * 1e3
                if rep:  # the first pass warms caches up
                    sums[variant].append(sum(times.values()))
                    for k, v in times.items():
                        split[variant].setdefault(k, []).append(v)
    return {v: (round(statistics.median(sums[v]), 2), {k: round(statistics.median(x), 2) for k, x in split[v].items()})
            for v in variants}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=default_nyuv2_dir(), help="folder in the shared NYUv2 layout")
    ap.add_argument("--model", default="ViT-B-16")
    ap.add_argument("--short-side", type=int, default=448)
    ap.add_argument("--dense-mode", default="clearclip", choices=DENSE_MODES)
    ap.add_argument("--queries", type=int, default=40, help="number of queries (NYU40 names, cycled)")
    ap.add_argument("--crop-size", type=int, default=224)
    ap.add_argument("--crop-batch", type=int, default=8)
    ap.add_argument("--quick", action="store_true", help="one frame, skip the dense-mode sweep")
    ap.add_argument("--no-mode-sweep", action="store_true")
    ap.add_argument("--cpu-repeats", type=int, default=10, help="passes over the frames for cpu_stages_ms")
    ap.add_argument("--cpu-baseline", default="", metavar="REV",
                    help="also measure the CPU stages of git revision REV's segmenter, interleaved frame by frame")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for name in ("bench.segmenter", "movseg_core"):
        logging.getLogger(name).setLevel(logging.INFO)
    torch.manual_seed(0)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        seg = Segmenter.from_config({
            "clip": {"model_name": args.model, "pretrained": "random", "device": "cpu"},
            "dense": {"short_side": args.short_side, "mode": args.dense_mode},
        })
    queries = [NYU40_CLASSES[i % 40] + ("" if i < 40 else f" {i // 40}") for i in range(args.queries)]
    t0 = time.perf_counter()
    seg.set_queries(queries)
    text_cold_ms = (time.perf_counter() - t0) * 1e3
    t0 = time.perf_counter()
    seg.set_queries(list(reversed(queries)))
    text_warm_ms = (time.perf_counter() - t0) * 1e3
    print(f"text: {len(queries)} queries x {len(seg.clip.templates)} templates: cold {text_cold_ms:.0f} ms, "
          f"cached {text_warm_ms:.1f} ms")

    ds = NYUv2Folder(args.data, require_depth=True)
    frames = [ds[i] for i in range(1 if args.quick else len(ds))]
    log.info("%d frame(s) with depth from %s; %s random weights, dense %s at short side %d, %d threads",
             len(frames), args.data, args.model, args.dense_mode, args.short_side, torch.get_num_threads())
    f0 = frames[0]
    seg.segment(f0.rgb, f0.depth, f0.K)  # warm-up (allocations, pos-embed cache)

    ours, base, ours_cpu, base_cpu, n_props, stages, base_crops = [], [], [], [], [], {}, []
    for f in tqdm(frames, desc="frames", unit="frame"):
        depth = f.depth
        c0, t0 = time.process_time(), time.perf_counter()
        res = seg.segment(f.rgb, depth, f.K)
        ours.append((time.perf_counter() - t0) * 1e3)
        ours_cpu.append((time.process_time() - c0) * 1e3)
        for k, v in res.timings_ms.items():
            stages.setdefault(k, []).append(v)
        wall, cpu, crops_ms, segments = baseline(seg, f.rgb, depth, f.K, args)
        if not np.array_equal(segments, res.segments):
            raise RuntimeError("baseline proposals differ from the segmenter's: the comparison would be unfair")
        base.append(wall)
        base_cpu.append(cpu)
        base_crops.append(crops_ms)
        n = int(res.segments.max()) + 1
        n_props.append(n)
        log.info("frame %s: %d proposals, ours %.0f ms (cpu %.0f), baseline %.0f ms (cpu %.0f; crops %.0f ms = "
                 "%.0f ms/crop), load average %.2f", f.name, n, ours[-1], ours_cpu[-1], base[-1],
                 base_cpu[-1], crops_ms, crops_ms / n, os.getloadavg()[0])

    sweep = {}
    if not (args.quick or args.no_mode_sweep):
        for mode in DENSE_MODES:
            cfg = DenseConfig(mode=mode, short_side=args.short_side)
            t = time.perf_counter()
            seg.clip.dense_features(f0.rgb, cfg)
            sweep[mode] = round((time.perf_counter() - t) * 1e3, 1)
        print("dense stage by mode (ms, one frame): " + ", ".join(f"{k} {v:.0f}" for k, v in sweep.items()))

    cpu = cpu_stages(frames, args)
    for variant, (total, split) in cpu.items():
        print(f"CPU stages, {variant} outputs (p50 ms per frame, CLIP passes on the GPU stand-in): "
              + ", ".join(f"{k} {v:.2f}" for k, v in split.items())
              + f"; per-frame sum p50 {total:.1f} ms (goal <= 25), load average {os.getloadavg()[0]:.2f}")

    stages_ms = {k: round(statistics.mean(v), 1) for k, v in stages.items()}
    ours_ms, base_ms = statistics.mean(ours), statistics.mean(base)
    ours_c, base_c = statistics.mean(ours_cpu), statistics.mean(base_cpu)
    print(f"\n{'stage':<16}{'ms':>10}")
    for k, v in stages_ms.items():
        print(f"{k:<16}{v:>10.1f}")
    print(f"{'baseline crops':<16}{statistics.mean(base_crops):>10.1f}  ({args.crop_size}px, one forward per proposal)")
    print(f"\nours {ours_ms:.0f} ms vs OVSeg-style crops {base_ms:.0f} ms per frame (wall): "
          f"{base_ms / ours_ms:.2f}x faster (process CPU time: {base_c / ours_c:.2f}x); "
          f"{statistics.mean(n_props):.1f} proposals/frame; {len(frames)} NYUv2 frame(s), "
          f"{torch.get_num_threads()} CPU threads, load average {os.getloadavg()[0]:.2f} (goal >= 5x)")
    out = {
        "ours_ms": round(ours_ms, 1),
        "baseline_ms": round(base_ms, 1),
        "speedup": round(base_ms / ours_ms, 2),
        "proposals": round(statistics.mean(n_props), 1),
        "stages_ms": stages_ms,
        "cpu_stages_ms": cpu["labels"][0],
        "cpu_stages_split_ms": cpu["labels"][1],
        "cpu_stages_with_objects_ms": cpu["all"][0],
        "cpu_stages_with_objects_split_ms": cpu["all"][1],
        **({"cpu_stages_baseline": {"rev": args.cpu_baseline, "cpu_stages_ms": cpu[f"labels@{args.cpu_baseline}"][0],
                                    "cpu_stages_split_ms": cpu[f"labels@{args.cpu_baseline}"][1],
                                    "cpu_stages_with_objects_ms": cpu[f"all@{args.cpu_baseline}"][0],
                                    "cpu_stages_with_objects_split_ms": cpu[f"all@{args.cpu_baseline}"][1]}}
           if args.cpu_baseline else {}),
        "baseline_crops_ms": round(statistics.mean(base_crops), 1),
        "cpu_ms": {"ours": round(ours_c, 1), "baseline": round(base_c, 1), "speedup": round(base_c / ours_c, 2)},
        "text_ms": {"cold": round(text_cold_ms, 1), "cached": round(text_warm_ms, 1)},
        "dense_modes_ms": sweep,
        "frames": len(frames),
        "model": args.model,
        "short_side": args.short_side,
        "queries": len(queries),
        "threads": torch.get_num_threads(),
        "load_average": round(os.getloadavg()[0], 2),
    }
    return print_summary(out)


if __name__ == "__main__":
    sys.exit(main())

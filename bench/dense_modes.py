"""Dense CLIP modes side by side: speed with ViT-B/16 and quality with the synthetic CLIP stand-in.

For every mode of :data:`movseg_core.clip.DENSE_MODES`, without and with the proposal scope
(``dense.scope: proposals``), plus PAMR refinement (``dense.refine: pamr``) on ClearCLIP:

- ms: the dense stage for one 640x480 NYUv2 frame (data/nyuv2, RGB-D proposals computed once and
  shared), ViT-B/16 with RANDOM weights (speed only, never quality), short side 448, 40 NYU40
  queries (ResCLIP's feedback pass uses them); min over ``--repeats``;
- dense / pooled RGB / pooled RGB-D: mIoU (%) of the trained synthetic CLIP test/fixtures/synth_clip.pt
  on held-out synthetic scenes (:func:`movseg_core.eval.synthetic.eval_scenes`): per-pixel argmax
  of the dense features (upsampled; scoped runs use the RGB-D proposals), and the full segmenter
  (proposals + pooled dense features) with RGB-only and RGB-D proposals.

The synthetic CLIP is tiny and its features lack the pathologies these methods fix in large
pretrained ViTs: its figures decide nothing alone.

    python bench/dense_modes.py [--scenes 4] [--repeats 1] [--part both|speed|quality] [--quick]

--quick: tiny random ViT at short side 224 instead of ViT-B/16 for speed, 2 scenes (CI size). Last line: JSON.
"""
from __future__ import annotations

from _common import REPO, print_summary  # noqa: E402  (sets the environment up first)

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from movseg_core.clip import DENSE_MODES, DenseConfig  # noqa: E402
from movseg_core.data.nyuv2 import NYU40_CLASSES, NYUv2Folder, default_nyuv2_dir  # noqa: E402
from movseg_core.data.synthetic import CLASS_NAMES  # noqa: E402
from movseg_core.eval.metrics import confusion_matrix, miou_from_confusion  # noqa: E402
from movseg_core.eval.synthetic import eval_scenes, synth_segmenter_config  # noqa: E402
from movseg_core.segmenter import Segmenter, config_from_dict  # noqa: E402

DEFAULT_CKPT = REPO / "test" / "fixtures" / "synth_clip.pt"


def variants(default_mode: str) -> list[tuple[str, str, str]]:
    """(mode, scope, refine) rows: every mode unscoped and scoped, then PAMR on the default mode."""
    rows = [(m, s, "none") for m in DENSE_MODES for s in ("none", "proposals")]
    return rows + [(default_mode, "none", "pamr"), (default_mode, "proposals", "pamr")]


def speed(model: str, rows, repeats: int, short_side: int) -> dict:
    """ms of ``dense_features`` per row on one 640x480 NYUv2 frame (random weights)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        torch.manual_seed(0)
        seg = Segmenter.from_config({"clip": {"model_name": model, "pretrained": "random", "device": "auto"},
                                     "dense": {"short_side": short_side}, "objects": {"enabled": False}})
    seg.set_queries(list(NYU40_CLASSES))
    f = NYUv2Folder(default_nyuv2_dir(), require_depth=True)[0]
    res = seg.segment(f.rgb, f.depth, f.K)  # warm-up; its RGB-D proposals are shared by every row
    text = seg.vocabulary.embeddings
    out = {}
    for mode, scope, refine in rows:
        cfg = DenseConfig(mode=mode, short_side=short_side, scope=scope, refine=refine)
        best = float("inf")
        for _ in range(repeats):
            t = time.perf_counter()
            seg.clip.dense_features(f.rgb, cfg, segments=res.segments, text=text)
            if seg.device.type == "cuda":
                torch.cuda.synchronize()
            best = min(best, (time.perf_counter() - t) * 1e3)
        out[(mode, scope, refine)] = best
        print(f"  speed {mode:<18} scope={scope:<9} refine={refine:<4} {best:9.0f} ms", flush=True)
    return out


def quality(ckpt: str, rows, n_scenes: int) -> dict:
    """Dense per-pixel and proposal-pooled mIoU (%) of the synthetic CLIP per row."""
    scenes = eval_scenes(n_scenes)
    k = len(CLASS_NAMES) + 1
    clip = None
    out = {}
    for mode, scope, refine in rows:
        cfg = synth_segmenter_config(ckpt, mode)
        cfg["dense"].update(scope=scope, refine=refine, pamr_short_side=120, pamr_dilations=[2, 4])
        seg = Segmenter(config_from_dict(cfg), clip=clip)
        clip = seg.clip
        seg.set_queries(list(CLASS_NAMES))
        text = seg.vocabulary.embeddings
        cm_dense, rgb, rgbd = (np.zeros((k, k), np.int64) for _ in range(3))
        for s in scenes:  # as segmenter_confusion, sharing the RGB-D run with the dense figure
            res = seg.segment(s.rgb, s.depth, s.K)
            rgbd += confusion_matrix(res.labels, s.label, k)
            rgb += confusion_matrix(seg.segment(s.rgb).labels, s.label, k)
            feats = clip.dense_features(s.rgb, seg.cfg.dense, segments=res.segments, text=text)
            logits = torch.einsum("dhw,qd->qhw", feats, text)
            logits = F.interpolate(logits[None], size=s.rgb.shape[:2], mode="bilinear", align_corners=False)[0]
            cm_dense += confusion_matrix((logits.argmax(0) + 1).numpy().astype(np.uint16), s.label, k)
        out[(mode, scope, refine)] = tuple(100 * miou_from_confusion(c) for c in (cm_dense, rgb, rgbd))
        print(f"  quality {mode:<18} scope={scope:<9} refine={refine:<4} dense {out[(mode, scope, refine)][0]:5.1f} "
              f"pooled RGB {out[(mode, scope, refine)][1]:5.1f} RGB-D {out[(mode, scope, refine)][2]:5.1f}", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ckpt", default=str(DEFAULT_CKPT))
    ap.add_argument("--scenes", type=int, default=4, help="held-out synthetic scenes")
    ap.add_argument("--repeats", type=int, default=1, help="timed dense passes per row (min is reported)")
    ap.add_argument("--model", default="ViT-B-16", help="architecture for the speed column (random weights)")
    ap.add_argument("--short-side", type=int, default=448)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--part", choices=("both", "speed", "quality"), default="both", help="which columns to measure")
    ap.add_argument("--quick", action="store_true", help="tiny random ViT at short side 224 for speed, 2 scenes")
    a = ap.parse_args(argv)
    if a.quick:
        a.model, a.scenes, a.short_side = "movseg-tiny-vit", 2, 224
    torch.set_num_threads(a.threads)
    t0 = time.perf_counter()
    rows = variants("clearclip")  # PAMR rows on ClearCLIP (the previous default; the bench's reference)
    print(f"speed: {a.model} random weights, 640x480 NYUv2 frame, short side {a.short_side}, "
          f"{torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f}")
    nan = float("nan")
    ms = speed(a.model, rows, a.repeats, a.short_side) if a.part != "quality" else {r: nan for r in rows}
    print(f"quality: synthetic CLIP {Path(a.ckpt).name}, {a.scenes} held-out scenes")
    q = quality(a.ckpt, rows, a.scenes) if a.part != "speed" else {r: (nan,) * 3 for r in rows}
    print(f"\n| mode | scope | refine | ms / frame ({a.model}) | dense mIoU | pooled RGB | pooled RGB-D |")
    print("|---|---|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} | {ms[r]:.0f} | {q[r][0]:.1f} | {q[r][1]:.1f} | {q[r][2]:.1f} |")
    total = time.perf_counter() - t0
    print(f"total {total:.0f} s, load average {os.getloadavg()[0]:.1f}")
    return print_summary({"model": a.model, "scenes": a.scenes, "total_s": round(total, 1), "rows": [
        {"mode": r[0], "scope": r[1], "refine": r[2], "ms": round(ms[r], 1), "dense_miou": round(q[r][0], 2),
         "pooled_rgb_miou": round(q[r][1], 2), "pooled_rgbd_miou": round(q[r][2], 2)} for r in rows]})


if __name__ == "__main__":
    sys.exit(main())

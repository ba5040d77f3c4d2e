"""Quality of the tiny synthetic-scene CLIP stand-in (test/fixtures/synth_clip.pt) on held-out scenes.

- zero_shot_acc: single-object images of the training colour-shape pairs, classified among all
  50 "<colour> <shape>" prompts (chance 2%);
- unseen_pair_acc: the same for the held-out pairs (never rendered nor captioned in training);
- dense_miou_rgb / dense_miou_rgbd: the full segmenter (proposals + dense CLIP features pooled per
  segment) with the 7 class names as queries on held-out 120x160 scenes, RGB-only vs RGB-D proposals;
- dense_miou_rgbd_by_mode: the RGB-D figure for each training-free dense mode;
- crop_ensemble_miou_rgb / _rgbd: the same with the 48-px masked-crop member added to the dense one;
- train_minutes: from the checkpoint's JSON (the training run's wall time).

These are figures of a synthetic stand-in trained in minutes, not of a real CLIP.

    python bench/tiny_clip.py [--ckpt test/fixtures/synth_clip.pt] [--per-pair 8] [--scenes 24] [--quick]

Last line: JSON {"zero_shot_acc", "unseen_pair_acc", "dense_miou_rgb", "dense_miou_rgbd", "train_minutes", ...}.
"""
from __future__ import annotations

from _common import REPO, print_summary  # noqa: E402  (sets the environment up first)

import argparse
import json
import logging
import time
from pathlib import Path

import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

from movseg_core.clip import DENSE_MODES  # noqa: E402
from movseg_core.data.captions import HELD_OUT_PAIRS, allowed  # noqa: E402
from movseg_core.data.synthetic import CLASS_NAMES  # noqa: E402
from movseg_core.eval.metrics import miou_from_confusion, per_class_iou  # noqa: E402
from movseg_core.eval.synthetic import (  # noqa: E402
    all_pairs,
    eval_scenes,
    segmenter_confusion,
    zero_shot_accuracy,
)
from movseg_core.eval.synthetic import (
    synth_segmenter_config as segmenter_config,
)
from movseg_core.segmenter import Segmenter, config_from_dict  # noqa: E402

DEFAULT_CKPT = REPO / "test" / "fixtures" / "synth_clip.pt"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ckpt", default=str(DEFAULT_CKPT))
    p.add_argument("--per-pair", type=int, default=8, help="single-object images per colour-shape pair")
    p.add_argument("--scenes", type=int, default=24, help="held-out scenes for the segmenter mIoU")
    p.add_argument("--modes", default=",".join(m for m in DENSE_MODES), help="dense modes to compare (RGB-D)")
    p.add_argument("--quick", action="store_true", help="4 images per pair, 8 scenes, vanilla mode only")
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(a.threads)
    if a.quick:
        a.per_pair, a.scenes, a.modes = 4, 8, "vanilla"
    ckpt = Path(a.ckpt)
    meta = json.loads(ckpt.with_suffix(".json").read_text()) if ckpt.with_suffix(".json").is_file() else {}
    t0 = time.perf_counter()
    seg = Segmenter.from_config(segmenter_config(ckpt))
    clip = seg.clip
    held = [tuple(x) for x in meta.get("held_out_pairs", HELD_OUT_PAIRS)]
    seen = [pc for pc in all_pairs() if allowed(pc[1], pc[0], held)]
    zs = zero_shot_accuracy(clip, seen, a.per_pair)
    un = zero_shot_accuracy(clip, held, a.per_pair)
    print(f"zero-shot ({len(seen)} seen pairs x {a.per_pair}, 50-way, chance 2%): pair {zs.acc:.3f}  "
          f"shape {zs.shape_acc:.3f}  colour {zs.colour_acc:.3f}")
    print(f"held-out pairs {held} x {a.per_pair}: pair {un.acc:.3f}  "
          f"shape {un.shape_acc:.3f}  colour {un.colour_acc:.3f}")
    scenes = eval_scenes(a.scenes)
    out: dict = {}
    by_mode: dict[str, float] = {}
    for mode in tqdm(a.modes.split(","), desc="dense modes"):
        s = seg if mode == "vanilla" else Segmenter(config_from_dict(segmenter_config(ckpt, mode)), clip=clip)
        cm_d = segmenter_confusion(s, scenes, use_depth=True)
        by_mode[mode] = float(miou_from_confusion(cm_d))
        if mode == "vanilla":
            cm_r = segmenter_confusion(s, scenes, use_depth=False)
            out["rgb"], out["rgbd"] = float(miou_from_confusion(cm_r)), by_mode[mode]
            ious_r, ious_d = per_class_iou(cm_r), per_class_iou(cm_d)
            print("per-class IoU (RGB / RGB-D):  " + "  ".join(
                f"{n} {ious_r[i + 1]:.2f}/{ious_d[i + 1]:.2f}" for i, n in enumerate(CLASS_NAMES)))
    print("RGB-D mIoU by dense mode: " + "  ".join(f"{m} {v:.3f}" for m, v in by_mode.items()))
    ens = Segmenter(config_from_dict(segmenter_config(ckpt, "vanilla", crop_weight=1.0)), clip=clip)
    cm_er, cm_ed = segmenter_confusion(ens, scenes, use_depth=False), segmenter_confusion(ens, scenes, use_depth=True)
    out["ens_rgb"], out["ens_rgbd"] = float(miou_from_confusion(cm_er)), float(miou_from_confusion(cm_ed))
    ie_r, ie_d = per_class_iou(cm_er), per_class_iou(cm_ed)
    print("dense + 48-px crop member, per-class IoU (RGB / RGB-D):  " + "  ".join(
        f"{n} {ie_r[i + 1]:.2f}/{ie_d[i + 1]:.2f}" for i, n in enumerate(CLASS_NAMES)))
    print(f"mIoU dense only: RGB {out['rgb']:.3f}  RGB-D {out['rgbd']:.3f};  "
          f"dense + crops: RGB {out['ens_rgb']:.3f}  RGB-D {out['ens_rgbd']:.3f}")
    res = {
        "zero_shot_acc": round(zs.acc, 4),
        "unseen_pair_acc": round(un.acc, 4),
        "dense_miou_rgb": round(out.get("rgb", float("nan")), 4),
        "dense_miou_rgbd": round(out.get("rgbd", float("nan")), 4),
        "train_minutes": meta.get("train_minutes"),
        "zero_shot_shape_acc": round(zs.shape_acc, 4),
        "unseen_pair_shape_acc": round(un.shape_acc, 4),
        "dense_miou_rgbd_by_mode": {m: round(v, 4) for m, v in by_mode.items()},
        "crop_ensemble_miou_rgb": round(out["ens_rgb"], 4),
        "crop_ensemble_miou_rgbd": round(out["ens_rgbd"], 4),
        "chance": round(1 / len(all_pairs()), 4),
        "images_per_pair": a.per_pair,
        "scenes": a.scenes,
        "ckpt": str(ckpt),
        "bench_seconds": round(time.perf_counter() - t0, 1),
    }
    return print_summary(res)


if __name__ == "__main__":
    raise SystemExit(main())

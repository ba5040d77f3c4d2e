"""Train the tiny RGB+X MaskFormer on synthetic RGB-D scenes: RGB-only vs RGB+normals, 3 seeds.

Reports, on held-out synthetic scenes: proposal mIoU with oracle classification (every proposal
segment takes its majority ground-truth class) and end-to-end mIoU (proposal embeddings scored
against the text embeddings of a RANDOM tiny CLIP, i.e. a fixed learned classifier; no pretrained
CLIP exists on this machine), over all 7 classes and over the 5 shape-defined classes. Also times
one training step of the full-size config (ResNet-50 RGB + X backbones, 100 queries, ViT-B/16
embedding space) and one CLIP-X adaptation step (ViT-B/16 visual tower) on this machine.

    python bench/train_synthetic.py            # full (about 10 minutes on 2 CPU cores)
    python bench/train_synthetic.py --quick    # smoke (about 1-2 minutes)

Last line: {"seeds": [..], "rgb_miou": [..], "rgbn_miou": [..], "minutes": .., ...} where
rgb_miou / rgbn_miou are the oracle proposal mIoUs on the shape classes (the paper's claim is about
proposals: geometry separates shapes), with the other figures under their own keys.
"""
from __future__ import annotations

from _common import print_summary  # noqa: E402  (sets the environment up first)

import argparse
import logging
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np  # noqa: E402
import torch  # noqa: E402

from movseg_core.data.synthetic import CLASS_IDS, SHAPES  # noqa: E402
from movseg_core.training.config import TrainConfig  # noqa: E402
from movseg_core.training.engine import Trainer  # noqa: E402

SHAPE_IDS = [CLASS_IDS[s] for s in SHAPES]


def _worker_init() -> None:
    # one intra-op thread per process: two trainings run side by side on the 2 cores; more threads
    # per process on a shared 2-core box make tiny ops wait on descheduled OpenMP threads (10-40x slower)
    torch.set_num_threads(1)
    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore", category=RuntimeWarning)


def run_one(seed: int, x_modality: str, args: argparse.Namespace, out: Path) -> dict:
    cfg = TrainConfig(
        model={"preset": "movseg-tiny", "x_modality": x_modality, "fusion": "attention", "num_queries": 12},
        clip={"model_name": "movseg-tiny-vit", "pretrained": "random"},
        data={"kind": "synthetic", "n_train": args.n_train, "n_val": args.n_val, "seed": 0,
              "height": args.height, "width": args.width},
        steps=args.steps, batch_size=8, lr=args.lr, backbone_lr_mult=1.0, weight_decay=0.05, warmup_steps=10,
        eval_every=-1, seed=seed, out_dir=str(out / f"{x_modality}_s{seed}"), resume=False, progress=False,
    )
    t0 = time.perf_counter()
    tr = Trainer(cfg)
    tr.fit()
    train_s = time.perf_counter() - t0
    from movseg_core.training.evaluate import evaluate

    ev = evaluate(tr.model, tr._val_batches(), tr.text, len(tr.class_names), tr.device, per_class=True)
    return {
        "miou": ev["miou"], "oracle_miou": ev["oracle_miou"],
        "shape_miou": float(np.nanmean(ev["iou"][SHAPE_IDS])),
        "shape_oracle_miou": float(np.nanmean(ev["oracle_iou"][SHAPE_IDS])),
        "train_s": train_s, "sec_per_step": train_s / cfg.steps, "seed": seed, "x_modality": x_modality,
    }


def _job(a: tuple) -> dict:
    return run_one(*a)


def full_size_step(height: int, width: int, batch: int) -> dict:
    """Seconds for one forward+backward+AdamW step of the paper-size model, and of a CLIP-X step."""
    from movseg_core.models import create_model
    from movseg_core.training.criterion import SetCriterion

    torch.manual_seed(0)
    model = create_model("movseg-r50")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    crit = SetCriterion()
    rgb, x = torch.rand(batch, 3, height, width), torch.rand(batch, 3, height, width)
    text = torch.nn.functional.normalize(torch.randn(40, 512), dim=-1)
    lab = torch.randint(1, 6, (height, width))
    tgt = [{"labels": torch.arange(5), "masks": torch.stack([(lab == i + 1).float() for i in range(5)])}] * batch
    times = []
    for _ in range(2):
        t = time.perf_counter()
        loss = crit.total(crit(model(rgb, x, text), tgt))
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t)
    res = {"maskformer_r50_step_s": min(times), "maskformer_input": [batch, 3, height, width]}
    del model, opt
    try:
        from movseg_core.clip import ClipConfig, create_clip
        from movseg_core.training.clip_x import ClipXTrainer

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            clip = create_clip(ClipConfig(model_name="ViT-B-16", pretrained="random", device="cpu"))
        trainer = ClipXTrainer(clip.model, lr=1e-5)
        crops = torch.rand(8, 3, 224, 224)
        ts = []
        for _ in range(2):
            t = time.perf_counter()
            trainer.step(crops, crops)
            ts.append(time.perf_counter() - t)
        res["clip_x_vitb16_step_s"] = min(ts)
        res["clip_x_batch"] = 8
    except ImportError as exc:  # CLIP-X not available in this checkout
        res["clip_x_error"] = str(exc)
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny smoke run (1 seed, few steps)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--n-train", type=int, default=192)
    ap.add_argument("--n-val", type=int, default=48)
    ap.add_argument("--height", type=int, default=96)
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--no-full-size", action="store_true", help="skip the full-size step timing")
    ap.add_argument("--full-size-only", action="store_true", help="only the full-size step timing (no training)")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    ap.add_argument("--procs", type=int, default=2, help="trainings run in parallel (1 thread each)")
    args = ap.parse_args()
    if args.quick:
        args.seeds, args.steps, args.n_train, args.n_val = args.seeds[:1], 20, 32, 8
    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore", category=RuntimeWarning)
    t0 = time.perf_counter()
    out = Path(tempfile.mkdtemp(prefix="movseg_bench_train_"))
    results: dict[str, list[dict]] = {"none": [], "normals": []}
    jobs = [(seed, xm, args, out) for seed in args.seeds for xm in ("none", "normals")]
    import multiprocessing as mp

    if args.full_size_only:
        jobs = []
    print(f"{len(jobs)} trainings of {args.steps} steps, {args.procs} at a time (1 thread each)", flush=True)
    with mp.get_context("spawn").Pool(args.procs, initializer=_worker_init) as pool:
        for r in pool.imap(_job, jobs, chunksize=1):  # in job order: seeds ascending, RGB before RGB+normals
            seed, xm = r["seed"], r["x_modality"]
            results[xm].append(r)
            print(f"seed {seed} {'RGB' if xm == 'none' else 'RGB+normals':12s} proposal(oracle) mIoU "
                  f"{r['oracle_miou']:.3f} (shapes {r['shape_oracle_miou']:.3f})  end-to-end mIoU {r['miou']:.3f} "
                  f"(shapes {r['shape_miou']:.3f})  {r['sec_per_step']:.3f} s/step, {r['train_s']:.0f} s", flush=True)
    minutes = (time.perf_counter() - t0) / 60
    torch.set_num_threads(2)
    full = {} if args.no_full_size else full_size_step(480 if not args.quick else 240,
                                                       640 if not args.quick else 320, 1)
    for k, v in full.items():
        print(f"{k}: {v}")
    rgb_s = [r["shape_oracle_miou"] for r in results["none"]]
    rgbn_s = [r["shape_oracle_miou"] for r in results["normals"]]
    print(f"RGB+normals beats RGB-only on shape-class proposal mIoU for {sum(b > a for a, b in zip(rgb_s, rgbn_s))}"
          f"/{len(rgb_s)} seeds; training+eval took {minutes:.1f} min on {torch.get_num_threads()} threads")
    summary = {
        "seeds": args.seeds,
        "rgb_miou": [round(v, 4) for v in rgb_s],
        "rgbn_miou": [round(v, 4) for v in rgbn_s],
        "minutes": round(minutes, 2),
        "metric": "oracle proposal mIoU over the 5 shape classes, held-out synthetic scenes",
        "rgb_oracle_miou_all": [round(r["oracle_miou"], 4) for r in results["none"]],
        "rgbn_oracle_miou_all": [round(r["oracle_miou"], 4) for r in results["normals"]],
        "rgb_e2e_miou": [round(r["miou"], 4) for r in results["none"]],
        "rgbn_e2e_miou": [round(r["miou"], 4) for r in results["normals"]],
        "rgb_e2e_shape_miou": [round(r["shape_miou"], 4) for r in results["none"]],
        "rgbn_e2e_shape_miou": [round(r["shape_miou"], 4) for r in results["normals"]],
        "steps": args.steps, "quick": args.quick,
        **{k: (round(v, 3) if isinstance(v, float) else v) for k, v in full.items()},
    }
    return print_summary(summary)


if __name__ == "__main__":
    raise SystemExit(main())

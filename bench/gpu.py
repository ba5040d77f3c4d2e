#!/usr/bin/env python3
"""The ready GPU benchmark (issue 14): per-stage ms and end-to-end labelled frames per second at 640x480.

Run it whenever a GPU machine is lent (``device`` tool): ViT-B/16 and, if it fits, ViT-L/14, with the
product's GPU settings: fp16 autocast (``clip.precision: auto`` on CUDA), normals on the GPU in the
geometry thread's own stream (``normals_on_device``), geometry beside the CLIP pass (``overlap``).
Random weights (speed does not depend on them): speed figures, never quality figures. On a machine
without CUDA it runs on the CPU (CI runs ``--quick``: the tiny model, 3 frames).

For each model, over the bundled NYUv2 frames (640x480, cycled):
- stages: ``Segmenter.segment`` with ``sync_stage_timings`` (a device synchronisation after each GPU stage,
  so each stage shows its own time); the stage medians and ``ms_p50`` come from these;
- sequential: ``Segmenter.segment`` one frame after another with the product's setting (no synchronisation
  in mid-frame);
- pipelined: the node's schedule: one thread runs ``Segmenter.start`` (geometry beside the CLIP pass) and
  hands each frame (at most one waiting) to a second thread that runs ``Segmenter.finish``; frames per
  second = frames / wall time.
``cpu_stages_ms``: the median per-frame sum of the stages that are not CLIP passes.

    python bench/gpu.py [--models ViT-B-16,ViT-L-14] [--frames 40] [--device auto] [--budget-s 240] [--quick]

On a GPU machine (``device`` tool): ``python bench/gpu.py`` (under five minutes on a desktop GPU).

Last line: {"device", "gpu", "models": {"<model>": {"precision", "normals_device", "stages_ms",
"cpu_stages_ms", "ms_p50", "fps_sequential", "fps_pipelined", "peak_memory_mb"} or {"skipped": why}},
"seconds"}.
"""
from __future__ import annotations

from _common import print_summary  # noqa: E402  (sets the environment up first)

import argparse
import logging
import queue
import statistics
import sys
import threading
import time
import warnings

import torch  # noqa: E402

from movseg_core.config import resolve_device  # noqa: E402
from movseg_core.data.nyuv2 import NYU40_CLASSES, NYUv2Folder, default_nyuv2_dir  # noqa: E402
from movseg_core.segmenter import Segmenter  # noqa: E402

log = logging.getLogger("bench.gpu")
CLIP_STAGES = ("dense", "crops", "clip_x", "total")


def pipelined_fps(seg: Segmenter, frames: list, n: int) -> float:
    """Frames per second with the node's two-thread schedule (start on one thread, finish on another)."""
    handoff: queue.Queue = queue.Queue(maxsize=1)
    errors: list[BaseException] = []

    def finisher() -> None:
        while (work := handoff.get()) is not None:
            try:
                seg.finish(work)
            except BaseException as exc:  # noqa: BLE001  (reported after the run)
                errors.append(exc)

    t = threading.Thread(target=finisher, name="bench-finish")
    t0 = time.perf_counter()
    t.start()
    try:
        for i in range(n):
            f = frames[i % len(frames)]
            handoff.put(seg.start(f.rgb, f.depth, f.K))
    finally:
        handoff.put(None)
        t.join()
    if errors:
        raise errors[0]
    return n / (time.perf_counter() - t0)


def run_model(name: str, device: str, frames: list, n: int, queries: list[str]) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        seg = Segmenter.from_config({"clip": {"model_name": name, "pretrained": "random", "device": device},
                                     "dense": {"short_side": 448 if name != "movseg-tiny-vit" else 224},
                                     "sync_stage_timings": True})  # the stage table: each stage's own time
    try:
        seg.set_queries(queries)
        for f in frames[:2]:  # warm-up: allocations, autotuning, position-embedding cache
            seg.segment(f.rgb, f.depth, f.K)
        if seg.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(seg.device)
        stages: dict[str, list[float]] = {}
        walls, cpu_sums = [], []
        for i in range(n):
            f = frames[i % len(frames)]
            t0 = time.perf_counter()
            res = seg.segment(f.rgb, f.depth, f.K)
            walls.append((time.perf_counter() - t0) * 1e3)
            for k, v in res.timings_ms.items():
                stages.setdefault(k, []).append(v)
            cpu_sums.append(sum(v for k, v in res.timings_ms.items() if k not in CLIP_STAGES))
        seg.cfg.sync_stage_timings = False  # the product's setting: no host-device sync in mid-frame
        t0 = time.perf_counter()
        for i in range(n):
            f = frames[i % len(frames)]
            seg.segment(f.rgb, f.depth, f.K)
        fps_seq = n / (time.perf_counter() - t0)
        fps_pipe = pipelined_fps(seg, frames, n)
        out = {
            "precision": "fp16 autocast" if seg.clip.use_fp16 else {"auto": "fp32"}.get(seg.cfg.clip.precision,
                                                                                         seg.cfg.clip.precision),
            "normals_device": seg.normals_device().type,
            "stages_ms": {k: round(statistics.median(v), 2) for k, v in stages.items()},
            "cpu_stages_ms": round(statistics.median(cpu_sums), 2),
            "ms_p50": round(statistics.median(walls), 2),
            "fps_sequential": round(fps_seq, 2),
            "fps_pipelined": round(fps_pipe, 2),
            "peak_memory_mb": (round(torch.cuda.max_memory_allocated(seg.device) / 2**20)
                               if seg.device.type == "cuda" else None),
        }
    finally:
        seg.close()
        del seg
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="ViT-B-16,ViT-L-14")
    ap.add_argument("--frames", type=int, default=None, help="frames per schedule and model (40 on CUDA, 5 on CPU)")
    ap.add_argument("--device", default="auto", help="auto (CUDA if present), cuda, cpu")
    ap.add_argument("--queries", type=int, default=40)
    ap.add_argument("--budget-s", type=float, default=240.0, help="start no further model after this many seconds")
    ap.add_argument("--quick", action="store_true", help="CI: the tiny model, 3 frames")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.quick:
        args.models, args.frames = "movseg-tiny-vit", 3
    t_start = time.perf_counter()
    device = resolve_device(args.device)
    if args.frames is None:
        args.frames = 40 if device.type == "cuda" else 5  # a CPU run (make bench) only checks the script
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    frames = [f for f in NYUv2Folder(default_nyuv2_dir(), require_depth=True)]
    queries = [NYU40_CLASSES[i % 40] + ("" if i < 40 else f" {i // 40}") for i in range(args.queries)]
    log.info("device %s%s, %d frames of %dx%d, %d queries, %d CPU threads", device, f" ({gpu})" if gpu else "",
             len(frames), frames[0].rgb.shape[1], frames[0].rgb.shape[0], len(queries), torch.get_num_threads())
    models: dict[str, dict] = {}
    for name in args.models.split(","):
        if time.perf_counter() - t_start > args.budget_s:
            models[name] = {"skipped": f"time budget of {args.budget_s:.0f} s spent"}
            continue
        try:
            models[name] = run_model(name, str(device), frames, args.frames, queries)
        except torch.cuda.OutOfMemoryError as exc:
            models[name] = {"skipped": f"does not fit: {exc}".splitlines()[0]}
        m = models[name]
        if "skipped" in m:
            print(f"{name}: skipped ({m['skipped']})")
            continue
        print(f"{name} on {device} ({m['precision']}, normals on {m['normals_device']}): "
              f"{m['fps_pipelined']:.1f} labelled frames/s pipelined, {m['fps_sequential']:.1f} sequential, "
              f"p50 {m['ms_p50']:.1f} ms per frame; CPU stages {m['cpu_stages_ms']:.1f} ms; stages (ms): "
              + ", ".join(f"{k} {v:.1f}" for k, v in m["stages_ms"].items()))
    return print_summary({"device": str(device), "gpu": gpu, "models": models,
                          "seconds": round(time.perf_counter() - t_start, 1)})


if __name__ == "__main__":
    sys.exit(main())

"""Inference backends side by side: torch fp32 / bf16 / torch.compile, onnxruntime fp32 / int8, OpenVINO fp32 / int8.

Speed: ms per dense pass (``ClipModel.dense_features``: resize, the ViT with the configured last stage,
normalisation) on one 640x480 NYUv2 frame at the default dense short side (448), ViT-B/16 with RANDOM
weights (speed does not depend on them), repeats interleaved variant by variant so load changes hit all
alike. Label agreement with torch fp32 on that frame (the frame's RGB-D proposals, pooled features, 40
NYU40 queries): with random weights this is only a numerical-consistency check, never quality.
Quality stand-in: the trained synthetic CLIP (test/fixtures/synth_clip.pt) in the full segmenter on
held-out synthetic scenes: RGB-D mIoU per variant and pixel agreement with torch fp32.

    python bench/backends.py [--quick] [--repeats 5] [--scenes 6] [--no-compile] [--mode scclip]

--quick: the tiny ViT (movseg-tiny-vit), 2 repeats, 2 scenes (CI size). OpenVINO runs where importable
(requirements.txt installs it; reported as skipped elsewhere); its int8 row runs the same dynamically
quantized ONNX file as onnxruntime int8 (``backend_int8``) on OpenVINO's kernels (no NNCF calibration).
Last line: one JSON object.
"""
from __future__ import annotations

from _common import REPO, print_summary  # noqa: E402  (sets the environment up first)

import argparse
import dataclasses
import importlib.util
import os
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np  # noqa: E402
import torch  # noqa: E402

from movseg_core.backends import attach_backend  # noqa: E402
from movseg_core.classify import paint, pool_segments, score_segments  # noqa: E402
from movseg_core.clip import ClipConfig, ClipModel, DenseConfig, create_open_clip  # noqa: E402
from movseg_core.data.nyuv2 import NYU40_CLASSES, NYUv2Folder, default_nyuv2_dir  # noqa: E402
from movseg_core.data.synthetic import CLASS_NAMES  # noqa: E402
from movseg_core.eval.metrics import confusion_matrix, miou_from_confusion  # noqa: E402
from movseg_core.eval.synthetic import eval_scenes, synth_segmenter_config  # noqa: E402
from movseg_core.export import export_onnx  # noqa: E402
from movseg_core.proposals import propose  # noqa: E402
from movseg_core.segmenter import Segmenter, SegmenterConfig, config_from_dict  # noqa: E402

HAS_OPENVINO = importlib.util.find_spec("openvino") is not None
SYNTH_CKPT = REPO / "test" / "fixtures" / "synth_clip.pt"


def variants(compile_: bool) -> list[tuple[str, dict, dict]]:
    """(name, ClipConfig changes, SegmenterConfig backend fields) per variant; torch fp32 first (the reference)."""
    rows = [("torch fp32", {}, {}), ("torch bf16", {"precision": "bf16"}, {})]
    if compile_:
        rows.append(("torch.compile fp32", {"torch_compile": True}, {}))
    rows += [("onnxruntime fp32", {}, {"backend": "onnxruntime"}),
             ("onnxruntime int8", {}, {"backend": "onnxruntime", "backend_int8": True})]
    if HAS_OPENVINO:
        rows += [("openvino fp32", {}, {"backend": "openvino"}),
                 ("openvino int8", {}, {"backend": "openvino", "backend_int8": True})]
    return rows


def frame_labels(clip: ClipModel, rgb: np.ndarray, dense: DenseConfig, segments: np.ndarray,
                 queries: list[str]) -> np.ndarray:
    """HxW labels of one frame from ``clip``'s dense features pooled over ``segments`` (the segmenter's path)."""
    seg_t = torch.from_numpy(segments)
    feats = clip.dense_features(rgb, dense)
    emb = pool_segments(feats, seg_t, int(segments.max()) + 1)
    labels, conf, _ = score_segments(emb, clip.text_embeddings(queries), None, clip.logit_scale)
    return paint(seg_t, labels, conf)[0]


def speed(args) -> dict:
    frame = NYUv2Folder(args.data)[0]
    rgb = frame.rgb
    dense = DenseConfig(mode=args.mode, short_side=args.short_side)
    clip_cfg = ClipConfig(model_name=args.model, pretrained="random", device="cpu", templates="single")
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        model = create_open_clip(clip_cfg)
    folder = Path(tempfile.mkdtemp(prefix="bench_backends_"))
    t0 = time.perf_counter()
    info = export_onnx(ClipModel(clip_cfg, model=model), dense, folder, rgb.shape[:2], int8=True)
    export_s = time.perf_counter() - t0
    sizes = {p.name: round(p.stat().st_size / 2**20, 1) for p in folder.glob("*.onnx")}
    print(f"export: {export_s:.1f} s, dense input {info.dense_input}, files (MiB): {sizes}")
    segments = np.asarray(propose(rgb, frame.depth, None, frame.depth > 0, K=frame.K), np.int32)  # as the segmenter
    queries = list(NYU40_CLASSES)
    clips, first_ms = {}, {}
    for name, clip_kw, backend in variants(not args.no_compile):
        clip = ClipModel(dataclasses.replace(clip_cfg, **clip_kw), model=model)
        if backend:
            attach_backend(clip, dense, SegmenterConfig(dense=dense, backend_dir=str(folder), **backend))
        t = time.perf_counter()
        clip.dense_features(rgb, dense)  # warm-up (torch.compile compiles here)
        first_ms[name] = (time.perf_counter() - t) * 1e3
        clips[name] = clip
    times: dict[str, list[float]] = {n: [] for n in clips}
    for _ in range(args.repeats):
        for name, clip in clips.items():
            t = time.perf_counter()
            clip.dense_features(rgb, dense)
            times[name].append((time.perf_counter() - t) * 1e3)
    labels = {n: frame_labels(c, rgb, dense, segments, queries) for n, c in clips.items()}
    ref = labels["torch fp32"]
    rows = {}
    base = statistics.median(times["torch fp32"])
    for name in clips:
        med = statistics.median(times[name])
        rows[name] = {"ms_median": round(med, 1), "ms_min": round(min(times[name]), 1),
                      "first_call_ms": round(first_ms[name], 1), "speedup": round(base / med, 2),
                      "agreement": round(float((labels[name] == ref).mean()), 4)}
    return {"rows": rows, "export_s": round(export_s, 1), "dense_input": info.dense_input, "files_mib": sizes,
            "labels_used": int(len(np.unique(ref))), "segments": int(segments.max()) + 1}


def synthetic(args) -> dict:
    scenes = eval_scenes(args.scenes)
    out, ref_labels = {}, None
    for name, clip_kw, backend in variants(False):
        tree = synth_segmenter_config(str(SYNTH_CKPT), mode="clearclip")
        tree["clip"].update(clip_kw)
        tree.update(backend)
        seg = Segmenter(config_from_dict(tree))
        seg.set_queries(list(CLASS_NAMES))
        k = len(CLASS_NAMES) + 1
        cm = np.zeros((k, k), dtype=np.int64)
        labels = []
        for s in scenes:
            res = seg.segment(s.rgb, s.depth, s.K)
            cm += confusion_matrix(res.labels, s.label, k)
            labels.append(res.labels)
        labels = np.stack(labels)
        ref_labels = labels if ref_labels is None else ref_labels
        out[name] = {"miou": round(100 * miou_from_confusion(cm), 2),
                     "agreement": round(float((labels == ref_labels).mean()), 4)}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=default_nyuv2_dir())
    ap.add_argument("--model", default="ViT-B-16")
    ap.add_argument("--mode", default=DenseConfig.mode, help="dense.mode (default: the segmenter's)")
    ap.add_argument("--short-side", type=int, default=DenseConfig.short_side)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--scenes", type=int, default=6, help="held-out synthetic scenes (0 = skip)")
    ap.add_argument("--no-compile", action="store_true", help="skip torch.compile (minutes to compile ViT-B/16)")
    ap.add_argument("--quick", action="store_true", help="tiny ViT, 2 repeats, 2 scenes")
    args = ap.parse_args()
    if args.quick:
        args.model, args.repeats, args.scenes = "movseg-tiny-vit", 2, min(args.scenes, 2)
    load = os.getloadavg()
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(f"{started}, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, torch threads {torch.get_num_threads()}")
    res = speed(args)
    print(f"\n{args.model} (random weights), dense.mode {args.mode}, 640x480 -> {res['dense_input']}, "
          f"{args.repeats} interleaved repeats; agreement = share of pixels labelled as torch fp32 "
          f"(random weights: numerical consistency only; torch fp32 used {res['labels_used']} of 40 labels "
          f"on {res['segments']} segments)")
    print(f"{'variant':<22}{'ms median':>10}{'ms min':>9}{'first ms':>10}{'speed-up':>10}{'agreement':>11}")
    for name, r in res["rows"].items():
        print(f"{name:<22}{r['ms_median']:>10.1f}{r['ms_min']:>9.1f}{r['first_call_ms']:>10.1f}"
              f"{r['speedup']:>9.2f}x{r['agreement']:>11.4f}")
    syn = synthetic(args) if args.scenes > 0 else {}
    if syn:
        print(f"\nsynthetic CLIP (test/fixtures/synth_clip.pt, clearclip), {args.scenes} held-out scenes, RGB-D:")
        for name, r in syn.items():
            print(f"{name:<22} mIoU {r['miou']:6.2f} %   agreement with torch fp32 {r['agreement']:.4f}")
    if not HAS_OPENVINO:
        print("openvino: not importable here (pip install openvino): skipped")
    end_load = os.getloadavg()
    return print_summary({"model": args.model, "mode": args.mode, "started": started,
                          "load_avg_start": round(load[0], 2), "load_avg_end": round(end_load[0], 2),
                          "openvino": HAS_OPENVINO, **res, "synthetic": syn})


if __name__ == "__main__":
    raise SystemExit(main())

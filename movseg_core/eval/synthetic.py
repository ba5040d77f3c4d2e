"""Evaluation on held-out synthetic scenes: zero-shot single-object accuracy and segmenter mIoU.

- :func:`zero_shot_accuracy`: single-object images (:func:`movseg_core.data.captions.single_object_image`)
  classified by CLIP's global embedding against "<colour> <shape>" prompts of every pair
  (chance = 1 / number of pairs); also shape-only and colour-only accuracy from the same argmax.
- :func:`segmenter_confusion`: the full segmenter on rendered scenes with the class names as
  queries (query i = class id i, so predictions compare to the renderer's labels directly).

Evaluation seeds start at :data:`EVAL_SEED_BASE`, far from the training scenes' seeds.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import torch

from movseg_core.data.captions import single_object_image
from movseg_core.data.synthetic import CLASS_NAMES, COLOURS, SHAPES, SceneConfig, SyntheticSample, generate
from movseg_core.eval.metrics import confusion_matrix

EVAL_SEED_BASE = 20_000_000


def all_pairs() -> list[tuple[str, str]]:
    """Every (colour, shape) pair in a fixed order."""
    return [(c, s) for s in SHAPES for c in COLOURS]


@dataclass
class ZeroShotResult:
    """acc: exact pair accuracy; shape_acc / colour_acc: the predicted pair's shape / colour right; n: images."""

    acc: float
    shape_acc: float
    colour_acc: float
    n: int


@torch.no_grad()
def zero_shot_accuracy(clip, pairs: Sequence[tuple[str, str]], per_pair: int, seed: int = EVAL_SEED_BASE,
                       candidates: Sequence[tuple[str, str]] | None = None) -> ZeroShotResult:
    """Classify ``per_pair`` single-object images of each (colour, shape) in ``pairs`` among ``candidates``
    (default: all pairs) by their prompt-ensemble text embeddings ("red cube" in the model's templates)."""
    import torch.nn.functional as F

    cands = list(candidates or all_pairs())
    text = clip.text_embeddings([f"{c} {s}" for c, s in cands])
    size = clip.image_size[0]
    hits = shape_hits = colour_hits = n = 0
    for pi, (colour, shape) in enumerate(pairs):
        imgs = [single_object_image(seed + pi * 1000 + k, shape, colour, size=size)[0] for k in range(per_pair)]
        x = torch.cat([clip.to_tensor(im) for im in imgs])
        if x.shape[-2:] != clip.image_size:
            x = F.interpolate(x, size=clip.image_size, mode="bilinear", align_corners=False)
        pred = (clip.encode_images(x) @ text.t()).argmax(1).tolist()
        for p in pred:
            pc, ps = cands[p]
            hits += (pc, ps) == (colour, shape)
            shape_hits += ps == shape
            colour_hits += pc == colour
            n += 1
    return ZeroShotResult(hits / n, shape_hits / n, colour_hits / n, n)


def eval_scenes(n: int, seed: int = EVAL_SEED_BASE, cfg: SceneConfig | None = None) -> list[SyntheticSample]:
    """``n`` held-out scenes (all colour-shape pairs may appear, held-out ones included)."""
    return [generate(seed + i, cfg) for i in range(n)]


def segmenter_confusion(segmenter, scenes: Iterable[SyntheticSample], use_depth: bool,
                        queries: Sequence[str] = CLASS_NAMES) -> np.ndarray:
    """Summed (C+1)x(C+1) confusion matrix of ``segmenter`` on ``scenes`` with ``queries`` = class names.

    use_depth: pass depth and K (RGB-D proposals) or RGB only.
    """
    segmenter.set_queries(list(queries))
    k = len(queries) + 1
    cm = np.zeros((k, k), dtype=np.int64)
    for s in scenes:
        res = segmenter.segment(s.rgb, s.depth if use_depth else None, s.K if use_depth else None)
        cm += confusion_matrix(res.labels, s.label, k)
    return cm


def synth_segmenter_config(ckpt: str, mode: str = "vanilla", crop_weight: float = 0.0) -> dict:
    """Nested SegmenterConfig dict loading ``ckpt`` as ``movseg-synth-clip`` (CPU) for 120x160 scenes.

    Dense features: 48-px windows (the model's input size) over the image resized to a 120-px
    short side. ``crop_weight`` > 0 adds the OVSeg masked-crop member at 48 px (the model's
    global embedding of each segment's crop, which is where this tiny model knows shapes best).
    """
    cfg = {"clip": {"model_name": "movseg-synth-clip", "pretrained": str(ckpt), "device": "cpu"},
           "dense": {"mode": mode, "short_side": 120, "window": 48, "stride": 24},
           "proposals": {"max_segments": 24, "work_width": 160}}
    if crop_weight > 0:
        cfg["classify"] = {"dense_weight": 1.0, "crop_weight": crop_weight, "crop_size": 48, "crop_margin": 0.15}
    return cfg


def scene_with(shape: str, min_pixels: int = 400, seed: int = EVAL_SEED_BASE, cfg: SceneConfig | None = None,
               max_tries: int = 200) -> SyntheticSample:
    """The first held-out scene (seeds from ``seed`` up) showing >= ``min_pixels`` of a ``shape``."""
    from movseg_core.data.synthetic import CLASS_IDS, render_scene, sample_scene

    cfg = cfg or SceneConfig()
    for i in range(max_tries):
        spec = sample_scene(seed + i, cfg)
        if not any(o.shape == shape for o in spec.objects):
            continue
        s = render_scene(spec, cfg)
        if int((s.label == CLASS_IDS[shape]).sum()) >= min_pixels:
            return s
    raise ValueError(f"no scene with {min_pixels} px of {shape!r} in {max_tries} seeds from {seed}")
